// Package snapshot holds the immutable, in-memory view of the Consul catalog
// that the DNS request path reads. A Snapshot is never modified after it is
// published: the replicator builds a new one and swaps a pointer, so readers
// need no lock.
package snapshot

import (
	"strings"
	"sync/atomic"
	"time"
)

// Health is the aggregate health of one service instance: the worst of its
// service checks and its node's checks, as Consul computes it.
type Health uint8

// Health values, ordered from best to worst so that the aggregate of several
// checks is their maximum.
const (
	Passing Health = iota
	Warning
	Critical
)

func (h Health) String() string {
	switch h {
	case Passing:
		return "passing"
	case Warning:
		return "warning"
	default:
		return "critical"
	}
}

// ParseHealth maps a Consul check status to a Health. Unknown statuses
// (including "maintenance") count as critical, because Consul's DNS interface
// never returns an instance it cannot prove healthy.
func ParseHealth(status string) Health {
	switch status {
	case "passing":
		return Passing
	case "warning":
		return Warning
	default:
		return Critical
	}
}

// Instance is one registered instance of a service.
type Instance struct {
	ID          string // service ID, unique per node
	Node        string
	NodeAddress string
	// NodeTaggedAddresses are the node's other addresses (lan, wan, lan_ipv4,
	// wan_ipv6, ...), as Consul reports them.
	NodeTaggedAddresses map[string]string
	// Address is the service's own address; empty when the service uses its
	// node's address. Consul names SRV targets differently in the two cases.
	Address string
	// TaggedAddresses are the service's other addresses by tag (lan_ipv4,
	// wan_ipv6, ...).
	TaggedAddresses map[string]string
	Port            uint16
	Tags            []string
	Meta            map[string]string
	WeightPassing   int
	WeightWarning   int
	Health          Health
	// Checks are the instance's service and node checks that are not
	// passing, for prepared queries that ignore some of them.
	Checks []Check `json:",omitempty"`
	// Mesh is what the instance is in the service mesh; nil for a plain
	// service (and in files written before it was kept).
	Mesh *Mesh `json:",omitempty"`
	// NodeMeta is the node's meta, kept only for an instance imported from
	// a cluster peer: Consul lists no nodes of a peer, so its instances
	// carry what its SRV answers put in TXT records.
	NodeMeta map[string]string `json:",omitempty"`
}

// Memo keeps what a reader derived from the value that holds it (the
// records answers are built from), so that consecutive snapshots, which share
// unchanged values, share what was derived from them too, and a change costs
// only the values it replaced. A memo answers only the owner that stored it,
// and only for the value it was stored for: a copied value does not carry
// its original's memo over.
type Memo struct {
	p atomic.Pointer[memo]
}

type memo struct{ owner, of, v any }

// Load returns what owner stored for of, the value holding this memo; nil
// when it stored nothing.
func (m *Memo) Load(owner, of any) any {
	if e := m.p.Load(); e != nil && e.owner == owner && e.of == of {
		return e.v
	}
	return nil
}

// Store keeps v for owner and of, replacing what was kept before.
func (m *Memo) Store(owner, of, v any) { m.p.Store(&memo{owner, of, v}) }

// Service is every instance of one service name, with the Consul index at
// which this view of the service was read.
type Service struct {
	Name      string
	Index     uint64
	Instances []Instance
	Answers   Memo `json:"-"`
}

// Node is one node of the catalog, for node lookups.
type Node struct {
	Name            string
	Address         string
	TaggedAddresses map[string]string
	Meta            map[string]string
	Answers         Memo `json:"-"`
}

// Snapshot is a complete view of the replicated datacenter.
type Snapshot struct {
	Datacenter string
	// Index is the highest Consul index among the data in this snapshot.
	Index uint64
	// Services is keyed by the lower-cased service name: DNS lookups are
	// case-insensitive, and so are Consul's own service name indexes.
	Services map[string]*Service
	// Nodes is keyed by the lower-cased node name.
	Nodes map[string]*Node
	// Built is when this snapshot was assembled from replicated data.
	Built time.Time
	// Queries are the datacenter's prepared queries that the plugin's token
	// may read, sorted by ID.
	Queries []*Query `json:",omitempty"`
	// QueriesHidden: the token may not read every prepared query, so a name
	// that is not among Queries may still be one.
	QueriesHidden bool `json:",omitempty"`
	// ServicesHidden: the token may not read every service, so a service
	// that is not among Services may still exist.
	ServicesHidden bool `json:",omitempty"`
	// Coordinates are the nodes' network coordinates, for prepared queries
	// that sort by distance.
	Coordinates []*Coordinate `json:",omitempty"`
	// AgentNode is the node name of the agent the replica reads through:
	// what a prepared query's Near "_agent" means.
	AgentNode string `json:",omitempty"`
	// Ingress are the ingress gateways' config entries, for <svc>.ingress
	// names; Terminating the terminating gateways', which <svc>.connect
	// answers with the proxies.
	Ingress     []*Gateway `json:",omitempty"`
	Terminating []*Gateway `json:",omitempty"`
	// IngressRead and TerminatingRead: the entries were read, so a service
	// that no gateway of that kind names is named by none. False in files
	// written before they were kept, and while the token may not read
	// them.
	IngressRead     bool `json:",omitempty"`
	TerminatingRead bool `json:",omitempty"`
	// Peer is the cluster peer whose imported services the snapshot holds;
	// empty for a datacenter's own.
	Peer string `json:",omitempty"`
	// ListIndex is the index of the service list the snapshot's services
	// are complete for: a service not among Services was not in Consul's
	// list at ListIndex (or left it by then). Unlike Index, the highest of
	// any data's, it tells a follower that a service it has and a tier
	// lacks was deregistered, not yet read. 0: not known (older files).
	ListIndex uint64 `json:",omitempty"`

	instances int // counted by New, which already visits every service
}

// New assembles a snapshot from services and nodes, both keyed by lower-cased
// name. The maps are owned by the snapshot from then on, and the values are
// shared, not copied: a Service or Node must not be modified once handed
// over, which lets consecutive snapshots share everything that did not change.
func New(datacenter string, index uint64, services map[string]*Service, nodes map[string]*Node, built time.Time) *Snapshot {
	s := &Snapshot{
		Datacenter: strings.ToLower(datacenter),
		Index:      index,
		Services:   services,
		Nodes:      nodes,
		Built:      built,
	}
	for _, svc := range services {
		s.Index = max(s.Index, svc.Index)
		s.instances += len(svc.Instances)
	}
	return s
}

// Key is the map key of a service or node name.
func Key(name string) string { return strings.ToLower(name) }

// Service returns the service with the given name, matched case-insensitively.
// name must already be lower case; the DNS layer lower-cases the question once.
func (s *Snapshot) Service(name string) (*Service, bool) {
	svc, ok := s.Services[name]
	return svc, ok
}

// Node returns the node with the given lower-cased name.
func (s *Snapshot) Node(name string) (*Node, bool) {
	n, ok := s.Nodes[name]
	return n, ok
}

// Counts returns the number of services and instances in the snapshot.
func (s *Snapshot) Counts() (services, instances int) {
	return len(s.Services), s.instances
}
