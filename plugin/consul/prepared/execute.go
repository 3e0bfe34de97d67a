package prepared

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// Reasons for Consul to answer a query itself; Result.Reason wraps one of
// them (or a template error).
var (
	// ErrConnect: the query selects Connect-capable instances (proxies and
	// native services), which the snapshot does not tell apart.
	ErrConnect = errors.New("connect queries are not answered from the replica")
	// ErrPeer: the query, or the failover target reached, reads services
	// imported from a cluster peer.
	ErrPeer = errors.New("peer queries are not answered from the replica")
	// ErrSamenessGroup: sameness groups drive their own failover
	// (Enterprise; Consul CE answers such a query with nothing).
	ErrSamenessGroup = errors.New("sameness group queries are not answered from the replica")
	// ErrNotReplicated: a failover datacenter has no snapshot.
	ErrNotReplicated = errors.New("failover datacenter is not replicated")
	// ErrDatacentersUnknown: the query fails over but the request did not
	// say which datacenters exist.
	ErrDatacentersUnknown = errors.New("datacenters by distance unknown")
)

// Agent is the Consul agent the DNS question came to: Consul's DNS server
// always sends itself as the query's Agent (agent/dns.go:1588-1597).
type Agent struct {
	Datacenter string // for Near sorting, done only in the agent's datacenter
	Node       string // what Near "_agent" means
	Segment    string // ${agent.segment}
}

// Request is one execution of a prepared query for the DNS interface.
type Request struct {
	// Name is the query name or ID the question asks for (see QueryName).
	Name string
	// Agent is the agent that received the question.
	Agent Agent
	// SourceIP is the client's address, or its EDNS client subnet address,
	// for Near "_ip" (agent/dns.go:1600-1613).
	SourceIP string
	// DatacentersByDistance is every datacenter, nearest first from the
	// set's datacenter (see FailoverTargets). nil means unknown: a query
	// that would fail over is then passed on; an empty slice means there
	// is no other datacenter.
	DatacentersByDistance []string
	// Shuffle randomizes the order of the results, as Consul does before
	// sorting them by distance; nil uses math/rand/v2.
	Shuffle func(n int, swap func(i, j int))
}

// Outcome says what the caller should do with a Result.
type Outcome uint8

const (
	// Answer: Instances (possibly none: Consul then answers NXDOMAIN) are
	// the answer, from Datacenter.
	Answer Outcome = iota
	// NotFound: no query has that name or ID here (see ErrNotFound).
	NotFound
	// PassOn: Consul must answer; Reason says why.
	PassOn
)

func (o Outcome) String() string {
	switch o {
	case Answer:
		return "answer"
	case NotFound:
		return "not found"
	default:
		return "pass on"
	}
}

// Result is what Execute found.
type Result struct {
	Outcome Outcome
	Reason  error // for NotFound and PassOn
	// Query is the query that answered, rendered when it is a template; it
	// may be shared with other questions.
	Query *snapshot.Query
	// Instances point into the snapshot of Datacenter, in answer order.
	Instances  []*snapshot.Instance
	Datacenter string
	// Service is the rendered service name, whose service TTL applies when
	// the query sets no TTL of its own.
	Service string
	// TTL is the query's DNS TTL when TTLSet (see ParseTTL).
	TTL    time.Duration
	TTLSet bool
	// Failovers counts the failover targets tried, as Consul reports it.
	Failovers int
}

// Execute runs the named query in the set's datacenter as Consul's
// PreparedQuery.Execute does for its DNS interface
// (agent/consul/prepared_query_endpoint.go:354-493): resolve and render
// (Set.Resolve), select the instances (Filter), shuffle, sort around the Near
// node (NearNode, SortNear), and when nothing is left, try the failover
// targets in order (FailoverTargets), each of them filtered and shuffled but
// not sorted, as ExecuteRemote does (prepared_query_endpoint.go:500-543).
// snapshotOf returns the snapshot of a failover datacenter, nil when it is not
// replicated.
//
// The snapshot's ACL view stands in for the query's token: Consul filters
// results with the token stored in the query, or the DNS token
// (prepared_query_endpoint.go:391-399), which the replica never sees.
func (s *Set) Execute(req Request, snapshotOf func(datacenter string) *snapshot.Snapshot) Result {
	q, err := s.Resolve(req.Name, req.Agent.Segment)
	switch {
	case errors.Is(err, ErrNotFound):
		return Result{Outcome: NotFound, Reason: fmt.Errorf("%q: %w", req.Name, err)}
	case err != nil:
		return passOn(nil, err)
	}
	svc := &q.Service
	switch {
	// Consul checks the sameness group first (prepared_query_endpoint.go:380).
	case svc.SamenessGroup != "":
		return passOn(q, fmt.Errorf("query %q: %w", q.Name, ErrSamenessGroup))
	case svc.Connect:
		return passOn(q, fmt.Errorf("query %q: %w", q.Name, ErrConnect))
	case svc.Peer != "":
		return passOn(q, fmt.Errorf("query %q, peer %q: %w", q.Name, svc.Peer, ErrPeer))
	}

	shuffle := req.Shuffle
	if shuffle == nil {
		shuffle = rand.Shuffle
	}
	res := Result{Outcome: Answer, Query: q, Service: svc.Service, Datacenter: s.snap.Datacenter}
	res.TTL, res.TTLSet = ParseTTL(q.TTL)

	res.Instances = Filter(s.snap, svc)
	shuffle(len(res.Instances), swapper(res.Instances))
	s.SortNear(res.Instances, s.NearNode(svc.Near, req.Agent.Node, req.SourceIP), req.Agent.Datacenter)
	if len(res.Instances) > 0 {
		return res
	}

	if req.DatacentersByDistance == nil && failsOver(&svc.Failover) {
		return passOn(q, fmt.Errorf("query %q fails over: %w", q.Name, ErrDatacentersUnknown))
	}
	for _, t := range FailoverTargets(s.snap.Datacenter, req.DatacentersByDistance, &svc.Failover) {
		res.Failovers++
		if t.Peer != "" {
			return passOn(q, fmt.Errorf("query %q fails over to peer %q: %w", q.Name, t.Peer, ErrPeer))
		}
		remote := snapshotOf(t.Datacenter)
		if remote == nil {
			return passOn(q, fmt.Errorf("query %q fails over to %q: %w", q.Name, t.Datacenter, ErrNotReplicated))
		}
		found := Filter(remote, svc)
		if len(found) > 0 {
			shuffle(len(found), swapper(found))
			res.Instances, res.Datacenter = found, remote.Datacenter
			return res
		}
	}
	return res
}

func passOn(q *snapshot.Query, err error) Result {
	return Result{Outcome: PassOn, Reason: err, Query: q}
}

func swapper(s []*snapshot.Instance) func(i, j int) {
	return func(i, j int) { s[i], s[j] = s[j], s[i] }
}

// failsOver is QueryFailoverOptions.IsEmpty negated
// (agent/structs/prepared_query.go:48-53).
func failsOver(f *snapshot.QueryFailover) bool {
	return f.NearestN > 0 || len(f.Datacenters) > 0 || len(f.Targets) > 0
}
