package consul

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// TestServeDNSDatacenters checks where a name in each kind of datacenter
// goes: its replica's view, SERVFAIL while that has not synced, the next
// plugin for one Consul knows but the plugin does not replicate, NXDOMAIN for
// one Consul does not know.
func TestServeDNSDatacenters(t *testing.T) {
	dc2 := snapshot.New("dc2", 5, map[string]*snapshot.Service{"web": {Name: "web", Index: 5, Instances: []snapshot.Instance{
		{ID: "web-1", Node: "m1", NodeAddress: "10.2.0.1", Port: 80},
	}}}, map[string]*snapshot.Node{"m1": {Name: "m1", Address: "10.2.0.1"}}, time.Unix(0, 0))
	newHandler := func(known ...string) *Consul {
		c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions(), Next: test.NextHandler(dns.RcodeRefused, nil)})
		c.publish(testSnapshot())
		for _, name := range []string{"dc2", "dc3"} {
			c.addRemoteLocked(&datacenter{name: name, label: name, zones: c.Zones, opts: c.opts})
		}
		(*c.remote.Load())["dc2"].publish(dc2)
		if known != nil {
			set := make(map[string]bool)
			for _, dc := range known {
				set[dc] = true
			}
			c.known.Store(&set)
		}
		return c
	}
	known := []string{"dc1", "dc2", "dc3", "dc4"}
	tests := []struct {
		name  string
		known []string
		qname string
		qtype uint16
		rcode int // dns.RcodeRefused: passed to the next plugin
		want  []dns.RR
		extra []dns.RR
	}{
		{"local", known, "web.service.dc1.consul.", dns.TypeA, dns.RcodeSuccess, []dns.RR{
			test.A("web.service.dc1.consul. 0 IN A 10.0.0.1"), test.A("web.service.dc1.consul. 0 IN A 10.0.0.3"), test.A("web.service.dc1.consul. 0 IN A 10.1.0.2"),
		}, nil},
		{"replicated", known, "WEB.service.DC2.consul.", dns.TypeSRV, dns.RcodeSuccess, []dns.RR{
			test.SRV("WEB.service.DC2.consul. 0 IN SRV 1 1 80 m1.node.dc2.consul."),
		}, []dns.RR{test.A("m1.node.dc2.consul. 0 IN A 10.2.0.1")}},
		{"replicated, as <dc>.dc", known, "m1.node.dc2.dc.consul.", dns.TypeA, dns.RcodeSuccess, []dns.RR{
			test.A("m1.node.dc2.dc.consul. 0 IN A 10.2.0.1"),
		}, nil},
		{"replicated, not synced yet", known, "web.service.dc3.consul.", dns.TypeA, dns.RcodeServerFailure, nil, nil},
		{"known, not replicated", known, "web.service.dc4.consul.", dns.TypeA, dns.RcodeRefused, nil, nil},
		{"unknown", known, "web.service.dc9.consul.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"unknown before the list was read", nil, "web.service.dc9.consul.", dns.TypeA, dns.RcodeRefused, nil, nil},
		{"listed but unknown, not synced", []string{"dc1", "dc2"}, "web.service.dc3.consul.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"addr in any datacenter", known, "0a000001.addr.dc9.consul.", dns.TypeA, dns.RcodeSuccess, []dns.RR{
			test.A("0a000001.addr.dc9.consul. 0 IN A 10.0.0.1"),
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newHandler(tc.known...)
			msg, rcode := ask(t, c, tc.qname, tc.qtype)
			if rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[rcode], dns.RcodeToString[tc.rcode])
			}
			if tc.rcode == dns.RcodeNameError && (len(msg.Ns) != 1 || msg.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("NXDOMAIN without the zone's SOA: %v", msg.Ns)
			}
			if tc.want != nil {
				if err := test.SortAndCheck(msg, test.Case{Qname: tc.qname, Qtype: tc.qtype, Answer: tc.want, Extra: tc.extra}); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestDatacentersEvery checks that with "datacenters *" a datacenter that
// joins is replicated, and one that leaves is dropped only once it has been
// missing from dropAfter lists in a row.
func TestDatacentersEvery(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	c.publish(testSnapshot())
	c.every = true
	made := map[string]int{}
	c.newRemote = func(name string) (*datacenter, error) {
		made[name]++
		return &datacenter{name: name, label: name, zones: c.Zones, opts: c.opts}, nil
	}
	replicated := func() map[string]bool {
		out := map[string]bool{}
		for _, d := range c.remotes() {
			out[d.name] = true
		}
		return out
	}
	c.datacentersRead([]string{"dc1", "DC2"}, nil)
	if got := replicated(); len(got) != 1 || !got["dc2"] {
		t.Fatalf("replicating %v, want dc2 (never the local dc1)", got)
	}
	c.datacentersRead([]string{"dc1", "dc2", "dc3"}, nil)
	if got := replicated(); len(got) != 2 || !got["dc3"] {
		t.Fatalf("replicating %v after dc3 joined, want dc2 and dc3", got)
	}
	for i := 1; i <= dropAfter; i++ {
		c.datacentersRead([]string{"dc1", "dc3"}, nil)
		if got := replicated()["dc2"]; got != (i < dropAfter) {
			t.Fatalf("after %d lists without dc2: replicated %v", i, got)
		}
	}
	if made["dc2"] != 1 || made["dc3"] != 1 {
		t.Errorf("replicas made %v, want one each", made)
	}
}

// TestDatacentersListedLocal checks that a Corefile naming the local
// datacenter among datacenters does not replicate it twice.
func TestDatacentersListedLocal(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	c.want = []string{"dc1", "dc2"}
	c.newRemote = func(name string) (*datacenter, error) {
		return &datacenter{name: name, label: name, zones: c.Zones, opts: c.opts}, nil
	}
	c.datacentersRead([]string{"dc1", "dc2"}, nil)
	if got := c.remotes(); len(got) != 0 {
		t.Fatalf("%d replicas made before the local datacenter's name is known", len(got))
	}
	c.publish(testSnapshot()) // names the local datacenter dc1
	c.localNamed()
	if got := c.remotes(); len(got) != 1 || got[0].name != "dc2" {
		t.Fatalf("replicating %v, want dc2 only", got)
	}
}

// TestDatacentersHostileList: Consul's list is an answer like any other. A
// list of 504 names (one of 300 bytes, one with a space) made 503 replicas
// with `datacenters *`; only names Consul itself accepts become datacenters,
// at most maxReplicated are replicated (those the Corefile names first), and
// a datacenter dropped leaves no metric series behind.
func TestDatacentersHostileList(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	c.publish(testSnapshot())
	c.every, c.want = true, []string{"zz-listed"}
	c.newRemote = func(name string) (*datacenter, error) {
		return &datacenter{name: name, label: name, zones: c.Zones, opts: c.opts}, nil
	}
	list := []string{"dc1", strings.Repeat("a", 300), "has space", "dot.ted", "", "zz-listed"}
	for i := range 500 {
		list = append(list, fmt.Sprintf("dc-%03d", i))
	}
	c.datacentersRead(list, nil)
	remotes := c.remotes()
	if len(remotes) != maxReplicated {
		t.Errorf("replicating %d datacenters, want %d", len(remotes), maxReplicated)
	}
	if c.remoteNamed("zz-listed") == nil {
		t.Errorf("the datacenter the Corefile names is not among those replicated")
	}
	for _, bad := range []string{strings.Repeat("a", 300), "has space", "dot.ted", ""} {
		if c.knows(bad, false) || c.remoteNamed(bad) != nil {
			t.Errorf("%q is known or replicated", bad)
		}
	}
	if !c.knows("dc-499", false) {
		t.Errorf("a valid datacenter past the replicated ones is not known")
	}

	requests.WithLabelValues("dc-000").Inc()
	requestErrors.WithLabelValues("dc-000", "timeout").Inc()
	for range dropAfter {
		c.datacentersRead([]string{"dc1", "zz-listed"}, nil)
	}
	if n := len(c.remotes()); n != 1 {
		t.Errorf("replicating %d datacenters once the others left, want 1", n)
	}
	// Delete reports whether the series was still there.
	if requests.DeleteLabelValues("dc-000") || requestErrors.DeleteLabelValues("dc-000", "timeout") {
		t.Errorf("a dropped datacenter's counters are still exported")
	}
}
