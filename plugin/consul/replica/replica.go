// Package replica keeps a local replica of a Consul datacenter's services,
// their health and its nodes, current through Consul blocking queries, and
// publishes it as immutable snapshots. It is the only code that talks to
// Consul, through one seam (Source); it knows nothing about DNS.
//
// How the replica stays current at scale (docs/design.md has the code map):
//   - one blocking query on the service list keeps the names (catalog.go);
//   - one on the nodes keeps the nodes, one on the prepared queries the
//     queries, one on each kind of gateway entry (ingress, terminating)
//     which services they serve (catalog.go, queries.go, gateways.go);
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
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

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
	outage outage
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
	// agentDNS is the agent's DNS settings read at start, for agentLoop.
	agentDNS *AgentDNS
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
	r.run.backoffMin, r.run.backoffMax, r.run.observer = cfg.BackoffMin, cfg.BackoffMax, cfg.Observer
	r.run.restarting = r.refetchUnwatched
	if cfg.Peer != "" {
		// A peer has no node list or prepared queries to wait for: its
		// nodes come with its instances (peerNodesLocked).
		r.data.nodesListed, r.data.queriesListed = true, true
	}
	r.pub = newPublisher(cfg, r.build, publish)
	b.rebalance = r.rebalance
	return r
}

// Start begins replication in the background. It returns at once.
func (r *Replicator) Start() {
	r.run.start()
	if c, ok := r.src.(interface{ followCredentials(context.Context) }); ok {
		r.run.spawn("credentials", func() { c.followCredentials(r.run.ctx) })
	}
	if r.cfg.OnCluster != nil {
		r.run.spawn("cluster", r.readCluster)
	}
	r.run.spawn("start", func() {
		if !r.readAgent() {
			return // stopped
		}
		r.mu.Lock()
		r.joinPoolLocked()
		r.mu.Unlock()
		r.run.spawn("watchServiceList", r.watchServiceList)
		if r.cfg.Peer == "" {
			// Consul ignores ?peer= on the nodes, the prepared queries, the
			// checks and the config entries: they would be the datacenter's
			// own.
			r.run.spawn("watchNodes", r.watchNodes)
			r.run.spawn("watchQueries", r.watchQueries)
			r.run.spawn("watchHealth", r.watchHealth)
			for _, kind := range gatewayKinds {
				r.run.spawn("watchGateways "+kind, func() { r.watchGateways(kind) })
			}
		} else {
			r.run.spawn("peerHealthLoop", r.peerHealthLoop)
		}
		if r.cfg.Coordinates {
			r.run.spawn("coordinatesLoop", r.coordinatesLoop)
		}
		r.run.spawn("sweepLoop", r.sweepLoop)
		r.run.spawn("rampLoop", r.rampLoop)
		if r.cfg.LivenessInterval > 0 {
			r.run.spawn("livenessLoop", r.livenessLoop)
		}
		if r.cfg.OnDatacenters != nil {
			r.run.spawn("datacentersLoop", r.datacentersLoop)
		}
		if r.cfg.OnPeerings != nil {
			r.run.spawn("peeringsLoop", r.peeringsLoop)
		}
		if r.cfg.OnAgentDNS != nil {
			r.run.spawn("agentLoop", func() { r.agentLoop(r.agentDNS) })
		}
		for range r.cfg.Fetchers {
			r.run.spawn("fetchLoop", r.fetchLoop)
		}
	})
	r.run.spawn("publisher", func() { r.pub.loop(r.run.ctx) })
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
	// backoffMin and backoffMax pace the restarts of a loop that panicked;
	// observer hears of each panic.
	backoffMin, backoffMax time.Duration
	observer               Observer
	stacksLogged           sync.Map // loop name → true once its stack was logged
	// restarting runs before a loop that panicked runs again: what the
	// loop knew (a detector's last read) is lost with it.
	restarting func()
}

func (g *runner) start() { g.ctx, g.cancel = context.WithCancel(context.Background()) }

// spawn runs f in a goroutine that stop waits for. A panic in f is a bug or
// data from Consul that nothing checked: it must not take the whole process
// (every other plugin, every zone) down with it. It is recovered, counted,
// its stack logged once per loop, and f runs again after a backoff, so a
// loop that meets the same bad data on every read neither dies nor spins.
func (g *runner) spawn(loop string, f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		b := newBackoff(g.backoffMin, g.backoffMax)
		for !g.guard(loop, f) {
			if !sleep(g.ctx, b.next()) {
				return
			}
			if g.restarting != nil {
				g.restarting()
			}
		}
	}()
}

// guard runs f and reports whether it returned without panicking.
func (g *runner) guard(loop string, f func()) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			g.panicked(loop, p, debug.Stack())
		}
	}()
	f()
	return true
}

// panicked records a recovered panic. The stack is logged only the first
// time each loop panics: a thousand watchers meeting the same bad answer
// would otherwise flood the log with the same stack.
func (g *runner) panicked(loop string, p any, stack []byte) {
	if _, seen := g.stacksLogged.LoadOrStore(loop, true); !seen {
		log.Errorf("replica loop %q panicked, restarting it (further panics of this loop are only counted): %v\n%s", loop, p, stack)
	}
	if g.observer != nil {
		g.observer.Panicked(loop)
	}
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

// refetchUnwatched reads again every service without a watcher: a loop
// that panicked lost what it knew, and a change it was about to name (a
// detector's) would go unseen until the service changed again. Watchers
// start over from their own index.
func (r *Replicator) refetchUnwatched() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.data.services {
		if !r.watch.has(key) {
			r.fetch.queue.push(key)
		}
	}
}

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
