package answer

import (
	"encoding/hex"
	"net"
	"sort"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// service answers [tag.]service.service and _service._tag.service.
func (b *builder) service(name Name) Result {
	svc, ok := b.snap.Service(name.Service)
	if !ok {
		return b.nxdomain()
	}
	instances := b.instances(svc, name.Tag)
	if len(instances) == 0 {
		return b.nxdomain()
	}
	ttl := b.opt.TTL.Service(name.Service)
	var res Result
	switch b.q.Type {
	case dns.TypeSRV:
		res.Answer, res.Extra = b.srvRecords(instances, ttl)
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		res.Answer = b.addressRecords(instances, ttl)
	default:
		// Consul answers TXT with the A records and other types with
		// NODATA; both get NODATA here, or the CNAME of a hostname.
		res.Answer = b.hostnameCNAME(instances, ttl)
	}
	if len(res.Answer) == 0 {
		return b.nodata()
	}
	return res
}

// target is where an instance is reached for a question of type qtype, the
// way Consul's DNS picks it (agent/dns.go makeNodeServiceRecords): the
// service's address, else its node's, each preferring its tagged lan_ipv6
// (for AAAA, SRV and ANY) or lan_ipv4 address.
type target struct {
	ip   net.IP // nil for a hostname
	host string // the hostname, or the address as text
	// byNode is true when the target is named after the node: the service
	// has no address of its own and the node's address was not replaced by
	// a tagged one.
	byNode bool
}

func (b *builder) target(in *snapshot.Instance) (target, bool) {
	svcAddr := pickAddress(in.Address, in.TaggedAddresses, b.q.Type)
	nodeAddr := pickAddress(in.NodeAddress, in.NodeTaggedAddresses, b.q.Type)
	switch {
	case svcAddr == "" && nodeAddr == "":
		return target{}, false
	case svcAddr == "":
		ip := net.ParseIP(nodeAddr)
		return target{ip: ip, host: nodeAddr, byNode: ip != nil && nodeAddr == in.NodeAddress}, true
	}
	if ip := net.ParseIP(svcAddr); ip != nil {
		return target{ip: ip, host: svcAddr}, true
	}
	if dns.Fqdn(strings.ToLower(svcAddr)) == b.q.Lower {
		// A service whose address is the very name asked for: its node's.
		if ip := net.ParseIP(nodeAddr); ip != nil {
			return target{ip: ip, host: nodeAddr, byNode: nodeAddr == in.NodeAddress}, true
		}
	}
	return target{host: svcAddr}, true
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

// addressRecords answers A, AAAA and ANY: one record per distinct address of
// the asked family. As in Consul, hostnames count only when no address does,
// and then as the CNAME of the first of them.
func (b *builder) addressRecords(instances []*snapshot.Instance, ttl uint32) []dns.RR {
	var out []dns.RR
	var seen smallSet[[16]byte]
	for _, in := range instances {
		t, ok := b.target(in)
		if !ok || t.ip == nil || !matches(t.ip, b.q.Type) || !seen.add([16]byte(t.ip.To16())) {
			continue
		}
		out = append(out, addressRR(b.q.Name, t.ip, ttl))
		if b.opt.ARecordLimit > 0 && len(out) == b.opt.ARecordLimit {
			break
		}
	}
	if len(out) == 0 {
		return b.hostnameCNAME(instances, ttl)
	}
	return out
}

// hostnameCNAME is the CNAME to the first instance reached by hostname.
func (b *builder) hostnameCNAME(instances []*snapshot.Instance, ttl uint32) []dns.RR {
	for _, in := range instances {
		if t, ok := b.target(in); ok && t.ip == nil {
			return []dns.RR{&dns.CNAME{Hdr: header(b.q.Name, dns.TypeCNAME, ttl), Target: dns.Fqdn(t.host)}}
		}
	}
	return nil
}

// srvRecords returns one SRV record per distinct target and port, with the
// target's address (and node meta) in the extra section under exactly the
// target's name: HAProxy pairs them by name, and sends one more query per
// server when they differ.
func (b *builder) srvRecords(instances []*snapshot.Instance, ttl uint32) (answer, extra []dns.RR) {
	type key struct {
		target string
		port   uint16
	}
	var seen smallSet[key]
	var extraFor smallSet[string] // targets with their address in extra
	var metaFor smallSet[string]  // nodes with their meta in extra
	for _, in := range instances {
		t, ok := b.target(in)
		if !ok {
			continue
		}
		name := b.srvTarget(in, t)
		if !seen.add(key{name, in.Port}) {
			continue
		}
		answer = append(answer, &dns.SRV{
			Hdr:      header(b.q.Name, dns.TypeSRV, ttl),
			Priority: 1,
			Weight:   b.weight(in),
			Port:     in.Port,
			Target:   name,
		})
		if t.ip != nil && extraFor.add(name) { // a hostname resolves elsewhere
			extra = append(extra, addressRR(name, t.ip, ttl))
		}
		// As Consul, the node's meta under the node's name, whatever the
		// target is named.
		if b.opt.NodeMetaTXT && metaFor.add(in.Node) {
			if node, ok := b.snap.Node(strings.ToLower(in.Node)); ok && len(node.Meta) > 0 {
				extra = append(extra, metaTXT(b.nodeName(in.Node), node.Meta, ttl)...)
			}
		}
	}
	return answer, extra
}

// srvTarget names a target the way Consul does: <node>.node.<dc>.<zone>
// when it is the node's own address, <hexip>.addr.<dc>.<zone> for any other
// address, and a hostname as itself.
func (b *builder) srvTarget(in *snapshot.Instance, t target) string {
	switch {
	case t.ip == nil:
		return dns.Fqdn(t.host)
	case t.byNode:
		return b.nodeName(in.Node)
	}
	return hexIP(t.ip) + ".addr." + b.snap.Datacenter + "." + b.q.Zone
}

// nodeName is a node's name in the zone: <node>.node.<dc>.<zone>.
func (b *builder) nodeName(node string) string {
	return node + ".node." + b.snap.Datacenter + "." + b.q.Zone
}

func hexIP(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return hex.EncodeToString(v4)
	}
	return hex.EncodeToString(ip.To16())
}

// weight is the SRV weight Consul gives an instance: its Weights.Warning when
// the instance is warning, else Weights.Passing; 1 when unset. Scaled for
// HAProxy when asked.
func (b *builder) weight(in *snapshot.Instance) uint16 {
	w := in.WeightPassing
	if in.Health == snapshot.Warning {
		w = in.WeightWarning
	}
	w = max(w, 1)
	if b.opt.HAProxyWeights {
		w = w*256 - 1
	}
	return uint16(min(w, 65535))
}

// node answers <node>.node: its address for A, AAAA and ANY, its meta as TXT
// for TXT and ANY, and as extra records for A and AAAA.
func (b *builder) node(name Name) Result {
	node, ok := b.snap.Node(name.Node)
	if !ok {
		return b.nxdomain()
	}
	ttl := b.opt.TTL.Node
	var res Result
	switch b.q.Type {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		addr := pickAddress(node.Address, node.TaggedAddresses, b.q.Type)
		if ip := net.ParseIP(addr); ip != nil {
			if matches(ip, b.q.Type) {
				res.Answer = append(res.Answer, addressRR(b.q.Name, ip, ttl))
			}
		} else if addr != "" {
			res.Answer = append(res.Answer, &dns.CNAME{Hdr: header(b.q.Name, dns.TypeCNAME, ttl), Target: dns.Fqdn(addr)})
		}
		if b.q.Type == dns.TypeANY {
			res.Answer = append(res.Answer, metaTXT(b.q.Name, node.Meta, ttl)...)
		} else if b.opt.NodeMetaTXT {
			res.Extra = metaTXT(b.q.Name, node.Meta, ttl)
		}
	case dns.TypeTXT:
		res.Answer = metaTXT(b.q.Name, node.Meta, ttl)
	}
	// Consul answers a node's NODATA without the SOA.
	return res
}

// addr answers <hexip>.addr with the address it encodes, whatever the
// datacenter label says, as Consul does. The owner is lower case, as
// Consul's; a question of the other family gets the record as extra.
func (b *builder) addr(name Name) Result {
	rr := addressRR(b.q.Lower, name.IP, b.opt.TTL.Node)
	if b.q.Type == rr.Header().Rrtype || b.q.Type == dns.TypeANY {
		return Result{Answer: []dns.RR{rr}}
	}
	return Result{Extra: []dns.RR{rr}}
}

// metaTXT encodes node meta as TXT records, one per key, as Consul does:
// key=value per RFC 1464, or the bare value for keys starting "rfc1035-".
// Keys are sorted so that answers are stable.
func metaTXT(owner string, meta map[string]string, ttl uint32) []dns.RR {
	if len(meta) == 0 {
		return nil
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]dns.RR, 0, len(keys))
	for _, k := range keys {
		txt := encodeRFC1464(k, meta[k])
		if strings.HasPrefix(strings.ToLower(k), "rfc1035-") {
			txt = meta[k]
		}
		out = append(out, &dns.TXT{Hdr: header(owner, dns.TypeTXT, ttl), Txt: []string{txt}})
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
