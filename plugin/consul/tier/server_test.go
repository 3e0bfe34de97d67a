package tier

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/serf/coordinate"
)

// TestFollowWholeDeltaNone follows a tier from nothing: the whole state,
// then a delta, then nothing newer at the wait's end.
func TestFollowWholeDeltaNone(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true})
	first := baseSet()
	tt.publish(first, 1)
	wholes := value(t, answers.WithLabelValues(KindWhole))

	env, payload := tt.follow(0, "", "1s")
	if env.Kind != KindWhole || env.Generation != 1 || env.Tier != tt.s.ID() || env.Cluster != "c1.consul" || len(env.Contact) != 3 {
		t.Fatalf("first answer %+v, want the whole generation 1 with 3 contacts", env)
	}
	held, err := snapshot.Decode(payload)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(held, first) {
		t.Errorf("whole state\n%s\nwant\n%s", dump(held), dump(first))
	}
	if got := value(t, answers.WithLabelValues(KindWhole)) - wholes; got != 1 {
		t.Errorf("tier_answers_total{kind=whole} moved by %v, want 1", got)
	}

	second := changed(first, dc1, func(s *snapshot.Snapshot) { s.Services["web"] = service("web", 9, "10.1.0.1") })
	tt.publish(second, 2)
	env, payload = tt.follow(1, tt.s.ID(), "1s")
	if env.Kind != KindDelta || env.From != 1 || env.Generation != 2 {
		t.Fatalf("second answer %+v, want a delta from 1 to 2", env)
	}
	d, err := DecodeDelta(payload)
	if err != nil {
		t.Fatal(err)
	}
	if held, err = Apply(held, d); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(held, second) {
		t.Errorf("after the delta\n%s\nwant\n%s", dump(held), dump(second))
	}

	timers := tt.idleTimers()
	answered := make(chan Envelope, 1)
	go func() { env, _ := tt.follow(2, tt.s.ID(), "3s"); answered <- env }()
	tt.waitTimers(timers + 2) // the answer's deadline and heartbeat
	tt.clk.Advance(3 * time.Second)
	if env := <-answered; env.Kind != KindNone || env.Generation != 2 || env.Size != 0 {
		t.Errorf("at the wait's end: %+v, want none at generation 2", env)
	}
}

// TestFollowWakes checks that a waiting follower is answered as soon as a
// newer generation is made.
func TestFollowWakes(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true})
	tt.publish(baseSet(), 1)
	timers := tt.idleTimers()
	answered := make(chan Envelope, 1)
	go func() { env, _ := tt.follow(1, tt.s.ID(), "1m"); answered <- env }()
	tt.waitTimers(timers + 2)
	tt.publish(changed(baseSet(), dc2, func(s *snapshot.Snapshot) { delete(s.Services, "api") }), 2)
	if env := <-answered; env.Kind != KindDelta || env.From != 1 || env.Generation != 2 {
		t.Errorf("answer %+v, want the delta from 1 to 2", env)
	}
}

// TestFollowWhole checks who gets the whole state rather than a delta.
func TestFollowWhole(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true, History: 2})
	set := baseSet()
	for n := uint64(1); n <= 4; n++ {
		set = changed(set, dc1, func(s *snapshot.Snapshot) { s.Services["web"] = service("web", 10+n, "10.1.0.1") })
		tt.publish(set, n)
	}
	tests := []struct {
		name  string
		index uint64
		tier  string
	}{
		{"new follower", 0, tt.s.ID()},
		{"another tier's generation", 3, "another"},
		{"no tier named", 3, ""},
		{"index older than the history", 1, tt.s.ID()},
		{"index newer than the tier's", 9, tt.s.ID()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if env, _ := tt.follow(tc.index, tc.tier, "1s"); env.Kind != KindWhole || env.Generation != 4 {
				t.Errorf("answer %+v, want the whole generation 4", env)
			}
		})
	}
	if env, _ := tt.follow(3, tt.s.ID(), "1s"); env.Kind != KindDelta || env.From != 3 {
		t.Errorf("from generation 3, in the history: %+v, want a delta", env)
	}
}

// TestTransferSlots checks that with MaxTransfers 1, three new followers
// get the whole state one at a time, the others waiting with heartbeats.
func TestTransferSlots(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true, MaxTransfers: 1})
	tt.publish(baseSet(), 1)
	var inFlight, peak atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	tt.s.beforeWhole = func() {
		n := inFlight.Add(1)
		if n > peak.Load() {
			peak.Store(n)
		}
		entered <- struct{}{}
		<-release
		inFlight.Add(-1)
	}
	type answer struct {
		env   Envelope
		beats int
	}
	answered := make(chan answer, 3)
	for range 3 {
		go func() {
			resp := tt.get("index=0", "")
			body := &beatCounter{r: resp.Body}
			env, _, err := ReadAnswer(body, 1<<30)
			if err != nil {
				t.Error(err)
			}
			answered <- answer{env, body.beats}
		}()
	}
	for i := range 3 {
		<-entered
		wait.Until(t, 5*time.Second, func() error {
			if got := value(t, transfersWaiting); got != float64(2-i) {
				return fmt.Errorf("%v followers waiting for a slot, want %d", got, 2-i)
			}
			return nil
		})
		if i == 0 {
			// The waiters heartbeat: a beat reaches each of them.
			tt.clk.Advance(500 * time.Millisecond)
		}
		release <- struct{}{}
	}
	waited := 0
	for range 3 {
		a := <-answered
		if a.env.Kind != KindWhole {
			t.Errorf("answer %+v, want the whole state", a.env)
		}
		if a.beats > 0 {
			waited++
		}
	}
	if waited != 2 {
		t.Errorf("%d followers heard heartbeats while they waited for a slot, want 2", waited)
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("%d whole answers in flight at once, want 1", p)
	}
}

// TestHeartbeats checks that a waiting answer writes a heartbeat every
// Heartbeat, then its answer.
func TestHeartbeats(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true, Heartbeat: 200 * time.Millisecond})
	tt.publish(baseSet(), 1)
	timers := tt.idleTimers()
	resp := tt.get(fmt.Sprintf("index=1&tier=%s&wait=1s", tt.s.ID()), "")
	body := bufio.NewReader(resp.Body)
	tt.waitTimers(timers + 2)
	for i := range 4 {
		tt.clk.Advance(200 * time.Millisecond)
		if b, err := body.ReadByte(); err != nil || b != Heartbeat {
			t.Fatalf("beat %d: %q, %v; want a heartbeat", i, b, err)
		}
	}
	if body.Buffered() != 0 {
		t.Errorf("%d bytes more than the beats", body.Buffered())
	}
	tt.clk.Advance(200 * time.Millisecond)
	env, _, err := ReadAnswer(body, 1<<20)
	if err != nil || env.Kind != KindNone {
		t.Errorf("after the beats: %+v, %v; want none", env, err)
	}
}

// TestCloseEndsWaiters checks that Close answers every waiting follower at
// once.
func TestCloseEndsWaiters(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true})
	tt.publish(baseSet(), 1)
	timers := tt.idleTimers()
	answered := make(chan Envelope, 2)
	for range 2 {
		go func() { env, _ := tt.follow(1, tt.s.ID(), "1m"); answered <- env }()
	}
	tt.waitTimers(timers + 4)
	tt.s.Close()
	for range 2 {
		if env := <-answered; env.Kind != KindNone {
			t.Errorf("answer %+v, want none", env)
		}
	}
}

// beatCounter counts the heartbeats before an answer.
type beatCounter struct {
	r     io.Reader
	beats int
	done  bool
}

func (b *beatCounter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	for _, c := range p[:n] {
		if b.done || c != Heartbeat {
			b.done = true
			break
		}
		b.beats++
	}
	return n, err
}

// TestOfferSameSet checks that a Set that did not change, or was only
// rebuilt, makes no generation.
func TestOfferSameSet(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true})
	set := baseSet()
	tt.publish(set, 1)
	tt.settle()
	rebuilt := changed(set, dc1, func(s *snapshot.Snapshot) { s.Built = s.Built.Add(time.Second) })
	tt.set.Store(rebuilt)
	tt.settle()
	if g := tt.generation(); g != 1 {
		t.Errorf("generation %d after offering the same Set, want 1", g)
	}
}

// TestCoordinatesBounded checks that a change of coordinates alone makes a
// generation once CoordinatesEvery has passed, and one with another change
// at once.
func TestCoordinatesBounded(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true, CoordinatesEvery: 10 * time.Second})
	moved := func(set *snapshot.Set, x float64) *snapshot.Set {
		return changed(set, dc1, func(s *snapshot.Snapshot) {
			s.Coordinates = []*snapshot.Coordinate{{Node: "n1", Coord: &coordinate.Coordinate{Vec: []float64{x}}}}
		})
	}
	first := moved(baseSet(), 1)
	tt.publish(first, 1)
	timers := tt.idleTimers()
	tt.clk.Advance(4 * time.Second)
	second := moved(first, 2)
	tt.set.Store(second)
	tt.settle()
	if g := tt.generation(); g != 1 {
		t.Fatalf("generation %d after coordinates alone changed, want 1", g)
	}
	tt.waitTimers(timers + 1) // the loop's, for when the coordinates are due
	tt.clk.Advance(6 * time.Second)
	tt.publish(second, 2)
	tt.clk.Advance(time.Second)
	third := changed(moved(second, 3), dc2, func(s *snapshot.Snapshot) { delete(s.Services, "api") })
	tt.publish(third, 3)
}

// TestRealClock follows a tier on the real clock, as production runs it:
// the whole state, then heartbeats and nothing newer at a short wait's end.
func TestRealClock(t *testing.T) {
	s, err := New(Config{NoAuth: true, Heartbeat: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	set := baseSet()
	s.Attach(&Source{Collect: func() *snapshot.Set { return set }})
	url := "http://" + ln.Addr().String() + Path
	var env Envelope
	wait.Until(t, 5*time.Second, func() error {
		resp, err := http.Get(url + "?wait=0s")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if env, _, err = ReadAnswer(resp.Body, 1<<30); err == nil && env.Kind != KindWhole {
			err = fmt.Errorf("answer %+v, want the whole state", env)
		}
		return err
	})
	resp, err := http.Get(fmt.Sprintf("%s?index=%d&tier=%s&wait=100ms", url, env.Generation, env.Tier))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := &beatCounter{r: resp.Body}
	if env, _, err := ReadAnswer(body, 1<<30); err != nil || env.Kind != KindNone || body.beats == 0 {
		t.Errorf("answer %+v after %d heartbeats, %v; want none after some", env, body.beats, err)
	}
}

// TestFollowFirstGeneration: a follower that asks before the tier has
// anything to serve is answered as soon as the first generation is made,
// not at its wait's end.
func TestFollowFirstGeneration(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true})
	timers := tt.idleTimers()
	answered := make(chan Envelope, 1)
	go func() { env, _ := tt.follow(0, "", "1m"); answered <- env }()
	tt.waitTimers(timers + 2)
	tt.publish(baseSet(), 1)
	select {
	case env := <-answered:
		if env.Kind != KindWhole || env.Generation != 1 {
			t.Errorf("answer %+v, want the whole generation 1", env)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer 10 s after the first generation (the wait is a minute on a clock that does not move)")
	}
}

// TestFollowLearnsFailing: when the tier's reads of Consul start failing,
// waiting followers are told at once (a "none" carrying the contact), so
// that they count as stale as the tier does, not at their wait's end.
func TestFollowLearnsFailing(t *testing.T) {
	tt := startTier(t, Config{NoAuth: true})
	tt.publish(baseSet(), 1)
	var failing atomic.Bool
	tt.s.Attach(&Source{
		Collect: func() *snapshot.Set { return tt.set.Load() },
		Contact: func(Key) (last, since time.Time) {
			if failing.Load() {
				return tt.clk.Now().Add(-time.Minute), tt.clk.Now().Add(-30 * time.Second)
			}
			return tt.clk.Now(), time.Time{}
		},
	})
	timers := tt.idleTimers()
	answered := make(chan Envelope, 1)
	go func() { env, _ := tt.follow(1, tt.s.ID(), "1m"); answered <- env }()
	tt.waitTimers(timers + 2)
	failing.Store(true)
	tt.clk.Advance(contactEvery)
	select {
	case env := <-answered:
		if env.Kind != KindNone || len(env.Contact) == 0 || env.Contact[0].FailingFor == 0 {
			t.Errorf("answer %+v, want none saying the reads fail", env)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer 10 s after the tier's reads started failing")
	}
}
