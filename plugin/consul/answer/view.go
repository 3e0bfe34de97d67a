package answer

import (
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

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
	Snap  *snapshot.Snapshot
	prep  *preparer
	zones []zoneRecords
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
}

// Kinds of distinct keys within one service: addresses (one kind per class),
// SRV records (target and port), SRV targets (for glue) and nodes (for meta).
const (
	idAddr    = 0 // + class
	idSRV     = classes
	idGlue    = classes + 1
	idNode    = classes + 2
	idKinds   = classes + 3
	noZoneIdx = -1
)

type instance struct {
	src     *snapshot.Instance
	nodeKey string // the node's lower-case name, for its meta
	nodeID  int
	weight  uint16
	to      [classes]target
}

// target is where an instance is reached for one address class, the way
// Consul's DNS picks it (agent/dns.go makeNodeServiceRecords): the service's
// address, else its node's.
type target struct {
	ok   bool   // false when the instance has no address at all
	ip   net.IP // nil for a hostname
	host string // the hostname, fully qualified, when ip is nil
	// lower is host in lower case: a service whose address is the very name
	// asked for is reached at its node's address instead (alt).
	lower string
	alt   *target
	// byNode: the target is named after the node (the service has no
	// address of its own and the node's was not replaced by a tagged one).
	byNode bool
	addrID int // distinct address within the service and class; -1 for a hostname
	// SRV (class other only): the target's name and glue for each zone, and
	// the keys that de-duplicate them.
	srv    []srvTarget
	srvID  int
	glueID int
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
	v := &View{Snap: snap, prep: prep}
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

// service resolves every instance's targets and names them in every
// zone. Instances whose key repeats get the same id, so that a question
// de-duplicates by comparing small integers.
func (v *preparer) service(svc *snapshot.Service) *service {
	p := &service{src: svc, ttl: v.opt.TTL.Service(snapshot.Key(svc.Name))}
	ids := idAssigner{}
	for i := range svc.Instances {
		in := &svc.Instances[i]
		if in.Health == snapshot.Critical || (v.opt.OnlyPassing && in.Health != snapshot.Passing) {
			continue
		}
		pi := instance{src: in, nodeKey: snapshot.Key(in.Node), weight: v.weight(in)}
		pi.nodeID = ids.id(idNode, pi.nodeKey)
		for c := range classes {
			pi.to[c] = v.resolve(in, c, p.ttl, &ids)
		}
		p.inst = append(p.inst, pi)
	}
	p.ids = ids.counts()
	return p
}

// resolve picks an instance's target for an address class.
func (v *preparer) resolve(in *snapshot.Instance, class int, ttl uint32, ids *idAssigner) target {
	qtype := classTypes[class]
	svcAddr := pickAddress(in.Address, in.TaggedAddresses, qtype)
	nodeAddr := pickAddress(in.NodeAddress, in.NodeTaggedAddresses, qtype)
	var t target
	switch {
	case svcAddr == "" && nodeAddr == "":
		return target{addrID: -1}
	case svcAddr == "":
		ip := net.ParseIP(nodeAddr)
		t = target{ip: ip, host: nodeAddr, byNode: ip != nil && nodeAddr == in.NodeAddress}
	default:
		t = target{ip: net.ParseIP(svcAddr), host: svcAddr}
		if t.ip == nil {
			if ip := net.ParseIP(nodeAddr); ip != nil {
				alt := v.named(in, class, target{ip: ip, host: nodeAddr, byNode: nodeAddr == in.NodeAddress}, ttl, ids)
				t.alt = &alt
			}
		}
	}
	return v.named(in, class, t, ttl, ids)
}

// named completes a target: its canonical form, its ids, and for class
// other, its SRV names and glue in every zone.
func (v *preparer) named(in *snapshot.Instance, class int, t target, ttl uint32, ids *idAssigner) target {
	t.ok = true
	if v4 := t.ip.To4(); v4 != nil {
		t.ip = v4
	}
	if t.ip == nil {
		t.host = dns.Fqdn(t.host)
		t.lower = strings.ToLower(t.host)
		t.addrID = -1
	} else {
		t.addrID = ids.id(idAddr+class, string(t.ip))
	}
	if class != classOther {
		return t
	}
	t.srv = make([]srvTarget, len(v.zones))
	for zi, z := range v.zones {
		t.srv[zi] = v.srvTarget(in, t, z, ttl)
	}
	// Zones differ only in the suffix: one zone's names tell the keys apart.
	key := v.srvTarget(in, t, "", ttl).name
	t.glueID = ids.id(idGlue, key)
	t.srvID = ids.id(idSRV, key+":"+strconv.Itoa(int(in.Port)))
	return t
}

// srvTarget names a target the way Consul does: <node>.node.<dc>.<zone> when
// it is the node's own address, <hexip>.addr.<dc>.<zone> for any other
// address, and a hostname as itself; with its address as glue.
func (v *preparer) srvTarget(in *snapshot.Instance, t target, zone string, ttl uint32) srvTarget {
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
// the instance is warning, else Weights.Passing; 1 when unset. Scaled for
// HAProxy when asked.
func (v *preparer) weight(in *snapshot.Instance) uint16 {
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

// idAssigner numbers distinct keys of each kind from 0, in order of first
// appearance. It is used only while preparing.
type idAssigner struct {
	seen [idKinds]map[string]int
}

func (a *idAssigner) id(kind int, key string) int {
	if a.seen[kind] == nil {
		a.seen[kind] = make(map[string]int)
	}
	id, ok := a.seen[kind][key]
	if !ok {
		id = len(a.seen[kind])
		a.seen[kind][key] = id
	}
	return id
}

func (a *idAssigner) counts() (n [idKinds]int) {
	for k, m := range a.seen {
		n[k] = len(m)
	}
	return n
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
