package replica

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/faultproxy"

	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"
)

// These tests run the replica against a real Consul agent through
// consulSource: what the in-memory catalog of the other tests cannot show
// (Consul's own indexes, TLS, endpoints, faults on the wire).

// startReplica starts a replica of the agent consul describes, stopped when
// the test ends.
func startReplica(t *testing.T, consul *api.Config, cfg Config) (*Replicator, *events) {
	t.Helper()
	ev := newEvents()
	cfg.Observer = ev
	r, err := New(consul, cfg, ev.publish)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r, ev
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
			_, ev := startReplica(t, consul, cfg)
			if tc.synced {
				ev.waitSnap(t, "sync over HTTPS", func(s *snapshot.Snapshot) bool { return len(ids(s, "web")) == 1 })
				ev.waitFor(t, "every service watched over HTTPS", func() bool { return ev.watched.Load() == 2 })
				return
			}
			ev.waitFor(t, "failed requests", func() bool { return ev.failures.Load() >= 3 })
			if ev.snap() != nil {
				t.Error("replicated from an agent whose certificate does not verify")
			}
		})
	}
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
			r, ev := startReplica(t, consulagent.Config(srv), cfg)
			ev.waitSnap(t, "initial sync", func(s *snapshot.Snapshot) bool {
				n, _ := s.Counts()
				return n == 6 // five services and consul itself
			})
			ev.waitFor(t, "watchers", func() bool { return ev.watched.Load() == int64(min(budget, 6)) })
			// A check turns critical, then passing again: the health detector.
			consulagent.Register(t, client, "n0", "10.0.0.1", &api.AgentService{ID: "s3-0", Service: "s3", Port: 80}, "critical")
			ev.waitSnap(t, "s3-0 critical", func(s *snapshot.Snapshot) bool { return health(s, "s3", "s3-0") == snapshot.Critical })
			consulagent.Register(t, client, "n0", "10.0.0.1", &api.AgentService{ID: "s3-0", Service: "s3", Port: 80}, "passing")
			ev.waitSnap(t, "s3-0 passing", func(s *snapshot.Snapshot) bool { return health(s, "s3", "s3-0") == snapshot.Passing })
			// A new passing instance and a port change: only the service list's
			// index moves, so without a watcher a sweep must find them.
			consulagent.Register(t, client, "n2", "10.0.0.3", &api.AgentService{ID: "s4-2", Service: "s4", Port: 80}, "passing")
			ev.waitSnap(t, "s4-2 registered", func(s *snapshot.Snapshot) bool { return len(ids(s, "s4")) == 3 })
			consulagent.Register(t, client, "n1", "10.0.0.2", &api.AgentService{ID: "s2-1", Service: "s2", Port: 81}, "passing")
			ev.waitSnap(t, "s2-1 on port 81", func(s *snapshot.Snapshot) bool {
				svc, _ := s.Service("s2")
				return svc != nil && len(svc.Instances) == 2 && svc.Instances[1].Port == 81
			})
			// A deregistration, and a whole service going away.
			consulagent.Deregister(t, client, "n0", "s1-0")
			ev.waitSnap(t, "s1-0 deregistered", func(s *snapshot.Snapshot) bool {
				return slices.Equal(ids(s, "s1"), []string{"s1-1"})
			})
			consulagent.Deregister(t, client, "n0", "s0-0")
			consulagent.Deregister(t, client, "n1", "s0-1")
			ev.waitSnap(t, "s0 removed", func(s *snapshot.Snapshot) bool { _, ok := s.Service("s0"); return !ok })
			// A node moves: every instance on it follows.
			consulagent.Register(t, client, "n1", "10.0.9.9", &api.AgentService{ID: "s1-1", Service: "s1", Port: 80}, "passing")
			ev.waitSnap(t, "n1 moved", func(s *snapshot.Snapshot) bool {
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
	_, ev := startReplica(t, &api.Config{}, cfg)
	ev.waitSnap(t, "sync through the third endpoint", func(s *snapshot.Snapshot) bool { return len(ids(s, "web")) == 1 })
	if broken.Requests() == 0 {
		t.Error("the first endpoint was never tried")
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
	r, ev := startReplica(t, consulagent.Config(srv), cfg)
	ev.waitSnap(t, "initial sync", func(s *snapshot.Snapshot) bool { return len(ids(s, "b")) == 1 })
	ev.waitFor(t, "the summaries' baseline", func() bool { return r.Stats().Summaries > 0 })

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
	ev.waitSnap(t, "a-2, named by the check diff", func(s *snapshot.Snapshot) bool { return len(ids(s, "a")) == 2 })
	if got := ids(ev.snap(), "b"); len(got) != 1 {
		t.Logf("b-2 arrived with a-2: the diff alone was enough this time (%v)", got)
	}
	ev.waitSnap(t, "b-2, found by the safety sweep", func(s *snapshot.Snapshot) bool { return len(ids(s, "b")) == 2 })
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
	_, ev := startReplica(t, &api.Config{Address: proxy.Addr}, cfg)
	ev.waitSnap(t, "initial sync", func(s *snapshot.Snapshot) bool { return len(ids(s, "web")) == 1 })

	faults := []faultproxy.Mode{faultproxy.ServerError, faultproxy.TooMany, faultproxy.Hang, faultproxy.Reset,
		faultproxy.SlowBody, faultproxy.TruncatedJSON, faultproxy.InvalidJSON, faultproxy.NoIndex, faultproxy.LowIndex}
	for i, fault := range faults {
		id := fmt.Sprintf("web-x%d", i)
		proxy.Set(fault)
		before := proxy.Requests()
		consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: id, Service: "web", Port: 80 + i}, "passing")
		time.Sleep(time.Second) // the request rate during the fault is what this measures
		rate := float64(proxy.Requests() - before)
		s := ev.snap()
		if got := ids(s, "web"); !slices.Contains(got, "web-1") {
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
		ev.waitSnap(t, fmt.Sprintf("the change made during %s", fault), func(s *snapshot.Snapshot) bool {
			return slices.Contains(ids(s, "web"), id)
		})
		t.Logf("%s: %.0f requests/s during it; correct %s after it cleared", fault, rate, time.Since(cleared).Round(time.Millisecond))
		consulagent.Deregister(t, client, "n2", id)
		ev.waitSnap(t, "deregistration", func(s *snapshot.Snapshot) bool { return !slices.Contains(ids(s, "web"), id) })
	}
}

// TestReplicatorUnreachable checks that an unreachable Consul publishes
// nothing and that Stop ends every goroutine.
func TestReplicatorUnreachable(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rc := DefaultConfig()
	rc.BackoffMin = 10 * time.Millisecond
	ev := newEvents()
	rc.Observer = ev
	// Nothing listens on port 1.
	r, err := New(&api.Config{Address: "127.0.0.1:1"}, rc, ev.publish)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	ev.waitFor(t, "failures", func() bool { return ev.failures.Load() >= 3 })
	r.Stop()
	if ev.snap() != nil {
		t.Error("published a snapshot without reaching Consul")
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
