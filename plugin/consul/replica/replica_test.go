package replica

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/faultproxy"

	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"
)

// waitFor polls the latest published snapshot until cond holds.
func waitFor(t *testing.T, latest *atomic.Pointer[snapshot.Snapshot], what string, cond func(*snapshot.Snapshot) bool) *snapshot.Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s := latest.Load(); s != nil && cond(s) {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last snapshot: %+v", what, latest.Load())
	return nil
}

func instanceIDs(s *snapshot.Snapshot, name string) []string {
	svc, ok := s.Service(name)
	if !ok {
		return nil
	}
	var ids []string
	for _, in := range svc.Instances {
		ids = append(ids, in.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestReplicatorFollowsCatalog(t *testing.T) {
	srv := consulagent.Start(t, nil)
	baseline := goleak.IgnoreCurrent()
	client := consulagent.Client(t, srv)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 8080}, "passing")
	consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: "web-2", Service: "web", Port: 8080, Address: "10.1.0.2"}, "warning")
	consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: "db-1", Service: "db", Port: 5432}, "critical")

	cfg := DefaultConfig()
	cfg.Wait = 2 * time.Second // exercise wait expiry without a change
	r, latest := startReplica(t, consulagent.Config(srv), cfg)

	s := waitFor(t, latest, "initial sync", func(s *snapshot.Snapshot) bool {
		return len(instanceIDs(s, "web")) == 2 && len(instanceIDs(s, "db")) == 1
	})
	if s.Datacenter != "dc1" {
		t.Errorf("datacenter = %q, want dc1 from the agent", s.Datacenter)
	}
	web, _ := s.Service("web")
	want := []snapshot.Instance{
		{ID: "web-1", Node: "n1", NodeAddress: "10.0.0.1", Port: 8080, WeightPassing: 1, WeightWarning: 1, Health: snapshot.Passing},
		{ID: "web-2", Node: "n2", NodeAddress: "10.0.0.2", Address: "10.1.0.2", Port: 8080, WeightPassing: 1, WeightWarning: 1, Health: snapshot.Warning},
	}
	for i := range want {
		got := web.Instances[i]
		got.Tags = nil
		if !equalInstance(got, want[i]) {
			t.Errorf("instance %d = %+v, want %+v", i, got, want[i])
		}
	}
	if db, _ := s.Service("db"); db.Instances[0].Health != snapshot.Critical {
		t.Errorf("db health = %v, want critical", db.Instances[0].Health)
	}

	// A new instance, a new service and a removed service all arrive without
	// restarting anything.
	consulagent.Register(t, client, "n3", "10.0.0.3", &api.AgentService{ID: "web-3", Service: "web", Port: 8080}, "passing")
	consulagent.Register(t, client, "n3", "10.0.0.3", &api.AgentService{ID: "cache-1", Service: "cache", Port: 6379}, "passing")
	consulagent.Deregister(t, client, "n2", "db-1")
	waitFor(t, latest, "changes", func(s *snapshot.Snapshot) bool {
		_, hasDB := s.Service("db")
		return len(instanceIDs(s, "web")) == 3 && len(instanceIDs(s, "cache")) == 1 && !hasDB
	})

	// Outlive one wait so every loop has returned without a change at least
	// once: the snapshot must stay complete and correct.
	time.Sleep(cfg.Wait + cfg.Wait/16 + 500*time.Millisecond)
	s = latest.Load()
	if got := instanceIDs(s, "web"); !slices.Equal(got, []string{"web-1", "web-2", "web-3"}) {
		t.Errorf("after an idle wait, web = %v", got)
	}

	r.Stop()
	goleak.VerifyNone(t, baseline) // every goroutine and connection it started is gone
}

// TestReplicatorWatcherBudget runs one scenario with every service watched,
// with none watched (detectors and sweeps only), and with one watcher slot
// (promotion and eviction): every change must reach the snapshot in each.
func TestReplicatorWatcherBudget(t *testing.T) {
	for _, budget := range []int{128, 0, 1} {
		t.Run(fmt.Sprintf("max_watchers=%d", budget), func(t *testing.T) {
			srv := consulagent.Start(t, nil)
			client := consulagent.Client(t, srv)
			for i := range 5 {
				for j := range 2 {
					consulagent.Register(t, client, fmt.Sprintf("n%d", j), fmt.Sprintf("10.0.0.%d", j+1),
						&api.AgentService{ID: fmt.Sprintf("s%d-%d", i, j), Service: fmt.Sprintf("s%d", i), Port: 80}, "passing")
				}
			}
			baseline := goleak.IgnoreCurrent()

			cfg := DefaultConfig()
			cfg.MaxWatchers = budget
			cfg.SweepInterval = 50 * time.Millisecond
			r, latest := startReplica(t, consulagent.Config(srv), cfg)
			waitFor(t, latest, "initial sync", func(s *snapshot.Snapshot) bool {
				n, _ := s.Counts()
				return n == 6 // five services and consul itself
			})
			if got, want := waitWatchers(r, min(budget, 6)), min(budget, 6); got != want {
				t.Errorf("watchers = %d, want %d", got, want)
			}

			health := func(s *snapshot.Snapshot, svc, id string) snapshot.Health {
				if v, ok := s.Service(svc); ok {
					for _, in := range v.Instances {
						if in.ID == id {
							return in.Health
						}
					}
				}
				return 255
			}
			// A check turns critical, then passing again: the health detector.
			consulagent.Register(t, client, "n0", "10.0.0.1", &api.AgentService{ID: "s3-0", Service: "s3", Port: 80}, "critical")
			waitFor(t, latest, "s3-0 critical", func(s *snapshot.Snapshot) bool { return health(s, "s3", "s3-0") == snapshot.Critical })
			consulagent.Register(t, client, "n0", "10.0.0.1", &api.AgentService{ID: "s3-0", Service: "s3", Port: 80}, "passing")
			waitFor(t, latest, "s3-0 passing", func(s *snapshot.Snapshot) bool { return health(s, "s3", "s3-0") == snapshot.Passing })
			// A new passing instance and a port change: only the service list's
			// index moves, so without a watcher a sweep must find them.
			consulagent.Register(t, client, "n2", "10.0.0.3", &api.AgentService{ID: "s4-2", Service: "s4", Port: 80}, "passing")
			waitFor(t, latest, "s4-2 registered", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "s4")) == 3 })
			consulagent.Register(t, client, "n1", "10.0.0.2", &api.AgentService{ID: "s2-1", Service: "s2", Port: 81}, "passing")
			waitFor(t, latest, "s2-1 on port 81", func(s *snapshot.Snapshot) bool {
				svc, _ := s.Service("s2")
				return svc != nil && len(svc.Instances) == 2 && svc.Instances[1].Port == 81
			})
			// A deregistration, and a whole service going away.
			consulagent.Deregister(t, client, "n0", "s1-0")
			waitFor(t, latest, "s1-0 deregistered", func(s *snapshot.Snapshot) bool {
				return slices.Equal(instanceIDs(s, "s1"), []string{"s1-1"})
			})
			consulagent.Deregister(t, client, "n0", "s0-0")
			consulagent.Deregister(t, client, "n1", "s0-1")
			waitFor(t, latest, "s0 removed", func(s *snapshot.Snapshot) bool { _, ok := s.Service("s0"); return !ok })
			// A node moves: every instance on it follows.
			consulagent.Register(t, client, "n1", "10.0.9.9", &api.AgentService{ID: "s1-1", Service: "s1", Port: 80}, "passing")
			waitFor(t, latest, "n1 moved", func(s *snapshot.Snapshot) bool {
				for _, name := range []string{"s1", "s2", "s3", "s4"} {
					svc, _ := s.Service(name)
					for _, in := range svc.Instances {
						if in.Node == "n1" && in.NodeAddress != "10.0.9.9" {
							return false
						}
					}
				}
				n, ok := s.Node("n1")
				return ok && n.Address == "10.0.9.9"
			})
			if w := r.Stats().Watchers; w > budget {
				t.Errorf("%d watchers exceed the budget of %d", w, budget)
			}
			r.Stop()
			goleak.VerifyNone(t, baseline)
		})
	}
}

// TestReplicatorKeepsLastGoodData checks that a Consul that fails, rate
// limits or hangs never costs the replica the data it has, and that changes
// made meanwhile arrive once Consul answers again.
func TestReplicatorKeepsLastGoodData(t *testing.T) {
	srv := consulagent.Start(t, nil)
	client := consulagent.Client(t, srv)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	proxy := faultproxy.New(t, srv.HTTPAddr)

	cfg := DefaultConfig()
	cfg.MaxWatchers = 1 // some services through detectors, one watched
	cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
	cfg.RequestSlack = 200 * time.Millisecond
	cfg.Wait = time.Second
	r, latest := startReplica(t, &api.Config{Address: proxy.Addr}, cfg)
	waitFor(t, latest, "initial sync", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "web")) == 1 })

	for _, mode := range []faultproxy.Mode{faultproxy.ServerError, faultproxy.TooMany, faultproxy.Hang} {
		proxy.Set(mode)
		before := latest.Load()
		consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: "web-2", Service: "web", Port: 80}, "passing")
		time.Sleep(cfg.Wait + cfg.RequestSlack + 300*time.Millisecond) // past the request deadline
		if s := latest.Load(); s != before || len(instanceIDs(s, "web")) != 1 {
			t.Fatalf("%s: the snapshot changed while Consul failed", mode)
		}
		proxy.Set(faultproxy.Pass)
		waitFor(t, latest, "recovery", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "web")) == 2 })
		consulagent.Deregister(t, client, "n2", "web-2")
		waitFor(t, latest, "deregistration", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "web")) == 1 })
	}
	if r.Stats().Errors == 0 {
		t.Error("no failed request was counted")
	}
}

// TestReplicatorFailover checks that the replica moves past an endpoint that
// fails to the next one.
func TestReplicatorFailover(t *testing.T) {
	srv := consulagent.Start(t, nil)
	client := consulagent.Client(t, srv)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	broken := faultproxy.New(t, srv.HTTPAddr)
	broken.Set(faultproxy.ServerError)

	cfg := DefaultConfig()
	cfg.Addresses = []string{broken.Addr, "127.0.0.1:1", srv.HTTPAddr}
	cfg.BackoffMin = 10 * time.Millisecond
	_, latest := startReplica(t, &api.Config{}, cfg)
	waitFor(t, latest, "sync through the third endpoint", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "web")) == 1 })
	if broken.Requests() == 0 {
		t.Error("the first endpoint was never tried")
	}
}

// TestReplicatorZeroIndex checks the index rules against an agent that
// answers X-Consul-Index 0: every loop then returns at once, and only the
// clamp to 1 and each loop's token bucket keep the request rate bounded.
func TestReplicatorZeroIndex(t *testing.T) {
	srv := consulagent.Start(t, nil)
	client := consulagent.Client(t, srv)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	proxy := faultproxy.New(t, srv.HTTPAddr)
	cfg := DefaultConfig()
	_, latest := startReplica(t, &api.Config{Address: proxy.Addr}, cfg)
	waitFor(t, latest, "initial sync", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "web")) == 1 })

	proxy.Set(faultproxy.ZeroIndex)
	time.Sleep(time.Second) // let every loop use up its burst
	before := proxy.Requests()
	time.Sleep(2 * time.Second)
	perSecond := float64(proxy.Requests()-before) / 2
	// Five loops: service list, nodes, health, and the watchers of web and consul.
	if limit := 5 * float64(cfg.RateLimit) * 1.2; perSecond > limit {
		t.Errorf("%.0f requests/s with index 0; the token buckets allow %.0f", perSecond, limit)
	}
	t.Logf("%.0f requests/s while Consul answered index 0", perSecond)
	consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: "web-2", Service: "web", Port: 80}, "passing")
	waitFor(t, latest, "a change while the index is 0", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "web")) == 2 })
}

// TestReplicatorTLS replicates over HTTPS, verifying the agent's certificate
// with the CA, and refuses an agent whose certificate the CA did not sign.
func TestReplicatorTLS(t *testing.T) {
	srv, ca := consulagent.StartTLS(t, nil)
	client := consulagent.Client(t, srv)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")

	tests := []struct {
		name   string
		ca     string
		synced bool
	}{
		{"the agent's CA", ca, true},
		{"another CA", "", false}, // the system roots did not sign the agent's certificate
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.BackoffMin = 10 * time.Millisecond
			// From api.DefaultConfig, as setup builds it: its transport
			// attempts HTTP/2, which once cost the CA (see newEndpoints).
			consul := api.DefaultConfig()
			consul.Address, consul.TLSConfig.CAFile = "https://"+srv.HTTPSAddr, tc.ca
			r, latest := startReplica(t, consul, cfg)
			if tc.synced {
				waitFor(t, latest, "sync over HTTPS", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "web")) == 1 })
				if w := waitWatchers(r, 2); w != 2 {
					t.Errorf("%d watchers, want every service watched over HTTPS", w)
				}
				return
			}
			time.Sleep(500 * time.Millisecond)
			if latest.Load() != nil || r.Stats().Errors == 0 {
				t.Error("replicated from an agent whose certificate does not verify")
			}
		})
	}
}

// TestReplicatorChangesWithoutChecks checks the safety net of the sweeps: a
// registration without any check, landing together with one that a check
// diff names, still reaches the snapshot.
func TestReplicatorChangesWithoutChecks(t *testing.T) {
	srv := consulagent.Start(t, nil)
	client := consulagent.Client(t, srv)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "a-1", Service: "a", Port: 80}, "passing")
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "b-1", Service: "b", Port: 80}, "")
	cfg := DefaultConfig()
	cfg.MaxWatchers = 0 // detectors and sweeps only
	_, latest := startReplica(t, consulagent.Config(srv), cfg)
	waitFor(t, latest, "initial sync", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "b")) == 1 })
	time.Sleep(200 * time.Millisecond) // the check diff's baseline is read

	// One transaction: a single move of the service list's index, which the
	// check diff explains by a-2 alone.
	ok, resp, _, err := client.Txn().Txn(api.TxnOps{
		{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: "n1", Service: api.AgentService{ID: "b-2", Service: "b", Port: 81}}},
		{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: "n1", Service: api.AgentService{ID: "a-2", Service: "a", Port: 81}}},
		{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{Node: "n1", CheckID: "check:a-2", Name: "a-2", Status: "passing", ServiceID: "a-2"}}},
	}, nil)
	if err != nil || !ok {
		t.Fatalf("txn: %v %+v", err, resp)
	}
	waitFor(t, latest, "a-2, named by the check diff", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "a")) == 2 })
	if got := instanceIDs(latest.Load(), "b"); len(got) != 1 {
		t.Logf("b-2 arrived with a-2: the diff alone was enough this time (%v)", got)
	}
	waitFor(t, latest, "b-2, found by the safety sweep", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "b")) == 2 })
}

// TestReplicatorFaults runs the replica through a proxy that injects each
// fault in turn: no crash, the last good data stays, the request rate stays
// bounded, and once the fault clears a change made during it arrives.
func TestReplicatorFaults(t *testing.T) {
	srv := consulagent.Start(t, nil)
	client := consulagent.Client(t, srv)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "db-1", Service: "db", Port: 80}, "passing")
	proxy := faultproxy.New(t, srv.HTTPAddr)

	cfg := DefaultConfig()
	cfg.MaxWatchers = 1 // one service through a watcher, the others through detectors
	cfg.Wait = time.Second
	cfg.RequestSlack = 300 * time.Millisecond
	_, latest := startReplica(t, &api.Config{Address: proxy.Addr}, cfg)
	waitFor(t, latest, "initial sync", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, "web")) == 1 })

	faults := []faultproxy.Mode{faultproxy.ServerError, faultproxy.TooMany, faultproxy.Hang, faultproxy.Reset,
		faultproxy.SlowBody, faultproxy.TruncatedJSON, faultproxy.InvalidJSON, faultproxy.NoIndex, faultproxy.LowIndex}
	for i, fault := range faults {
		id := fmt.Sprintf("web-x%d", i)
		proxy.Set(fault)
		before := proxy.Requests()
		consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: id, Service: "web", Port: 80 + i}, "passing")
		time.Sleep(2 * time.Second)
		rate := float64(proxy.Requests()-before) / 2
		s := latest.Load()
		if got := instanceIDs(s, "web"); !slices.Contains(got, "web-1") {
			t.Errorf("%s: web lost its last good data: %v", fault, got)
		}
		if _, ok := s.Service("db"); !ok {
			t.Errorf("%s: db lost", fault)
		}
		// Five loops at 20 tokens a second, and sixteen fetchers backing off
		// from 250ms, bound the rate well below this.
		if rate > 250 {
			t.Errorf("%s: %.0f requests/s: retries are not bounded", fault, rate)
		}
		proxy.Set(faultproxy.Pass)
		cleared := time.Now()
		waitFor(t, latest, fmt.Sprintf("the change made during %s", fault), func(s *snapshot.Snapshot) bool {
			return slices.Contains(instanceIDs(s, "web"), id)
		})
		t.Logf("%s: %.0f requests/s during it; correct %s after it cleared", fault, rate, time.Since(cleared).Round(time.Millisecond))
		consulagent.Deregister(t, client, "n2", id)
		waitFor(t, latest, "deregistration", func(s *snapshot.Snapshot) bool { return !slices.Contains(instanceIDs(s, "web"), id) })
	}
}

func equalInstance(a, b snapshot.Instance) bool {
	return a.ID == b.ID && a.Node == b.Node && a.NodeAddress == b.NodeAddress && a.Address == b.Address &&
		a.Port == b.Port && a.WeightPassing == b.WeightPassing && a.WeightWarning == b.WeightWarning && a.Health == b.Health
}

// TestReplicatorNoPartialSnapshot checks that nothing is published until every
// listed service has been read, and that an unreachable Consul publishes nothing.
func TestReplicatorUnreachable(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	var published atomic.Int32
	rc := DefaultConfig()
	rc.BackoffMin = 10 * time.Millisecond
	// Nothing listens on port 1.
	r, err := New(&api.Config{Address: "127.0.0.1:1"}, rc, func(*snapshot.Snapshot) { published.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	time.Sleep(300 * time.Millisecond)
	r.Stop()
	if n := published.Load(); n != 0 {
		t.Errorf("published %d snapshots without reaching Consul", n)
	}
}

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name      string
		last, got uint64
		want      uint64
	}{
		{"first call", 0, 42, 42},
		{"moved forward", 42, 50, 50},
		{"unchanged", 50, 50, 50},
		{"went backwards resets to the lower index", 50, 7, 7},
		{"zero is clamped so the loop keeps blocking", 50, 0, 1},
		{"zero on the first call", 0, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextIndex("test", tc.last, tc.got); got != tc.want {
				t.Errorf("nextIndex(%d, %d) = %d, want %d", tc.last, tc.got, got, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff(100*time.Millisecond, time.Second)
	ceilings := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, ceil := range ceilings {
		ceil *= time.Millisecond
		d := b.next()
		if d < ceil/2 || d > ceil {
			t.Errorf("attempt %d: delay %s outside [%s, %s]", i, d, ceil/2, ceil)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset: delay %s, want at most 100ms", d)
	}
}

// startReplica starts a replica publishing into the pointer it returns, and
// stops it when the test ends.
// waitWatchers waits up to 5s for n watchers, which start at the ramp's pace
// after the first snapshot, and returns how many there are.
func waitWatchers(r *Replicator, n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().Watchers != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return r.Stats().Watchers
}

func startReplica(t *testing.T, consul *api.Config, cfg Config) (*Replicator, *atomic.Pointer[snapshot.Snapshot]) {
	t.Helper()
	var latest atomic.Pointer[snapshot.Snapshot]
	r, err := New(consul, cfg, func(s *snapshot.Snapshot) { latest.Store(s) })
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r, &latest
}
