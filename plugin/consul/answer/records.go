package answer

import (
	"math/rand/v2"
	"net"
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// service answers [tag.]service.service and _service._tag.service.
// The result is left in b.res: a Result returned through every frame
// would make a question's goroutine stack grow.
func (b *builder) service(name *Name) {
	svc, ok := b.v.service(name.Service)
	if !ok {
		b.res = b.nxdomain()
		return
	}
	if name.Tag == "" && len(svc.inst) > sampleMin {
		if n := b.fit(); n > 0 && len(svc.inst) > 2*n {
			if picked := b.sample(svc, n); picked != nil {
				b.records(svc, picked)
				return
			}
		}
	}
	b.records(svc, svc.pick(name.Tag, b.picked[:0]))
}

// QueryAnswer answers q, a prepared query's name, with the instances the
// query chose, in the order it chose them (nearest first when it sorts by
// distance), with ttl; v is the view of the datacenter they are in. As
// Consul, no instance is NXDOMAIN.
func QueryAnswer(v *View, q *Question, service string, insts []*snapshot.Instance, ttl uint32) Result {
	b := newBuilder(v, q)
	defer b.release()
	b.inOrder = true
	if len(insts) == 0 {
		return b.nxdomain()
	}
	// Usually every chosen instance is one the service's prepared records
	// already cover, at the query's TTL: the question only picks them, in
	// the query's order, as a service question does.
	if svc, ok := v.service(snapshot.Key(service)); ok && svc.ttl == ttl {
		if picked := svc.lookup(insts, b.picked[:0]); picked != nil {
			b.records(svc, picked)
			return b.res
		}
	}
	// Otherwise (another TTL, or a critical instance whose failing check
	// the query ignores) the chosen instances are prepared as they are,
	// not filtered again.
	chosen := &snapshot.Service{Name: service, Instances: make([]snapshot.Instance, len(insts))}
	for i, in := range insts {
		chosen.Instances[i] = *in
	}
	svc := v.prep.serviceWith(chosen, ttl, func(*snapshot.Instance) bool { return true })
	picked := make([]*instance, len(svc.inst))
	for i := range svc.inst {
		picked[i] = &svc.inst[i]
	}
	b.records(svc, picked)
	return b.res
}

// lookup appends to out the prepared instances of insts, which point into
// the snapshot the service was prepared from, in their order; nil when one
// of them is not prepared (an instance DNS would not return).
func (s *service) lookup(insts []*snapshot.Instance, out []*instance) []*instance {
	for _, in := range insts {
		i := -1
		if s.bySrc != nil {
			if j, ok := s.bySrc[in]; ok {
				i = int(j)
			}
		} else {
			for j := range s.inst {
				if s.inst[j].src == in {
					i = j
					break
				}
			}
		}
		if i < 0 {
			return nil
		}
		out = append(out, &s.inst[i])
	}
	return out
}

// records answers with the records of picked, instances of svc, into b.res.
func (b *builder) records(svc *service, picked []*instance) {
	if len(picked) == 0 {
		b.res = b.nxdomain()
		return
	}
	res := &b.res
	switch b.q.Type {
	case dns.TypeSRV:
		res.Answer, res.Extra = b.srvRecords(svc, picked)
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		res.Answer = b.addressRecords(svc, picked)
	default:
		// Consul answers TXT with the A records and other types with
		// NODATA; both get NODATA here, or the CNAME of a hostname.
		res.Answer = b.hostnameCNAME(svc.ttl, picked)
	}
	if len(res.Answer) == 0 {
		*res = b.nodata()
	}
}

// pick appends the instances DNS returns with the tag (all for none), in
// catalog order: answers shuffle what they build from them.
func (s *service) pick(tag string, buf []*instance) []*instance {
	for i := range s.inst {
		if tag == "" || hasTag(s.inst[i].src.Tags, tag) {
			buf = append(buf, &s.inst[i])
		}
	}
	return buf
}

// target is where in is reached for this question; nil for nowhere.
func (b *builder) target(in *instance, class int) *target {
	t := in.to[class]
	if t != nil && t.alt != nil && strings.EqualFold(t.host, b.q.Lower) {
		// A service whose address is the very name asked for: its node's.
		return t.alt
	}
	return t
}

// addressRecords answers A, AAAA and ANY: one record per distinct address of
// the asked family, in random order. As in Consul, hostnames count only when
// no address does, and then as the CNAME of one of them.
func (b *builder) addressRecords(svc *service, picked []*instance) []dns.RR {
	class := classOf(b.q.Type)
	seen := &b.seen
	seen.reset(svc.ids[idAddr+class])
	ts := b.targets[:0]
	v4 := 0
	for _, in := range picked {
		t := b.target(in, class)
		if t == nil || t.ip == nil || !matches(t.ip, b.q.Type) || !seen.add(int(t.addrID)) {
			continue
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return b.hostnameCNAME(svc.ttl, picked)
	}
	if !b.inOrder {
		shuffle(ts)
	}
	if limit := b.opt.ARecordLimit; limit > 0 && len(ts) > limit {
		ts = ts[:limit]
	}
	if len(ts) > fitMin {
		if n := b.fit(); n > 0 && len(ts) > n {
			ts = ts[:n]
		}
	}
	for _, t := range ts {
		if len(t.ip) == net.IPv4len {
			v4++
		}
	}
	out := make([]dns.RR, len(ts))
	var as []dns.A
	var aaaas []dns.AAAA
	if v4 > 0 {
		as = make([]dns.A, 0, v4)
	}
	if v4 < len(ts) {
		aaaas = make([]dns.AAAA, 0, len(ts)-v4)
	}
	for i, t := range ts {
		if len(t.ip) == net.IPv4len {
			as = append(as, dns.A{Hdr: header(b.q.Name, dns.TypeA, svc.ttl), A: t.ip})
			out[i] = &as[len(as)-1]
		} else {
			aaaas = append(aaaas, dns.AAAA{Hdr: header(b.q.Name, dns.TypeAAAA, svc.ttl), AAAA: t.ip})
			out[i] = &aaaas[len(aaaas)-1]
		}
	}
	return out
}

// hostnameCNAME is the CNAME to one of the instances reached by hostname.
func (b *builder) hostnameCNAME(ttl uint32, picked []*instance) []dns.RR {
	class := classOf(b.q.Type)
	hosts := 0
	for _, in := range picked {
		if t := b.target(in, class); t != nil && t.ip == nil {
			hosts++
		}
	}
	if hosts == 0 {
		return nil
	}
	n := rand.IntN(hosts)
	for _, in := range picked {
		if t := b.target(in, class); t != nil && t.ip == nil {
			if n == 0 {
				return []dns.RR{&dns.CNAME{Hdr: header(b.q.Name, dns.TypeCNAME, ttl), Target: t.host}}
			}
			n--
		}
	}
	return nil
}

// srvRecords returns one SRV record per distinct target and port, in random
// order, with the target's address (and node meta) in the extra section
// under exactly the target's name: HAProxy pairs them by name, and sends one
// more query per server when they differ. Extra records follow the order of
// the answers, so that an answer cut to fit keeps the glue of what it keeps.
func (b *builder) srvRecords(svc *service, picked []*instance) (answer, extra []dns.RR) {
	seen := &b.seen
	seen.reset(svc.ids[idSRV])
	pairs := b.pairs[:0]
	for _, in := range picked {
		t := b.target(in, classOther)
		if t != nil && b.srvTarget(in, t, svc.ttl).name != "" && seen.add(int(t.srvID)) {
			pairs = append(pairs, pair{in, t})
		}
	}
	if len(pairs) == 0 {
		return nil, nil
	}
	if !b.inOrder {
		shuffle(pairs)
	}
	if len(pairs) > fitMin {
		if n := b.fit(); n > 0 && len(pairs) > n {
			pairs = pairs[:n]
		}
	}

	ttl := svc.ttl
	ttlIdx := slices.Index(b.v.prep.ttls, ttl)
	// Two passes, the first to size the extra section.
	if _, n := b.srvExtra(svc, pairs, ttl, ttlIdx, nil); n > 0 {
		extra, _ = b.srvExtra(svc, pairs, ttl, ttlIdx, make([]dns.RR, 0, n))
	}
	recs := make([]dns.SRV, len(pairs))
	answer = make([]dns.RR, len(pairs))
	for i, p := range pairs {
		recs[i] = dns.SRV{Hdr: header(b.q.Name, dns.TypeSRV, ttl), Priority: 1, Weight: p.in.weight, Port: p.in.src.Port, Target: b.srvTarget(p.in, p.t, ttl).name}
		answer[i] = &recs[i]
	}
	return answer, extra
}

// pair is an instance and its target for one question.
type pair struct {
	in *instance
	t  *target
}

// srvExtra appends the extra records of SRV answers to out, if out is not
// nil, and counts them: each target's glue once, and each node's meta once.
func (b *builder) srvExtra(svc *service, pairs []pair, ttl uint32, ttlIdx int, out []dns.RR) ([]dns.RR, int) {
	n := 0
	glued, metaFor := &b.glued, &b.by
	glued.reset(svc.ids[idGlue])
	metaFor.reset(svc.ids[idNode])
	for _, p := range pairs {
		if st := b.srvTarget(p.in, p.t, ttl); st.glue != nil && glued.add(int(p.t.glueID)) {
			n++
			if out != nil {
				out = append(out, st.glue)
			}
		}
		// As Consul, the node's meta under the node's name, whatever the
		// target is named.
		if b.opt.NodeMetaTXT && metaFor.add(int(p.in.nodeID)) {
			meta := b.nodeMeta(p.in, ttl, ttlIdx)
			n += len(meta)
			if out != nil {
				out = append(out, meta...)
			}
		}
	}
	return out, n
}

// srvTarget is a target's SRV name and glue in the question's zone.
func (b *builder) srvTarget(in *instance, t *target, ttl uint32) srvTarget {
	if b.zi != noZoneIdx {
		return t.srv[b.zi]
	}
	return b.srvTargetBuilt(in, t, ttl)
}

// srvTargetBuilt is srvTarget in a zone not prepared: rare, and in a frame
// of its own. A name DNS cannot carry is empty, as a prepared one.
//
//go:noinline
func (b *builder) srvTargetBuilt(in *instance, t *target, ttl uint32) srvTarget {
	st := b.v.prep.srvTarget(in.src, t, b.zone.name, ttl)
	if nameProblem(st.name) != "" {
		return srvTarget{}
	}
	return st
}

// nodeMeta is the meta of in's node as TXT records, shared.
func (b *builder) nodeMeta(in *instance, ttl uint32, ttlIdx int) []dns.RR {
	n, ok := b.v.node(in.nodeKey)
	if !ok || len(n.txt) == 0 {
		return nil
	}
	if b.zi != noZoneIdx && ttlIdx >= 0 {
		return n.meta[b.zi*len(b.v.prep.ttls)+ttlIdx]
	}
	return b.nodeMetaBuilt(in, n, ttl)
}

// nodeMetaBuilt is nodeMeta for a zone or TTL not prepared: rare, and in a
// frame of its own, whose size would make every SRV question's stack grow.
//
//go:noinline
func (b *builder) nodeMetaBuilt(in *instance, n *node, ttl uint32) []dns.RR {
	owner := in.src.Node + ".node." + b.v.prep.dc + "." + b.zone.name
	if nameProblem(owner) != "" {
		return nil
	}
	return txtRecords(owner, n.txt, ttl)
}
