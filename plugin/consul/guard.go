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
type guard struct {
	fraction float64       // a drop to below (1-fraction) of the instances trips the guard
	hold     time.Duration // how long the drop must persist to be believed
	dc       string        // metrics label

	mu      sync.Mutex
	since   time.Time // when the current drop was first seen; zero when none
	timer   *time.Timer
	pending *snapshot.Snapshot
}

// admit reports whether next may replace cur now. When it may not, it keeps
// next and calls republish with the latest held snapshot once the hold time
// has passed.
func (g *guard) admit(cur, next *snapshot.Snapshot, republish func(*snapshot.Snapshot)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cur == nil || !g.drops(cur, next) {
		if !g.since.IsZero() {
			log.Infof("removal guard: the instance count recovered; serving current data")
		}
		g.resetLocked()
		return true
	}
	now := time.Now()
	if g.since.IsZero() {
		_, before := cur.Counts()
		_, after := next.Counts()
		log.Warningf("removal guard: Consul's data would drop from %d to %d instances; holding the last snapshot for %s", before, after, g.hold)
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
		return true
	}
	g.pending = next
	return false
}

func (g *guard) drops(cur, next *snapshot.Snapshot) bool {
	_, before := cur.Counts()
	_, after := next.Counts()
	return before > 0 && float64(after) < (1-g.fraction)*float64(before)
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
}
