// Package replica keeps a local replica of a Consul datacenter's services and
// their health, current through Consul blocking queries, and publishes it as
// immutable snapshots. It is the only code that talks to Consul; it knows
// nothing about DNS.
package replica

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-cleanhttp"
	"golang.org/x/time/rate"
)

var log = clog.NewWithPlugin("consul")

// Config tunes a Replicator. Zero values take the defaults of DefaultConfig.
type Config struct {
	// Datacenter to replicate; empty means the agent's own.
	Datacenter string
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
}

// DefaultConfig returns the settings used when the Corefile says nothing.
func DefaultConfig() Config {
	return Config{
		Wait:         5 * time.Minute,
		RequestSlack: 10 * time.Second,
		RateLimit:    10,
		RateBurst:    5,
		BackoffMin:   250 * time.Millisecond,
		BackoffMax:   30 * time.Second,
	}
}

// Replicator replicates the services of one Consul datacenter.
type Replicator struct {
	client    *api.Client
	transport *http.Transport // closed on Stop so a reload leaves no connection behind
	cfg       Config
	publish   func(*snapshot.Snapshot)

	// ctx lives from Start to Stop; every loop runs under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	dirty  chan struct{} // capacity 1: coalesces change signals for the publisher

	mu         sync.Mutex
	datacenter string                       // resolved datacenter name
	listed     bool                         // the service list was read at least once
	services   map[string]*snapshot.Service // latest fetched view of each listed service
	watchers   map[string]context.CancelFunc
}

// New returns a Replicator that reads from the Consul agent that consul
// describes and hands every new complete snapshot to publish. publish is
// called from one goroutine at a time.
func New(consul *api.Config, cfg Config, publish func(*snapshot.Snapshot)) (*Replicator, error) {
	if consul.Transport == nil {
		consul.Transport = cleanhttp.DefaultPooledTransport()
	}
	client, err := api.NewClient(consul)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return &Replicator{
		client:    client,
		transport: consul.Transport,
		cfg:       cfg,
		publish:   publish,
		dirty:     make(chan struct{}, 1),
		services:  make(map[string]*snapshot.Service),
		watchers:  make(map[string]context.CancelFunc),
	}, nil
}

// Start begins replication in the background. It returns at once.
func (r *Replicator) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx, r.cancel = ctx, cancel
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		if err := r.resolveDatacenter(ctx); err != nil {
			return // ctx done
		}
		r.watch(ctx, "service list", r.fetchServiceList)
	}()
	go func() {
		defer r.wg.Done()
		r.publishLoop(ctx)
	}()
}

// Stop ends replication and waits until every goroutine it started is gone.
func (r *Replicator) Stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
	r.transport.CloseIdleConnections()
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
		dc, err := r.agentDatacenter()
		if err == nil {
			r.setDatacenter(dc)
			return nil
		}
		delay := backoff.next()
		log.Warningf("reading the agent's datacenter: %v (retrying in %s)", err, delay.Round(time.Millisecond))
		if !sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

func (r *Replicator) agentDatacenter() (string, error) {
	self, err := r.client.Agent().Self()
	if err != nil {
		return "", err
	}
	dc, _ := self["Config"]["Datacenter"].(string)
	if dc == "" {
		return "", errors.New("agent did not report a datacenter; set one in the Corefile")
	}
	return dc, nil
}

func (r *Replicator) setDatacenter(dc string) {
	r.mu.Lock()
	r.datacenter = dc
	r.mu.Unlock()
}

// fetchServiceList reads the names of all services and starts or stops the
// per-service watchers to match.
func (r *Replicator) fetchServiceList(_ context.Context, opts *api.QueryOptions) (uint64, error) {
	names, meta, err := r.client.Catalog().Services(opts)
	if err != nil {
		return 0, fmt.Errorf("listing services: %w", err)
	}
	if meta.LastIndex == opts.WaitIndex {
		return meta.LastIndex, nil // the wait ran out without a change
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range names {
		if _, ok := r.watchers[name]; ok {
			continue
		}
		// Watchers outlive this request: they run under the replicator's context.
		wctx, cancel := context.WithCancel(r.ctx)
		r.watchers[name] = cancel
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.watch(wctx, "service "+name, func(ctx context.Context, opts *api.QueryOptions) (uint64, error) {
				return r.fetchService(ctx, name, opts)
			})
		}()
	}
	for name, cancel := range r.watchers {
		if _, ok := names[name]; ok {
			continue
		}
		cancel()
		delete(r.watchers, name)
		delete(r.services, name)
	}
	r.listed = true
	r.markDirty()
	return meta.LastIndex, nil
}

// fetchService reads every instance of one service with its health.
func (r *Replicator) fetchService(ctx context.Context, name string, opts *api.QueryOptions) (uint64, error) {
	entries, meta, err := r.client.Health().Service(name, "", false, opts)
	if err != nil {
		return 0, fmt.Errorf("reading service %q: %w", name, err)
	}
	if meta.LastIndex == opts.WaitIndex {
		return meta.LastIndex, nil
	}
	svc := buildService(name, entries, meta.LastIndex)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Err() != nil {
		// The service was removed from the list while this read ran; storing
		// it now would resurrect it.
		return meta.LastIndex, nil
	}
	r.services[name] = svc
	r.markDirty()
	return meta.LastIndex, nil
}

// markDirty tells the publisher that the replica changed. It never blocks:
// a signal already pending covers this change too.
func (r *Replicator) markDirty() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// publishLoop turns change signals into snapshots. Several changes that land
// while a snapshot is being built are published together.
func (r *Replicator) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.dirty:
		}
		if snap := r.build(); snap != nil {
			r.publish(snap)
		}
	}
}

// build assembles a snapshot, or returns nil while the replica is incomplete:
// a snapshot missing services that exist in Consul would answer NXDOMAIN for
// them, which resolvers cache.
func (r *Replicator) build() *snapshot.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.listed || len(r.services) < len(r.watchers) {
		return nil
	}
	services := make([]*snapshot.Service, 0, len(r.services))
	for _, svc := range r.services {
		services = append(services, svc)
	}
	return snapshot.New(r.datacenter, services, time.Now())
}
