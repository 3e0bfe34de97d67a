package answer

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestParseName reads every name form of Consul's DNS interface, as
// CoreDNS's kubernetes/parse_test.go does for its own names.
func TestParseName(t *testing.T) {
	tests := []struct {
		name  string // below the zone, lower case, no trailing dot
		qtype uint16
		want  Name
	}{
		// the apex and the names above data
		{"", dns.TypeSOA, Name{Kind: KindApex}},
		{"service", dns.TypeA, Name{Kind: KindEmpty}},
		{"node", dns.TypeA, Name{Kind: KindEmpty}},
		{"addr", dns.TypeA, Name{Kind: KindEmpty}},
		{"service.dc1", dns.TypeA, Name{Kind: KindEmpty, Datacenter: "dc1"}},

		// services, tags, RFC 2782
		{"web.service", dns.TypeA, Name{Kind: KindService, Service: "web"}},
		{"v1.web.service", dns.TypeA, Name{Kind: KindService, Service: "web", Tag: "v1"}},
		{"a.b.web.service", dns.TypeA, Name{Kind: KindService, Service: "web", Tag: "a.b"}},
		{"_web._tcp.service", dns.TypeSRV, Name{Kind: KindService, Service: "web"}},
		{"_web._v1.service", dns.TypeSRV, Name{Kind: KindService, Service: "web", Tag: "v1"}},
		{"_web._tcp", dns.TypeSRV, Name{Kind: KindService, Service: "web"}},
		{"_web._tcp", dns.TypeA, Name{}},
		{"_.service", dns.TypeSRV, Name{Kind: KindService, Service: "_"}},
		{"__._tcp.service", dns.TypeSRV, Name{Kind: KindService, Service: "_"}},

		// datacenters: .<dc> and .<dc>.dc
		{"web.service.dc1", dns.TypeA, Name{Kind: KindService, Service: "web", Datacenter: "dc1"}},
		{"web.service.dc2.dc", dns.TypeA, Name{Kind: KindService, Service: "web", Datacenter: "dc2"}},
		{"_web._tcp.service.dc2", dns.TypeSRV, Name{Kind: KindService, Service: "web", Datacenter: "dc2"}},
		{"web.service.a.b.c", dns.TypeA, Name{}},
		{"web.service.dc2.xx", dns.TypeA, Name{}},

		// nodes and addresses
		{"n1.node", dns.TypeA, Name{Kind: KindNode, Node: "n1"}},
		{"n1.node.dc1", dns.TypeA, Name{Kind: KindNode, Node: "n1", Datacenter: "dc1"}},
		{"host.example.node", dns.TypeA, Name{Kind: KindNode, Node: "host.example"}},
		{"0a000001.addr", dns.TypeA, Name{Kind: KindAddr, IP: net.IPv4(10, 0, 0, 1).To4()}},
		{"0a000001.addr.dc9", dns.TypeA, Name{Kind: KindAddr, IP: net.IPv4(10, 0, 0, 1).To4(), Datacenter: "dc9"}},
		{"20010db8000000000000000000000001.addr", dns.TypeAAAA, Name{Kind: KindAddr, IP: net.ParseIP("2001:db8::1")}},
		{"0a0000zz.addr", dns.TypeA, Name{}},
		{"0a00001.addr", dns.TypeA, Name{}},
		{"a.0a000001.addr", dns.TypeA, Name{}},

		// mesh names: the service is the label next to the type; a virtual
		// IP's one locality label is a peer, <dc>.dc is ignored
		{"web.connect", dns.TypeA, Name{Kind: KindConnect, Service: "web"}},
		{"x.web.connect.dc2", dns.TypeSRV, Name{Kind: KindConnect, Service: "web", Datacenter: "dc2"}},
		{"connect", dns.TypeA, Name{}},
		{"web.ingress.dc1.dc", dns.TypeA, Name{Kind: KindIngress, Service: "web", Datacenter: "dc1"}},
		{"web.virtual", dns.TypeA, Name{Kind: KindVirtual, Service: "web"}},
		{"web.virtual.dc1", dns.TypeA, Name{Kind: KindPeerVirtual, Service: "web", Peer: "dc1"}}, // one label: a peer
		{"web.virtual.dc1.dc", dns.TypeA, Name{Kind: KindVirtual, Service: "web"}},
		{"web.virtual.p1.peer", dns.TypeA, Name{Kind: KindPeerVirtual, Service: "web", Peer: "p1"}},

		// names passed on: what the replica cannot answer faithfully
		{"geo.query", dns.TypeA, Name{Kind: KindQuery, Query: "geo"}},
		{"_geo._tcp.query", dns.TypeSRV, Name{Kind: KindQuery, Query: "geo"}},
		{"_geo._v1.query.dc2", dns.TypeSRV, Name{Kind: KindQuery, Query: "geo", Datacenter: "dc2"}},
		{"a.b.query.dc2", dns.TypeA, Name{Kind: KindQuery, Query: "a.b", Datacenter: "dc2"}},
		{"geo.query.dc2.dc", dns.TypeA, Name{}},     // Consul: one datacenter label at most
		{"geo.query.other.peer", dns.TypeA, Name{}}, // no peers either
		{"8a7c2cb2-7e7e-4b0d-9d3b-0123456789ab.query", dns.TypeA, Name{Kind: KindQuery, Query: "8a7c2cb2-7e7e-4b0d-9d3b-0123456789ab"}},
		{"query", dns.TypeA, Name{}}, // no query name
		{"web.service.ns1.ns.dc1.dc", dns.TypeA, Name{Kind: KindPassOn, Datacenter: "dc1"}},
		{"web.service.p1.ap", dns.TypeA, Name{Kind: KindPassOn}},
		{"web.service.8080.port", dns.TypeA, Name{Kind: KindPassOn}},

		// the rightmost type label wins; malformed names are NXDOMAIN
		{"service.web.service", dns.TypeA, Name{Kind: KindService, Service: "web", Tag: "service"}},
		{"web", dns.TypeA, Name{}},
		{"web.nothing", dns.TypeA, Name{}},
		{"a.b.c.d.e.f.g.h.service.x.dc.y.peer.z.ns.w.ap", dns.TypeA, Name{}},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			var buf [16]string
			got := Name{Kind: KindNode, Node: "left over"} // parseName must not keep any of it
			parseName(splitLabels(tc.name, buf[:0]), tc.qtype, &got)
			if got.Kind != tc.want.Kind || got.Service != tc.want.Service || got.Tag != tc.want.Tag ||
				got.Node != tc.want.Node || !got.IP.Equal(tc.want.IP) || got.Datacenter != tc.want.Datacenter || got.Peer != tc.want.Peer {
				t.Errorf("parseName(%q) = %+v, want %+v", tc.name, got, tc.want)
			}
		})
	}
}

func TestSplitLabels(t *testing.T) {
	for _, name := range []string{
		"", "a", "a.b", "_web._tcp.service", strings.Repeat("x.", 40) + "y",
		`we\.b.service`, `a\\.b`, `a\\\.b.c`, `a\046b.c`,
	} {
		var buf [16]string
		got := splitLabels(name, buf[:0])
		// As miekg/dns splits a name: an escaped dot is inside a label.
		want := dns.SplitDomainName(name)
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("splitLabels(%q) = %q, want %q", name, got, want)
		}
	}
}
