package answer

import (
	"encoding/hex"
	"net"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/prepared"

	"github.com/miekg/dns"
)

// Kind is what a name inside the zone asks for.
type Kind uint8

// Kinds of names, after Consul's DNS interface.
const (
	KindInvalid Kind = iota // no such name: NXDOMAIN
	KindApex                // the zone itself
	KindEmpty               // a name above data, such as service.consul: NODATA
	KindService             // [tag.]service.service, _service._tag.service
	KindNode                // node.node
	KindAddr                // hexip.addr
	KindQuery               // name.query, _name._tag.query: a prepared query
	// KindPassOn names are Consul's (peers, ports, namespaces) but cannot be answered faithfully from the replica: the
	// next plugin gets them, typically forward to Consul's DNS.
	KindPassOn
	// KindPeerVirtual is <service>.virtual.<peer>[.peer]: the virtual IP of
	// a service imported from a cluster peer.
	KindPeerVirtual
)

// Name is a parsed name inside the zone.
type Name struct {
	Kind    Kind
	Service string // lower case
	Tag     string // lower case; empty for none
	Node    string // lower case
	IP      net.IP // for KindAddr
	Query   string // for KindQuery: the query's name or ID, lower case
	// Datacenter is the one named in the query, lower case; empty for the
	// replicated one.
	Datacenter string
	// Peer is the cluster peer named in the query (<peer>.peer, or a
	// <svc>.virtual name's one locality label), lower case; empty for none.
	Peer string
}

// parseName reads the labels of a name below the zone, lower case, in order
// (labels[0] is the leftmost), as Consul's DNS does (agent/dns.go dispatch).
// The rightmost type label (service, node, addr, ...) splits the name into
// the parts on its left and the locality on its right:
//
//	<service>.service          <tag...>.<service>.service
//	_<service>._<tag>.service  (RFC 2782; _tcp means no tag)
//	<node>.node                <hexip>.addr
//
// The locality is empty, <dc>, or pairs <x>.dc, <x>.peer, <x>.port (and
// Enterprise's <x>.ns, <x>.ap). A question for SRV whose first label starts
// with "_" is a service question even without the service label.
func parseName(labels []string, qtype uint16, name *Name) {
	// The name is filled in place: Name values in this frame and its
	// callees' would make a question's goroutine stack grow.
	*name = Name{}
	if len(labels) == 0 {
		name.Kind = KindApex
		return
	}
	typ := -1
	for i := len(labels) - 1; i >= 0; i-- {
		if isType(labels[i]) {
			typ = i
			break
		}
	}
	if typ < 0 {
		if qtype == dns.TypeSRV && strings.HasPrefix(labels[0], "_") {
			parseService(name, labels)
		}
		return
	}
	if labels[typ] == "query" && len(labels)-typ-1 > 1 {
		// Consul reads a query's locality as one datacenter label at most
		// (parseDatacenter): no <dc>.dc, no peer.
		return
	}
	if !parseLocality(labels[typ+1:], name) {
		*name = Name{}
		return
	}
	if name.Kind == KindPassOn {
		return
	}
	parts := labels[:typ]
	if labels[typ] == "virtual" && parsePeerVirtual(name, parts, labels[typ+1:]) {
		return
	}
	switch labels[typ] {
	case "service":
		parseService(name, parts)
	case "node":
		if len(parts) == 0 {
			name.Kind = KindEmpty
			return
		}
		name.Kind, name.Node = KindNode, strings.Join(parts, ".")
	case "addr":
		if len(parts) == 0 {
			name.Kind = KindEmpty
			return
		}
		if len(parts) == 1 {
			name.IP = parseHexIP(parts[0])
		}
		if name.IP == nil {
			*name = Name{}
			return
		}
		name.Kind = KindAddr
	case "query":
		if len(parts) == 0 {
			*name = Name{}
			return
		}
		name.Kind, name.Query = KindQuery, prepared.QueryName(parts)
	default: // connect, ingress, virtual
		parseMesh(name, labels[typ], parts)
	}
}

// parseLocality reads the labels right of the type label into name; false
// for a locality Consul does not read (agent/dns_ce.go parseLocality: a
// datacenter and a peer together are refused). Ports, namespaces and
// partitions are not replicated: such names are passed on.
func parseLocality(labels []string, name *Name) bool {
	switch len(labels) {
	case 0:
		return true
	case 1:
		name.Datacenter = labels[0]
		return true
	}
	if len(labels)%2 != 0 || len(labels) > 6 {
		return false
	}
	for i := 0; i < len(labels); i += 2 {
		switch labels[i+1] {
		case "dc":
			name.Datacenter = labels[i]
		case "peer":
			name.Peer = labels[i]
		case "port", "ns", "ap":
			name.Kind = KindPassOn
		default:
			return false
		}
	}
	return name.Datacenter == "" || name.Peer == ""
}

func isType(label string) bool {
	switch label {
	case "service", "node", "addr", "query", "connect", "ingress", "virtual":
		return true
	}
	return false
}

// parseService reads the labels left of "service" into name, which holds
// the locality already; a name that is not a service's is left invalid.
func parseService(name *Name, parts []string) {
	switch {
	case len(parts) == 0:
		name.Kind = KindEmpty
		return
	case len(parts) == 2 && strings.HasPrefix(parts[0], "_") && strings.HasPrefix(parts[1], "_"):
		// RFC 2782: _service._proto, where the protocol is Consul's tag,
		// except _tcp which means no tag.
		name.Service, name.Tag = parts[0][1:], parts[1][1:]
		if name.Tag == "tcp" {
			name.Tag = ""
		}
	default:
		name.Service = parts[len(parts)-1]
		name.Tag = strings.Join(parts[:len(parts)-1], ".")
	}
	if name.Service == "" {
		*name = Name{}
		return
	}
	name.Kind = KindService
}

// parseHexIP reads the address of <hexip>.addr: 8 hex digits for IPv4, 32 for IPv6.
func parseHexIP(label string) net.IP {
	if len(label) != 8 && len(label) != 32 {
		return nil
	}
	raw, err := hex.DecodeString(label)
	if err != nil {
		return nil
	}
	return net.IP(raw)
}
