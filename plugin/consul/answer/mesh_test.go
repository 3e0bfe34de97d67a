package answer

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// meshCatalog has a service with two sidecar proxies (one critical), a
// Connect-native service with its own address, an ingress gateway exposing
// web, and a proxy service answering for two destinations.
func meshCatalog() map[string]*snapshot.Service {
	proxy := func(id, node, addr, dest, vip string, h snapshot.Health) snapshot.Instance {
		return snapshot.Instance{ID: id, Node: node, NodeAddress: addr, Port: 21000, WeightPassing: 1, Health: h,
			TaggedAddresses: map[string]string{snapshot.VirtualIPTag: vip},
			Mesh:            &snapshot.Mesh{Kind: snapshot.KindConnectProxy, Destination: dest}}
	}
	return map[string]*snapshot.Service{
		"web": web(80),
		"web-sidecar-proxy": {Name: "web-sidecar-proxy", Instances: []snapshot.Instance{
			proxy("web-1-sidecar", "n1", "10.0.0.1", "web", "240.0.0.1", snapshot.Passing),
			proxy("web-2-sidecar", "n2", "10.0.0.2", "web", "240.0.0.1", snapshot.Critical),
		}},
		"shared-proxy": {Name: "shared-proxy", Instances: []snapshot.Instance{
			proxy("a-proxy", "n4", "10.0.0.4", "a", "240.0.0.3", snapshot.Warning),
			proxy("b-proxy", "n4", "10.0.0.4", "b", "2001:db8::f0", snapshot.Passing),
		}},
		"nat": {Name: "nat", Instances: []snapshot.Instance{{ID: "nat-1", Node: "n2", NodeAddress: "10.0.0.2",
			Address: "10.1.1.1", Port: 8443, WeightPassing: 1, TaggedAddresses: map[string]string{snapshot.VirtualIPTag: "240.0.0.2"},
			Mesh: &snapshot.Mesh{Native: true}}}},
		"ig": {Name: "ig", Instances: []snapshot.Instance{{ID: "ig-1", Node: "n3", NodeAddress: "10.0.0.3", Port: 8888,
			WeightPassing: 1, Mesh: &snapshot.Mesh{Kind: snapshot.KindIngressGateway}}}},
	}
}

func meshView(services map[string]*snapshot.Service, ingress []*snapshot.Gateway, prev *View, opt Options) *View {
	snap := catalog(services, nil)
	snap.Ingress, snap.IngressRead = ingress, true
	return NewView(snap, prev, zones, opt)
}

// rrStrings are rrs as text, sorted: answers are shuffled.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// TestMeshAnswers answers every mesh name form as Consul 1.22.5's DNS does
// (checked against a dev agent with the same registrations).
func TestMeshAnswers(t *testing.T) {
	ingress := []*snapshot.Gateway{{Name: "ig", Services: []string{"api", "web"}}}
	v := meshView(meshCatalog(), ingress, nil, DefaultOptions())
	const soa = 1 // authority: the SOA alone
	tests := []struct {
		name        string
		qtype       uint16
		rcode       int
		answer, ext []string
		ns          int
	}{
		// the passing proxy only, on its node; TTL the service's
		{"web.connect.consul.", dns.TypeA, 0, []string{"web.connect.consul.\t0\tIN\tA\t10.0.0.1"}, nil, 0},
		{"WEB.connect.dc1.consul.", dns.TypeSRV, 0, []string{"WEB.connect.dc1.consul.\t0\tIN\tSRV\t1 1 21000 n1.node.dc1.consul."},
			[]string{"n1.node.dc1.consul.\t0\tIN\tA\t10.0.0.1"}, 0},
		{"web.connect.consul.", dns.TypeAAAA, 0, nil, nil, soa},
		// Connect-native: the service itself, by its own address
		{"nat.connect.consul.", dns.TypeSRV, 0, []string{"nat.connect.consul.\t0\tIN\tSRV\t1 1 8443 0a010101.addr.dc1.consul."},
			[]string{"0a010101.addr.dc1.consul.\t0\tIN\tA\t10.1.1.1"}, 0},
		// one proxy service, two destinations; a warning proxy is answered
		{"a.connect.consul.", dns.TypeA, 0, []string{"a.connect.consul.\t0\tIN\tA\t10.0.0.4"}, nil, 0},
		{"b.connect.consul.", dns.TypeSRV, 0, []string{"b.connect.consul.\t0\tIN\tSRV\t1 1 21000 n4.node.dc1.consul."},
			[]string{"n4.node.dc1.consul.\t0\tIN\tA\t10.0.0.4"}, 0},
		{"ig.connect.consul.", dns.TypeA, dns.RcodeNameError, nil, nil, soa},
		{"nope.connect.consul.", dns.TypeA, dns.RcodeNameError, nil, nil, soa},
		{"web.connect.dc9.consul.", dns.TypeA, dns.RcodeNameError, nil, nil, soa},

		// the gateways exposing the service, at their registered port
		{"web.ingress.consul.", dns.TypeSRV, 0, []string{"web.ingress.consul.\t0\tIN\tSRV\t1 1 8888 n3.node.dc1.consul."},
			[]string{"n3.node.dc1.consul.\t0\tIN\tA\t10.0.0.3"}, 0},
		{"api.ingress.consul.", dns.TypeA, 0, []string{"api.ingress.consul.\t0\tIN\tA\t10.0.0.3"}, nil, 0},
		{"nat.ingress.consul.", dns.TypeA, dns.RcodeNameError, nil, nil, soa},

		// the virtual IP: in the answer for its family (and ANY), else in
		// the additional section; NOERROR without an SOA otherwise
		{"web.virtual.consul.", dns.TypeA, 0, []string{"web.virtual.consul.\t0\tIN\tA\t240.0.0.1"}, nil, 0},
		{"Web.Virtual.consul.", dns.TypeANY, 0, []string{"web.virtual.consul.\t0\tIN\tA\t240.0.0.1"}, nil, 0},
		{"web.virtual.consul.", dns.TypeSRV, 0, nil, []string{"web.virtual.consul.\t0\tIN\tA\t240.0.0.1"}, 0},
		{"web.virtual.consul.", dns.TypeAAAA, 0, nil, []string{"web.virtual.consul.\t0\tIN\tA\t240.0.0.1"}, 0},
		{"nat.virtual.dc1.dc.consul.", dns.TypeA, 0, []string{"nat.virtual.dc1.dc.consul.\t0\tIN\tA\t240.0.0.2"}, nil, 0},
		{"b.virtual.consul.", dns.TypeAAAA, 0, []string{"b.virtual.consul.\t0\tIN\tAAAA\t2001:db8::f0"}, nil, 0},
		{"b.virtual.consul.", dns.TypeA, 0, nil, []string{"b.virtual.consul.\t0\tIN\tAAAA\t2001:db8::f0"}, 0},
		{"web.virtual.dc1.consul.", dns.TypeA, 0, nil, nil, 0}, // dc1 read as a peer
		{"web-sidecar-proxy.virtual.consul.", dns.TypeA, 0, nil, nil, 0},
		{"nope.virtual.consul.", dns.TypeA, 0, nil, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name+dns.TypeToString[tc.qtype], func(t *testing.T) {
			res := Lookup(v, Question{Name: tc.name, Lower: lower(tc.name), Zone: "consul.", Type: tc.qtype})
			if res.PassOn || res.Rcode != tc.rcode || len(res.Ns) != tc.ns ||
				!slices.Equal(rrStrings(res.Answer), tc.answer) || !slices.Equal(rrStrings(res.Extra), tc.ext) {
				t.Errorf("got rcode %d pass on %v answer %q extra %q ns %d\nwant rcode %d answer %q extra %q ns %d",
					res.Rcode, res.PassOn, rrStrings(res.Answer), rrStrings(res.Extra), len(res.Ns), tc.rcode, tc.answer, tc.ext, tc.ns)
			}
		})
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// TestMeshOptions: only_passing leaves warning proxies out; a service TTL
// set for the destination is the connect answer's; a virtual IP has the
// node TTL, as in Consul.
func TestMeshOptions(t *testing.T) {
	opt := DefaultOptions()
	opt.OnlyPassing = true
	opt.TTL.Node = 7
	if err := opt.TTL.SetService("b", 9); err != nil {
		t.Fatal(err)
	}
	v := meshView(meshCatalog(), nil, nil, opt)
	if res := Lookup(v, Question{Name: "a.connect.consul.", Lower: "a.connect.consul.", Zone: "consul.", Type: dns.TypeA}); res.Rcode != dns.RcodeNameError {
		t.Errorf("a warning proxy with only_passing: rcode %d, want NXDOMAIN", res.Rcode)
	}
	if res := Lookup(v, Question{Name: "b.connect.consul.", Lower: "b.connect.consul.", Zone: "consul.", Type: dns.TypeA}); len(res.Answer) != 1 || res.Answer[0].Header().Ttl != 9 {
		t.Errorf("b.connect: %v, want one A record with b's TTL 9", res.Answer)
	}
	if res := Lookup(v, Question{Name: "web.virtual.consul.", Lower: "web.virtual.consul.", Zone: "consul.", Type: dns.TypeA}); len(res.Answer) != 1 || res.Answer[0].Header().Ttl != 7 {
		t.Errorf("web.virtual: %v, want one A record with the node TTL 7", res.Answer)
	}
}

// TestMeshIngressUnknown: a listener exposing "*" covers services the
// replica cannot tell, and entries not read (an older snapshot file, a
// token that may not read them) cover nothing known: an ingress name no
// known gateway exposes goes on, one a gateway exposes is answered; with
// no ingress gateway registered at all, no name is exposed.
func TestMeshIngressUnknown(t *testing.T) {
	wildcard := meshView(meshCatalog(), []*snapshot.Gateway{{Name: "ig", Services: []string{"*", "web"}}}, nil, DefaultOptions())
	unread := NewView(catalog(meshCatalog(), nil), nil, zones, DefaultOptions())
	noGateway := meshCatalog()
	delete(noGateway, "ig")
	unreadNoGateway := NewView(catalog(noGateway, nil), nil, zones, DefaultOptions())
	for _, tc := range []struct {
		v      *View
		name   string
		passOn bool
	}{{wildcard, "web", false}, {wildcard, "api", true}, {unread, "web", true}, {unreadNoGateway, "web", false}} {
		q := tc.name + ".ingress.consul."
		if res := Lookup(tc.v, Question{Name: q, Lower: q, Zone: "consul.", Type: dns.TypeA}); res.PassOn != tc.passOn {
			t.Errorf("%s: %+v, want passed on %v", q, res, tc.passOn)
		}
	}
}

// TestMeshSharesUnchanged: a publish prepares again only the mesh names
// whose proxies or gateways changed.
func TestMeshSharesUnchanged(t *testing.T) {
	services := meshCatalog()
	v1 := meshView(services, nil, nil, DefaultOptions())
	services = maps.Clone(services)
	old := services["nat"]
	nat := &snapshot.Service{Name: old.Name, Instances: slices.Clone(old.Instances)}
	nat.Instances[0].Port = 9443
	services["nat"] = nat
	v2 := meshView(services, nil, v1, DefaultOptions())
	if v1.mesh.connect["web"] != v2.mesh.connect["web"] {
		t.Error("web's unchanged proxies were prepared again")
	}
	if v1.mesh.connect["nat"] == v2.mesh.connect["nat"] {
		t.Fatal("nat changed but kept what was prepared for its old value")
	}
	if got := srv(t, v2, "nat.connect.consul.").Answer[0].(*dns.SRV).Port; got != 9443 {
		t.Errorf("nat.connect SRV port %d, want 9443", got)
	}

	// A change outside the mesh keeps the whole index; a new proxy, or
	// a service now named by a gateway's entry, does not.
	services = maps.Clone(services)
	services["web"] = web(81)
	v3 := meshView(services, nil, v2, DefaultOptions())
	if v3.mesh != v2.mesh {
		t.Error("a change outside the mesh derived the mesh names again")
	}
	services = maps.Clone(services)
	services["db-sidecar-proxy"] = &snapshot.Service{Name: "db-sidecar-proxy", Instances: []snapshot.Instance{{ID: "db-1-sidecar",
		Node: "n1", NodeAddress: "10.0.0.1", Port: 21000, Mesh: &snapshot.Mesh{Kind: snapshot.KindConnectProxy, Destination: "db"}}}}
	v4 := meshView(services, nil, v3, DefaultOptions())
	if _, ok := v4.mesh.connect["db"]; !ok {
		t.Error("a new proxy's destination is not answered")
	}
	services = maps.Clone(services)
	services["plain-gw"] = web(82)
	v5 := meshView(services, []*snapshot.Gateway{{Name: "plain-gw", Services: []string{"db"}}}, v4, DefaultOptions())
	v6 := meshView(services, []*snapshot.Gateway{{Name: "plain-gw", Services: []string{"db"}}}, v5, DefaultOptions())
	services = maps.Clone(services)
	services["plain-gw"] = web(83)
	v7 := meshView(services, []*snapshot.Gateway{{Name: "plain-gw", Services: []string{"db"}}}, v6, DefaultOptions())
	if v6.mesh != v5.mesh || v7.mesh == v6.mesh {
		t.Error("a gateway named by an entry is not followed by identity")
	}
	if got := srv(t, v7, "db.ingress.consul.").Answer[0].(*dns.SRV).Port; got != 83 {
		t.Errorf("db.ingress SRV port %d, want the changed gateway's 83", got)
	}
}

// TestMeshTerminating: a terminating gateway answers <svc>.connect for the
// services it links, beside their proxies, and carries their virtual IPs
// (consul-virtual:<svc>), as a 1.22.5 agent shows; unread entries, a
// wildcard, or a linked service whose virtual IP is not shown yet go on.
func TestMeshTerminating(t *testing.T) {
	services := meshCatalog()
	services["tg"] = &snapshot.Service{Name: "tg", Instances: []snapshot.Instance{{ID: "tg-1", Node: "n6", NodeAddress: "10.0.0.6",
		Port: 8443, WeightPassing: 1, Mesh: &snapshot.Mesh{Kind: snapshot.KindTerminatingGateway},
		TaggedAddresses: map[string]string{snapshot.VirtualIPTag + ":legacy": "240.0.0.3", snapshot.VirtualIPTag + ":web": "240.0.0.1"}}}}
	snap := catalog(services, nil)
	snap.Terminating, snap.TerminatingRead = []*snapshot.Gateway{{Name: "tg", Services: []string{"legacy", "new", "web"}}}, true
	v := NewView(snap, nil, zones, DefaultOptions())
	unread := NewView(catalog(services, nil), nil, zones, DefaultOptions())
	tests := []struct {
		v      *View
		name   string
		qtype  uint16
		passOn bool
		answer []string
	}{
		{v, "web.connect.consul.", dns.TypeA, false, []string{"web.connect.consul.\t0\tIN\tA\t10.0.0.1", "web.connect.consul.\t0\tIN\tA\t10.0.0.6"}},
		{v, "legacy.connect.consul.", dns.TypeSRV, false, []string{"legacy.connect.consul.\t0\tIN\tSRV\t1 1 8443 n6.node.dc1.consul."}},
		{v, "legacy.virtual.consul.", dns.TypeA, false, []string{"legacy.virtual.consul.\t0\tIN\tA\t240.0.0.3"}},
		{v, "new.virtual.consul.", dns.TypeA, true, nil},
		{v, "nope.connect.consul.", dns.TypeA, false, nil},
		{unread, "nope.connect.consul.", dns.TypeA, true, nil},
		{unread, "web.connect.consul.", dns.TypeA, false, []string{"web.connect.consul.\t0\tIN\tA\t10.0.0.1"}},
	}
	for _, tc := range tests {
		res := Lookup(tc.v, Question{Name: tc.name, Lower: tc.name, Zone: "consul.", Type: tc.qtype})
		if res.PassOn != tc.passOn || !slices.Equal(rrStrings(res.Answer), tc.answer) {
			t.Errorf("%s %s: pass on %v, answer %q; want %v, %q", tc.name, dns.TypeToString[tc.qtype], res.PassOn,
				rrStrings(res.Answer), tc.passOn, tc.answer)
		}
	}
}

// BenchmarkMeshIndex is what each publish pays for the mesh names: 5,000
// services of 5 instances, a tenth with a sidecar service, nothing changed
// since the view before.
func BenchmarkMeshIndex(b *testing.B) {
	services := map[string]*snapshot.Service{}
	for i := range 5000 {
		name := fmt.Sprintf("svc-%d", i)
		svc := &snapshot.Service{Name: name}
		for j := range 5 {
			in := snapshot.Instance{ID: fmt.Sprintf("%s-%d", name, j), Node: fmt.Sprintf("n%d", j), NodeAddress: "10.0.0.1", Port: 80}
			if i%10 == 1 {
				in.Mesh = &snapshot.Mesh{Kind: snapshot.KindConnectProxy, Destination: fmt.Sprintf("svc-%d", i-1)}
				in.TaggedAddresses = map[string]string{snapshot.VirtualIPTag: "240.0.0.1"}
			}
			svc.Instances = append(svc.Instances, in)
		}
		services[name] = svc
	}
	v := NewView(catalog(services, nil), nil, zones, DefaultOptions())
	b.ResetTimer()
	for b.Loop() {
		newMeshIndex(v.Snap, v, v.prep)
	}
}
