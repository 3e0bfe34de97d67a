package replica

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// events hears everything a replica reports: its snapshots and what its
// observer is told. Tests wait on them, never on time. The observer is
// called under the replica's lock: events take none.
type events struct {
	latest   atomic.Pointer[snapshot.Snapshot]
	count    atomic.Int64 // snapshots published
	watched  atomic.Int64
	sweeps   atomic.Int64
	failures atomic.Int64
	panics   atomic.Int64
	invalid  atomic.Int64
	tick     chan struct{} // capacity 1: something happened
}

func newEvents() *events { return &events{tick: make(chan struct{}, 1)} }

func (e *events) wake() {
	select {
	case e.tick <- struct{}{}:
	default:
	}
}

// publish counts s before it is the latest: a test that sees it there finds
// it counted.
func (e *events) publish(s *snapshot.Snapshot) { e.count.Add(1); e.latest.Store(s); e.wake() }
func (e *events) Request(err error) {
	if err != nil {
		e.failures.Add(1)
	}
	e.wake()
}
func (e *events) Published(time.Duration)    {}
func (e *events) Filtered()                  {}
func (e *events) Swept(int)                  { e.sweeps.Add(1); e.wake() }
func (e *events) Watching(watched, _, _ int) { e.watched.Store(int64(watched)); e.wake() }

func (e *events) Panicked(string)         { e.panics.Add(1); e.wake() }
func (e *events) Invalid(_ string, n int) { e.invalid.Add(int64(n)); e.wake() }

func (e *events) snap() *snapshot.Snapshot { return e.latest.Load() }

// waitFor waits until cond holds, looking again on every event, for at most
// 10 s.
func (e *events) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-e.tick:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; last snapshot: %s", what, describe(e.snap()))
		}
	}
}

// waitSnap waits until the latest snapshot satisfies cond.
func (e *events) waitSnap(t *testing.T, what string, cond func(*snapshot.Snapshot) bool) *snapshot.Snapshot {
	t.Helper()
	e.waitFor(t, what, func() bool { s := e.snap(); return s != nil && cond(s) })
	return e.snap()
}

func describe(s *snapshot.Snapshot) string {
	if s == nil {
		return "none"
	}
	services, instances := s.Counts()
	return fmt.Sprintf("%d services, %d instances", services, instances)
}

// testConfig is DefaultConfig with the delays a unit test should not wait.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.BackoffMin, cfg.BackoffMax = 5*time.Millisecond, 20*time.Millisecond
	cfg.SweepInterval = 20 * time.Millisecond
	cfg.LivenessInterval = 0
	cfg.Wait = time.Hour // waits pass on the catalog's clock
	return cfg
}

// startMem starts a replica of cat, stopped when the test ends.
func startMem(t *testing.T, cat *memCatalog, cfg Config) (*Replicator, *events) {
	t.Helper()
	ev := newEvents()
	cfg.Observer = ev
	cat.mu.Lock()
	cat.onBlock = ev.wake
	cat.mu.Unlock()
	r := newReplicator(cat, cfg, newBudget(cfg, false), ev.publish)
	r.Start()
	t.Cleanup(r.Stop)
	return r, ev
}

// ids are the instance IDs of a service in s, sorted.
func ids(s *snapshot.Snapshot, name string) []string {
	svc, ok := s.Service(name)
	if !ok {
		return nil
	}
	var out []string
	for _, in := range svc.Instances {
		out = append(out, in.ID)
	}
	slices.Sort(out)
	return out
}

// port is the port of instance id of a service in s; 0 when absent.
func port(s *snapshot.Snapshot, name, id string) uint16 {
	svc, _ := s.Service(name)
	if svc != nil {
		for _, in := range svc.Instances {
			if in.ID == id {
				return in.Port
			}
		}
	}
	return 0
}

// health is the health of instance id of a service in s.
func health(s *snapshot.Snapshot, name, id string) snapshot.Health {
	svc, _ := s.Service(name)
	if svc != nil {
		for _, in := range svc.Instances {
			if in.ID == id {
				return in.Health
			}
		}
	}
	return snapshot.Health(255)
}

// startSynced starts a replica of a catalog of services x perService
// instances, watching at most budget services, and waits for its first
// snapshot.
func startSynced(t *testing.T, services, perService, budget int) (*memCatalog, *Replicator, *events) {
	t.Helper()
	cat := newMemCatalog()
	cat.populate(services, perService)
	cfg := testConfig()
	cfg.MaxWatchers = budget
	r, ev := startMem(t, cat, cfg)
	ev.waitSnap(t, "the first snapshot", func(s *snapshot.Snapshot) bool { n, _ := s.Counts(); return n == services })
	return cat, r, ev
}
