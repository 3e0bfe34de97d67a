package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// consulSource reads Consul's HTTP API through the endpoints, the active one
// first: a request that fails in a way another endpoint might not moves
// every later request to the next.
type consulSource struct {
	base  *api.Config // to rebuild the endpoints for another connection cap
	addrs []string
	creds *credentials
	eps   atomic.Pointer[endpoints]
	// rebuild serializes the endpoints' replacements; maxConns is theirs.
	rebuild  sync.Mutex
	maxConns int
	// opts are sent with every request but the agent's own.
	dc, namespace, partition string
	consistency              Consistency
	// peer is the cluster peer whose imported services are read; empty
	// for the datacenter's own.
	peer string
	// invalid hears of the values skipped from Consul's answers.
	invalid *invalids
}

func newConsulSource(base *api.Config, cfg Config, maxConns int) (*consulSource, error) {
	s := &consulSource{base: base, addrs: cfg.Addresses, dc: cfg.Datacenter, namespace: cfg.Namespace,
		partition: cfg.Partition, consistency: cfg.Consistency, invalid: &invalids{observer: cfg.Observer},
		maxConns: maxConns, peer: cfg.Peer}
	creds, err := newCredentials(base, cfg.Observer)
	if err != nil {
		return nil, err
	}
	s.creds = creds
	eps, err := newEndpoints(base, creds, cfg.Addresses, maxConns)
	if err != nil {
		return nil, err
	}
	s.eps.Store(eps)
	creds.onTLS = s.newTLS
	return s, nil
}

// capConns rebuilds the endpoints with at most maxConns connections per
// agent. It runs before any loop sends requests.
func (s *consulSource) capConns(maxConns int) error {
	s.rebuild.Lock()
	defer s.rebuild.Unlock()
	s.maxConns = maxConns
	return s.replaceEndpoints()
}

// newTLS rebuilds the endpoints with the TLS material just read: requests
// from then on connect with it. Requests in flight finish on their
// connections, which close as they go idle.
func (s *consulSource) newTLS() {
	s.rebuild.Lock()
	defer s.rebuild.Unlock()
	if err := s.replaceEndpoints(); err != nil {
		log.Errorf("new TLS material not in use: %v", err)
	}
}

// replaceEndpoints swaps in new endpoints, at the same active address.
func (s *consulSource) replaceEndpoints() error {
	eps, err := newEndpoints(s.base, s.creds, s.addrs, s.maxConns)
	if err != nil {
		return err
	}
	old := s.eps.Load()
	eps.active.Store(old.active.Load())
	s.eps.Store(eps)
	old.close()
	return nil
}

// followCredentials re-reads the token and TLS files as they change, until
// ctx is done.
func (s *consulSource) followCredentials(ctx context.Context) { s.creds.follow(ctx.Done()) }

// multiplexed reports whether every address is reached over HTTPS, where
// HTTP/2 carries many blocking queries on each connection.
func (s *consulSource) multiplexed() bool { return allHTTPS(s.base, s.addrs) }

func (s *consulSource) close() { s.eps.Load().close() }

// call sends one request through the active endpoint; a failure may move
// later requests to the next endpoint.
func (s *consulSource) call(ctx context.Context, q Query, req func(*api.Client, *api.QueryOptions) (*api.QueryMeta, error)) (Meta, error) {
	eps := s.eps.Load()
	i, client := eps.client()
	opts := (&api.QueryOptions{
		Datacenter:        s.dc,
		Peer:              s.peer,
		Namespace:         s.namespace,
		Partition:         s.partition,
		AllowStale:        s.consistency == Stale,
		RequireConsistent: s.consistency == Consistent,
		WaitIndex:         q.Index,
		WaitTime:          q.Wait,
		Token:             s.creds.current(),
	}).WithContext(ctx)
	meta, err := req(client, opts)
	if err != nil {
		// With several addresses, a log line must say which one failed.
		err = eps.named(i, err)
		s.creds.failed(err)
		// A request cut short by its deadline is the endpoint's failure;
		// one canceled because the replica stops is not.
		if !errors.Is(ctx.Err(), context.Canceled) {
			eps.failed(i, err)
		}
		return Meta{}, err
	}
	if meta == nil {
		return Meta{KnownLeader: true}, nil
	}
	return Meta{Index: meta.LastIndex, KnownLeader: meta.KnownLeader, LastContact: meta.LastContact,
		Filtered: meta.ResultsFilteredByACLs}, nil
}

// read sends one request through call and names what failed.
func read[T any](s *consulSource, ctx context.Context, q Query, what string, req func(*api.Client, *api.QueryOptions) (T, *api.QueryMeta, error)) (T, Meta, error) {
	var data T
	meta, err := s.call(ctx, q, func(c *api.Client, opts *api.QueryOptions) (m *api.QueryMeta, err error) {
		data, m, err = req(c, opts)
		return m, err
	})
	if err != nil {
		return data, meta, fmt.Errorf("%s: %w", what, err)
	}
	return data, meta, nil
}

// raw reads path into out; the agent answers requests without an index.
func (s *consulSource) raw(ctx context.Context, path string, out any, local bool) (Meta, error) {
	return s.call(ctx, Query{}, func(c *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
		if local {
			// The agent answers from its own view: no ?dc=, no ?peer=.
			opts.Datacenter, opts.Peer = "", ""
		}
		meta, err := c.Raw().Query(path, out, opts)
		if err == nil {
			// These endpoints carry no index; a reply is a known leader's.
			meta.KnownLeader = true
		}
		return meta, err
	})
}

func (s *consulSource) Agent(ctx context.Context) (Agent, error) {
	var self struct {
		Config      struct{ Datacenter, NodeName string }
		DebugConfig struct {
			HTTPMaxConnsPerClient *int
			agentDNSJSON
		}
	}
	// Agent().Self() takes no context; a hung agent would hold Stop.
	if _, err := s.raw(ctx, "/v1/agent/self", &self, true); err != nil {
		return Agent{}, err
	}
	dns, err := self.DebugConfig.convert()
	if err != nil {
		return Agent{}, err
	}
	return Agent{Datacenter: self.Config.Datacenter, NodeName: self.Config.NodeName,
		MaxConnsPerClient: self.DebugConfig.HTTPMaxConnsPerClient, DNS: dns}, nil
}

func (s *consulSource) Services(ctx context.Context, q Query) (map[string][]string, Meta, error) {
	if s.peer != "" {
		return s.importedServices(ctx, q)
	}
	return read(s, ctx, q, "listing services", func(c *api.Client, o *api.QueryOptions) (map[string][]string, *api.QueryMeta, error) {
		return c.Catalog().Services(o)
	})
}

func (s *consulSource) Service(ctx context.Context, name string, q Query) (*snapshot.Service, Meta, error) {
	entries, meta, err := read(s, ctx, q, fmt.Sprintf("reading service %q", name), func(c *api.Client, o *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
		return c.Health().Service(name, "", false, o)
	})
	if err != nil {
		return nil, meta, err
	}
	svc, badEntries, badChecks := buildService(name, entries, meta.Index)
	if s.peer != "" {
		keepNodeMeta(svc, entries)
	}
	s.invalid.note(invalidEntry, badEntries)
	s.invalid.note(invalidCheck, badChecks)
	return svc, meta, nil
}

// matchNothing is a filter no service instance matches: a probe's answer
// carries the index and no body.
const matchNothing = `Service.ID == "" and Service.ID != ""`

func (s *consulSource) ServiceIndex(ctx context.Context, name string) (Meta, error) {
	return s.call(ctx, Query{}, func(c *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
		opts.Filter = matchNothing
		_, meta, err := c.Health().Service(name, "", false, opts)
		return meta, err
	})
}

func (s *consulSource) Nodes(ctx context.Context, q Query) ([]*snapshot.Node, Meta, error) {
	list, meta, err := read(s, ctx, q, "listing nodes", func(c *api.Client, o *api.QueryOptions) ([]*api.Node, *api.QueryMeta, error) {
		return c.Catalog().Nodes(o)
	})
	if err != nil {
		return nil, meta, err
	}
	nodes, bad := convertNodes(list)
	s.invalid.note(invalidNode, bad)
	return nodes, meta, nil
}

// nonPassingFilter keeps the health detector's answers small: only checks
// that are warning or critical, usually few.
const nonPassingFilter = `Status != "passing"`

func (s *consulSource) NonPassing(ctx context.Context, q Query) ([]Check, Meta, error) {
	list, meta, err := read(s, ctx, q, "reading non-passing checks", func(c *api.Client, o *api.QueryOptions) (api.HealthChecks, *api.QueryMeta, error) {
		o.Filter = nonPassingFilter
		return c.Health().State(api.HealthAny, o)
	})
	if err != nil {
		return nil, meta, err
	}
	checks, bad := convertChecks(list)
	s.invalid.note(invalidCheck, bad)
	return checks, meta, nil
}

// uiSummary is one service of /v1/internal/ui/services (internal: the UI's;
// absent or different in other Consul versions, which only cost sweeps).
type uiSummary struct {
	Name                                         string
	Tags, Nodes                                  []string
	InstanceCount                                int
	ChecksPassing, ChecksWarning, ChecksCritical int
	PeerName                                     string
}

func (s *consulSource) Summaries(ctx context.Context) ([]Summary, Meta, error) {
	var list []uiSummary
	meta, err := s.raw(ctx, "/v1/internal/ui/services", &list, false)
	if err != nil {
		return nil, meta, fmt.Errorf("reading the services' summaries: %w", err)
	}
	out, bad := convertSummaries(list)
	s.invalid.note(invalidSummary, bad)
	return out, meta, nil
}

func (s *consulSource) Queries(ctx context.Context, q Query) ([]*snapshot.Query, Meta, error) {
	list, meta, err := read(s, ctx, q, "listing prepared queries", func(c *api.Client, o *api.QueryOptions) ([]*api.PreparedQueryDefinition, *api.QueryMeta, error) {
		return c.PreparedQuery().List(o)
	})
	if err != nil {
		return nil, meta, err
	}
	out, bad := convertQueries(list)
	s.invalid.note(invalidQuery, bad)
	return out, meta, nil
}

func (s *consulSource) Coordinates(ctx context.Context) ([]*snapshot.Coordinate, Meta, error) {
	list, meta, err := read(s, ctx, Query{}, "reading coordinates", func(c *api.Client, o *api.QueryOptions) ([]*api.CoordinateEntry, *api.QueryMeta, error) {
		return c.Coordinate().Nodes(o)
	})
	if err != nil {
		return nil, meta, err
	}
	coords, bad := convertCoordinates(list)
	s.invalid.note(invalidCoordinate, bad)
	return coords, meta, nil
}

func (s *consulSource) Datacenters(ctx context.Context) ([]string, Meta, error) {
	var dcs []string
	meta, err := s.raw(ctx, "/v1/catalog/datacenters", &dcs, true)
	if err != nil {
		return nil, meta, fmt.Errorf("listing datacenters: %w", err)
	}
	// Consul's list is already ordered by distance from the server that
	// answered (router.GetDatacentersByDistance), the order its prepared
	// queries fail over in.
	dcs, bad := cleanDatacenters(dcs)
	s.invalid.note(invalidDatacenter, bad)
	return dcs, meta, nil
}

func (s *consulSource) Leader(ctx context.Context) (Meta, error) {
	var leader string
	meta, err := s.raw(ctx, "/v1/status/leader", &leader, false)
	meta.KnownLeader = err == nil && leader != ""
	return meta, err
}
