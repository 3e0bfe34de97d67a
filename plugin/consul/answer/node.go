package answer

import (
	"net"
	"sort"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

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
	// dropped counts the records DNS cannot carry that were left out;
	// nil for none.
	dropped *drops
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
			host := dns.Fqdn(addr)
			if why := nameProblem(host); why != "" {
				p.drop(why, host)
				continue
			}
			p.to[c].host = host
		}
	}
	if len(n.Meta) == 0 {
		return p
	}
	p.txt = p.metaStrings(n.Meta)
	p.meta = make([][]dns.RR, len(v.zones)*len(v.ttls))
	for zi, z := range v.zones {
		owner := n.Name + ".node." + v.dc + "." + z
		if why := nameProblem(owner); why != "" {
			// No name to carry the meta under in this zone.
			p.drop(why, owner)
			continue
		}
		for ti, ttl := range v.ttls {
			p.meta[zi*len(v.ttls)+ti] = txtRecords(owner, p.txt, ttl)
		}
	}
	return p
}

func (p *node) drop(why, what string) {
	if p.dropped == nil {
		p.dropped = &drops{}
	}
	p.dropped.add(why, what)
}

// metaStrings encodes node meta as TXT records' strings, one record per key,
// as Consul does: key=value per RFC 1464, or the bare value for keys
// starting "rfc1035-", in 255-byte character-strings (Consul allows values
// of 512 bytes). Keys are sorted so that answers are stable.
func (p *node) metaStrings(meta map[string]string) [][]string {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]string, 0, len(keys))
	for _, k := range keys {
		txt := encodeRFC1464(k, meta[k])
		if strings.HasPrefix(strings.ToLower(k), "rfc1035-") {
			txt = meta[k]
		}
		if len(txt) > maxTXTData {
			p.drop(reasonLongTXT, k)
			continue
		}
		out = append(out, txtStrings(txt))
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
