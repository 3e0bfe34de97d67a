package follower

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
	"github.com/coredns-consul/coredns-consul/test/wait"
)

// TestFollowerConverges: the follower serves each Set the tier serves, by
// deltas once it has the whole, and its subscribers get each snapshot, a
// deregistration that lowers the snapshot's index included.
func TestFollowerConverges(t *testing.T) {
	peer := dc("dc1", "p1", 3, sv("y", 3))
	g1 := set(dc("dc1", "", 10, sv("a", 10), sv("b", 10)), dc("dc2", "", 3, sv("x", 3)), peer)
	tt := startTier(t, "secret", g1)
	rec := newRecorder()
	f := start(t, Config{TokenFile: tokenFile(t, "secret"), Observer: rec, NodeName: "me"}, tt.addr)
	got := make(chan *snapshot.Snapshot, 100)
	defer f.Subscribe(tierKey("dc1"), func(s *snapshot.Snapshot) { got <- s })()
	peers := make(chan *snapshot.Snapshot, 100)
	defer f.Subscribe(tier.Key{Peer: "p1"}, func(s *snapshot.Snapshot) { peers <- s })()
	sets := make(chan *snapshot.Set, 100)
	defer f.OnSet(func(s *snapshot.Set) { sets <- s })()

	servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10, "b": 10})
	steps := []map[string]*snapshot.Service{
		{"a": sv("a", 11), "b": nil}, // a change and a removal
		{"a": nil},                   // the service with the highest index removed
		{"c": sv("c", 12)},
	}
	wants := []map[string]uint64{{"a": 10, "b": 10}, {"a": 11}, {}, {"c": 12}}
	cur := g1
	for i, change := range steps {
		cur = set(with(cur.Datacenters[0], 0, change), cur.Datacenters[1], peer)
		tt.offer(cur)
		servedIndexes(t, f, 5*time.Second, wants[i+1])
	}
	// Each generation is served before the next is offered: the
	// subscriber sees each, in order.
	for i, want := range wants {
		s := <-got
		if !maps.Equal(indexes(s), want) {
			t.Fatalf("publish %d: %v, want %v", i, indexes(s), want)
		}
		if s.AgentNode != "me" {
			t.Errorf("publish %d: AgentNode %q, want the follower's node name", i, s.AgentNode)
		}
	}
	if s := <-peers; s != f.current().PeerSnapshot("p1") || len(peers) > 0 {
		t.Errorf("the peer's unchanged snapshot was published %d more times", len(peers))
	}
	if s := <-sets; s.Snapshot("dc2") == nil || s.Cluster != "c1.consul" {
		t.Errorf("OnSet got %+v", s)
	}
	if n := rec.answer(tt.addr, tier.KindDelta); n != len(steps) {
		t.Errorf("%d delta answers, want one per change (%d)", n, len(steps))
	}
	if last, failing := f.Contact(tierKey("dc2")); last.IsZero() || !failing.IsZero() {
		t.Errorf("contact for dc2: last %v, failing %v", last, failing)
	}
}

// TestContact: a snapshot is failing while the tier says its reads of it
// fail, or once no tier can be reached; fine again once one answers.
func TestContact(t *testing.T) {
	g := set(dc("dc1", "", 10, sv("a", 10)), dc("dc2", "", 3, sv("x", 3)))
	tt := startTier(t, "", g)
	since := time.Now().Add(-time.Minute)
	tt.failing.Store(tierKey("dc2"), since)
	f := start(t, Config{Idle: 200 * time.Millisecond}, tt.addr)
	servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10})
	check := func(k tier.Key, wantFailing bool) func() error {
		return func() error {
			last, failing := f.Contact(k)
			if failing.IsZero() == wantFailing || last.IsZero() {
				return fmt.Errorf("%s: last %v, failing %v; want failing %v", k, last, failing, wantFailing)
			}
			return nil
		}
	}
	wait.Until(t, time.Second, check(tierKey("dc1"), false))
	wait.Until(t, time.Second, check(tierKey("dc2"), true))
	if _, failing := f.Contact(tierKey("dc2")); failing.Sub(since).Abs() > time.Second {
		t.Errorf("dc2 failing since %v, the tier said %v", failing, since)
	}

	tt.stop()
	wait.Until(t, 3*time.Second, check(tierKey("dc1"), true))
}

func TestTierURL(t *testing.T) {
	for _, tt := range []struct {
		addr string
		tls  bool
		want string // "": refused
	}{
		{"10.0.0.1:8701", false, "http://10.0.0.1:8701"},
		{"10.0.0.1:8701", true, "https://10.0.0.1:8701"},
		{"https://tier.example:8701", false, "https://tier.example:8701"},
		{"http://[::1]:8701/", true, "http://[::1]:8701"},
		{"ftp://10.0.0.1:8701", false, ""},
		{"http://10.0.0.1:8701/v1/follow", false, ""},
		{"http://", false, ""},
	} {
		got, err := tierURL(tt.addr, tt.tls)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("tierURL(%q, %v) = %q, %v; want %q", tt.addr, tt.tls, got, err, tt.want)
		}
	}
}

// TestBackoff: two tiers that refuse connections are not spun on: each
// waits longer after each failure.
func TestBackoff(t *testing.T) {
	var dead []string
	for range 2 {
		ln := listen(t)
		dead = append(dead, ln.Addr().String())
		ln.Close()
	}
	rec := newRecorder()
	began := time.Now()
	start(t, Config{Observer: rec}, dead...)
	wait.Until(t, 5*time.Second, func() error {
		if n := rec.errors(dead[0], errUnreachable) + rec.errors(dead[1], errUnreachable); n < 8 {
			return fmt.Errorf("%d failures", n)
		}
		return nil
	})
	// 0, 100, 300 and 700 ms for each: backoff doubling from 100ms.
	if took := time.Since(began); took < 600*time.Millisecond {
		t.Errorf("8 attempts in %s: the tiers are spun on", took)
	}
}

// TestTierRestarted: a tier that restarts (another instance ID) behind
// what the follower serves is answered whole, and waited for.
func TestTierRestarted(t *testing.T) {
	tt := startTier(t, "", set(dc("dc1", "", 40, sv("a", 40), sv("b", 40))))
	rec := newRecorder()
	f := start(t, Config{Observer: rec}, tt.addr)
	servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 40, "b": 40})
	older := dc("dc1", "", 30, sv("a", 30), sv("b", 20))
	tt = tt.restart(t, "", set(older))
	wait.Until(t, 5*time.Second, func() error {
		if n := rec.answer(tt.addr, tier.KindWhole); n < 2 {
			return fmt.Errorf("%d whole answers", n)
		}
		return nil
	})
	servedIndexes(t, f, 0, map[string]uint64{"a": 40, "b": 40})
	tt.offer(set(with(older, 0, map[string]*snapshot.Service{"a": sv("a", 41)})))
	servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 41, "b": 40})
}

// TestTierWithoutState: a tier asked before it has anything to serve is
// asked again soon, not after the whole wait, so that a follower started
// with its tier serves as soon as the tier can.
func TestTierWithoutState(t *testing.T) {
	tt := startTier(t, "")
	f := start(t, Config{Wait: time.Minute}, tt.addr)
	tt.asked(t)
	tt.offer(set(dc("dc1", "", 10, sv("a", 10))))
	servedIndexes(t, f, 3*time.Second, map[string]uint64{"a": 10})
}

// TestSwitchToTierWithoutState: after the tier followed dies, the other,
// which had nothing to serve when first asked, is followed as soon as it
// has.
func TestSwitchToTierWithoutState(t *testing.T) {
	a, b := startTier(t, "", set(dc("dc1", "", 10, sv("a", 10)))), startTier(t, "")
	f := start(t, Config{Wait: time.Minute}, a.addr, b.addr)
	servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10})
	a.stop()
	b.asked(t)
	b.offer(set(dc("dc1", "", 11, sv("a", 11))))
	servedIndexes(t, f, 3*time.Second, map[string]uint64{"a": 11})
}

// TestFirstTier: a follower reads first the tier Config.First names, so
// that a fleet spreads over its tiers.
func TestFirstTier(t *testing.T) {
	for first := range 3 {
		t.Run(fmt.Sprint(first), func(t *testing.T) {
			var firstAsked atomic.Int32
			firstAsked.Store(-1)
			var addrs []string
			for i := range 2 {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					firstAsked.CompareAndSwap(-1, int32(i))
					http.Error(w, "no", http.StatusServiceUnavailable)
				}))
				t.Cleanup(srv.Close)
				addrs = append(addrs, srv.URL)
			}
			f, err := New(Config{Addresses: addrs, First: first, Observer: newRecorder()})
			if err != nil {
				t.Fatal(err)
			}
			f.Start()
			wait.Until(t, 5*time.Second, func() error {
				if firstAsked.Load() < 0 {
					return fmt.Errorf("no tier asked yet")
				}
				return nil
			})
			f.Stop()
			if got, want := firstAsked.Load(), int32(first%2); got != want {
				t.Errorf("tier %d asked first, want %d", got, want)
			}
		})
	}
}
