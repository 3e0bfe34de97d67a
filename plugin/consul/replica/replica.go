// Package replica keeps a local replica of a Consul datacenter's services,
// their health and its nodes, current through Consul blocking queries, and
// publishes it as immutable snapshots. It is the only code that talks to
// Consul; it knows nothing about DNS.
//
// How the replica stays current at scale (docs/design.md has the numbers):
//   - one blocking query on /v1/catalog/services keeps the list of names;
//   - one blocking query on /v1/catalog/nodes keeps the nodes;
//   - up to MaxWatchers services have a blocking query of their own on
//     /v1/health/service/<name>: exact, and cheap for Consul's servers with
//     the agent's streaming backend;
//   - the other services are kept current by detectors: a blocking query on
//     the non-passing checks names the services whose health changed, and a
//     move of the service list's index starts a sweep: one read of every
//     check, diffed against the last (it names most registrations), else
//     cheap per-service index probes, with a probe sweep 5s after a diff as
//     the safety net. Either queues the changed services for a bounded pool
//     of fetchers. A service found changed this way takes the watcher slot of
//     the service that changed least recently.
package replica

import (
	"context"
	"errors"
	"maps"
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
	// each holds a connection, and a Consul agent accepts 200 per client IP;
	// over HTTPS they share HTTP/2 connections. AutoWatchers picks
	// HTTPWatchers or HTTPSWatchers by the endpoints' scheme.
	MaxWatchers int
	// Fetchers is the number of concurrent fetches and sweep probes.
	Fetchers int
	// FetchRate bounds fetches and probes per second, all fetchers together.
	FetchRate rate.Limit
	// SweepInterval is the least time between two sweeps.
	SweepInterval time.Duration
	// PublishInterval is the least time between two snapshots: changes that
	// land within it are published together; a lone change is not delayed.
	PublishInterval time.Duration
	// LivenessInterval is how often the agent is pinged, so that a Consul
	// that hangs is noticed within LivenessInterval + LivenessTimeout even
	// while every blocking query waits; 0 turns the pings off.
	LivenessInterval, LivenessTimeout time.Duration
	// Observer hears of every request's outcome and every publication.
	Observer Observer
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
		Fetchers:        16,
		FetchRate:       5000,
		SweepInterval:   100 * time.Millisecond,
		PublishInterval: 5 * time.Millisecond,

		LivenessInterval: 5 * time.Second,
		LivenessTimeout:  2 * time.Second,
	}
}

// Watcher budgets.
const (
	AutoWatchers = -1
	// HTTPWatchers leaves room under Consul's default of 200 connections per
	// client IP for the fetchers, the detector loops and other clients.
	HTTPWatchers = 128
	// HTTPSWatchers is a bound on memory, not on connections: HTTP/2 carries
	// up to 250 concurrent requests on each connection.
	HTTPSWatchers = 4096
)

// connections is the most HTTP connections a replica opens to one endpoint:
// every watcher and fetcher, the three detector loops and the datacenter
// look-up.
func (c Config) connections() int { return c.MaxWatchers + c.Fetchers + 4 }

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
	Watchers    int
}

type stats struct {
	requests, errors, tooMany atomic.Uint64
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
	endpoints *endpoints
	cfg       Config
	publish   func(*snapshot.Snapshot)
	stats     stats

	// ctx lives from Start to Stop; every loop runs under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dirty   chan struct{} // capacity 1: coalesces change signals for the publisher
	sweeps  chan struct{} // capacity 1: coalesces sweep requests
	fetches *queue
	limiter *rate.Limiter // shared by fetchers and probes

	mu            sync.Mutex
	datacenter    string
	listed        bool                         // the service list was read at least once
	nodesListed   bool                         // the node list was read at least once
	synced        bool                         // a complete snapshot was published
	names         map[string]string            // key → name as Consul spells it
	tags          map[string][]string          // key → tags from the service list
	services      map[string]*snapshot.Service // key → latest fetched view
	nodes         map[string]*snapshot.Node    // key → node
	watchers      map[string]*watcher          // key → the service's own blocking query
	nonPassing    map[checkKey]nonPassingCheck // health detector state
	safetyRunning atomic.Bool                  // a safety sweep is under way
	// allChecks is diffChecks' last read of every check.
	allChecks     map[checkKey]checkSeen
	allChecksRead bool
}

type watcher struct {
	cancel     context.CancelFunc
	lastChange time.Time
}

// New returns a Replicator that reads from the Consul endpoints that consul
// and cfg describe and hands every new complete snapshot to publish. publish
// is called from one goroutine at a time.
func New(consul *api.Config, cfg Config, publish func(*snapshot.Snapshot)) (*Replicator, error) {
	if cfg.MaxWatchers < 0 {
		cfg.MaxWatchers = HTTPWatchers
		if allHTTPS(consul, cfg.Addresses) {
			cfg.MaxWatchers = HTTPSWatchers
		}
	}
	eps, err := newEndpoints(consul, cfg.Addresses, cfg.connections())
	if err != nil {
		return nil, err
	}
	return &Replicator{
		endpoints:  eps,
		cfg:        cfg,
		publish:    publish,
		dirty:      make(chan struct{}, 1),
		sweeps:     make(chan struct{}, 1),
		fetches:    newQueue(),
		limiter:    rate.NewLimiter(cfg.FetchRate, max(1, int(cfg.FetchRate)/5)),
		names:      make(map[string]string),
		tags:       make(map[string][]string),
		services:   make(map[string]*snapshot.Service),
		nodes:      make(map[string]*snapshot.Node),
		watchers:   make(map[string]*watcher),
		nonPassing: make(map[checkKey]nonPassingCheck),
	}, nil
}

// Start begins replication in the background. It returns at once.
func (r *Replicator) Start() {
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.spawn(func() {
		if err := r.resolveDatacenter(r.ctx); err != nil {
			return // stopped
		}
		r.spawn(func() { r.watch(r.ctx, "service list", 0, r.fetchServiceList) })
		r.spawn(func() { r.watch(r.ctx, "node list", 0, r.fetchNodes) })
		r.spawn(func() { r.watch(r.ctx, "health changes", 0, r.fetchNonPassing) })
		r.spawn(r.sweepLoop)
		if r.cfg.LivenessInterval > 0 {
			r.spawn(r.livenessLoop)
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
}

// Stats returns the replica's counters.
func (r *Replicator) Stats() Stats {
	r.mu.Lock()
	watchers := len(r.watchers)
	r.mu.Unlock()
	return Stats{
		Requests:    r.stats.requests.Load(),
		Errors:      r.stats.errors.Load(),
		TooMany:     r.stats.tooMany.Load(),
		LastContact: time.Duration(r.stats.lastContact.Load()),
		KnownLeader: r.stats.knownLeader.Load(),
		Watchers:    watchers,
	}
}

// resolveDatacenter learns the datacenter name, which DNS answers carry in
// their SRV targets, from the agent when the configuration does not name it.
func (r *Replicator) resolveDatacenter(ctx context.Context) error {
	if r.cfg.Datacenter != "" {
		r.setDatacenter(r.cfg.Datacenter)
		return nil
	}
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	for {
		var dc string
		_, err := r.query(ctx, 0, 0, 10*time.Second, func(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
			// Agent().Self() takes no context; a hung agent would hold Stop.
			var self struct{ Config struct{ Datacenter string } }
			if _, err := client.Raw().Query("/v1/agent/self", &self, opts); err != nil {
				return nil, err
			}
			dc = self.Config.Datacenter
			if dc == "" {
				return nil, errors.New("agent did not report a datacenter; set one in the Corefile")
			}
			return &api.QueryMeta{KnownLeader: true}, nil
		})
		if err == nil {
			r.setDatacenter(dc)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		delay := backoff.next()
		log.Warningf("reading the agent's datacenter: %v (retrying in %s)", err, delay.Round(time.Millisecond))
		if !sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

func (r *Replicator) setDatacenter(dc string) {
	r.mu.Lock()
	r.datacenter = dc
	r.mu.Unlock()
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
// that is new and not fetched yet is simply not in the snapshot yet: no
// snapshot ever had it.
func (r *Replicator) build() *snapshot.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.synced {
		if !r.listed || !r.nodesListed || len(r.services) < len(r.names) {
			return nil
		}
		r.synced = true
	}
	return snapshot.New(r.datacenter, 0, maps.Clone(r.services), maps.Clone(r.nodes), time.Now())
}
