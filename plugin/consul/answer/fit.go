package answer

import (
	"math/rand/v2"
	"net"

	"github.com/miekg/dns"
)

// An answer is built only as far as the reply can carry it. The server
// fits every reply to the client (dns.Msg.Truncate keeps the records that
// fit, in order, and sets TC when it leaves one out), so building past that
// was work thrown away: 10,000 SRV records for a 512-byte reply. One record
// more than could ever fit is built, so that the server still sees the
// answer does not fit and sets TC, and what it keeps is what it kept before.

// Each record's smallest size on the wire, its owner (the question's name)
// compressed to a pointer: A 2+10+4, AAAA 2+10+16, SRV 2+10+6 and a target
// compressed to a pointer.
const (
	minA    = 16
	minAAAA = 28
	minSRV  = 20
	// headerSize is a message's header; a question adds its name and 4.
	headerSize = 12
	// sampleMin: services this small are answered from every instance, as
	// before. Past it, and past twice what fits, instances are drawn at
	// random until enough are found.
	sampleMin = 64
)

// fitMin is the fewest records fit gives: an answer of fewer is never cut
// short, and needs no look at the connection.
const fitMin = (dns.MinMsgSize-headerSize-256-4)/minAAAA + 1

// fit is how many answer records are worth building for the question: one
// more than the most that could fit in the reply; 0 for no bound.
func (b *builder) fit() int {
	size := b.q.Size
	if size <= 0 {
		return 0
	}
	if b.q.Conn != nil {
		if _, tcp := b.q.Conn.RemoteAddr().(*net.TCPAddr); tcp {
			size = dns.MaxMsgSize
		}
	}
	least := minA
	switch b.q.Type {
	case dns.TypeAAAA:
		least = minAAAA
	case dns.TypeSRV:
		least = minSRV
	}
	room := size - headerSize - (len(b.q.Name) + 1) - 4
	return max(room, 0)/least + 1
}

// sample draws instances of svc at random, without drawing one twice,
// until n of them each carry a record of their own for the question (a
// distinct address for A and AAAA, a distinct SRV target and port); nil
// when the draws run out first (many instances sharing few addresses, or
// reached by hostname), for the caller to take every instance instead.
// An address shared by several instances is drawn sooner than one that is
// not; among the instances each is as likely as any other.
func (b *builder) sample(svc *service, n int) []*instance {
	class := classOf(b.q.Type)
	kind := idAddr + class
	switch b.q.Type {
	case dns.TypeA, dns.TypeAAAA:
	case dns.TypeSRV:
		kind = idSRV
	default:
		return nil
	}
	// glued and seen are free until the records are built, which reset them.
	drawn, keys := &b.glued, &b.seen
	drawn.reset(len(svc.inst))
	keys.reset(svc.ids[kind])
	out := make([]*instance, 0, n)
	for tries := 8*n + 64; len(out) < n && tries > 0; tries-- {
		i := rand.IntN(len(svc.inst))
		if !drawn.add(i) {
			continue
		}
		in := &svc.inst[i]
		if t := b.target(in, class); t != nil && b.ownRecord(in, t, svc.ttl, kind, keys) {
			out = append(out, in)
		}
	}
	if len(out) < n {
		return nil
	}
	return out
}

// ownRecord reports whether t, in's target, carries a record for the
// question that no instance drawn before carried, marking it in keys.
func (b *builder) ownRecord(in *instance, t *target, ttl uint32, kind int, keys *bitset) bool {
	if kind == idSRV {
		return b.srvTarget(in, t, ttl).name != "" && keys.add(int(t.srvID))
	}
	return t.ip != nil && matches(t.ip, b.q.Type) && keys.add(int(t.addrID))
}
