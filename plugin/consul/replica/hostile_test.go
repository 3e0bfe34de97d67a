package replica

import (
	"slices"
	"sync/atomic"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// TestPanicInALoop: a read that panics (a conversion of data nothing
// checked) must not take the process down. Every loop that meets it
// recovers, and the replica serves what changed once reads stop panicking.
func TestPanicInALoop(t *testing.T) {
	cat, _, ev := startSynced(t, 20, 2, 10) // 10 watched, 10 not
	cat.panics.Store(true)
	cat.register("service-0", "node-9", instance("watched-new", "10.0.9.1", 9000))
	cat.register("service-15", "node-9", instance("unwatched-new", "10.0.9.1", 9000))
	cat.register("late", "node-9", instance("late-0", "10.0.9.1", 9000))
	ev.waitFor(t, "panics in several loops", func() bool { return ev.panics.Load() >= 5 })

	cat.panics.Store(false)
	cat.register("after", "node-9", instance("after-0", "10.0.9.1", 9000))
	ev.waitSnap(t, "every change made while reads panicked", func(s *snapshot.Snapshot) bool {
		return slices.Contains(ids(s, "service-0"), "watched-new") &&
			slices.Contains(ids(s, "service-15"), "unwatched-new") &&
			len(ids(s, "late")) == 1 && len(ids(s, "after")) == 1
	})
}

// TestPanicInPublish: a panic in the callback a snapshot is handed to (the
// plugin building its answers) is recovered like a loop's, and the next
// change is published.
func TestPanicInPublish(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(3, 1)
	cfg := testConfig()
	ev := newEvents()
	cfg.Observer = ev
	var panicking atomic.Bool
	panicking.Store(true)
	r := newReplicator(cat, cfg, newBudget(cfg, false), func(s *snapshot.Snapshot) {
		if panicking.Load() {
			panic("injected: building answers failed")
		}
		ev.publish(s)
	})
	r.Start()
	t.Cleanup(r.Stop)
	ev.waitFor(t, "a panic in publish", func() bool { return ev.panics.Load() >= 1 })

	panicking.Store(false)
	cat.register("service-0", "node-9", instance("after", "10.0.9.1", 9000))
	ev.waitSnap(t, "the change after the panics", func(s *snapshot.Snapshot) bool {
		return slices.Contains(ids(s, "service-0"), "after")
	})
}
