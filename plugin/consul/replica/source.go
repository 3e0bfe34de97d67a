package replica

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// Source is the replica's only way to Consul: one method per read it makes,
// each returning the data in the replica's own terms and the blocking
// query's metadata. The replica applies the rules of blocking queries
// (indexes, backoff, 429s) itself, once, in the loop that drives a read
// (watch): a Source only reads. Production reads Consul's HTTP API
// (consulSource); the replica's unit tests read an in-memory catalog that
// follows the same rules. A Source is safe for concurrent use.
type Source interface {
	// Agent describes the agent the replica reads through.
	Agent(ctx context.Context) (Agent, error)
	// Services lists every service's name and tags.
	Services(ctx context.Context, q Query) (map[string][]string, Meta, error)
	// Service reads every instance of one service with its health. A
	// service that does not exist has no instances.
	Service(ctx context.Context, name string, q Query) (*snapshot.Service, Meta, error)
	// ServiceIndex reads only one service's index: a sweep's probe.
	ServiceIndex(ctx context.Context, name string) (Meta, error)
	// Nodes lists every node.
	Nodes(ctx context.Context, q Query) ([]*snapshot.Node, Meta, error)
	// NonPassing lists the checks that are warning or critical.
	NonPassing(ctx context.Context, q Query) ([]Check, Meta, error)
	// Summaries counts every service's instances and checks.
	Summaries(ctx context.Context) ([]Summary, Meta, error)
	// Queries lists the prepared queries; an error that denied reports
	// when the token may not list them.
	Queries(ctx context.Context, q Query) ([]*snapshot.Query, Meta, error)
	// Coordinates reads the nodes' network coordinates.
	Coordinates(ctx context.Context) ([]*snapshot.Coordinate, Meta, error)
	// Datacenters lists the datacenters the agent knows, nearest first.
	Datacenters(ctx context.Context) ([]string, Meta, error)
	// Leader asks for the leader: a cheap request that tells whether the
	// agent answers at all.
	Leader(ctx context.Context) (Meta, error)
	// Cluster reads the cluster's identity; "" when it has none to give.
	Cluster(ctx context.Context) (string, Meta, error)
}

// Query is how a read is asked: at once (Index 0), or blocking until the
// data moves past Index or Wait passes.
type Query struct {
	Index uint64
	Wait  time.Duration
}

// Meta is what an answer says besides its data.
type Meta struct {
	// Index is the answer's X-Consul-Index.
	Index uint64
	// KnownLeader and LastContact say how current the answering server is.
	KnownLeader bool
	LastContact time.Duration
	// Filtered reports that the ACL token may not read all of the answer.
	Filtered bool
}

// Agent is what the replica learns from the agent before it starts.
type Agent struct {
	Datacenter string
	NodeName   string
	// MaxConnsPerClient is limits.http_max_conns_per_client (0: no limit);
	// nil when the agent does not say.
	MaxConnsPerClient *int
	// DNS is the agent's DNS settings; nil when it does not report them.
	DNS *AgentDNS
}

// Check is one non-passing health check.
type Check struct {
	Node, ID, Status string
	Service          string // the service's name; empty for a node check
}

// Summary is what Consul counts of one service: enough to tell that an
// instance or a check was added or removed, or moved node.
type Summary struct {
	Name                       string
	Tags, Nodes                []string
	Instances                  int
	Passing, Warning, Critical int
	Peer                       string // set for a service imported from a cluster peer
}

// denied reports an answer refused for the ACL token.
func denied(err error) bool {
	var status api.StatusError
	return errors.As(err, &status) && (status.Code == http.StatusForbidden || status.Code == http.StatusUnauthorized)
}

// tooMany reports Consul refusing a connection past its per-client limit.
func tooMany(err error) bool {
	var status api.StatusError
	return errors.As(err, &status) && status.Code == http.StatusTooManyRequests
}
