package snapshot

import "github.com/hashicorp/serf/coordinate"

// Query is a prepared query definition as Consul stores it, without the
// token it runs with (which the plugin never sees and must never keep).
type Query struct {
	ID       string
	Name     string
	Template QueryTemplate
	Service  QueryService
	// TTL is the query's DNS.TTL as Consul stores it ("10s"); empty for the
	// service TTL.
	TTL string
}

// QueryTemplate makes a query a template: it answers every name it matches.
type QueryTemplate struct {
	Type            string // "name_prefix_match"; empty for a static query
	Regexp          string
	RemoveEmptyTags bool
}

// QueryService is what a query selects, with Consul's field names.
type QueryService struct {
	Service        string
	Near           string
	Failover       QueryFailover
	IgnoreCheckIDs []string
	OnlyPassing    bool
	Tags           []string
	NodeMeta       map[string]string
	ServiceMeta    map[string]string
	Connect        bool
	Peer           string
	SamenessGroup  string
}

// QueryFailover lists where a query looks when the local datacenter has no
// healthy instance.
type QueryFailover struct {
	NearestN    int
	Datacenters []string
	Targets     []QueryTarget
}

// QueryTarget is a failover target: a datacenter or a cluster peer.
type QueryTarget struct {
	Peer       string
	Datacenter string
}

// Check is a check that is not passing, kept per instance so that a query's
// IgnoreCheckIDs can leave it out: passing checks change no decision.
type Check struct {
	ID     string
	Health Health
}

// Coordinate is a node's network coordinate in one segment.
type Coordinate struct {
	Node    string
	Segment string
	Coord   *coordinate.Coordinate
}
