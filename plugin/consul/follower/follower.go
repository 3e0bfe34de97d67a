// Package follower is a replica whose reads come from a tier of other
// instances instead of Consul: it long-polls one tier at a time for what
// changed in the tier's snapshot Set, moves to the next tier when one
// fails, hangs or answers garbage, and merges what it reads so that what
// it serves never moves backwards.
package follower

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"

	clog "github.com/coredns/coredns/plugin/pkg/log"
)

var log = clog.NewWithPlugin("consul")

// Config is how a follower reads its tiers.
type Config struct {
	// Addresses are the tiers: "host:port" (the scheme follows TLS) or
	// "http(s)://host:port"; two or more in production.
	Addresses []string
	// TokenFile holds the token sent as "Authorization: Bearer"; read
	// again when it changes and when a tier refuses it.
	TokenFile string
	// TLS is for https tiers; nil: plain HTTP.
	TLS *tls.Config
	// Wait is the long-poll's wait; default 60s.
	Wait time.Duration
	// Idle: no byte (heartbeat or answer) for this long and the tier hangs:
	// the follower goes to the next; default 1s.
	Idle time.Duration
	// NodeName is the follower's own node name: the local datacenter's
	// snapshots get it as AgentNode (a prepared query's Near "_agent");
	// "" keeps the tier's.
	NodeName string
	// Seed is the snapshot file's Set: served at once, and never moved
	// back from; its Cluster is the one expected of the tiers.
	Seed *snapshot.Set
	// Observer hears what happens, for metrics; nil: the prometheus
	// metrics (Metrics).
	Observer Observer
	// First is the index in Addresses of the tier read first (modulo
	// their number): followers that start at different tiers spread the
	// fleet over them, rather than all reading the first until it fails.
	First int
}

// Follower reads a tier of instances and serves what they hold.
type Follower struct {
	cfg       Config
	tiers     []*tierConn
	client    *http.Client
	transport *http.Transport
	token     *token
	observer  Observer

	// The loop's own: the merge, and the tier's generation base is at.
	merge    *merger
	gen      uint64
	baseTier string
	fine     fineTracker

	state state

	mu     sync.Mutex
	mine   *snapshot.Set              // what is served; nil before anything
	wakes  map[chan struct{}]struct{} // one per subscription
	cancel context.CancelFunc
	subs   sync.WaitGroup
	loop   sync.WaitGroup
}

// New makes a follower, not started.
func New(cfg Config) (*Follower, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("follower: no tier address")
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 60 * time.Second
	}
	if cfg.Idle <= 0 {
		cfg.Idle = time.Second
	}
	if cfg.Observer == nil {
		cfg.Observer = Metrics{}
	}
	f := &Follower{cfg: cfg, token: newToken(cfg.TokenFile), observer: cfg.Observer,
		merge: newMerger(cfg.Seed, cfg.NodeName), wakes: map[chan struct{}]struct{}{}}
	for _, addr := range cfg.Addresses {
		u, err := tierURL(addr, cfg.TLS != nil)
		if err != nil {
			return nil, fmt.Errorf("follower: %w", err)
		}
		f.tiers = append(f.tiers, &tierConn{addr: addr, url: u})
	}
	f.state.failedTiers, f.state.contact = map[*tierConn]bool{}, map[tier.Key]keyContact{}
	if cfg.Seed != nil {
		f.state.cluster, f.state.local = cfg.Seed.Cluster, cfg.Seed.Local
	}
	f.mine = f.merge.mine
	f.transport = &http.Transport{
		Proxy:               nil, // tiers are reached directly
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     cfg.TLS.Clone(),
		TLSHandshakeTimeout: 5 * time.Second,
		ForceAttemptHTTP2:   cfg.TLS != nil,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		// Payloads are compressed already.
		DisableCompression: true,
	}
	f.client = &http.Client{Transport: f.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return f, nil
}

// Start starts reading the tiers.
func (f *Follower) Start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.loop.Add(1)
	go func() {
		defer f.loop.Done()
		f.run(ctx)
	}()
}

// Stop stops reading the tiers and every subscription, waits for their
// goroutines, and closes the connections.
func (f *Follower) Stop() {
	f.mu.Lock()
	if f.cancel != nil {
		f.cancel()
	}
	for wake := range f.wakes {
		close(wake)
	}
	clear(f.wakes)
	f.mu.Unlock()
	f.loop.Wait()
	f.subs.Wait()
	f.transport.CloseIdleConnections()
}

// Subscribe calls publish with the current snapshot of k, if any, before
// it returns, then with every new one, one call at a time; a burst of
// changes may be handed over as its last snapshot alone. cancel stops the
// calls, waiting for one in progress: it must not be called from publish.
func (f *Follower) Subscribe(k tier.Key, publish func(*snapshot.Snapshot)) (cancel func()) {
	return subscribe(f, func(s *snapshot.Set) *snapshot.Snapshot { return byKeyOne(s, k) }, publish)
}

// OnSet calls fn with every new Set served (and the current one before it
// returns), as Subscribe does: its metadata (Known, ByDistance, Cluster,
// AgentDNS, KnownPeers) for the glue, and the whole for the snapshot file.
func (f *Follower) OnSet(fn func(*snapshot.Set)) (cancel func()) {
	return subscribe(f, func(s *snapshot.Set) *snapshot.Set { return s }, fn)
}

func subscribe[T comparable](f *Follower, pick func(*snapshot.Set) T, deliver func(T)) func() {
	var zero T
	wake := make(chan struct{}, 1)
	f.mu.Lock()
	f.wakes[wake] = struct{}{}
	cur := f.mine
	f.mu.Unlock()
	last := zero
	if cur != nil {
		last = pick(cur)
	}
	if last != zero {
		deliver(last)
	}
	done, exited := make(chan struct{}), make(chan struct{})
	f.subs.Add(1)
	go func() {
		defer f.subs.Done()
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case _, ok := <-wake:
				if !ok {
					return
				}
			}
			if cur := f.current(); cur != nil {
				if v := pick(cur); v != zero && v != last {
					last = v
					deliver(v)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.wakes, wake)
			f.mu.Unlock()
			close(done)
			<-exited
		})
	}
}

// publish serves set and wakes the subscriptions, unless set is what is
// served.
func (f *Follower) publish(set *snapshot.Set) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if set == f.mine {
		return
	}
	f.mine = set
	for wake := range f.wakes {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

func (f *Follower) current() *snapshot.Set {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mine
}

// Contact is how current k's snapshot is, as replica.Replicator.Contact:
// last is the older of the tier's last read of it from Consul and the
// follower's last word from a tier; failing is non-zero since when no tier
// can be reached, the tier's reads of it fail, or no tier holds it.
func (f *Follower) Contact(k tier.Key) (last, failing time.Time) { return f.state.contactOf(k) }

// Cluster is the Consul cluster the follower serves: the snapshot file's,
// else the first tier's; false while not known.
func (f *Follower) Cluster() (string, bool) { return f.state.origin() }
