package answer

import (
	"net"
	"net/netip"
	"slices"
	"sort"
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
}

// preparer builds the records of services and nodes for one set of zones
// and options. It owns the memos it stores: a view made with other options
// (a reloaded server block that starts from the same snapshot) has its own.
type preparer struct {
	opt   Options
	zones []string
	dc    string
	ttls  []uint32 // every service TTL the options can give, for node meta
}

// zoneRecords are the records of one of the plugin's zones.
type zoneRecords struct {
	name string // lower case, fully qualified
	// negative holds the zone's SOA alone: the authority section of every
	// NXDOMAIN and NODATA. Its capacity is its length, so that an append
	// (CoreDNS adds the OPT record to a message's sections) copies it.
	negative []dns.RR
}

// Address classes: Consul picks an instance's address by the question type
// (translateAddressAccept): A prefers lan_ipv4, AAAA lan_ipv6, and every
// other type lan_ipv6 then lan_ipv4.
const (
	classA = iota
	classAAAA
	classOther
	classes
)

// classTypes are question types that stand for each class.
var classTypes = [classes]uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV}

func classOf(qtype uint16) int {
	switch qtype {
	case dns.TypeA:
		return classA
	case dns.TypeAAAA:
		return classAAAA
	}
	return classOther
}

// service is a service prepared for answering: its instances that DNS
// returns (not critical; only passing ones with only_passing), with their
// targets resolved for every address class.
type service struct {
	src  *snapshot.Service
	ttl  uint32
	inst []instance
	// ids counts the distinct keys of each kind, so that a question can
	// de-duplicate with a bitset instead of a map.
	ids [idKinds]int
	// bySrc finds an instance by its snapshot instance, for prepared
	// queries, when there are too many to scan; nil for few.
	bySrc map[*snapshot.Instance]int32
}

// Kinds of distinct keys within one service: addresses, SRV records (target
// and port), SRV targets (for glue) and nodes (for meta).
const (
	idAddr = iota
	idSRV
	idGlue
	idNode
	idKinds
	noZoneIdx = -1
)

type instance struct {
	src     *snapshot.Instance
	nodeKey string // the node's lower-case name, for its meta
	nodeID  int32
	weight  uint16
	// to is the target for each address class, nil for none. Classes that
	// pick the same address (no tagged lan_ipv4/lan_ipv6) share one.
	to [classes]*target
}

// target is where an instance is reached for one address class, the way
// Consul's DNS picks it (agent/dns.go makeNodeServiceRecords): the service's
// address, else its node's.
type target struct {
	ip   net.IP // nil for a hostname
	host string // the hostname, fully qualified, when ip is nil
	// alt is where a service whose hostname is the very name asked for is
	// reached instead: its node's address.
	alt *target
	// byNode: the target is named after the node (the service has no
	// address of its own and the node's was not replaced by a tagged one).
	byNode bool
	addrID int32 // distinct address within the service; -1 for a hostname
	// SRV (targets of class other): the keys that de-duplicate SRV records
	// and glue, and the target's name and glue in each zone.
	srvID, glueID int32
	srv           []srvTarget
}

type srvTarget struct {
	name string
	glue dns.RR // nil for a hostname, which resolves elsewhere
}

// node is a node prepared for answering: its meta as TXT strings, and as
// TXT records under its name in every zone, for every service TTL (SRV
// answers carry them as extra records).
type node struct {
	src *snapshot.Node
	// to is the node's address for each class: an IP, else a hostname.
	to  [classes]nodeAddress
	txt [][]string
	// meta is indexed by zone, then by the position of the TTL in View.ttls.
	meta [][]dns.RR
}

// NewView prepares snap for answering names in zones with opt. prev is the
// view served before, made with the same zones and options, or nil: services
// and nodes that did not change since keep what was built for them.
func NewView(snap *snapshot.Snapshot, prev *View, zones []string, opt Options) *View {
	prep := &preparer{opt: opt, dc: snap.Datacenter, ttls: opt.TTL.values()}
	for _, z := range zones {
		prep.zones = append(prep.zones, strings.ToLower(dns.Fqdn(z)))
	}
	if prev != nil && prev.prep.dc == prep.dc && slices.Equal(prev.prep.zones, prep.zones) {
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
	for _, svc := range snap.Services {
		if svc.Answers.Load(prep, svc) == nil {
			svc.Answers.Store(prep, svc, prep.service(svc))
		}
	}
	for _, n := range snap.Nodes {
		if n.Answers.Load(prep, n) == nil {
			n.Answers.Store(prep, n, prep.node(n))
		}
	}
	return v
}

// TTLOf is the TTL of the answers about a service.
func (v *View) TTLOf(service string) uint32 { return v.prep.opt.TTL.Service(snapshot.Key(service)) }

// service returns the prepared service of that lower-case name.
func (v *View) service(name string) (*service, bool) {
	svc, ok := v.Snap.Services[name]
	if !ok {
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
	if !ok {
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
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
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

type nodeAddress struct {
	ip   net.IP
	host string // fully qualified, when ip is nil; empty for no address
}

func (v *preparer) node(n *snapshot.Node) *node {
	p := &node{src: n}
	for c, qtype := range classTypes {
		addr := pickAddress(n.Address, n.TaggedAddresses, qtype)
		if ip := net.ParseIP(addr); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			p.to[c].ip = ip
		} else if addr != "" {
			p.to[c].host = dns.Fqdn(addr)
		}
	}
	if len(n.Meta) == 0 {
		return p
	}
	p.txt = metaStrings(n.Meta)
	p.meta = make([][]dns.RR, len(v.zones)*len(v.ttls))
	for zi, z := range v.zones {
		owner := n.Name + ".node." + v.dc + "." + z
		for ti, ttl := range v.ttls {
			p.meta[zi*len(v.ttls)+ti] = txtRecords(owner, p.txt, ttl)
		}
	}
	return p
}

// service resolves every instance's targets and names them in every zone.
// Instances whose key repeats get the same id, so that a question
// de-duplicates by comparing small integers. What it builds is kept for as
// long as the service is unchanged: it is laid out in a few slabs rather
// than many small values.
func (v *preparer) service(svc *snapshot.Service) *service {
	return v.serviceWith(svc, v.opt.TTL.Service(snapshot.Key(svc.Name)), func(in *snapshot.Instance) bool {
		return in.Health != snapshot.Critical && (!v.opt.OnlyPassing || in.Health == snapshot.Passing)
	})
}

// serviceWith prepares the instances of svc that keep accepts, with ttl.
func (v *preparer) serviceWith(svc *snapshot.Service, ttl uint32, keep func(*snapshot.Instance) bool) *service {
	p := &service{src: svc, ttl: ttl, inst: make([]instance, 0, len(svc.Instances))}
	b := serviceBuilder{preparer: v, ttl: p.ttl}
	b.targets = make([]target, 0, len(svc.Instances))
	b.srv = make([]srvTarget, 0, len(svc.Instances)*len(v.zones))
	for i := range svc.Instances {
		in := &svc.Instances[i]
		if !keep(in) {
			continue
		}
		pi := instance{src: in, nodeKey: snapshot.Key(in.Node), weight: v.weight(in)}
		pi.nodeID = b.nodeIDs.id(pi.nodeKey)
		var addrs [classes][2]string
		for c, qtype := range classTypes {
			addrs[c] = [2]string{pickAddress(in.Address, in.TaggedAddresses, qtype), pickAddress(in.NodeAddress, in.NodeTaggedAddresses, qtype)}
		}
		// The SRV target first: A and AAAA share it when they pick the same.
		pi.to[classOther] = b.resolve(in, classOther)
		for _, c := range [...]int{classA, classAAAA} {
			if addrs[c] == addrs[classOther] {
				pi.to[c] = pi.to[classOther]
			} else {
				pi.to[c] = b.resolve(in, c)
			}
		}
		p.inst = append(p.inst, pi)
	}
	p.ids = [idKinds]int{idAddr: b.addrIDs.count(), idSRV: b.srvIDs.count(), idGlue: b.glueIDs.count(), idNode: b.nodeIDs.count()}
	if len(p.inst) > idScanMax {
		p.bySrc = make(map[*snapshot.Instance]int32, len(p.inst))
		for i := range p.inst {
			p.bySrc[p.inst[i].src] = int32(i)
		}
	}
	return p
}

// serviceBuilder prepares the targets of one service.
type serviceBuilder struct {
	*preparer
	ttl     uint32
	addrIDs idAssigner[[16]byte]
	srvIDs  idAssigner[uint64] // glue id and port
	glueIDs idAssigner[string]
	nodeIDs idAssigner[string]
	targets []target    // a slab for the service's targets
	srv     []srvTarget // a slab for their names in every zone
}

func (b *serviceBuilder) newTarget(t target) *target {
	if len(b.targets) == cap(b.targets) {
		// A full slab is left to the targets it holds; pointers into it stay
		// valid.
		b.targets = make([]target, 0, max(4, cap(b.targets)))
	}
	b.targets = append(b.targets, t)
	return &b.targets[len(b.targets)-1]
}

// resolve picks an instance's target for an address class; nil for none.
func (b *serviceBuilder) resolve(in *snapshot.Instance, class int) *target {
	qtype := classTypes[class]
	svcAddr := pickAddress(in.Address, in.TaggedAddresses, qtype)
	nodeAddr := pickAddress(in.NodeAddress, in.NodeTaggedAddresses, qtype)
	switch {
	case svcAddr == "" && nodeAddr == "":
		return nil
	case svcAddr == "":
		ip := parseIP(nodeAddr)
		return b.named(in, class, target{ip: ip, host: nodeAddr, byNode: ip != nil && nodeAddr == in.NodeAddress})
	}
	t := target{ip: parseIP(svcAddr), host: svcAddr}
	if t.ip == nil {
		if ip := parseIP(nodeAddr); ip != nil {
			t.alt = b.named(in, class, target{ip: ip, host: nodeAddr, byNode: nodeAddr == in.NodeAddress})
		}
	}
	return b.named(in, class, t)
}

// parseIP parses an address to its 4-byte form for IPv4; nil when it is not
// an IP address.
func parseIP(s string) net.IP {
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return nil
	}
	return net.IP(addr.Unmap().AsSlice())
}

// named completes a target: its ids, and for class other, its SRV names and
// glue in every zone.
func (b *serviceBuilder) named(in *snapshot.Instance, class int, t target) *target {
	if t.ip == nil {
		t.host = dns.Fqdn(t.host)
		t.addrID = -1
	} else {
		t.addrID = b.addrIDs.id([16]byte(t.ip.To16()))
	}
	if class == classOther {
		start := len(b.srv)
		for _, z := range b.zones {
			b.srv = append(b.srv, b.srvTarget(in, &t, z, b.ttl))
		}
		t.srv = b.srv[start:len(b.srv):len(b.srv)]
		// Zones differ only in the suffix: one zone's names tell keys apart.
		key := t.host
		if len(t.srv) > 0 {
			key = t.srv[0].name
		}
		t.glueID = b.glueIDs.id(key)
		t.srvID = b.srvIDs.id(uint64(t.glueID)<<16 | uint64(in.Port))
	}
	return b.newTarget(t)
}

// srvTarget names a target the way Consul does: <node>.node.<dc>.<zone> when
// it is the node's own address, <hexip>.addr.<dc>.<zone> for any other
// address, and a hostname as itself; with its address as glue.
func (v *preparer) srvTarget(in *snapshot.Instance, t *target, zone string, ttl uint32) srvTarget {
	switch {
	case t.ip == nil:
		return srvTarget{name: t.host}
	case t.byNode:
		name := in.Node + ".node." + v.dc + "." + zone
		return srvTarget{name: name, glue: addressRR(name, t.ip, ttl)}
	}
	name := hexIP(t.ip) + ".addr." + v.dc + "." + zone
	return srvTarget{name: name, glue: addressRR(name, t.ip, ttl)}
}

// weight is the SRV weight Consul gives an instance: its Weights.Warning when
// the instance is warning, else Weights.Passing; 1 when unset; 0 when
// critical. Scaled for
// HAProxy when asked.
func (v *preparer) weight(in *snapshot.Instance) uint16 {
	if in.Health == snapshot.Critical {
		// Only a prepared query that ignores the failing check returns a
		// critical instance; Consul's findWeight gives it 0.
		return 0
	}
	w := in.WeightPassing
	if in.Health == snapshot.Warning {
		w = in.WeightWarning
	}
	w = max(w, 1)
	if v.opt.HAProxyWeights {
		w = w*256 - 1
	}
	return uint16(min(w, 65535))
}

// idAssigner numbers distinct keys from 0, in order of first appearance,
// while a service is prepared: by a scan while there are few (most
// services), by a map past that.
type idAssigner[K comparable] struct {
	keys []K
	m    map[K]int32
}

const idScanMax = 16

func (a *idAssigner[K]) id(key K) int32 {
	if a.m != nil {
		id, ok := a.m[key]
		if !ok {
			id = int32(len(a.m))
			a.m[key] = id
		}
		return id
	}
	for i, k := range a.keys {
		if k == key {
			return int32(i)
		}
	}
	if len(a.keys) < idScanMax {
		a.keys = append(a.keys, key)
		return int32(len(a.keys) - 1)
	}
	a.m = make(map[K]int32, 2*idScanMax)
	for i, k := range a.keys {
		a.m[k] = int32(i)
	}
	a.m[key] = int32(len(a.keys))
	a.keys = nil
	return a.m[key]
}

func (a *idAssigner[K]) count() int {
	if a.m != nil {
		return len(a.m)
	}
	return len(a.keys)
}

// metaStrings encodes node meta as TXT strings, one per key, as Consul does:
// key=value per RFC 1464, or the bare value for keys starting "rfc1035-".
// Keys are sorted so that answers are stable.
func metaStrings(meta map[string]string) [][]string {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]string, len(keys))
	for i, k := range keys {
		txt := encodeRFC1464(k, meta[k])
		if strings.HasPrefix(strings.ToLower(k), "rfc1035-") {
			txt = meta[k]
		}
		out[i] = []string{txt}
	}
	return out
}

// txtRecords builds a TXT record per string list, sharing the lists.
func txtRecords(owner string, txt [][]string, ttl uint32) []dns.RR {
	if len(txt) == 0 {
		return nil
	}
	recs := make([]dns.TXT, len(txt))
	out := make([]dns.RR, len(txt))
	for i := range txt {
		recs[i] = dns.TXT{Hdr: header(owner, dns.TypeTXT, ttl), Txt: txt[i]}
		out[i] = &recs[i]
	}
	return out
}

func encodeRFC1464(key, value string) string {
	key = strings.ReplaceAll(key, "`", "``")
	key = strings.ReplaceAll(key, "=", "`=")
	trimmed := strings.TrimLeft(key, " ")
	key = strings.Repeat("` ", len(key)-len(trimmed)) + trimmed
	trimmed = strings.TrimRight(key, " ")
	key = trimmed + strings.Repeat("` ", len(key)-len(trimmed))
	return key + "=" + strings.ReplaceAll(value, "`", "``")
}
