package consul

import (
	"fmt"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns/caddy"
)

// sized is a snapshot of one service with n instances at index.
func sized(n int, index uint64) *snapshot.Snapshot {
	svc := &snapshot.Service{Name: "web", Index: index}
	for i := range n {
		svc.Instances = append(svc.Instances, snapshot.Instance{ID: fmt.Sprint(i), Node: "n1", NodeAddress: "10.0.0.1", Port: 80})
	}
	return snapshot.New("dc1", 0, map[string]*snapshot.Service{"web": svc}, nil, time.Unix(0, 0))
}

func TestGuardDecide(t *testing.T) {
	const hold = time.Minute
	t0 := time.Unix(1000, 0)
	type step struct {
		at        time.Duration // after t0
		instances int           // of the snapshot offered at that time
		serve     int           // which step's snapshot is served (index into steps)
		recheck   time.Duration
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"growth is served", []step{{0, 10, 0, 0}, {time.Second, 20, 1, 0}}},
		{"a small drop is served", []step{{0, 10, 0, 0}, {time.Second, 6, 1, 0}}},
		{"a large drop is held", []step{{0, 10, 0, 0}, {time.Second, 4, 0, hold}}},
		{"held until the hold time passes", []step{
			{0, 10, 0, 0}, {time.Second, 4, 0, hold}, {30 * time.Second, 4, 0, hold - 29*time.Second},
			{61 * time.Second, 4, 3, 0}}},
		{"a recovery ends the hold", []step{{0, 10, 0, 0}, {time.Second, 0, 0, hold}, {2 * time.Second, 9, 2, 0}}},
		{"a collapse one service at a time is measured against the fullest", []step{
			{0, 10, 0, 0}, {time.Second, 6, 1, 0}, {2 * time.Second, 4, 0, hold}}},
		{"the fullest ages out after the hold time", []step{
			{0, 10, 0, 0}, {time.Second, 6, 1, 0}, {2 * time.Minute, 4, 2, 0}}},
		{"after a believed drop the smaller catalog is the baseline", []step{
			{0, 10, 0, 0}, {time.Second, 2, 0, hold}, {62 * time.Second, 2, 2, 0}, {63 * time.Second, 2, 3, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &guard{fraction: 0.5, hold: hold}
			snaps := make([]*snapshot.Snapshot, len(tc.steps))
			for i, s := range tc.steps {
				snaps[i] = sized(s.instances, uint64(i+1))
				serve, recheck := g.decide(t0.Add(s.at), snaps[i])
				if serve != snaps[s.serve] || recheck != s.recheck {
					t.Errorf("step %d: serves step %d's snapshot, recheck in %s; want step %d's, %s",
						i, indexOf(snaps, serve), recheck, s.serve, s.recheck)
				}
			}
		})
	}
}

func indexOf(snaps []*snapshot.Snapshot, s *snapshot.Snapshot) int {
	for i, x := range snaps {
		if x == s {
			return i
		}
	}
	return -1
}

// TestGuardTimerNeverRevertsANewerSnapshot is the race the guard had when its
// timer carried the held snapshot: the timer took snapshot N, the replica
// then published N+1 after the hold time (served), and the timer's late
// republish of N, with the same instance count, was accepted: N was served
// until Consul's next change. The timer now only asks again about the newest
// snapshot received, so whichever of the two runs first, N+1 is served.
func TestGuardTimerNeverRevertsANewerSnapshot(t *testing.T) {
	const hold = time.Minute
	for _, timerFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("timer first %v", timerFirst), func(t *testing.T) {
			clock := &testClock{now: time.Unix(1000, 0)}
			c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
			c.local.guard = &guard{fraction: 0.5, hold: hold, clock: clock}
			defer c.local.stop()
			c.publish(sized(10, 1))
			c.publish(sized(1, 2)) // held; the timer is due after hold
			if got := c.current().Index; got != 1 {
				t.Fatalf("serving index %d after a drop to a tenth, want the held 1", got)
			}
			clock.now = clock.now.Add(hold)
			newer := sized(1, 3)
			if timerFirst {
				clock.fire()
				c.publish(newer)
			} else {
				c.publish(newer) // past the hold time: served
				clock.fire()
			}
			if got := c.current(); got != newer {
				t.Fatalf("serving the snapshot at index %d, want the newer one at %d", got.Index, newer.Index)
			}
		})
	}
}

// testClock is a clock that moves, and whose timers fire, only when a test
// says so.
type testClock struct {
	now    time.Time
	timers []*testTimer
}

type testTimer struct {
	clock *testClock
	at    time.Time
	f     func()
	armed bool
}

func (c *testClock) Now() time.Time { return c.now }

func (c *testClock) AfterFunc(d time.Duration, f func()) timer {
	t := &testTimer{clock: c, f: f}
	t.Reset(d)
	c.timers = append(c.timers, t)
	return t
}

// fire runs the timers due, as their goroutines would.
func (c *testClock) fire() {
	for _, t := range c.timers {
		if t.armed && !t.at.After(c.now) {
			t.armed = false
			t.f()
		}
	}
}

func (t *testTimer) Reset(d time.Duration) bool {
	was := t.armed
	t.at, t.armed = t.clock.now.Add(d), true
	return was
}

func (t *testTimer) Stop() bool {
	was := t.armed
	t.armed = false
	return was
}

// TestGuardKeepsOnlyPossibleMaxima is the guard's memory bound: it used to
// keep every snapshot published within the hold time (2,000 services
// published ten times a second for a 5-minute hold: 391 MB of live heap).
// Only a snapshot that can still become the fullest is kept now.
func TestGuardKeepsOnlyPossibleMaxima(t *testing.T) {
	const hold = 5 * time.Minute
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name      string
		instances func(i int) int
		atMost    int
	}{
		{"a steady catalog", func(int) int { return 10 }, 1},
		{"a growing catalog", func(i int) int { return 10 + i/100 }, 1},
		{"a catalog that flaps by one", func(i int) int { return 10 + i%2 }, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &guard{fraction: 0.5, hold: hold}
			for i := range 3000 { // ten a second for the hold time
				snap := sized(tc.instances(i), uint64(i+1))
				if serve, _ := g.decide(t0.Add(time.Duration(i)*100*time.Millisecond), snap); serve != snap {
					t.Fatalf("publish %d held back", i)
				}
			}
			if len(g.recent) > tc.atMost {
				t.Errorf("the guard keeps %d snapshots, want at most %d", len(g.recent), tc.atMost)
			}
		})
	}
}

// TestGuardNotSeededFromFile: a snapshot file may come from another cluster
// (one whose datacenter has the same name) or from before a deliberate
// shrink. Served until Consul answers, it must not become the guard's
// baseline, or Consul's true data would be held back for the hold time.
func TestGuardNotSeededFromFile(t *testing.T) {
	c := caddy.NewTestController("dns", "consul {\n address 127.0.0.1:1\n guard 0.5 1m\n}")
	c.ServerBlockKeys = []string{"consul.:53"}
	cfg, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	h := &Consul{Zones: cfg.zones, opts: cfg.answer, cfg: cfg}
	file := &snapshot.Set{Local: "dc1", Datacenters: []*snapshot.Snapshot{sized(10, 1)}}
	if h.local, err = h.newDatacenter("", nil, file); err != nil {
		t.Fatal(err)
	}
	defer h.local.stop()
	if got := h.current(); got == nil || got.Index != 1 {
		t.Fatalf("the file's snapshot is not served at start")
	}
	fromConsul := sized(1, 2)
	h.publish(fromConsul)
	if got := h.current(); got != fromConsul {
		t.Errorf("serving index %d, want Consul's first snapshot (index 2) at once", got.Index)
	}
}
