package replica

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"
)

// TestFollowsCatalog: the first snapshot holds the whole catalog, and
// registrations, health changes and removals arrive, each service watched.
func TestFollowsCatalog(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cat := newMemCatalog()
	cat.register("web", "n1", instance("web-1", "10.0.0.1", 80))
	cat.register("db", "n2", instance("db-1", "10.0.0.2", 5432))
	r, ev := startMem(t, cat, testConfig())

	s := ev.waitSnap(t, "initial sync", func(s *snapshot.Snapshot) bool { return true })
	if got := ids(s, "web"); !slices.Equal(got, []string{"web-1"}) || s.Datacenter != "dc1" {
		t.Fatalf("first snapshot: web %v in %q, want [web-1] in dc1", got, s.Datacenter)
	}
	if ids(s, "db") == nil {
		t.Fatal("the first snapshot lacks db")
	}
	ev.waitFor(t, "every service watched", func() bool { return ev.watched.Load() == 2 })

	cat.register("web", "n3", instance("web-2", "10.0.0.3", 80))
	ev.waitSnap(t, "a new instance", func(s *snapshot.Snapshot) bool { return len(ids(s, "web")) == 2 })
	cat.register("cache", "n3", instance("cache-1", "10.0.0.3", 6379))
	ev.waitSnap(t, "a new service", func(s *snapshot.Snapshot) bool { return len(ids(s, "cache")) == 1 })
	cat.setHealth("web", "web-1", snapshot.Critical)
	ev.waitSnap(t, "a health change", func(s *snapshot.Snapshot) bool { return health(s, "web", "web-1") == snapshot.Critical })
	cat.deregister("db", "db-1")
	ev.waitSnap(t, "a removed service", func(s *snapshot.Snapshot) bool { _, ok := s.Service("db"); return !ok })
	// One read of the summaries at most: the baseline, while the watchers
	// first started.
	if st := r.Stats(); st.Sweeps != 0 || st.Summaries > 1 {
		t.Errorf("with every service watched: %d sweeps, %d reads of the summaries; want none but a baseline", st.Sweeps, st.Summaries)
	}
	r.Stop()
}

// TestNothingPartial: no snapshot is published until every listed service
// has been read; a service whose read fails holds the first one back.
func TestNothingPartial(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(5, 2)
	cat.setFail(api.StatusError{Code: http.StatusInternalServerError, Body: "rpc error"})
	r, ev := startMem(t, cat, testConfig())
	ev.waitFor(t, "failures", func() bool { return ev.failures.Load() >= 5 })
	if ev.snap() != nil {
		t.Fatal("a snapshot was published while Consul failed")
	}
	if st := r.Stats(); st.Errors == 0 {
		t.Error("no failure counted")
	}
	cat.setFail(nil)
	s := ev.waitSnap(t, "sync after recovery", func(*snapshot.Snapshot) bool { return true })
	if n, _ := s.Counts(); n != 5 {
		t.Errorf("the first snapshot holds %d services, want all 5", n)
	}
}

// TestKeepsLastGoodData: while Consul fails (5xx, 429) the snapshot stays;
// changes made meanwhile arrive once it answers again.
func TestKeepsLastGoodData(t *testing.T) {
	for _, code := range []int{http.StatusInternalServerError, http.StatusTooManyRequests} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			cat := newMemCatalog()
			cat.populate(3, 1)
			cfg := testConfig()
			cfg.MaxWatchers = 1 // some services through the detectors
			r, ev := startMem(t, cat, cfg)
			ev.waitSnap(t, "sync", func(*snapshot.Snapshot) bool { return true })
			ev.waitFor(t, "a watcher", func() bool { return ev.watched.Load() == 1 })
			cat.setFail(api.StatusError{Code: code})
			cat.register("service-1", "n9", instance("late", "10.9.0.1", 80))
			failed := ev.failures.Load()
			ev.waitFor(t, "retries", func() bool { return ev.failures.Load() > failed+3 })
			if got := ids(ev.snap(), "service-1"); len(got) != 1 {
				t.Fatalf("service-1 holds %v while Consul fails, want its last good data", got)
			}
			cat.setFail(nil)
			ev.waitSnap(t, "the change made meanwhile", func(s *snapshot.Snapshot) bool { return len(ids(s, "service-1")) == 2 })
			if code == http.StatusTooManyRequests && r.Stats().TooMany == 0 {
				t.Error("429s not counted")
			}
		})
	}
}

// TestIndexGoesBackwards: a catalog restored with lower indexes (another
// cluster, a restore) replaces what the replica held, watched or not.
func TestIndexGoesBackwards(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(4, 2)
	for range 20 { // indexes well past the restored ones
		cat.setHealth("service-0", "service-0-0", snapshot.Warning)
		cat.setHealth("service-0", "service-0-0", snapshot.Passing)
	}
	cfg := testConfig()
	cfg.MaxWatchers = 2
	r, ev := startMem(t, cat, cfg)
	ev.waitSnap(t, "sync", func(s *snapshot.Snapshot) bool { n, _ := s.Counts(); return n == 4 })
	ev.waitFor(t, "watchers", func() bool { return ev.watched.Load() == 2 })
	restored := map[string][]snapshot.Instance{}
	for s := range 4 {
		name := fmt.Sprintf("service-%d", s)
		in := instance(name+"-new", "10.1.0.1", 9000)
		in.Node = "restored"
		restored[name] = []snapshot.Instance{in}
	}
	// A restore abandons the reads blocked on the store (a read sent after
	// it, with an index above the new ones, would wait out its wait).
	ev.waitFor(t, "the service list blocking", func() bool { return cat.blocking("services") == 1 })
	cat.restore(restored)
	t.Cleanup(func() {
		if t.Failed() {
			r.mu.Lock()
			for k, e := range r.data.services {
				t.Logf("%s watched=%v index=%d ids=%v", k, r.watch.has(k), e.index, ids(ev.snap(), e.name))
			}
			r.mu.Unlock()
			t.Logf("stats %+v", r.Stats())
		}
	})
	ev.waitSnap(t, "the restored catalog", func(s *snapshot.Snapshot) bool {
		for name := range restored {
			if !slices.Equal(ids(s, name), []string{name + "-new"}) {
				return false
			}
		}
		return true
	})
	// Every loop now blocks on the restored indexes, not the old higher
	// ones: later changes arrive, watched or not.
	for s := range 4 {
		name := fmt.Sprintf("service-%d", s)
		cat.setHealth(name, name+"-new", snapshot.Critical)
	}
	cat.register("later", "n9", instance("later-1", "10.9.0.1", 80))
	ev.waitSnap(t, "changes after the restore", func(s *snapshot.Snapshot) bool {
		for s2 := range 4 {
			name := fmt.Sprintf("service-%d", s2)
			if health(s, name, name+"-new") != snapshot.Critical {
				return false
			}
		}
		return len(ids(s, "later")) == 1
	})
}

// TestWaitExpiryChangesNothing: a blocking read whose wait passes without a
// change answers the same index: no snapshot, and the loop blocks again.
func TestWaitExpiryChangesNothing(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(2, 1)
	_, ev := startMem(t, cat, testConfig())
	ev.waitSnap(t, "sync", func(*snapshot.Snapshot) bool { return true })
	ev.waitFor(t, "watchers", func() bool { return ev.watched.Load() == 2 })
	ev.waitFor(t, "the service list blocking", func() bool { return cat.blocking("services") == 1 })
	// The gateways' first answers may come after the sync: a publish of
	// their own, before the waits expire. Every loop blocking again means
	// each has handed what it read to the publisher.
	ev.waitSnap(t, "the gateways' entries read", func(s *snapshot.Snapshot) bool { return s.IngressRead && s.TerminatingRead })
	ev.waitFor(t, "every loop blocking", func() bool {
		for _, m := range []string{"nodes", "queries", "gateways " + api.IngressGateway, "gateways " + api.TerminatingGateway} {
			if cat.blocking(m) != 1 {
				return false
			}
		}
		return true
	})
	published := ev.count.Load()
	reads := cat.count("services")
	cat.clock.advance(2 * time.Hour)
	ev.waitFor(t, "the service list read again", func() bool { return cat.count("services") > reads })
	cat.setHealth("service-0", "service-0-0", snapshot.Critical)
	ev.waitSnap(t, "a change after the expiry", func(s *snapshot.Snapshot) bool {
		return health(s, "service-0", "service-0-0") == snapshot.Critical
	})
	if got := ev.count.Load(); got != published+1 {
		t.Errorf("%d snapshots after the waits expired and one change, want 1", got-published)
	}
}

// TestZeroIndex: a Consul that answers index 0 makes every read return at
// once; the clamp to 1 and the token buckets bound the request rate, and
// changes still arrive.
func TestZeroIndex(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(2, 1)
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst = 50, 5
	r, ev := startMem(t, cat, cfg)
	ev.waitFor(t, "watchers", func() bool { return ev.watched.Load() == 2 })
	cat.mu.Lock()
	cat.zeroIndex = true
	cat.mu.Unlock()
	before := r.Stats().Requests
	time.Sleep(time.Second) // the rate over a second is what this test is about
	rate := float64(r.Stats().Requests - before)
	// Service list, nodes, queries, health (paused: all watched) and two
	// watchers: five loops at 50 a second and their bursts.
	if limit := 5*50 + 5*5.0; rate > limit*1.2 {
		t.Errorf("%.0f requests/s with index 0; the token buckets allow %.0f", rate, limit)
	}
	cat.register("service-1", "n9", instance("x", "10.9.0.1", 80))
	ev.waitSnap(t, "a change while the index is 0", func(s *snapshot.Snapshot) bool { return len(ids(s, "service-1")) == 2 })
}

// TestUnwatchedChanges: services past the budget are kept current by the
// detectors, each kind of change by the cheapest that can see it:
// registrations by the summaries, health by the non-passing checks, a port
// change (no count moves) by a sweep.
func TestUnwatchedChanges(t *testing.T) {
	cat, r, ev := startSynced(t, 40, 2, 5)
	ev.waitFor(t, "the budget filled and the summaries' baseline read", func() bool {
		return cat.blocking("service") == 5 && r.Stats().Summaries > 0
	})
	unwatched := func() []string {
		r.mu.Lock()
		defer r.mu.Unlock()
		var out []string
		for key, e := range r.data.services {
			if !r.watch.has(key) {
				out = append(out, e.name)
			}
		}
		slices.Sort(out)
		return out
	}()

	svc := unwatched[0]
	before := r.Stats()
	calls := func() map[string]int { cat.mu.Lock(); defer cat.mu.Unlock(); return maps.Clone(cat.calls) }
	c0 := calls()
	cat.register(svc, "n9", instance("reg", "10.9.0.1", 80))
	ev.waitSnap(t, "a registration", func(s *snapshot.Snapshot) bool { return len(ids(s, svc)) == 3 })
	if after := r.Stats(); after.Sweeps != before.Sweeps || after.Requests-before.Requests > 10 {
		t.Errorf("a registration cost %d requests and %d sweeps: %v then %v", after.Requests-before.Requests, after.Sweeps-before.Sweeps, c0, calls())
	}

	svc = unwatched[1]
	cat.setHealth(svc, svc+"-0", snapshot.Critical)
	ev.waitSnap(t, "a health change", func(s *snapshot.Snapshot) bool { return health(s, svc, svc+"-0") == snapshot.Critical })

	svc = unwatched[2]
	sweeps := r.Stats().Sweeps
	in := instance(svc+"-1", "10.0.0.2", 9999)
	cat.register(svc, "node-1", in)
	ev.waitSnap(t, "a port change", func(s *snapshot.Snapshot) bool { return port(s, svc, svc+"-1") == 9999 })
	ev.waitFor(t, "the sweep counted", func() bool { return ev.sweeps.Load() > int64(sweeps) })
}

// TestPromotion: a service found changed without a watcher takes the slot of
// the watched service that changed least recently.
func TestPromotion(t *testing.T) {
	cat, r, ev := startSynced(t, 6, 1, 2)
	ev.waitFor(t, "watchers", func() bool { return ev.watched.Load() == 2 })
	watched := func(name string) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.watch.has(snapshot.Key(name))
	}
	var cold string
	for s := range 6 {
		if name := fmt.Sprintf("service-%d", s); !watched(name) {
			cold = name
			break
		}
	}
	cat.setHealth(cold, cold+"-0", snapshot.Warning)
	ev.waitSnap(t, "the change", func(s *snapshot.Snapshot) bool { return health(s, cold, cold+"-0") == snapshot.Warning })
	ev.waitFor(t, "the promotion", func() bool { return ev.watched.Load() == 2 && watched(cold) })
	// Now watched: its next change arrives through its own watcher.
	cat.setHealth(cold, cold+"-0", snapshot.Passing)
	ev.waitSnap(t, "the next change", func(s *snapshot.Snapshot) bool { return health(s, cold, cold+"-0") == snapshot.Passing })
}

// TestWatchersStartBounded: watchers start as fast as their first answers
// come back, never more than WatchStarts waiting for one at a time; a
// service waiting for its watcher is covered by the detectors meanwhile.
func TestWatchersStartBounded(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(60, 1)
	cat.firstReadDelay = 20 * time.Millisecond
	cfg := testConfig()
	cfg.WatchStarts = 4
	_, ev := startMem(t, cat, cfg)
	ev.waitSnap(t, "sync", func(*snapshot.Snapshot) bool { return true })
	// A registration while most services wait for their watcher.
	cat.register("service-59", "n9", instance("early", "10.9.0.1", 80))
	ev.waitSnap(t, "a change before the watcher", func(s *snapshot.Snapshot) bool { return len(ids(s, "service-59")) == 2 })
	ev.waitFor(t, "every watcher", func() bool { return ev.watched.Load() == 60 })
	cat.mu.Lock()
	most := cat.most
	cat.mu.Unlock()
	// Promotions start at once, beside the ramp: one here.
	if most > cfg.WatchStarts+1 {
		t.Errorf("%d watchers waited for their first answer at once, want at most %d", most, cfg.WatchStarts+1)
	}
}

// TestChurn churns instances (registrations, health, deregistrations) with
// one watcher per three services: once it settles, the replica holds exactly
// the catalog.
func TestChurn(t *testing.T) {
	const services = 30
	cat, r, ev := startSynced(t, services, 3, 10)
	// Churn after the summaries' baseline: a change the baseline already
	// holds is seen by no diff (see "Seen and left alone" in the design).
	ev.waitFor(t, "the summaries' baseline", func() bool { return r.Stats().Summaries > 0 })
	for range 300 {
		extra := rand.N(20)
		id, node := fmt.Sprintf("churn-%d", extra), fmt.Sprintf("churn-node-%d", extra)
		// Each churning instance keeps to one service: one registered again
		// under another name while the counts cancel out is seen by no
		// detector (design.md, "What the detectors cannot see").
		svc := fmt.Sprintf("service-%d", extra%services)
		if rand.N(4) == 0 {
			for s := range services {
				cat.deregister(fmt.Sprintf("service-%d", s), id)
			}
			continue
		}
		in := instance(id, fmt.Sprintf("10.200.0.%d", extra+1), 9000)
		in.Health = []snapshot.Health{snapshot.Passing, snapshot.Warning, snapshot.Critical}[rand.N(3)]
		cat.register(svc, node, in)
	}
	want := func() map[string][]string {
		cat.mu.Lock()
		defer cat.mu.Unlock()
		out := make(map[string][]string)
		for name, s := range cat.services {
			for id := range s.instances {
				out[name] = append(out[name], id)
			}
			slices.Sort(out[name])
		}
		return out
	}()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		st := r.Stats()
		r.mu.Lock()
		defer r.mu.Unlock()
		cat.mu.Lock()
		defer cat.mu.Unlock()
		for name, ids0 := range want {
			if got := ids(ev.snap(), name); !slices.Equal(got, ids0) {
				e := r.data.services[snapshot.Key(name)]
				t.Logf("%s: holds %v (index %d, watched %v), catalog %v (index %d)", name, got, e.index, r.watch.has(snapshot.Key(name)), ids0, cat.services[name].index)
			}
		}
		t.Logf("stats %+v; catalog index %d list %d", st, cat.index, cat.listIdx)
	})
	ev.waitSnap(t, "the replica to settle on the catalog", func(s *snapshot.Snapshot) bool {
		for name, ids0 := range want {
			if !slices.Equal(ids(s, name), ids0) {
				return false
			}
		}
		n, _ := s.Counts()
		return n == len(want)
	})
	t.Logf("%d requests, %d summaries, %d sweeps", r.Stats().Requests, r.Stats().Summaries, r.Stats().Sweeps)
}

// TestQueriesDenied: a token that may not list prepared queries is not an
// outage: the first snapshot is published, with the queries hidden.
func TestQueriesDenied(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(1, 1)
	cat.denyQueries = true
	r, ev := startMem(t, cat, testConfig())
	s := ev.waitSnap(t, "sync", func(*snapshot.Snapshot) bool { return true })
	if !s.QueriesHidden {
		t.Error("the queries are not marked hidden")
	}
	if st := r.Stats(); st.Errors != 0 {
		t.Errorf("%d errors counted for a denied list", st.Errors)
	}
}

// TestStopEndsEverything: Stop returns with no goroutine left, also while
// reads block and fail.
func TestStopEndsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cat := newMemCatalog()
	cat.populate(10, 1)
	cfg := testConfig()
	cfg.MaxWatchers = 3
	ev := newEvents()
	cfg.Observer = ev
	r := newReplicator(cat, cfg, newBudget(cfg, false), ev.publish)
	r.Start()
	ev.waitFor(t, "watchers", func() bool { return ev.watched.Load() == 3 })
	cat.setFail(errors.New("connection refused"))
	ev.waitFor(t, "a failure", func() bool { return ev.failures.Load() > 0 })
	r.Stop()
}
