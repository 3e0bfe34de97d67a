package answer

import (
	"encoding/hex"
	"net"
	"net/netip"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

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
	dropped *drops      // what DNS cannot carry; nil for nothing
}

// drop counts a record left out: why, and the name that could not be.
func (b *serviceBuilder) drop(why, name string) {
	if b.dropped == nil {
		b.dropped = &drops{}
	}
	b.dropped.add(why, name)
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
		if why := nameProblem(t.host); why != "" {
			// Neither an SRV target nor a CNAME can name it.
			b.drop(why, t.host)
			return nil
		}
		t.addrID = -1
	} else {
		t.addrID = b.addrIDs.id([16]byte(t.ip.To16()))
	}
	if class == classOther {
		start := len(b.srv)
		key := ""
		for _, z := range b.zones {
			st := b.srvTarget(in, &t, z, b.ttl)
			if why := nameProblem(st.name); why != "" {
				// Left out of this zone's SRV answers only: the
				// instance keeps its A and AAAA records.
				b.drop(why, st.name)
				st = srvTarget{}
			} else if key == "" {
				key = st.name
			}
			b.srv = append(b.srv, st)
		}
		t.srv = b.srv[start:len(b.srv):len(b.srv)]
		// Zones differ only in the suffix: one zone's names tell keys
		// apart. A target named in no zone is in no answer: any key that
		// is its own will do.
		if key == "" {
			key = "\x00" + in.Node + "\x00" + t.host
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
	name := hexIP(t.ip) + ".addr." + v.addrLoc + zone
	return srvTarget{name: name, glue: addressRR(name, t.ip, ttl)}
}

func hexIP(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return hex.EncodeToString(v4)
	}
	return hex.EncodeToString(ip.To16())
}

// pickAddress chooses among an address and its tagged lan_ipv4/lan_ipv6
// variants as Consul's translateAddressAccept does for a question type.
func pickAddress(addr string, tagged map[string]string, qtype uint16) string {
	if qtype != dns.TypeA {
		if v6 := tagged["lan_ipv6"]; v6 != "" {
			return v6
		}
	}
	if qtype != dns.TypeAAAA {
		if v4 := tagged["lan_ipv4"]; v4 != "" {
			return v4
		}
	}
	return addr
}

// node answers <node>.node: its address for A, AAAA and ANY, its meta as TXT
// for TXT and ANY, and as extra records for A and AAAA.
func (b *builder) node(name *Name) Result {
	if !nodeType(b.q.Type) {
		// Consul answers other types before it looks the node up
		// (handleNodeQuery): NOERROR, nothing, even for no such node.
		return Result{}
	}
	n, ok := b.v.node(name.Node)
	if !ok {
		return b.nxdomain()
	}
	ttl := b.opt.TTL.Node
	var res Result
	switch b.q.Type {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		addr := n.to[classOf(b.q.Type)]
		if addr.ip != nil {
			if matches(addr.ip, b.q.Type) {
				res.Answer = append(res.Answer, addressRR(b.q.Name, addr.ip, ttl))
			}
		} else if addr.host != "" {
			res.Answer = append(res.Answer, &dns.CNAME{Hdr: header(b.q.Name, dns.TypeCNAME, ttl), Target: addr.host})
		}
		if b.q.Type == dns.TypeANY {
			res.Answer = append(res.Answer, txtRecords(b.q.Name, n.txt, ttl)...)
		} else if b.opt.NodeMetaTXT {
			res.Extra = txtRecords(b.q.Name, n.txt, ttl)
		}
	case dns.TypeTXT:
		res.Answer = txtRecords(b.q.Name, n.txt, ttl)
	}
	// Consul answers a node's NODATA without the SOA.
	return res
}

// addr answers <hexip>.addr with the address it encodes, whatever the
// datacenter label says, as Consul does. The owner is lower case, as
// Consul's; a question of the other family gets the record as extra.
func (b *builder) addr(name *Name) Result {
	rr := addressRR(b.q.Lower, name.IP, b.opt.TTL.Node)
	if b.q.Type == rr.Header().Rrtype || b.q.Type == dns.TypeANY {
		return Result{Answer: []dns.RR{rr}}
	}
	return Result{Extra: []dns.RR{rr}}
}

// nodeType reports whether Consul looks a node up for a question of qtype.
func nodeType(qtype uint16) bool {
	switch qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY, dns.TypeTXT:
		return true
	}
	return false
}
