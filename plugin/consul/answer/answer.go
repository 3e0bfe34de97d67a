// Package answer turns a DNS question into records, read from a snapshot of
// the Consul catalog, following the rules of Consul's own DNS interface
// (agent/dns.go in Consul 1.22). It knows nothing about Consul's HTTP API.
package answer

import (
	"math/rand/v2"
	"net"
	"strings"
	"sync"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// Question is a DNS question inside one of the plugin's zones.
type Question struct {
	// Name is the question's name as asked, so its case is echoed back.
	Name string
	// Lower is Name in lower case, as CoreDNS's request.Name() gives it.
	Lower string
	Zone  string // the matched zone, lower case, fully qualified
	Type  uint16
	// Size is the most the reply may take over UDP (512 bytes without
	// EDNS0, the advertised size with it): records past it are not built.
	// 0 for no bound.
	Size int
	// Conn is where the question came from: over TCP the reply may take
	// 64 KiB. Read only for an answer that may not fit, since a test's
	// writer allocates an address for each call; nil for UDP.
	Conn interface{ RemoteAddr() net.Addr }
}

// Result is what the answer builder found for a question.
type Result struct {
	Rcode  int
	Answer []dns.RR
	Extra  []dns.RR
	// Ns carries the zone's SOA on negative answers (NXDOMAIN and NODATA) so
	// resolvers can cache them for the SOA minimum, per RFC 2308.
	Ns []dns.RR
	// PassOn asks for the question to go to the next plugin: a name of
	// Consul's that the replica cannot answer faithfully.
	PassOn bool
}

// Options are the answer settings from the Corefile.
type Options struct {
	TTL TTLs
	// OnlyPassing leaves out warning instances too, as Consul's only_passing.
	OnlyPassing bool
	// ARecordLimit caps the A/AAAA records of a service answer; 0 for none.
	ARecordLimit int
	// SOAMinTTL is the SOA's minimum field and TTL: how long resolvers may
	// cache a negative answer.
	SOAMinTTL uint32
	// SOARefresh, SOARetry and SOAExpire are the SOA's other timers, as
	// Consul's dns_config.soa.
	SOARefresh, SOARetry, SOAExpire uint32
	// Domain, when set, is the zone whose SOA answers an SOA question for
	// the apex of another zone: Consul names the SOA of its alt_domain's
	// apex after its domain (a name under the alt_domain gets the
	// alt_domain's). Lower case, fully qualified.
	Domain string
	// NodeMetaTXT adds a node's meta as TXT records to the additional
	// section, as Consul's enable_additional_node_meta_txt (on by default).
	NodeMetaTXT bool
	// HAProxyWeights scales SRV weights for HAProxy, which turns an SRV
	// weight w into the server weight w/256+1: Consul's weights 1 and 10
	// would both become 1. Scaled to w*256-1, HAProxy recovers w exactly.
	HAProxyWeights bool
}

// DefaultOptions are Consul's defaults.
func DefaultOptions() Options {
	return Options{NodeMetaTXT: true, SOARefresh: 3600, SOARetry: 600, SOAExpire: 86400}
}

// Equal reports whether o and p answer alike.
func (o *Options) Equal(p *Options) bool {
	return o.OnlyPassing == p.OnlyPassing && o.ARecordLimit == p.ARecordLimit && o.NodeMetaTXT == p.NodeMetaTXT &&
		o.HAProxyWeights == p.HAProxyWeights && o.Domain == p.Domain && o.SOAMinTTL == p.SOAMinTTL &&
		o.SOARefresh == p.SOARefresh && o.SOARetry == p.SOARetry && o.SOAExpire == p.SOAExpire && o.TTL.equal(&p.TTL)
}

// Parse reads what q's name asks for into name.
func Parse(q *Question, name *Name) {
	rel := strings.TrimSuffix(strings.TrimSuffix(q.Lower, q.Zone), ".")
	var buf [8]string
	parseName(splitLabels(rel, buf[:0]), q.Type, name)
}

// Lookup answers q from v.
func Lookup(v *View, q Question) Result {
	var name Name
	Parse(&q, &name)
	return answer(v, &q, &name)
}

// Answer answers q, whose name Parse read as name, from v (the view of the
// datacenter name is in), into res.
func Answer(v *View, q *Question, name *Name, res *Result) {
	*res = answer(v, q, name)
}

// answer is Answer's, returning: one Result in the caller's frame, not one
// per callee (see builder on stack growth).
func answer(v *View, q *Question, name *Name) Result {
	b := newBuilder(v, q)
	defer b.release()
	if name.Datacenter != "" && name.Datacenter != v.Snap.Datacenter && name.Kind != KindAddr {
		// Not this view's datacenter, and the caller has no other: Consul
		// answers NXDOMAIN for a datacenter it has no path to.
		return b.nxdomain()
	}
	if name.Peer != v.Snap.Peer && name.Kind != KindAddr && name.Kind != KindPassOn {
		return b.peerMismatch(name)
	}
	switch name.Kind {
	case KindApex:
		return b.apex()
	case KindEmpty:
		return b.nodata()
	case KindService:
		b.service(name)
		return b.res
	case KindNode:
		return b.node(name)
	case KindAddr:
		return b.addr(name)
	case KindConnect, KindIngress:
		b.mesh(name)
		return b.res
	case KindVirtual:
		return b.virtual(name)
	case KindPeerVirtual:
		return b.peerVirtual(name)
	case KindPassOn, KindQuery:
		// Prepared queries are run by the caller, which knows every
		// datacenter (QueryAnswer).
		return Result{PassOn: true}
	}
	return b.nxdomain()
}

// NameError is the NXDOMAIN answer to q from v: for a name in a datacenter
// Consul does not know.
func NameError(v *View, q *Question, res *Result) {
	z, _ := v.zone(q.Zone)
	*res = Result{Rcode: dns.RcodeNameError, Ns: z.negative}
}

// splitLabels appends the labels of rel, left to right, to buf: a question
// splits into a few labels, which fit the caller's array without allocating.
// An escaped dot (\.) is part of its label, as in dns.SplitDomainName.
func splitLabels(rel string, buf []string) []string {
	if rel == "" {
		return buf
	}
	start := 0
	for i := 0; i < len(rel); i++ {
		switch rel[i] {
		case '\\':
			i++ // the escaped byte, or the first digit of \DDD: no dot
		case '.':
			buf = append(buf, rel[start:i])
			start = i + 1
		}
	}
	return append(buf, rel[start:])
}

// Escaped reports whether the byte at i in name, a name in presentation
// format, is escaped: after an odd number of backslashes.
func Escaped(name string, i int) bool {
	n := 0
	for i--; i >= 0 && name[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// builder answers one question. Builders are pooled, with their scratch
// space and the result: CoreDNS runs each question on a new goroutine, whose
// stack starts small and is copied each time it grows. With arrays and
// Results in the frames of the request path it grew once more per question
// than whoami's: 7-11% of CoreDNS's CPU under dnsperf load, in copystack.
type builder struct {
	v    *View
	snap *snapshot.Snapshot
	q    Question
	opt  *Options
	zone *zoneRecords
	zi   int // the zone's index in the view, or noZoneIdx
	// inOrder keeps the order of the instances given (a prepared query's)
	// instead of shuffling.
	inOrder bool

	res Result // what service and records found

	// Scratch for one answer: most services have at most 16 instances.
	picked          [16]*instance
	pairs           [16]pair
	targets         [16]*target
	seen, glued, by bitset
}

var builders = sync.Pool{New: func() any { return new(builder) }}

// newBuilder is a builder for q from v; release gives it back.
func newBuilder(v *View, q *Question) *builder {
	b := builders.Get().(*builder)
	b.v, b.snap, b.q, b.opt = v, v.Snap, *q, &v.prep.opt
	b.zone, b.zi = v.zone(q.Zone)
	b.inOrder = false
	return b
}

// release returns b to the pool, holding on to no snapshot.
func (b *builder) release() {
	b.v, b.snap, b.opt, b.zone = nil, nil, nil, nil
	b.res = Result{}
	clear(b.picked[:])
	clear(b.pairs[:])
	clear(b.targets[:])
	builders.Put(b)
}

func (b *builder) nxdomain() Result {
	return Result{Rcode: dns.RcodeNameError, Ns: b.zone.negative}
}

func (b *builder) nodata() Result {
	return Result{Rcode: dns.RcodeSuccess, Ns: b.zone.negative}
}

// soa is the zone's SOA, shaped like Consul's. Its serial is the replicated
// Consul index, so it moves when the data does (Consul's moves every second).
func (b *builder) soa() dns.RR { return b.zone.negative[0] }

// apex answers the zone's own name: SOA and NS, with the NS records' glue.
func (b *builder) apex() Result {
	switch b.q.Type {
	case dns.TypeSOA:
		ns, glue := b.nameservers()
		soa := b.soa()
		if d := b.opt.Domain; d != "" && d != b.zone.name {
			z, _ := b.v.zone(d)
			soa = z.negative[0]
		}
		return Result{Answer: []dns.RR{soa}, Ns: ns, Extra: glue}
	case dns.TypeNS:
		ns, glue := b.nameservers()
		return Result{Answer: ns, Extra: glue}
	}
	return b.nodata()
}

// nameservers are, as in Consul, up to three healthy Consul servers, named
// <node>.node.<dc>.<zone>, with their addresses as glue.
func (b *builder) nameservers() (ns, glue []dns.RR) {
	zone := b.zone.name
	ttl := b.opt.TTL.Node
	if svc, ok := b.snap.Service("consul"); ok {
		for _, in := range b.instances(svc, "") {
			target := strings.ToLower(in.Node) + ".node." + b.snap.Datacenter + "." + zone
			if nameProblem(target) != "" {
				continue
			}
			ns = append(ns, &dns.NS{Hdr: header(zone, dns.TypeNS, ttl), Ns: target})
			if ip := net.ParseIP(in.NodeAddress); ip != nil {
				glue = append(glue, addressRR(target, ip, ttl))
			}
			if len(ns) == 3 {
				break
			}
		}
	}
	if len(ns) == 0 {
		ns = append(ns, &dns.NS{Hdr: header(zone, dns.TypeNS, ttl), Ns: "ns." + zone})
	}
	return ns, glue
}

// instances returns the instances of svc that Consul's DNS would return:
// not critical (not warning either with only_passing), with the tag if one
// is asked for, in random order.
func (b *builder) instances(svc *snapshot.Service, tag string) []*snapshot.Instance {
	out := make([]*snapshot.Instance, 0, len(svc.Instances))
	for i := range svc.Instances {
		in := &svc.Instances[i]
		if in.Health == snapshot.Critical || (b.opt.OnlyPassing && in.Health != snapshot.Passing) {
			continue
		}
		if tag != "" && !hasTag(in.Tags, tag) {
			continue
		}
		out = append(out, in)
	}
	shuffle(out)
	return out
}

// shuffle puts s in random order. Up to 16 elements it draws one random
// number and reads it as digits of falling bases: 16! is 2^-20 of 2^64, so
// no order is favoured by more than that. rand.Shuffle draws one per
// element, in frames deep enough to make a question's goroutine stack grow.
func shuffle[T any](s []T) {
	if len(s) > 16 {
		rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		return
	}
	r := rand.Uint64()
	for i := len(s) - 1; i > 0; i-- {
		n := uint64(i + 1)
		j := r % n
		r /= n
		s[i], s[j] = s[j], s[i]
	}
}

func hasTag(tags []string, tag string) bool {
	for _, t := range tags {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

func header(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// addressRR is an A record for an IPv4 address, else an AAAA record.
func addressRR(name string, ip net.IP, ttl uint32) dns.RR {
	if v4 := ip.To4(); v4 != nil {
		return &dns.A{Hdr: header(name, dns.TypeA, ttl), A: v4}
	}
	return &dns.AAAA{Hdr: header(name, dns.TypeAAAA, ttl), AAAA: ip}
}

// matches reports whether ip can answer a question of type qtype: A wants
// IPv4, AAAA IPv6, and every other type takes either.
func matches(ip net.IP, qtype uint16) bool {
	switch qtype {
	case dns.TypeA:
		return ip.To4() != nil
	case dns.TypeAAAA:
		return ip.To4() == nil
	}
	return true
}
