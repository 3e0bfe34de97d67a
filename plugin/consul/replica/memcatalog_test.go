package replica

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// memCatalog is an in-memory Consul catalog behind the replica's Source,
// following Consul's blocking-query rules: a read with index 0 returns at
// once; a read with an index blocks until what it reads moves past it, or
// until its wait passes on the catalog's clock (then with the same index),
// or until its context is done. Indexes are Consul's: one raft index moved
// by every write; the service list's by registrations only, the checks' by
// health changes, a service's by its own instances and checks, except that
// an instance registered again under another service's name leaves its old
// service's index where it was, as Consul does.
type memCatalog struct {
	clock *fakeClock

	mu       sync.Mutex
	index    uint64 // the raft index
	listIdx  uint64
	nodesIdx uint64
	checkIdx uint64
	services map[string]*memService // by name
	nodes    map[string]*snapshot.Node
	queries  []*snapshot.Query
	// changed is closed and replaced by every write: blocked reads wake.
	changed chan struct{}
	// restores counts restores: a blocked read returns at once after one,
	// as Consul's do when its state store is abandoned.
	restores int
	// fail, when set, answers every read but the agent's.
	fail error
	// denyQueries makes the prepared-query list answer 403.
	denyQueries bool
	// gateways are the gateways' entries by kind, gatewaysIdx their
	// index (gateways_test.go).
	gateways     map[string][]*snapshot.Gateway
	gatewaysIdx  uint64
	denyGateways bool
	// calls counts reads by method; blockingNow how many blocking service
	// reads are waiting, most the highest it reached.
	calls            map[string]int
	firstReads, most int
	// firstReadDelay holds a service's first blocking read (a watcher's
	// start, which starts a streaming view in a real agent).
	firstReadDelay time.Duration
	seenBlocking   map[string]bool
	// blocked counts reads blocking now, by method; onBlock hears when one
	// starts to.
	blocked map[string]int
	onBlock func()
	// zeroIndex makes every answer carry index 0 (a Consul bug the loop
	// must survive).
	zeroIndex bool
	// cluster is the cluster's identity; "" for none.
	cluster string
	// panics makes every read but the agent's panic, as a conversion of
	// data nothing checked would.
	panics atomic.Bool
	// dns is what the agent says of its DNS settings; nil for nothing.
	dns atomic.Pointer[AgentDNS]
	// denyAgent refuses the agent's read, as to a token without agent:read.
	denyAgent atomic.Bool
	// agentReads counts the agent's reads, refused ones too.
	agentReads atomic.Int64
}

type memService struct {
	index     uint64
	instances map[string]snapshot.Instance // by ID
}

func newMemCatalog() *memCatalog {
	return &memCatalog{
		clock: newFakeClock(), index: 1, listIdx: 1, nodesIdx: 1, checkIdx: 1,
		services: make(map[string]*memService), nodes: make(map[string]*snapshot.Node),
		changed: make(chan struct{}), calls: make(map[string]int), seenBlocking: make(map[string]bool),
		blocked: make(map[string]int),
	}
}

// write applies change under the lock at a new raft index and wakes every
// blocked read.
func (c *memCatalog) write(change func(index uint64)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index++
	change(c.index)
	close(c.changed)
	c.changed = make(chan struct{})
}

// register adds or replaces an instance on node (made when missing).
func (c *memCatalog) register(service, node string, in snapshot.Instance) {
	c.write(func(i uint64) {
		if n := c.nodes[node]; n == nil || n.Address != in.NodeAddress {
			c.nodes[node] = &snapshot.Node{Name: node, Address: in.NodeAddress}
			c.nodesIdx = i
		}
		for _, s := range c.services {
			if old, ok := s.instances[in.ID]; ok && old.Node == node && s != c.services[service] {
				// Registered again under another name: Consul leaves the
				// old service's index where it was.
				delete(s.instances, in.ID)
			}
		}
		s := c.services[service]
		if s == nil {
			s = &memService{instances: make(map[string]snapshot.Instance)}
			c.services[service] = s
		}
		in.Node = node
		s.instances[in.ID] = in
		s.index, c.listIdx = i, i
		if in.Health != snapshot.Passing {
			c.checkIdx = i
		}
		c.dropEmpty()
	})
}

// deregister removes an instance.
func (c *memCatalog) deregister(service, id string) {
	c.write(func(i uint64) {
		if s := c.services[service]; s != nil {
			delete(s.instances, id)
			s.index, c.listIdx, c.checkIdx = i, i, i
		}
		c.dropEmpty()
	})
}

// setHealth changes an instance's health: the service's and the checks'
// indexes move, not the service list's.
func (c *memCatalog) setHealth(service, id string, h snapshot.Health) {
	c.write(func(i uint64) {
		s := c.services[service]
		in := s.instances[id]
		in.Health = h
		s.instances[id] = in
		s.index, c.checkIdx = i, i
	})
}

// restore replaces the catalog with one whose indexes start over lower, as
// a cluster restored from a snapshot or rebuilt from nothing.
func (c *memCatalog) restore(services map[string][]snapshot.Instance) {
	c.write(func(uint64) {
		c.restores++
		c.index = 2
		c.services = make(map[string]*memService)
		for name, ins := range services {
			s := &memService{index: 2, instances: make(map[string]snapshot.Instance)}
			for _, in := range ins {
				s.instances[in.ID] = in
			}
			c.services[name] = s
		}
		c.listIdx, c.nodesIdx, c.checkIdx = 2, 2, 2
	})
}

func (c *memCatalog) dropEmpty() {
	for name, s := range c.services {
		if len(s.instances) == 0 {
			delete(c.services, name)
		}
	}
}

// setFail makes every read fail with err (nil: answer again); reads that
// wait fail at once, as a Consul that fails drops them.
func (c *memCatalog) setFail(err error) {
	c.write(func(uint64) { c.fail = err })
}

func (c *memCatalog) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

func (c *memCatalog) blocking(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blocked[method]
}

// block waits until index moves past q.Index (read under the lock by
// current), q.Wait passes on the clock, or ctx is done; it returns with the
// lock held.
func (c *memCatalog) block(ctx context.Context, method string, q Query, current func() uint64) (uint64, error) {
	if c.panics.Load() {
		panic("memCatalog: injected panic in " + method)
	}
	c.mu.Lock()
	c.calls[method]++
	if c.fail != nil {
		return 0, c.fail
	}
	var expired <-chan struct{}
	restores := c.restores
	for q.Index != 0 && current() <= q.Index && c.restores == restores {
		if expired == nil {
			expired = c.clock.after(q.Wait)
			c.blocked[method]++
			defer func() { c.blocked[method]-- }() // under the lock block returns with
			if c.onBlock != nil {
				c.onBlock()
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-expired:
			c.mu.Lock()
			return c.answerIndex(current()), nil
		case <-ctx.Done():
			c.mu.Lock()
			return 0, ctx.Err()
		}
		c.mu.Lock()
		if c.fail != nil {
			return 0, c.fail // Consul began failing while the read waited
		}
	}
	return c.answerIndex(current()), nil
}

func (c *memCatalog) answerIndex(i uint64) uint64 {
	if c.zeroIndex {
		return 0
	}
	return i
}

func (c *memCatalog) Agent(context.Context) (Agent, error) {
	c.agentReads.Add(1)
	if c.denyAgent.Load() {
		return Agent{}, api.StatusError{Code: http.StatusForbidden, Body: "Permission denied"}
	}
	limit := 0
	return Agent{Datacenter: "dc1", NodeName: "agent", MaxConnsPerClient: &limit, DNS: c.dns.Load()}, nil
}

func (c *memCatalog) Services(ctx context.Context, q Query) (map[string][]string, Meta, error) {
	i, err := c.block(ctx, "services", q, func() uint64 { return c.listIdx })
	defer c.mu.Unlock()
	if err != nil {
		return nil, Meta{}, err
	}
	list := make(map[string][]string, len(c.services))
	for name, s := range c.services {
		var tags []string
		for _, in := range s.instances {
			for _, t := range in.Tags {
				if !slices.Contains(tags, t) {
					tags = append(tags, t)
				}
			}
		}
		list[name] = tags
	}
	return list, Meta{Index: i, KnownLeader: true}, nil
}

func (c *memCatalog) serviceIndex(name string) uint64 {
	if s := c.services[name]; s != nil {
		return s.index
	}
	return c.listIdx // Consul answers a missing service with the table's index
}

func (c *memCatalog) Service(ctx context.Context, name string, q Query) (*snapshot.Service, Meta, error) {
	if q.Index != 0 {
		c.mu.Lock()
		first := !c.seenBlocking[name]
		c.seenBlocking[name] = true
		if first {
			c.firstReads++
			c.most = max(c.most, c.firstReads)
		}
		delay := c.firstReadDelay
		c.mu.Unlock()
		if first {
			defer func() { c.mu.Lock(); c.firstReads--; c.mu.Unlock() }()
			if !sleep(ctx, delay) {
				return nil, Meta{}, ctx.Err()
			}
		}
	}
	i, err := c.block(ctx, "service", q, func() uint64 { return c.serviceIndex(name) })
	defer c.mu.Unlock()
	if err != nil {
		return nil, Meta{}, err
	}
	svc := &snapshot.Service{Name: name, Index: i}
	if s := c.services[name]; s != nil {
		for _, id := range slices.Sorted(maps.Keys(s.instances)) {
			svc.Instances = append(svc.Instances, s.instances[id])
		}
		slices.SortFunc(svc.Instances, func(a, b snapshot.Instance) int { return cmpPair(a.Node, b.Node, a.ID, b.ID) })
	}
	return svc, Meta{Index: i, KnownLeader: true}, nil
}

func (c *memCatalog) ServiceIndex(ctx context.Context, name string) (Meta, error) {
	i, err := c.block(ctx, "probe", Query{}, func() uint64 { return c.serviceIndex(name) })
	c.mu.Unlock()
	return Meta{Index: i, KnownLeader: true}, err
}

func (c *memCatalog) Nodes(ctx context.Context, q Query) ([]*snapshot.Node, Meta, error) {
	i, err := c.block(ctx, "nodes", q, func() uint64 { return c.nodesIdx })
	defer c.mu.Unlock()
	if err != nil {
		return nil, Meta{}, err
	}
	return slices.Collect(maps.Values(c.nodes)), Meta{Index: i, KnownLeader: true}, nil
}

func (c *memCatalog) NonPassing(ctx context.Context, q Query) ([]Check, Meta, error) {
	i, err := c.block(ctx, "checks", q, func() uint64 { return c.checkIdx })
	defer c.mu.Unlock()
	if err != nil {
		return nil, Meta{}, err
	}
	var out []Check
	for name, s := range c.services {
		for _, in := range s.instances {
			if in.Health != snapshot.Passing {
				out = append(out, Check{Node: in.Node, ID: "check-" + in.ID, Status: in.Health.String(), Service: name})
			}
		}
	}
	return out, Meta{Index: i, KnownLeader: true}, nil
}

func (c *memCatalog) Summaries(ctx context.Context) ([]Summary, Meta, error) {
	i, err := c.block(ctx, "summaries", Query{}, func() uint64 { return c.index })
	defer c.mu.Unlock()
	if err != nil {
		return nil, Meta{}, err
	}
	var out []Summary
	for name, s := range c.services {
		sum := Summary{Name: name, Instances: len(s.instances)}
		for _, in := range s.instances {
			sum.Nodes = append(sum.Nodes, in.Node)
			switch in.Health {
			case snapshot.Passing:
				sum.Passing++
			case snapshot.Warning:
				sum.Warning++
			default:
				sum.Critical++
			}
		}
		out = append(out, sum)
	}
	return out, Meta{Index: i, KnownLeader: true}, nil
}

func (c *memCatalog) Queries(ctx context.Context, q Query) ([]*snapshot.Query, Meta, error) {
	i, err := c.block(ctx, "queries", q, func() uint64 { return 1 })
	defer c.mu.Unlock()
	if err != nil {
		return nil, Meta{}, err
	}
	if c.denyQueries {
		return nil, Meta{}, api.StatusError{Code: http.StatusForbidden, Body: "Permission denied"}
	}
	return slices.Clone(c.queries), Meta{Index: i, KnownLeader: true}, nil
}

func (c *memCatalog) Coordinates(context.Context) ([]*snapshot.Coordinate, Meta, error) {
	return nil, Meta{KnownLeader: true}, nil
}

func (c *memCatalog) Datacenters(context.Context) ([]string, Meta, error) {
	return []string{"dc1"}, Meta{KnownLeader: true}, nil
}

func (c *memCatalog) Leader(context.Context) (Meta, error) { return Meta{KnownLeader: true}, nil }

func (c *memCatalog) Cluster(context.Context) (string, Meta, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return "", Meta{}, c.fail
	}
	return c.cluster, Meta{KnownLeader: true}, nil
}

// fakeClock is the catalog's clock for blocking waits: a wait passes only
// when the test advances the clock past it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Duration
	waiters []clockWaiter
}

type clockWaiter struct {
	at time.Duration
	ch chan struct{}
}

func newFakeClock() *fakeClock { return &fakeClock{} }

func (f *fakeClock) after(d time.Duration) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.waiters = append(f.waiters, clockWaiter{f.now + d, ch})
	return ch
}

// advance moves the clock by d and ends the waits that passed.
func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now += d
	f.waiters = slices.DeleteFunc(f.waiters, func(w clockWaiter) bool {
		if w.at <= f.now {
			close(w.ch)
			return true
		}
		return false
	})
}

// instance is a passing instance of a test catalog.
func instance(id, addr string, port uint16) snapshot.Instance {
	return snapshot.Instance{ID: id, NodeAddress: addr, Port: port, WeightPassing: 1, WeightWarning: 1}
}

// populate registers services x perService instances, named service-N.
func (c *memCatalog) populate(services, perService int) {
	for s := range services {
		for i := range perService {
			c.register(fmt.Sprintf("service-%d", s), fmt.Sprintf("node-%d", i),
				instance(fmt.Sprintf("service-%d-%d", s, i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), 8000))
		}
	}
}
