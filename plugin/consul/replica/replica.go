// Package replica keeps a local replica of a Consul datacenter's services,
// their health and its nodes, current through Consul blocking queries, and
// publishes it as immutable snapshots. It is the only code that talks to
// Consul, through one seam (Source); it knows nothing about DNS.
//
// How the replica stays current at scale (docs/design.md has the code map):
//   - one blocking query on the service list keeps the names (catalog.go);
//   - one on the nodes keeps the nodes, one on the prepared queries the
//     queries (catalog.go, queries.go);
//   - every service is read once, at once (fetcher.go); services then get a
//     blocking query of their own, a bounded number starting at a time, up
//     to a budget sized from the agent's connection limit (watchers.go,
//     budget.go, pool.go);
//   - services without one, past the budget or waiting for theirs, are kept
//     current by detectors that only name services: the non-passing checks
//     (health.go); the services' summaries (summaries.go), read when the
//     service list's index moves; and, for a move no change explains
//     (moves.go), a paced sweep of per-service index probes (sweeper.go);
//   - the publisher turns changes into snapshots (publisher.go).
package replica

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/hashicorp/consul/api"
)

var log = clog.NewWithPlugin("consul")

// Replicator replicates one Consul datacenter. It owns the replicated data
// and composes the mechanisms that keep it current, each in a file of its
// own.
type Replicator struct {
	cfg    Config
	src    Source
	run    runner
	stats  stats
	pub    *publisher
	budget *budget
	fetch  *fetcher
	health healthDetector // the health loop's alone

	// mu guards what follows.
	mu    sync.Mutex
	data  catalog
	watch watchers
	moves moveTracker

	cluster atomic.Pointer[string] // once read
}

// New returns a Replicator that reads from the Consul endpoints that consul
// and cfg describe and hands every new complete snapshot to publish. publish
// is called from one goroutine at a time.
func New(consul *api.Config, cfg Config, publish func(*snapshot.Snapshot)) (*Replicator, error) {
	b := newBudget(cfg, allHTTPS(consul, cfg.Addresses))
	src, err := newConsulSource(consul, cfg, b.connections())
	if err != nil {
		return nil, err
	}
	return newReplicator(src, cfg, b, publish), nil
}

// newReplicator returns a Replicator that reads src within budget b.
func newReplicator(src Source, cfg Config, b *budget, publish func(*snapshot.Snapshot)) *Replicator {
	r := &Replicator{
		cfg:    cfg,
		src:    src,
		budget: b,
		fetch:  newFetcher(cfg.FetchRate),
		health: healthDetector{checks: make(map[checkKey]nonPassingCheck)},
		data:   newCatalog(),
		watch:  newWatchers(cfg.WatchStarts),
		moves:  newMoveTracker(),
	}
	r.pub = newPublisher(cfg, r.build, publish)
	b.rebalance = r.rebalance
	return r
}

// Start begins replication in the background. It returns at once.
func (r *Replicator) Start() {
	r.run.start()
	if r.cfg.OnCluster != nil {
		r.run.spawn(r.readCluster)
	}
	r.run.spawn(func() {
		if !r.readAgent() {
			return // stopped
		}
		r.mu.Lock()
		r.joinPoolLocked()
		r.mu.Unlock()
		r.run.spawn(r.watchServiceList)
		r.run.spawn(r.watchNodes)
		r.run.spawn(r.watchQueries)
		if r.cfg.Coordinates {
			r.run.spawn(r.coordinatesLoop)
		}
		r.run.spawn(r.watchHealth)
		r.run.spawn(r.sweepLoop)
		r.run.spawn(r.rampLoop)
		if r.cfg.LivenessInterval > 0 {
			r.run.spawn(r.livenessLoop)
		}
		if r.cfg.OnDatacenters != nil {
			r.run.spawn(r.datacentersLoop)
		}
		for range r.cfg.Fetchers {
			r.run.spawn(r.fetchLoop)
		}
	})
	r.run.spawn(func() { r.pub.loop(r.run.ctx) })
}

// Stop ends replication and waits until every goroutine it started is gone
// and every connection it opened is closed.
func (r *Replicator) Stop() {
	if !r.run.stop() {
		return
	}
	if c, ok := r.src.(interface{ close() }); ok {
		c.close()
	}
	r.budget.leave()
}

// runner is the life of the replica's goroutines: from Start to Stop.
type runner struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (g *runner) start() { g.ctx, g.cancel = context.WithCancel(context.Background()) }

// spawn runs f in a goroutine that stop waits for.
func (g *runner) spawn(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// stop cancels every goroutine and waits for them; false when never started.
func (g *runner) stop() bool {
	if g.cancel == nil {
		return false
	}
	g.cancel()
	g.wg.Wait()
	return true
}

// stopped reports whether the replica is not running (yet or any more).
func (g *runner) stopped() bool { return g.ctx == nil || g.ctx.Err() != nil }

// markDirty tells the publisher that the replica changed. It never blocks.
func (r *Replicator) markDirty() { r.pub.markDirty() }

// livenessLoop pings the agent, so that a hung Consul is noticed while the
// blocking queries wait out their long deadlines.
func (r *Replicator) livenessLoop() {
	for sleep(r.run.ctx, r.cfg.LivenessInterval) {
		r.request(r.run.ctx, r.cfg.LivenessTimeout, r.src.Leader)
	}
}

// datacentersLoop reads the datacenters Consul knows: at once, then every
// DatacentersInterval, retrying sooner while it fails.
func (r *Replicator) datacentersLoop() {
	every(r, r.cfg.DatacentersInterval, r.cfg.LivenessTimeout, func(ctx context.Context) ([]string, Meta, error) {
		return r.src.Datacenters(ctx)
	}, func(dcs []string) { r.cfg.OnDatacenters(dcs, dcs) })
}
