package answer

import (
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/prepared"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// View is a snapshot made ready for answering. Everything an answer holds
// that does not depend on the question is built once per change, when a
// service or node first appears in a view: parsed addresses, SRV target
// names, glue and TXT records, SRV weights, the SOA. A question then only
// builds the records that carry its own name (and case), and shuffles.
//
// What is built for a service or node is kept in its memo, so the next
// snapshot, which shares every unchanged value, shares it too: a view costs
// what changed, not the catalog. Every record is shared by every answer and
// never modified; code that needs to change one (a TTL cap) copies it first.
type View struct {
	Snap *snapshot.Snapshot
	// Queries are the snapshot's prepared queries, ready to run.
	Queries *prepared.Set
	prep    *preparer
	zones   []zoneRecords
	// Dropped counts, by reason, the records left out of answers because
	// DNS cannot carry a value, in what this view prepared (the services
	// and nodes that changed since the view before); DroppedExample names
	// the first.
	Dropped        map[string]int
	DroppedExample string
	mesh           *meshIndex
}

// preparer builds the records of services and nodes for one set of zones
// and options. It owns the memos it stores: a view made with other options
// (a reloaded server block that starts from the same snapshot) has its own.
type preparer struct {
	opt   Options
	zones []string
	// dc is the locality of the names of nodes (<node>.node.<dc>), and
	// addrLoc that of addresses with its dot (<hexip>.addr.<dc>.): for a
	// peer's services, <peer>.peer and nothing, as Consul names them.
	dc, addrLoc string
	ttls        []uint32 // every service TTL the options can give, for node meta
}

// zoneRecords are the records of one of the plugin's zones.
type zoneRecords struct {
	name string // lower case, fully qualified
	// negative holds the zone's SOA alone: the authority section of every
	// NXDOMAIN and NODATA. Its capacity is its length, so that an append
	// (CoreDNS adds the OPT record to a message's sections) copies it.
	negative []dns.RR
}

// NewView prepares snap for answering names in zones with opt. prev is the
// view served before, or nil: when it was made with the same zones and
// options, services and nodes that did not change since keep what was built
// for them.
func NewView(snap *snapshot.Snapshot, prev *View, zones []string, opt Options) *View {
	prep := &preparer{opt: opt, dc: snap.Datacenter, addrLoc: snap.Datacenter + ".", ttls: opt.TTL.values()}
	if snap.Peer != "" {
		prep.dc, prep.addrLoc = snap.Peer+".peer", ""
	}
	for _, z := range zones {
		prep.zones = append(prep.zones, strings.ToLower(dns.Fqdn(z)))
	}
	if prev != nil && prev.prep.dc == prep.dc && slices.Equal(prev.prep.zones, prep.zones) && prev.prep.opt.Equal(&opt) {
		prep = prev.prep
	}
	var prevQueries *prepared.Set
	if prev != nil {
		prevQueries = prev.Queries
	}
	v := &View{Snap: snap, Queries: prepared.NewSet(snap, prevQueries), prep: prep}
	for _, z := range prep.zones {
		v.zones = append(v.zones, v.zoneRecords(z))
	}
	var dropped *drops
	for _, svc := range snap.Services {
		if svc != nil && svc.Answers.Load(prep, svc) == nil {
			p := prep.service(svc)
			svc.Answers.Store(prep, svc, p)
			dropped = p.dropped.merge(dropped)
		}
	}
	for _, n := range snap.Nodes {
		if n != nil && n.Answers.Load(prep, n) == nil {
			p := prep.node(n)
			n.Answers.Store(prep, n, p)
			dropped = p.dropped.merge(dropped)
		}
	}
	v.mesh = newMeshIndex(snap, prev, prep)
	if dropped != nil {
		v.Dropped, v.DroppedExample = dropped.n, dropped.example
	}
	return v
}

// TTLOf is the TTL of the answers about a service.
func (v *View) TTLOf(service string) uint32 { return v.prep.opt.TTL.Service(snapshot.Key(service)) }

// service returns the prepared service of that lower-case name.
func (v *View) service(name string) (*service, bool) {
	svc, ok := v.Snap.Services[name]
	if !ok || svc == nil {
		return nil, false
	}
	if p, ok := svc.Answers.Load(v.prep, svc).(*service); ok {
		return p, true
	}
	// Prepared by another view's options: a reloaded server block's first
	// moments, while the new one has taken the shared snapshot over.
	return v.prep.service(svc), true
}

// node returns the prepared node of that lower-case name.
func (v *View) node(name string) (*node, bool) {
	n, ok := v.Snap.Nodes[name]
	if !ok || n == nil {
		return nil, false
	}
	if p, ok := n.Answers.Load(v.prep, n).(*node); ok {
		return p, true
	}
	return v.prep.node(n), true
}

func (v *View) zoneRecords(zone string) zoneRecords {
	soa := &dns.SOA{
		Hdr:     header(zone, dns.TypeSOA, v.prep.opt.SOAMinTTL),
		Ns:      "ns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  uint32(v.Snap.Index),
		Refresh: v.prep.opt.SOARefresh,
		Retry:   v.prep.opt.SOARetry,
		Expire:  v.prep.opt.SOAExpire,
		Minttl:  v.prep.opt.SOAMinTTL,
	}
	return zoneRecords{name: zone, negative: []dns.RR{soa}}
}

// zone returns the records of a zone, made on the spot for a zone the view
// was not prepared for.
func (v *View) zone(name string) (*zoneRecords, int) {
	for i := range v.zones {
		if v.zones[i].name == name {
			return &v.zones[i], i
		}
	}
	z := v.zoneRecords(name)
	return &z, noZoneIdx
}
