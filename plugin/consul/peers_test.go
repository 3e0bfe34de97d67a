package consul

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

func TestParsePeers(t *testing.T) {
	tests := []struct {
		input string
		every bool
		want  []string
		share int
	}{
		{"consul", false, nil, 1},
		{"consul {\n peers a b-2 a\n}", false, []string{"a", "b-2"}, 3},
		{"consul {\n peers *\n datacenters dc2\n}", true, nil, 2 + everyShare - 1},
	}
	for _, tc := range tests {
		c := caddy.NewTestController("dns", tc.input)
		c.ServerBlockKeys = []string{"consul.:53"}
		cfg, err := parse(c)
		if err != nil {
			t.Fatalf("parse(%q): %v", tc.input, err)
		}
		if !slices.Equal(cfg.peers, tc.want) || cfg.everyPeer != tc.every || cfg.share() != tc.share {
			t.Errorf("parse(%q): peers %q, every %v, share %d; want %q, %v, %d", tc.input,
				cfg.peers, cfg.everyPeer, cfg.share(), tc.want, tc.every, tc.share)
		}
	}
}

// TestParsePeersErrors: a name Consul would refuse for a peering is refused
// at start-up, with the line.
func TestParsePeersErrors(t *testing.T) {
	for input, want := range map[string]string{
		"consul {\n  peers\n}":                                 "Testfile:2 - Error during parsing: peers takes one or more peer names, or *",
		"consul {\n  peers a *\n}":                             "Testfile:2 - Error during parsing: peers: * stands for every peering and takes no names besides",
		"consul {\n  peers a\n  peers b\n}":                    "Testfile:3 - Error during parsing: peers is given twice",
		"consul {\n  peers Upper\n}":                           `Testfile:2 - Error during parsing: peers: "Upper" is not a peer name`,
		"consul {\n  peers -a\n}":                              `peers: "-a" is not a peer name`,
		"consul {\n  peers a_b\n}":                             `peers: "a_b" is not a peer name`,
		"consul {\n  peers a.b\n}":                             `peers: "a.b" is not a peer name`,
		"consul {\n  peers " + strings.Repeat("x", 64) + "\n}": `is not a peer name`,
	} {
		c := caddy.NewTestController("dns", input)
		c.ServerBlockKeys = []string{"consul.:53"}
		if _, err := parse(c); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parse(%q) = %v, want an error containing %q", input, err, want)
		}
	}
}

// peerHandler is a block replicating peer a (synced) and b (not yet).
func peerHandler(known ...string) *Consul {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions(), Next: test.NextHandler(dns.RcodeRefused, nil)})
	c.publish(testSnapshot())
	a := snapshot.New("dc1", 5, map[string]*snapshot.Service{"web": {Name: "web", Index: 5, Instances: []snapshot.Instance{
		{ID: "web-1", Node: "m1", NodeAddress: "10.2.0.1", Port: 80},
		{ID: "web-2", Node: "m1", NodeAddress: "10.2.0.1", Address: "10.2.0.2", Port: 81},
	}}}, map[string]*snapshot.Node{"m1": {Name: "m1", Address: "10.2.0.1"}}, time.Unix(0, 0))
	a.Peer = "a"
	for _, name := range []string{"a", "b"} {
		c.peers.add(&datacenter{name: name, label: "peer:" + name, zones: c.Zones, opts: c.opts})
	}
	c.peers.get("a").publish(a)
	if known != nil {
		c.peeringsRead(peerings(known...))
	}
	return c
}

func peerings(names ...string) []replica.Peering {
	var out []replica.Peering
	for _, n := range names {
		out = append(out, replica.Peering{Name: n, State: "ACTIVE"})
	}
	return out
}

// TestServeDNSPeers checks where a peer's name goes: its replica's view,
// SERVFAIL while that has not synced, the next plugin for a peering the
// plugin does not replicate, what Consul answers for one it does not list.
func TestServeDNSPeers(t *testing.T) {
	known := []string{"a", "b", "c"}
	tests := []struct {
		name  string
		known []string
		qname string
		qtype uint16
		rcode int // dns.RcodeRefused: passed to the next plugin
		want  []dns.RR
		extra []dns.RR
	}{
		{"replicated", known, "_web._tcp.service.a.peer.consul.", dns.TypeSRV, dns.RcodeSuccess, []dns.RR{
			test.SRV("_web._tcp.service.a.peer.consul. 0 IN SRV 1 1 80 m1.node.a.peer.consul."),
			test.SRV("_web._tcp.service.a.peer.consul. 0 IN SRV 1 1 81 0a020002.addr.consul."),
		}, []dns.RR{test.A("m1.node.a.peer.consul. 0 IN A 10.2.0.1"), test.A("0a020002.addr.consul. 0 IN A 10.2.0.2")}},
		{"replicated node", known, "m1.node.a.peer.consul.", dns.TypeA, dns.RcodeSuccess, []dns.RR{
			test.A("m1.node.a.peer.consul. 0 IN A 10.2.0.1"),
		}, nil},
		{"unknown service of a peer", known, "db.service.a.peer.consul.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"not synced yet", known, "web.service.b.peer.consul.", dns.TypeA, dns.RcodeServerFailure, nil, nil},
		{"listed, not replicated", known, "web.service.c.peer.consul.", dns.TypeA, dns.RcodeRefused, nil, nil},
		{"replicated, then deleted", []string{"b", "c"}, "web.service.a.peer.consul.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"unknown peer", known, "web.service.z.peer.consul.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"unknown peer, virtual", known, "web.virtual.z.consul.", dns.TypeA, dns.RcodeSuccess, nil, nil},
		{"before the list was read", nil, "web.service.z.peer.consul.", dns.TypeA, dns.RcodeRefused, nil, nil},
		{"a datacenter and a peer", known, "web.service.a.peer.dc1.dc.consul.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"local name untouched", known, "web.service.consul.", dns.TypeA, dns.RcodeSuccess, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, rcode := ask(t, peerHandler(tc.known...), tc.qname, tc.qtype)
			if rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[rcode], dns.RcodeToString[tc.rcode])
			}
			if tc.rcode == dns.RcodeNameError && (len(msg.Ns) != 1 || msg.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("NXDOMAIN without the zone's SOA: %v", msg.Ns)
			}
			if tc.want != nil {
				if err := test.SortAndCheck(msg, test.Case{Qname: tc.qname, Qtype: tc.qtype, Answer: tc.want, Extra: msg.Extra}); err != nil {
					t.Error(err)
				}
				if got, want := rrStrings(msg.Extra), rrStrings(tc.extra); !slices.Equal(got, want) {
					t.Errorf("extra %q, want %q", got, want)
				}
			}
		})
	}
}

// TestPeersEvery: with "peers *" a new peering is replicated, and one
// deleted (gone from the list) is dropped, its names then NXDOMAIN as
// Consul answers them; the Corefile's peers stay.
func TestPeersEvery(t *testing.T) {
	c := peerHandler()
	c.peers.every, c.peers.want = true, []string{"b"}
	c.peers.newPeer = func(name string) (*datacenter, error) {
		return &datacenter{name: name, label: "peer:" + name, zones: c.Zones, opts: c.opts}, nil
	}
	names := func() []string {
		var out []string
		for _, d := range c.peers.list() {
			out = append(out, d.name)
		}
		slices.Sort(out)
		return out
	}
	c.peeringsRead(peerings("a", "b", "c"))
	if got := names(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("replicating %v, want a b c", got)
	}
	c.peeringsRead(peerings("c"))
	if got := names(); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("replicating %v after a and b were deleted, want b (named) and c", got)
	}
	if _, rcode := ask(t, c, "web.service.a.peer.consul.", dns.TypeA); rcode != dns.RcodeNameError {
		t.Errorf("deleted peer: rcode %s, want NXDOMAIN", dns.RcodeToString[rcode])
	}
	set := c.collect()
	if set == nil || !slices.Equal(set.KnownPeers, []string{"c"}) {
		t.Errorf("snapshot set known peers %v, want [c]", set.KnownPeers)
	}
}

// rrStrings are rrs in presentation format, sorted: the order of the
// additional section follows the answers', which is random.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}
