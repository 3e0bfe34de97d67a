package answer

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// TestParsePeerNames reads the peer forms as Consul 1.22's dispatch and
// parseLocality do.
func TestParsePeerNames(t *testing.T) {
	tests := []struct {
		name  string
		qtype uint16
		want  Name
	}{
		{"web.service.a.peer", dns.TypeA, Name{Kind: KindService, Service: "web", Peer: "a"}},
		{"v1.web.service.a.peer", dns.TypeA, Name{Kind: KindService, Service: "web", Tag: "v1", Peer: "a"}},
		{"_web._tcp.service.a.peer", dns.TypeSRV, Name{Kind: KindService, Service: "web", Peer: "a"}},
		{"n1.node.a.peer", dns.TypeA, Name{Kind: KindNode, Node: "n1", Peer: "a"}},
		{"web.service.a.peer.dc1.dc", dns.TypeA, Name{}}, // a datacenter and a peer: refused
		{"web.service.8080.port.a.peer", dns.TypeA, Name{Kind: KindPassOn, Peer: "a"}},
		{"web.virtual.a.peer", dns.TypeA, Name{Kind: KindPeerVirtual, Service: "web", Peer: "a"}},
		{"web.virtual.a", dns.TypeA, Name{Kind: KindPeerVirtual, Service: "web", Peer: "a"}},
		{"x.web.virtual.a", dns.TypeA, Name{Kind: KindPeerVirtual, Service: "web", Peer: "a"}},
		{"web.virtual.dc1.dc", dns.TypeA, Name{Kind: KindVirtual, Service: "web"}}, // Consul ignores <dc>.dc: virtual IPs are per datacenter
		{"virtual.a", dns.TypeA, Name{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf [16]string
			var got Name
			parseName(splitLabels(tc.name, buf[:0]), tc.qtype, &got)
			if got.Kind != tc.want.Kind || got.Service != tc.want.Service || got.Tag != tc.want.Tag ||
				got.Node != tc.want.Node || got.Datacenter != tc.want.Datacenter || got.Peer != tc.want.Peer {
				t.Errorf("parseName(%q) = %+v, want %+v", tc.name, got, tc.want)
			}
		})
	}
}

// peerView is a view of the services imported from peer "a": one instance
// on its node's address, one with an address of its own, one critical.
func peerView(t *testing.T) *View {
	t.Helper()
	snap := snapshot.New("dc1", 5, map[string]*snapshot.Service{"web": {Name: "web", Index: 5, Instances: []snapshot.Instance{
		{ID: "w1", Node: "exp", NodeAddress: "10.0.0.1", Port: 80, NodeMeta: map[string]string{"rack": "r1"}},
		{ID: "w2", Node: "exp", NodeAddress: "10.0.0.1", Address: "10.0.0.2", Port: 81},
		{ID: "w3", Node: "exp", NodeAddress: "10.0.0.1", Address: "10.0.0.3", Port: 82, Health: snapshot.Critical},
	}}, "web-sidecar-proxy": {Name: "web-sidecar-proxy", Index: 5, Instances: []snapshot.Instance{
		{ID: "p1", Node: "exp", NodeAddress: "10.0.0.1", Port: 8443, TaggedAddresses: map[string]string{virtualTag: "240.0.0.1"}},
	}}}, map[string]*snapshot.Node{"exp": {Name: "exp", Address: "10.0.0.1", Meta: map[string]string{"rack": "r1"}}}, time.Unix(0, 0))
	snap.Peer = "a"
	return NewView(snap, nil, []string{"consul."}, DefaultOptions())
}

func ask(v *View, name string, qtype uint16) Result {
	return Lookup(v, Question{Name: name, Lower: strings.ToLower(name), Zone: "consul.", Type: qtype})
}

// TestPeerAnswers: SRV targets of a peer's instances are named as Consul
// names them: <node>.node.<peer>.peer and <hexip>.addr without a
// datacenter, with the node's meta as TXT.
func TestPeerAnswers(t *testing.T) {
	v := peerView(t)
	res := ask(v, "_web._tcp.service.a.peer.consul.", dns.TypeSRV)
	var targets []string
	for _, rr := range res.Answer {
		targets = append(targets, rr.(*dns.SRV).Target)
	}
	want := map[string]bool{"exp.node.a.peer.consul.": true, "0a000002.addr.consul.": true}
	if len(targets) != 2 || !want[targets[0]] || !want[targets[1]] {
		t.Errorf("SRV targets %v, want %v", targets, want)
	}
	txt := false
	for _, rr := range res.Extra {
		if t, ok := rr.(*dns.TXT); ok && t.Hdr.Name == "exp.node.a.peer.consul." && t.Txt[0] == "rack=r1" {
			txt = true
		}
	}
	if !txt {
		t.Errorf("no node meta TXT for exp.node.a.peer.consul. in %v", res.Extra)
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		n     int
	}{
		{"web.service.a.peer.consul.", dns.TypeA, dns.RcodeSuccess, 2},
		{"nope.service.a.peer.consul.", dns.TypeA, dns.RcodeNameError, 0},
		{"web.service.b.peer.consul.", dns.TypeA, dns.RcodeNameError, 0},
		{"web.service.consul.", dns.TypeA, dns.RcodeNameError, 0},
		{"exp.node.a.peer.consul.", dns.TypeA, dns.RcodeSuccess, 1},
		{"web.virtual.a.consul.", dns.TypeA, dns.RcodeSuccess, 1},
		{"web.virtual.a.peer.consul.", dns.TypeA, dns.RcodeSuccess, 1},
		{"web.virtual.b.consul.", dns.TypeA, dns.RcodeSuccess, 0},
		{"nope.virtual.a.consul.", dns.TypeA, dns.RcodeSuccess, 0},
		{"web-sidecar-proxy.virtual.a.consul.", dns.TypeA, dns.RcodeSuccess, 0},
	} {
		res := ask(v, tc.name, tc.qtype)
		if res.Rcode != tc.rcode || len(res.Answer) != tc.n {
			t.Errorf("%s: rcode %d with %d answers, want %d with %d", tc.name, res.Rcode, len(res.Answer), tc.rcode, tc.n)
		}
	}
}

// TestPeerVirtualOtherType: Consul puts the virtual IP in the additional
// section for a question of another type, its owner in lower case.
func TestPeerVirtualOtherType(t *testing.T) {
	res := ask(peerView(t), "Web.Virtual.A.consul.", dns.TypeAAAA)
	if len(res.Answer) != 0 || len(res.Extra) != 1 {
		t.Fatalf("answer %v extra %v, want one extra record", res.Answer, res.Extra)
	}
	a, ok := res.Extra[0].(*dns.A)
	if !ok || a.Hdr.Name != "web.virtual.a.consul." || !a.A.Equal(net.IPv4(240, 0, 0, 1)) || res.Ns != nil {
		t.Errorf("extra %v ns %v", res.Extra, res.Ns)
	}
}

// TestNodeOtherTypes: Consul answers a node question of a type other than
// A, AAAA, ANY and TXT before looking the node up: NOERROR and nothing,
// for a node that does not exist too, and in a peer it does not know.
func TestNodeOtherTypes(t *testing.T) {
	v := peerView(t)
	local := NewView(snapshot.New("dc1", 1, nil, nil, time.Unix(0, 0)), nil, []string{"consul."}, DefaultOptions())
	for _, tc := range []struct {
		v     *View
		name  string
		qtype uint16
		rcode int
	}{
		{v, "exp.node.a.peer.consul.", dns.TypeSRV, dns.RcodeSuccess},
		{v, "nope.node.a.peer.consul.", dns.TypeSRV, dns.RcodeSuccess},
		{v, "nope.node.a.peer.consul.", dns.TypeA, dns.RcodeNameError},
		{local, "nope.node.zz.peer.consul.", dns.TypeSRV, dns.RcodeSuccess},
		{local, "nope.node.zz.peer.consul.", dns.TypeA, dns.RcodeNameError},
		{local, "nope.node.consul.", dns.TypeMX, dns.RcodeSuccess},
	} {
		res := ask(tc.v, tc.name, tc.qtype)
		if res.Rcode != tc.rcode || len(res.Answer) != 0 || (tc.rcode == dns.RcodeSuccess && res.Ns != nil) {
			t.Errorf("%s %s: rcode %d, answer %v, ns %v; want rcode %d, nothing", tc.name, dns.TypeToString[tc.qtype], res.Rcode, res.Answer, res.Ns, tc.rcode)
		}
	}
}
