package consul

import (
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
//
// A guard is a plain value with no lock and no timer: its owner (publish,
// under publishMu) passes it the time and the newest snapshot, and asks
// again when told to. The timer therefore never carries a snapshot of its
// own, which could be older than one published meanwhile.
type guard struct {
	fraction float64       // a drop to below (1-fraction) of the instances trips the guard
	hold     time.Duration // how long the drop must persist to be believed
	clock    clock         // the owner's: what it passes and its timer

	since time.Time // when the current drop was first seen; zero when none
	// recent are the snapshots served within the last hold time that can
	// still become the fullest: oldest first, each with more instances than
	// any after it.
	recent []sample
}

func newGuard(fraction float64, hold time.Duration) *guard {
	return &guard{fraction: fraction, hold: hold, clock: realClock{}}
}

// clock is the time as the guard's owner sees it: the real one, or a test's
// that moves only when told to.
type clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) timer
}

// timer is the part of *time.Timer the guard's owner uses.
type timer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) timer { return time.AfterFunc(d, f) }

type sample struct {
	at        time.Time
	instances int
	snap      *snapshot.Snapshot
}

// decide returns the snapshot to serve at now, given that next is the newest
// one Consul's data gave: next itself or, while the guard holds, the fullest
// recent snapshot. While it holds, recheck is how long until decide must be
// asked again (with the newest snapshot then); otherwise it is 0.
func (g *guard) decide(now time.Time, next *snapshot.Snapshot) (serve *snapshot.Snapshot, recheck time.Duration) {
	_, after := next.Counts()
	base := g.baseline(now)
	if base.snap == nil || float64(after) >= (1-g.fraction)*float64(base.instances) {
		if !g.since.IsZero() {
			log.Infof("removal guard: the instance count recovered; serving current data")
		}
		g.since = time.Time{}
		g.remember(now, after, next)
		return next, 0
	}
	if g.since.IsZero() {
		log.Warningf("removal guard: Consul's data would drop from %d to %d instances; serving the last full snapshot for %s",
			base.instances, after, g.hold)
		g.since = now
	}
	if held := now.Sub(g.since); held < g.hold {
		return base.snap, g.hold - held
	}
	log.Warningf("removal guard: the drop persisted for %s; serving it", g.hold)
	g.since = time.Time{}
	g.recent = append(g.recent[:0], sample{now, after, next})
	return next, 0
}

// holding reports whether the guard is holding a drop back.
func (g *guard) holding() bool { return !g.since.IsZero() }

// remember adds a served snapshot to the recent ones. An older sample with
// no more instances than this one can never again be the fullest (this one
// stays in the window longer), so it is dropped: the samples kept are
// fewer, and fuller, the older they are. Without that, every snapshot
// published within the hold time was kept (2,000 services published ten
// times a second for a 5-minute hold: 391 MB of live heap).
func (g *guard) remember(now time.Time, instances int, snap *snapshot.Snapshot) {
	n := len(g.recent)
	if n > 0 && g.recent[n-1].snap == snap {
		return // asked again about the snapshot it already serves
	}
	for n > 0 && g.recent[n-1].instances <= instances {
		n--
	}
	clear(g.recent[n:]) // let dropped snapshots go
	g.recent = append(g.recent[:n], sample{now, instances, snap})
}

// baseline is the fullest snapshot served within the last hold time. While
// the guard holds, the window does not move.
func (g *guard) baseline(now time.Time) sample {
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
	if len(g.recent) == 0 {
		return sample{}
	}
	return g.recent[0] // the fullest: see remember
}
