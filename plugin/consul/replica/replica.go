// Package replica keeps a local replica of a Consul datacenter's services,
// their health and its nodes, current through Consul blocking queries, and
// publishes it as immutable snapshots. It is the only code that talks to
// Consul; it knows nothing about DNS.
//
// How the replica stays current at scale (docs/design.md has the numbers):
//   - one blocking query on /v1/catalog/services keeps the list of names;
//   - one blocking query on /v1/catalog/nodes keeps the nodes;
//   - every service is read once, at once; then, at a bounded rate so that
//     the agent never sees a burst, services get a blocking query of their
//     own on /v1/health/service/<name>, up to a budget sized from the
//     agent's connection limit: exact, and cheap for Consul's servers with
//     the agent's streaming backend;
//   - services without one are kept current by detectors that only name
//     services: a blocking query on the non-passing checks names those whose
//     health changed; a move of the service list's index not explained by a
//     change the replica saw reads the services' summaries (instance and
//     check counts) and names those whose counts changed; a move still not
//     explained (a port changed, with no count to show it) costs a paced
//     sweep of per-service index probes. A service found changed takes the
//     watcher slot of the service that changed least recently.
package replica

import (
	"context"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"
)

var log = clog.NewWithPlugin("consul")

// Config tunes a Replicator. Start from DefaultConfig: zero rates and
// intervals are not defaults.
type Config struct {
	// Addresses of Consul agents or servers, in order of preference; empty
	// means the address in the api.Config.
	Addresses []string
	// Datacenter to replicate; empty means the agent's own.
	Datacenter string
	// Namespace and Partition are passed through to Consul Enterprise.
	Namespace, Partition string
	Consistency          Consistency
	// Wait is the blocking-query wait time sent to Consul.
	Wait time.Duration
	// RequestSlack is how long past Wait (plus Consul's jitter) a request may
	// take before it is abandoned as hung.
	RequestSlack time.Duration
	// RateLimit and RateBurst bound the request rate of each blocking loop.
	RateLimit rate.Limit
	RateBurst int
	// BackoffMin and BackoffMax bound the delay after a failed request.
	BackoffMin, BackoffMax time.Duration
	// MaxWatchers caps the per-service blocking queries. Over plain HTTP
	// each holds a connection, and a Consul agent accepts 200 per client IP
	// by default; over HTTPS they share HTTP/2 connections. AutoWatchers
	// sizes the budget from the agent's limit (watcherBudget).
	MaxWatchers int
	// Share is how many replicas (one per replicated datacenter) read
	// through the same agents and share their connection limit; 0 or 1 for
	// a replica alone.
	Share int
	// Pool, when set, lends the budget a replica does not need to the
	// others in it.
	Pool *Pool
	// WatchRate bounds how many watchers start per second: a Consul agent
	// that sees thousands of blocking queries at once grows its memory by
	// several times what they cost it once running.
	WatchRate rate.Limit
	// Fetchers is the number of concurrent fetches and sweep probes.
	Fetchers int
	// FetchRate bounds fetches and probes per second, all fetchers together.
	FetchRate rate.Limit
	// SummaryInterval is the least time between two reads of the services'
	// summaries; SweepInterval the least time between two probe sweeps.
	SummaryInterval, SweepInterval time.Duration
	// PublishInterval is the least time between two snapshots: changes that
	// land within it are published together; a lone change is not delayed.
	PublishInterval time.Duration
	// LivenessInterval is how often the agent is pinged, so that a Consul
	// that hangs is noticed within LivenessInterval + LivenessTimeout even
	// while every blocking query waits; 0 turns the pings off.
	LivenessInterval, LivenessTimeout time.Duration
	// Observer hears of every request's outcome and every publication.
	Observer Observer
	// OnDatacenters, when set, is given the datacenters Consul knows, read
	// every DatacentersInterval (Consul offers no blocking query for them),
	// and the same nearest first (nil when the coordinates cannot be read).
	OnDatacenters       func(known, byDistance []string)
	DatacentersInterval time.Duration
	// Coordinates reads the nodes' network coordinates every
	// CoordinateInterval: prepared queries sort by them only in the agent's
	// own datacenter.
	Coordinates bool
}

// Observer hears about the replica; its methods must not block.
type Observer interface {
	// Request reports a request's outcome: nil, or why it failed.
	Request(err error)
	// Published reports a new snapshot, delay after the first change in it
	// arrived from Consul.
	Published(delay time.Duration)
	// Filtered reports an answer Consul cut short because the ACL token may
	// not read all of it.
	Filtered()
	// Swept reports a sweep of per-service probes: a change no cheap signal
	// named.
	Swept(probes int)
	// Watching reports how many of the listed services have a watcher of
	// their own, and how many may.
	Watching(watched, services, budget int)
}

// DefaultConfig returns the settings used when the Corefile says nothing.
func DefaultConfig() Config {
	return Config{
		Wait:            5 * time.Minute,
		RequestSlack:    10 * time.Second,
		RateLimit:       20,
		RateBurst:       10,
		BackoffMin:      250 * time.Millisecond,
		BackoffMax:      30 * time.Second,
		MaxWatchers:     AutoWatchers,
		WatchRate:       100,
		Fetchers:        16,
		FetchRate:       5000,
		SummaryInterval: 10 * time.Millisecond,
		SweepInterval:   time.Second,
		PublishInterval: 5 * time.Millisecond,

		LivenessInterval: 5 * time.Second,
		LivenessTimeout:  2 * time.Second,

		DatacentersInterval: 10 * time.Second,
	}
}

// Watcher budgets.
const (
	// AutoWatchers sizes the budget from the agent's connection limit.
	AutoWatchers = -1
	// HTTPWatchers is the budget when the agent's limit cannot be read: it
	// leaves room under Consul's default of 200 connections per client IP
	// for the fetchers, the detector loops and other clients.
	HTTPWatchers = 128
	// HTTPSWatchers, and the budget under an agent without a limit, bound
	// the agent's memory, not connections: HTTP/2 carries up to 250
	// concurrent requests on each connection.
	HTTPSWatchers = 8192
)

// connections is the most HTTP connections a replica opens to one endpoint:
// every watcher, and its overhead. In a pool it may be lent the others'
// budgets: up to what the agent allows all of them (capacity, when known).
func (c Config) connections(capacity int) int {
	if c.Pool != nil {
		return max(capacity, c.MaxWatchers*max(1, c.Share)+c.overhead())
	}
	return c.MaxWatchers + c.overhead()
}

// overhead is the connections a replica needs besides its watchers: the
// fetchers and the four blocking loops (service list, nodes, checks,
// prepared queries). The brief periodic reads (liveness, datacenters,
// coordinates) borrow an idle fetcher's connection: the fetchers are all
// busy only during a burst, when those reads may wait for one.
func (c Config) overhead() int { return c.Fetchers + 4 }

// Stats are counters about the replica's conversation with Consul.
type Stats struct {
	Requests, Errors uint64
	// TooMany counts 429 answers: Consul refusing a connection past its
	// per-client limit.
	TooMany uint64
	// LastContact is the time since the answering server last heard from
	// the leader; KnownLeader whether it knew one (stale reads).
	LastContact time.Duration
	KnownLeader bool
	// Watchers is how many services have a blocking query of their own,
	// Budget how many may, Services how many are listed.
	Watchers, Budget, Services int
	// Sweeps counts probe sweeps, Summaries reads of the services' summaries.
	Sweeps, Summaries uint64
}

type stats struct {
	requests, errors, tooMany atomic.Uint64
	sweeps, summaries         atomic.Uint64
	lastContact               atomic.Int64
	knownLeader               atomic.Bool
	// contactAt is when Consul last answered, failingSince when requests
	// began to fail after that (0 while they succeed); both UnixNano.
	contactAt, failingSince atomic.Int64
	// dirtySince is when the first change not yet published arrived.
	dirtySince atomic.Int64
	// filteredLogged is set once the ACL filtering has been logged.
	filteredLogged atomic.Bool
}

// Replicator replicates one Consul datacenter.
type Replicator struct {
	consul *api.Config // to rebuild the endpoints for the agent's limit
	// autoBudget: the watcher budget is sized from the agent's limit.
	autoBudget bool
	endpoints  *endpoints
	cfg        Config
	publish    func(*snapshot.Snapshot)
	stats      stats

	// ctx lives from Start to Stop; every loop runs under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dirty   chan struct{} // capacity 1: coalesces change signals for the publisher
	moved   chan struct{} // capacity 1: the service list's index moved (moves)
	fetches *queue        // services to read once
	ramp    *queue        // services read once, waiting for a watcher
	limiter *rate.Limiter // shared by fetchers and probes

	// listIndex is the service list's index at its last read: one that goes
	// backwards means another or a restored cluster.
	listIndex atomic.Uint64
	// readSeq orders reads of services by how recent their data is.
	readSeq atomic.Uint64
	// allowance is the budget the pool gives, when in one.
	allowance atomic.Int64
	// capacity is how many connections the agent allows all the replicas
	// of a pool together; 0 when unknown or unbounded (HTTPS).
	capacity int

	mu          sync.Mutex
	datacenter  string
	listed      bool              // the service list was read at least once
	nodesListed bool              // the node list was read at least once
	synced      bool              // a complete snapshot was published
	services    map[string]*entry // by snapshot.Key
	nodes       map[string]*snapshot.Node
	watchers    int // services with a watcher
	// changedAt are the indexes of the latest registration changes the
	// replica saw (a service added, removed or retagged, an instance added,
	// removed or changed): a move of the service list's index to one of them
	// is explained. Only the exact index counts: an agent's streaming view
	// may answer with an index past the change's own.
	changedAt changeRing
	// moves are the indexes the service list moved to, for the sweeper to
	// explain.
	moves  []uint64
	health healthDetector
	warned int // unwatched services at the last budget warning

	// The datacenter's prepared queries and coordinates, and the agent's
	// node name, for prepared queries answered from the replica.
	queries       []*snapshot.Query
	queriesListed bool
	queriesHidden bool
	// servicesHidden: the token may not read every service.
	servicesHidden bool
	coords         []*snapshot.Coordinate
	agentNode      string
}

// entry is everything the replica holds about one service.
type entry struct {
	name    string            // as Consul spells it
	tags    []string          // from the service list
	svc     *snapshot.Service // the latest data; nil before the first read
	index   uint64            // the index of the latest read, which may be past svc's
	seq     uint64            // how recent the stored read is (Replicator.readSeq)
	watcher *watcher          // its own blocking query; nil without one
}

// New returns a Replicator that reads from the Consul endpoints that consul
// and cfg describe and hands every new complete snapshot to publish. publish
// is called from one goroutine at a time.
func New(consul *api.Config, cfg Config, publish func(*snapshot.Snapshot)) (*Replicator, error) {
	auto := cfg.MaxWatchers < 0
	if auto {
		cfg.MaxWatchers = fallbackBudget(consul, cfg.Addresses, cfg.Share)
	}
	eps, err := newEndpoints(consul, cfg.Addresses, cfg.connections(0))
	if err != nil {
		return nil, err
	}
	return &Replicator{
		consul:     consul,
		autoBudget: auto,
		endpoints:  eps,
		cfg:        cfg,
		publish:    publish,
		dirty:      make(chan struct{}, 1),
		moved:      make(chan struct{}, 1),
		fetches:    newQueue(),
		ramp:       newQueue(),
		limiter:    rate.NewLimiter(cfg.FetchRate, max(1, int(cfg.FetchRate)/5)),
		services:   make(map[string]*entry),
		nodes:      make(map[string]*snapshot.Node),
		health:     healthDetector{checks: make(map[checkKey]nonPassingCheck)},
	}, nil
}

// Start begins replication in the background. It returns at once.
func (r *Replicator) Start() {
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.spawn(func() {
		if err := r.readAgent(r.ctx); err != nil {
			return // stopped
		}
		r.mu.Lock()
		r.joinPoolLocked()
		r.mu.Unlock()
		r.spawn(func() { r.watch(r.ctx, "service list", 0, r.fetchServiceList) })
		r.spawn(func() { r.watch(r.ctx, "node list", 0, r.fetchNodes) })
		r.spawn(func() { r.watch(r.ctx, "prepared queries", 0, r.fetchQueries) })
		if r.cfg.Coordinates {
			r.spawn(r.coordinatesLoop)
		}
		// The health detector has nothing to name while every service has
		// a watcher, and each of its wake-ups costs the servers a filter
		// over every check of the datacenter: it pauses meanwhile.
		r.spawn(func() { r.watchUnless(r.ctx, "health changes", 0, r.fetchNonPassing, r.allWatched) })
		r.spawn(r.sweepLoop)
		r.spawn(r.rampLoop)
		if r.cfg.LivenessInterval > 0 {
			r.spawn(r.livenessLoop)
		}
		if r.cfg.OnDatacenters != nil {
			r.spawn(r.datacentersLoop)
		}
		for range r.cfg.Fetchers {
			r.spawn(r.fetchLoop)
		}
	})
	r.spawn(r.publishLoop)
}

// spawn runs f in a goroutine that Stop waits for.
func (r *Replicator) spawn(f func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

// Stop ends replication and waits until every goroutine it started is gone
// and every connection it opened is closed.
func (r *Replicator) Stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
	r.endpoints.close()
	if r.cfg.Pool != nil {
		for _, m := range r.cfg.Pool.leave(r) {
			if m != r {
				m.rebalance()
			}
		}
	}
}

// Stats returns the replica's counters.
func (r *Replicator) Stats() Stats {
	r.mu.Lock()
	watchers, services := r.watchers, len(r.services)
	r.mu.Unlock()
	return Stats{
		Requests:    r.stats.requests.Load(),
		Errors:      r.stats.errors.Load(),
		TooMany:     r.stats.tooMany.Load(),
		LastContact: time.Duration(r.stats.lastContact.Load()),
		KnownLeader: r.stats.knownLeader.Load(),
		Watchers:    watchers,
		Budget:      r.budget(),
		Services:    services,
		Sweeps:      r.stats.sweeps.Load(),
		Summaries:   r.stats.summaries.Load(),
	}
}

// markDirty tells the publisher that the replica changed. It never blocks:
// a signal already pending covers this change too.
func (r *Replicator) markDirty() {
	r.stats.dirtySince.CompareAndSwap(0, time.Now().UnixNano())
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// publishLoop turns change signals into snapshots through a token bucket
// that refills one token per PublishInterval and holds publishBurst: changes
// that come one at a time are published at once, while under churn the
// changes that land while the publisher waits for a token are published
// together.
func (r *Replicator) publishLoop() {
	limiter := rate.NewLimiter(rate.Every(r.cfg.PublishInterval), publishBurst)
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.dirty:
		}
		if wait := limiter.Reserve().Delay(); wait > 0 {
			if !sleep(r.ctx, wait) {
				return
			}
			// This build covers whatever was signalled while waiting.
			select {
			case <-r.dirty:
			default:
			}
		}
		since := r.stats.dirtySince.Swap(0)
		if snap := r.build(); snap != nil {
			r.publish(snap)
			if r.cfg.Observer != nil && since != 0 {
				r.cfg.Observer.Published(time.Since(time.Unix(0, since)))
			}
		}
	}
}

// livenessLoop pings the agent, so that a hung Consul is noticed while the
// blocking queries wait out their long deadlines.
func (r *Replicator) livenessLoop() {
	for sleep(r.ctx, r.cfg.LivenessInterval) {
		r.query(r.ctx, 0, 0, r.cfg.LivenessTimeout, func(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
			var leader string
			meta, err := client.Raw().Query("/v1/status/leader", &leader, opts)
			if err != nil {
				return nil, err
			}
			return &api.QueryMeta{LastIndex: meta.LastIndex, KnownLeader: leader != "", LastContact: meta.LastContact}, nil
		})
	}
}

// datacentersLoop reads the datacenters Consul knows: at once, then every
// DatacentersInterval, retrying sooner while it fails.
func (r *Replicator) datacentersLoop() {
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	for {
		var dcs []string
		_, err := r.query(r.ctx, 0, 0, r.cfg.LivenessTimeout, func(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
			// The agent answers from its own view of the WAN: no ?dc=.
			opts.Datacenter = ""
			if _, err := client.Raw().Query("/v1/catalog/datacenters", &dcs, opts); err != nil {
				return nil, err
			}
			return &api.QueryMeta{KnownLeader: true}, nil
		})
		delay := r.cfg.DatacentersInterval
		if err == nil {
			backoff.reset()
			// Consul's list is already ordered by distance from the server
			// that answered (router.GetDatacentersByDistance), the order its
			// prepared queries fail over in.
			byDistance := make([]string, len(dcs))
			for i, dc := range dcs {
				byDistance[i] = strings.ToLower(dc)
			}
			r.cfg.OnDatacenters(dcs, byDistance)
		} else {
			delay = min(delay, backoff.next())
		}
		if !sleep(r.ctx, delay) {
			return
		}
	}
}

// noteFiltered reports, once in the log and every time to the observer, that
// the token cannot read everything: DNS then silently lacks what it cannot
// read, which is worth a clear line.
func (r *Replicator) noteFiltered(meta *api.QueryMeta, what string) {
	if !meta.ResultsFilteredByACLs {
		return
	}
	if r.stats.filteredLogged.CompareAndSwap(false, true) {
		log.Warningf("the ACL token may not read all %s: DNS will not answer for what it cannot read; give it service:read and node:read on them", what)
	}
	if r.cfg.Observer != nil {
		r.cfg.Observer.Filtered()
	}
}

// Contact reports when Consul last answered, and since when requests have
// been failing after that (zero while they succeed). It takes no lock: the
// DNS request path calls it.
func (r *Replicator) Contact() (last, failingSince time.Time) {
	if ns := r.stats.contactAt.Load(); ns != 0 {
		last = time.Unix(0, ns)
	}
	if ns := r.stats.failingSince.Load(); ns != 0 {
		failingSince = time.Unix(0, ns)
	}
	return last, failingSince
}

// publishBurst is how many snapshots may be published back to back before
// PublishInterval paces them.
const publishBurst = 20

// build assembles a snapshot, or returns nil before the replica first holds
// every listed service: a snapshot missing services that exist in Consul
// would answer NXDOMAIN for them, which resolvers cache. Afterwards a service
// that is new and not read yet is simply not in the snapshot yet: no
// snapshot ever had it.
func (r *Replicator) build() *snapshot.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	services := make(map[string]*snapshot.Service, len(r.services))
	for key, e := range r.services {
		if e.svc != nil {
			services[key] = e.svc
		}
	}
	if !r.synced {
		// Prepared queries too: a query missing from the first snapshot
		// would be answered NXDOMAIN. Not the coordinates: without them
		// queries that sort by distance shuffle, as Consul does.
		if !r.listed || !r.nodesListed || !r.queriesListed || len(services) < len(r.services) {
			return nil
		}
		r.synced = true
	}
	snap := snapshot.New(r.datacenter, 0, services, maps.Clone(r.nodes), time.Now())
	snap.Queries, snap.QueriesHidden, snap.Coordinates, snap.AgentNode = r.queries, r.queriesHidden, r.coords, r.agentNode
	snap.ServicesHidden = r.servicesHidden
	return snap
}

// reportWatchersLocked tells the observer how many services are watched.
func (r *Replicator) reportWatchersLocked() {
	if r.cfg.Observer != nil {
		r.cfg.Observer.Watching(r.watchers, len(r.services), r.budgetLocked())
	}
}

// changeRing holds the indexes of the latest changes.
type changeRing struct {
	at   [256]uint64
	next int
}

func (c *changeRing) add(index uint64) {
	c.at[c.next] = index
	c.next = (c.next + 1) % len(c.at)
}

func (c *changeRing) has(index uint64) bool {
	for _, i := range c.at {
		if i == index && i != 0 {
			return true
		}
	}
	return false
}

// noteChangeLocked records a registration change the replica saw at index.
func (r *Replicator) noteChangeLocked(index uint64) { r.changedAt.add(index) }
