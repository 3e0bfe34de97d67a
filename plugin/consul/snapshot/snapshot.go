// Package snapshot holds the immutable, in-memory view of the Consul catalog
// that the DNS request path reads. A Snapshot is never modified after it is
// published: the replicator builds a new one and swaps a pointer, so readers
// need no lock.
package snapshot

import (
	"strings"
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
	// Address is the service's own address; empty when the service uses its
	// node's address. Consul names SRV targets differently in the two cases.
	Address       string
	Port          uint16
	Tags          []string
	WeightPassing int
	WeightWarning int
	Health        Health
}

// Service is every instance of one service name, with the Consul index at
// which this view of the service was read.
type Service struct {
	Name      string
	Index     uint64
	Instances []Instance
}

// Snapshot is a complete view of the replicated datacenter.
type Snapshot struct {
	Datacenter string
	// Index is the highest Consul index among the data in this snapshot.
	Index uint64
	// Services is keyed by the lower-cased service name: DNS lookups are
	// case-insensitive, Consul service names are not meant to differ by case.
	Services map[string]*Service
	// Built is when this snapshot was assembled from replicated data.
	Built time.Time
}

// New assembles a snapshot from services. The services are shared, not
// copied: a Service must not be modified once handed over, which lets
// consecutive snapshots share every service that did not change.
func New(datacenter string, services []*Service, built time.Time) *Snapshot {
	s := &Snapshot{
		Datacenter: strings.ToLower(datacenter),
		Services:   make(map[string]*Service, len(services)),
		Built:      built,
	}
	for _, svc := range services {
		s.Services[strings.ToLower(svc.Name)] = svc
		s.Index = max(s.Index, svc.Index)
	}
	return s
}

// Service returns the service with the given name, matched case-insensitively.
// name must already be lower case; the DNS layer lower-cases the question once.
func (s *Snapshot) Service(name string) (*Service, bool) {
	svc, ok := s.Services[name]
	return svc, ok
}
