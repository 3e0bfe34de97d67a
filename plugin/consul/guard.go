package consul

import (
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// guard holds back a snapshot that would remove most instances at once (a
// Consul restored from an old backup, an empty new cluster behind the same
// address) until the change has persisted for a while: a wrong truth served
// to every resolver is worse than a stale one for a few minutes.
//
// Such a collapse often arrives one service at a time (each watcher reads
// its service empty), so a drop is measured against the fullest snapshot
// served within the hold time, and while the guard holds, that snapshot is
// what is served.
type guard struct {
	fraction float64       // a drop to below (1-fraction) of the instances trips the guard
	hold     time.Duration // how long the drop must persist to be believed
	dc       string        // metrics label

	mu      sync.Mutex
	since   time.Time // when the current drop was first seen; zero when none
	timer   *time.Timer
	pending *snapshot.Snapshot
	// recent are the snapshots served within the last hold time.
	recent []sample
}

type sample struct {
	at        time.Time
	instances int
	snap      *snapshot.Snapshot
}

// decide returns the snapshot to serve now that next has arrived: next
// itself, or while the guard holds, the fullest recent snapshot. When it
// holds, it calls republish with the latest held snapshot once the hold time
// has passed.
func (g *guard) decide(next *snapshot.Snapshot, republish func(*snapshot.Snapshot)) *snapshot.Snapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	_, after := next.Counts()
	base := g.baselineLocked(now)
	if base.snap == nil || float64(after) >= (1-g.fraction)*float64(base.instances) {
		if !g.since.IsZero() {
			log.Infof("removal guard: the instance count recovered; serving current data")
		}
		g.resetLocked()
		g.recent = append(g.recent, sample{now, after, next})
		return next
	}
	if g.since.IsZero() {
		log.Warningf("removal guard: Consul's data would drop from %d to %d instances; serving the last full snapshot for %s",
			base.instances, after, g.hold)
		g.since = now
		guardHolding.WithLabelValues(g.dc).Set(1)
		g.timer = time.AfterFunc(g.hold, func() {
			g.mu.Lock()
			pending := g.pending
			g.mu.Unlock()
			if pending != nil {
				republish(pending)
			}
		})
	}
	if now.Sub(g.since) >= g.hold {
		log.Warningf("removal guard: the drop persisted for %s; serving it", g.hold)
		g.resetLocked()
		g.recent = append(g.recent[:0], sample{now, after, next})
		return next
	}
	g.pending = next
	return base.snap
}

// baselineLocked is the fullest snapshot served within the last hold time.
// While the guard holds, the window does not move.
func (g *guard) baselineLocked(now time.Time) sample {
	if g.since.IsZero() {
		keep := g.recent[:0]
		for _, s := range g.recent {
			if now.Sub(s.at) <= g.hold {
				keep = append(keep, s)
			}
		}
		clear(g.recent[len(keep):]) // let dropped snapshots go
		g.recent = keep
	}
	var base sample
	for _, s := range g.recent {
		if base.snap == nil || s.instances > base.instances {
			base = s
		}
	}
	return base
}

func (g *guard) resetLocked() {
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	g.since, g.pending = time.Time{}, nil
	guardHolding.WithLabelValues(g.dc).Set(0)
}

func (g *guard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	g.recent = nil
}
