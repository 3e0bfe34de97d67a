// Package inspect describes a snapshot set for people and scripts: what the
// coredns-consul command prints of a snapshot file, and what a running
// CoreDNS serves of its live replica (the consul block's inspect option).
// The JSON field names are an interface: docs/operations.md documents them.
package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// Report is what a snapshot set holds: "snapshot show -json" prints it, the
// inspect endpoint serves it.
type Report struct {
	File             string       `json:"file"`
	FormatVersion    uint32       `json:"format_version"`
	Cluster          string       `json:"cluster,omitempty"`
	LocalDatacenter  string       `json:"local_datacenter"`
	KnownDatacenters []string     `json:"known_datacenters"`
	ByDistance       []string     `json:"datacenters_by_distance"`
	Datacenters      []Datacenter `json:"datacenters"`
	// KnownPeers are the peerings Consul lists; Peers the snapshots of the
	// replicated cluster peers (each named after its peer), by name.
	KnownPeers []string     `json:"known_peers"`
	Peers      []Datacenter `json:"peers"`
}

// Datacenter is one replicated datacenter's snapshot.
type Datacenter struct {
	Name           string    `json:"name"`
	Index          uint64    `json:"index"`
	Built          time.Time `json:"built"`
	AgeSeconds     float64   `json:"age_seconds"`
	Services       int       `json:"services"`
	Instances      int       `json:"instances"`
	Nodes          int       `json:"nodes"`
	ServicesHidden bool      `json:"services_hidden"`
	QueriesHidden  bool      `json:"queries_hidden"`
	AgentNode      string    `json:"agent_node,omitempty"`
	Queries        []Query   `json:"prepared_queries"`
	// ServiceList is every service, with -services.
	ServiceList []ServiceSummary `json:"service_list,omitempty"`
	// Service is the service -service asked for; Missing when this
	// datacenter's snapshot does not hold it.
	Service *Service `json:"service,omitempty"`
	Missing string   `json:"missing_service,omitempty"`
}

// ServiceSummary is one service's instances counted by health.
type ServiceSummary struct {
	Name      string `json:"name"`
	Index     uint64 `json:"index"`
	Instances int    `json:"instances"`
	Passing   int    `json:"passing"`
	Warning   int    `json:"warning"`
	Critical  int    `json:"critical"`
}

// Options say what a report holds beyond each datacenter's summary.
type Options struct {
	Datacenter string // only this datacenter, when not empty
	Service    string // this service's instances, when not empty
	Services   bool   // every service, counted by health
}

// Query is a prepared query's definition, as far as it decides answers.
type Query struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Template string `json:"template,omitempty"`
	Regexp   string `json:"regexp,omitempty"`
	Service  string `json:"service"`
}

// Service is one service's instances.
type Service struct {
	Name      string     `json:"name"`
	Index     uint64     `json:"index"`
	Instances []Instance `json:"instances"`
}

// Instance is one instance of a service. Address is the address DNS
// answers with: the service's own, else its node's.
type Instance struct {
	ID            string   `json:"id"`
	Node          string   `json:"node"`
	Address       string   `json:"address"`
	NodeAddress   string   `json:"node_address"`
	Port          uint16   `json:"port"`
	Tags          []string `json:"tags"`
	Health        string   `json:"health"`
	FailingChecks []Check  `json:"failing_checks"`
}

// Check is a check of an instance that is not passing.
type Check struct {
	ID     string `json:"id"`
	Health string `json:"health"`
}

// New describes set, read from file (or a URL, for a live replica); now
// dates the ages.
func New(file string, version uint32, set *snapshot.Set, now time.Time, opts Options) (*Report, error) {
	dc := opts.Datacenter
	r := &Report{
		File: file, FormatVersion: version, Cluster: set.Cluster, LocalDatacenter: set.Local,
		KnownDatacenters: nonNil(set.Known), ByDistance: nonNil(set.ByDistance),
	}
	for _, snap := range set.Datacenters {
		if dc != "" && snap.Datacenter != snapshot.Key(dc) {
			continue
		}
		r.Datacenters = append(r.Datacenters, newDatacenter(snap, now, opts))
	}
	r.KnownPeers, r.Peers = nonNil(set.KnownPeers), []Datacenter{}
	for _, snap := range set.Peers {
		if dc == "" {
			p := newDatacenter(snap, now, opts)
			p.Name = snap.Peer
			r.Peers = append(r.Peers, p)
		}
	}
	slices.SortFunc(r.Peers, func(a, b Datacenter) int { return strings.Compare(a.Name, b.Name) })
	if len(r.Datacenters) == 0 {
		return nil, fmt.Errorf("%s holds no snapshot of datacenter %s (it holds %s)", file, snapshot.Quote(dc), DatacenterNames(set))
	}
	// Local first, then by name: the file's order is the plugin's.
	slices.SortStableFunc(r.Datacenters, func(a, b Datacenter) int {
		if (a.Name == set.Local) != (b.Name == set.Local) {
			if a.Name == set.Local {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return r, nil
}

func newDatacenter(snap *snapshot.Snapshot, now time.Time, opts Options) Datacenter {
	services, instances := snap.Counts()
	d := Datacenter{
		Name: snap.Datacenter, Index: snap.Index, Built: snap.Built.UTC(),
		AgeSeconds: now.Sub(snap.Built).Round(time.Second).Seconds(),
		Services:   services, Instances: instances, Nodes: len(snap.Nodes),
		ServicesHidden: snap.ServicesHidden, QueriesHidden: snap.QueriesHidden,
		AgentNode: snap.AgentNode, Queries: []Query{},
	}
	for _, q := range snap.Queries {
		d.Queries = append(d.Queries, Query{ID: q.ID, Name: q.Name, Template: q.Template.Type,
			Regexp: q.Template.Regexp, Service: q.Service.Service})
	}
	if opts.Services {
		d.ServiceList = summaries(snap)
	}
	if opts.Service != "" {
		if svc, ok := snap.Service(snapshot.Key(opts.Service)); ok {
			d.Service = newService(svc)
		} else {
			d.Missing = opts.Service
		}
	}
	return d
}

// summaries counts every service's instances by health, in name order.
func summaries(snap *snapshot.Snapshot) []ServiceSummary {
	out := make([]ServiceSummary, 0, len(snap.Services))
	for _, svc := range snap.Services {
		s := ServiceSummary{Name: svc.Name, Index: svc.Index, Instances: len(svc.Instances)}
		for _, in := range svc.Instances {
			switch in.Health {
			case snapshot.Passing:
				s.Passing++
			case snapshot.Warning:
				s.Warning++
			default:
				s.Critical++
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ServiceSummary) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func newService(svc *snapshot.Service) *Service {
	s := &Service{Name: svc.Name, Index: svc.Index, Instances: make([]Instance, 0, len(svc.Instances))}
	for _, in := range svc.Instances {
		s.Instances = append(s.Instances, NewInstance(in))
	}
	return s
}

func NewInstance(in snapshot.Instance) Instance {
	out := Instance{ID: in.ID, Node: in.Node, Address: in.Address, NodeAddress: in.NodeAddress,
		Port: in.Port, Tags: nonNil(in.Tags), Health: in.Health.String(), FailingChecks: []Check{}}
	if out.Address == "" {
		out.Address = in.NodeAddress
	}
	for _, c := range in.Checks {
		out.FailingChecks = append(out.FailingChecks, Check{ID: c.ID, Health: c.Health.String()})
	}
	return out
}

// nonNil keeps JSON arrays arrays: a script should not have to tell null
// from [].
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func DatacenterNames(set *snapshot.Set) string {
	names := make([]string, 0, len(set.Datacenters))
	for _, snap := range set.Datacenters {
		names = append(names, snap.Datacenter)
	}
	return strings.Join(names, ", ")
}

// WriteJSON writes v indented, as the command prints it and the endpoint
// serves it.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "a -> b" reads as it prints
	return enc.Encode(v)
}
