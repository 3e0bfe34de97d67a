package replica

import (
	"context"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"golang.org/x/time/rate"
)

// publisher turns change signals into snapshots through a token bucket that
// refills one token per PublishInterval and holds publishBurst: changes that
// come one at a time are published at once, while under churn the changes
// that land while it waits for a token are published together.
type publisher struct {
	dirty chan struct{} // capacity 1: coalesces change signals
	// dirtySince is when the first change not yet published arrived
	// (UnixNano; 0 when none).
	dirtySince atomic.Int64
	interval   time.Duration
	build      func() *snapshot.Snapshot // nil until the replica is complete
	publish    func(*snapshot.Snapshot)
	observer   Observer
	last       *snapshot.Snapshot // the loop's: the last published
}

// publishBurst is how many snapshots may be published back to back before
// PublishInterval paces them.
const publishBurst = 20

func newPublisher(cfg Config, build func() *snapshot.Snapshot, publish func(*snapshot.Snapshot)) *publisher {
	return &publisher{dirty: make(chan struct{}, 1), interval: cfg.PublishInterval, build: build, publish: publish, observer: cfg.Observer}
}

// markDirty tells the publisher that the replica changed. It never blocks: a
// signal already pending covers this change too.
func (p *publisher) markDirty() {
	p.dirtySince.CompareAndSwap(0, time.Now().UnixNano())
	select {
	case p.dirty <- struct{}{}:
	default:
	}
}

func (p *publisher) loop(ctx context.Context) {
	limiter := rate.NewLimiter(rate.Every(p.interval), publishBurst)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.dirty:
		}
		if wait := limiter.Reserve().Delay(); wait > 0 {
			if !sleep(ctx, wait) {
				return
			}
			// This build covers whatever was signalled while waiting.
			select {
			case <-p.dirty:
			default:
			}
		}
		since := p.dirtySince.Swap(0)
		if snap := p.build(); snap != nil && !sameSnapshot(p.last, snap) {
			p.last = snap
			p.publish(snap)
			if p.observer != nil && since != 0 {
				p.observer.Published(time.Since(time.Unix(0, since)))
			}
		}
	}
}

// sameSnapshot reports whether b holds what a holds, value by value (the
// replica shares every unchanged value between snapshots): a signal whose
// change was undone before the build, or that changed nothing (a read that
// decoded "[]" where the last decoded "null"), is not worth a snapshot,
// which every view, snapshot file and follower of a tier would take as
// new.
func sameSnapshot(a, b *snapshot.Snapshot) bool {
	return a != nil && a.Datacenter == b.Datacenter && a.Peer == b.Peer && a.AgentNode == b.AgentNode && a.ListIndex == b.ListIndex &&
		a.QueriesHidden == b.QueriesHidden && a.ServicesHidden == b.ServicesHidden &&
		a.IngressRead == b.IngressRead && a.TerminatingRead == b.TerminatingRead &&
		maps.Equal(a.Services, b.Services) && maps.Equal(a.Nodes, b.Nodes) &&
		slices.Equal(a.Queries, b.Queries) && slices.Equal(a.Coordinates, b.Coordinates) &&
		slices.Equal(a.Ingress, b.Ingress) && slices.Equal(a.Terminating, b.Terminating)
}
