package consul

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// testSnapshot is a small catalog: web has an instance on its node's address,
// one with its own address, one in warning and one critical; db has only a
// critical instance; v6 has an IPv6 service address; ext is reached by
// hostname; n1 has node meta.
func testSnapshot() *snapshot.Snapshot {
	services := []*snapshot.Service{
		{Name: "web", Index: 10, Instances: []snapshot.Instance{
			{ID: "web-1", Node: "n1", NodeAddress: "10.0.0.1", Port: 8080, Tags: []string{"v1"}, WeightPassing: 10, WeightWarning: 1},
			{ID: "web-2", Node: "n2", NodeAddress: "10.0.0.2", Address: "10.1.0.2", Port: 8081, Tags: []string{"v2"}, WeightPassing: 10, WeightWarning: 1},
			{ID: "web-3", Node: "n3", NodeAddress: "10.0.0.3", Port: 8080, Tags: []string{"V1"}, WeightPassing: 10, WeightWarning: 2, Health: snapshot.Warning},
			{ID: "web-4", Node: "n4", NodeAddress: "10.0.0.4", Port: 8080, Health: snapshot.Critical},
		}},
		{Name: "db", Index: 12, Instances: []snapshot.Instance{
			{ID: "db-1", Node: "n1", NodeAddress: "10.0.0.1", Port: 5432, Health: snapshot.Critical},
		}},
		{Name: "v6", Index: 11, Instances: []snapshot.Instance{
			{ID: "v6-1", Node: "n6", NodeAddress: "10.0.0.6", Address: "2001:db8::6", Port: 80},
		}},
		{Name: "ext", Index: 9, Instances: []snapshot.Instance{
			{ID: "ext-1", Node: "n1", NodeAddress: "10.0.0.1", Address: "api.example.com", Port: 443},
		}},
	}
	byKey := make(map[string]*snapshot.Service)
	for _, svc := range services {
		byKey[snapshot.Key(svc.Name)] = svc
	}
	nodes := map[string]*snapshot.Node{
		"n1": {Name: "n1", Address: "10.0.0.1", Meta: map[string]string{"rack": "r1", "rfc1035-raw": "raw value"}},
		"n2": {Name: "n2", Address: "10.0.0.2"},
	}
	return snapshot.New("dc1", 0, byKey, nodes, time.Unix(0, 0))
}

const soaRR = "consul. 0 IN SOA ns.consul. hostmaster.consul. 12 3600 600 86400 0"

var webSRV = []dns.RR{
	test.SRV("web.service.consul. 0 IN SRV 1 10 8080 n1.node.dc1.consul."),
	test.SRV("web.service.consul. 0 IN SRV 1 10 8081 0a010002.addr.dc1.consul."),
	test.SRV("web.service.consul. 0 IN SRV 1 2 8080 n3.node.dc1.consul."),
}

// aRecords are the A records of name with ttl, one per address.
func aRecords(name string, ttl uint32, addrs ...string) []dns.RR {
	rrs := make([]dns.RR, len(addrs))
	for i, a := range addrs {
		rrs[i] = test.A(fmt.Sprintf("%s %d IN A %s", name, ttl, a))
	}
	return rrs
}

// webSRVExtra is the additional section of web's SRV answers: its targets'
// addresses and their nodes' meta.
var webSRVExtra = []dns.RR{
	test.A("0a010002.addr.dc1.consul. 0 IN A 10.1.0.2"),
	test.A("n1.node.dc1.consul. 0 IN A 10.0.0.1"),
	test.TXT(`n1.node.dc1.consul. 0 IN TXT "rack=r1"`),
	test.TXT(`n1.node.dc1.consul. 0 IN TXT "raw value"`),
	test.A("n3.node.dc1.consul. 0 IN A 10.0.0.3"),
}

// Expected records are listed in the order test.SortAndCheck sorts answers.
var serveTests = []test.Case{
	{
		Qname: "web.service.consul.", Qtype: dns.TypeA,
		Answer: aRecords("web.service.consul.", 0, "10.0.0.1", "10.0.0.3", "10.1.0.2"),
	},
	{
		// The datacenter may be named, also as <dc>.dc; the question's case
		// is echoed back.
		Qname: "WEB.service.DC1.dc.consul.", Qtype: dns.TypeA,
		Answer: aRecords("WEB.service.DC1.dc.consul.", 0, "10.0.0.1", "10.0.0.3", "10.1.0.2"),
	},
	{
		Qname: "web.service.consul.", Qtype: dns.TypeSRV, Answer: webSRV,
		Extra: webSRVExtra,
	},
	{
		// RFC 2782, as HAProxy asks: _tcp means no tag.
		Qname: "_web._tcp.service.consul.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{
			test.SRV("_web._tcp.service.consul. 0 IN SRV 1 10 8080 n1.node.dc1.consul."),
			test.SRV("_web._tcp.service.consul. 0 IN SRV 1 10 8081 0a010002.addr.dc1.consul."),
			test.SRV("_web._tcp.service.consul. 0 IN SRV 1 2 8080 n3.node.dc1.consul."),
		},
		Extra: webSRVExtra,
	},
	{
		// Tags match case-insensitively.
		Qname: "v1.web.service.consul.", Qtype: dns.TypeA,
		Answer: aRecords("v1.web.service.consul.", 0, "10.0.0.1", "10.0.0.3"),
	},
	{
		Qname: "_web._v2.service.consul.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("_web._v2.service.consul. 0 IN A 10.1.0.2")},
	},
	{
		Qname: "v9.web.service.consul.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		Qname: "v6.service.consul.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{test.SRV("v6.service.consul. 0 IN SRV 1 1 80 20010db8000000000000000000000006.addr.dc1.consul.")},
		Extra:  []dns.RR{test.AAAA("20010db8000000000000000000000006.addr.dc1.consul. 0 IN AAAA 2001:db8::6")},
	},
	{
		Qname: "v6.service.consul.", Qtype: dns.TypeAAAA,
		Answer: []dns.RR{test.AAAA("v6.service.consul. 0 IN AAAA 2001:db8::6")},
	},
	{
		// The name exists, but has no record of this type: NODATA.
		Qname: "v6.service.consul.", Qtype: dns.TypeA,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		Qname: "web.service.consul.", Qtype: dns.TypeMX,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		// A service reached by hostname: a CNAME, and the hostname as target.
		Qname: "ext.service.consul.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.CNAME("ext.service.consul. 0 IN CNAME api.example.com.")},
	},
	{
		Qname: "ext.service.consul.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{test.SRV("ext.service.consul. 0 IN SRV 1 1 443 api.example.com.")},
		Extra: []dns.RR{
			test.TXT(`n1.node.dc1.consul. 0 IN TXT "rack=r1"`),
			test.TXT(`n1.node.dc1.consul. 0 IN TXT "raw value"`),
		},
	},
	{
		// Only critical instances: as if the service did not exist.
		Qname: "db.service.consul.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		Qname: "nope.service.consul.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		// A datacenter Consul does not know.
		Qname: "web.service.dc2.consul.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		Qname: "x.y.z.web.nothing.consul.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		// An empty non-terminal: NODATA, not NXDOMAIN, which resolvers
		// that cut below NXDOMAIN (RFC 8020) would apply to every service.
		Qname: "service.consul.", Qtype: dns.TypeA,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		Qname: "n1.node.consul.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("n1.node.consul. 0 IN A 10.0.0.1")},
		Extra: []dns.RR{
			test.TXT(`n1.node.consul. 0 IN TXT "rack=r1"`),
			test.TXT(`n1.node.consul. 0 IN TXT "raw value"`),
		},
	},
	{
		Qname: "n1.node.dc1.consul.", Qtype: dns.TypeTXT,
		Answer: []dns.RR{
			test.TXT(`n1.node.dc1.consul. 0 IN TXT "rack=r1"`),
			test.TXT(`n1.node.dc1.consul. 0 IN TXT "raw value"`),
		},
	},
	{
		// A node's NODATA carries no SOA, as Consul's.
		Qname: "n2.node.consul.", Qtype: dns.TypeAAAA,
	},
	{
		Qname: "n9.node.consul.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		Qname: "0A000001.addr.consul.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("0a000001.addr.consul. 0 IN A 10.0.0.1")},
	},
	{
		Qname: "20010db8000000000000000000000006.addr.dc1.consul.", Qtype: dns.TypeAAAA,
		Answer: []dns.RR{test.AAAA("20010db8000000000000000000000006.addr.dc1.consul. 0 IN AAAA 2001:db8::6")},
	},
	{
		Qname: "0a0000zz.addr.consul.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		Qname: "consul.", Qtype: dns.TypeSOA,
		Answer: []dns.RR{test.SOA(soaRR)},
		Ns:     []dns.RR{test.NS("consul. 0 IN NS ns.consul.")},
	},
	{
		Qname: "consul.", Qtype: dns.TypeNS,
		Answer: []dns.RR{test.NS("consul. 0 IN NS ns.consul.")},
	},
}

func TestServeDNS(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	c.publish(testSnapshot())
	c.datacentersRead([]string{"dc1"}, nil) // Consul knows no other
	for _, tc := range serveTests {
		t.Run(dns.TypeToString[tc.Qtype]+" "+tc.Qname, func(t *testing.T) {
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			if _, err := c.ServeDNS(context.Background(), rec, tc.Msg()); err != nil {
				t.Fatalf("ServeDNS: %v", err)
			}
			if rec.Msg == nil {
				t.Fatal("no response written")
			}
			if !rec.Msg.Authoritative {
				t.Error("answer is not authoritative")
			}
			if err := test.SortAndCheck(rec.Msg, tc); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestServeDNSBeforeFirstSync(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}})
	if c.Ready() {
		t.Fatal("ready without a snapshot")
	}
	m := new(dns.Msg)
	m.SetQuestion("web.service.consul.", dns.TypeA)
	rcode, err := c.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m)
	if err != nil || rcode != dns.RcodeServerFailure {
		t.Fatalf("ServeDNS = %d, %v; want SERVFAIL: NXDOMAIN would be cached as a lie", rcode, err)
	}
	c.publish(testSnapshot())
	if !c.Ready() {
		t.Fatal("not ready with a snapshot")
	}
}

func TestServeDNSOutOfZone(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}, Next: test.NextHandler(dns.RcodeRefused, nil)})
	c.publish(testSnapshot())
	m := new(dns.Msg)
	m.SetQuestion("example.org.", dns.TypeA)
	rcode, _ := c.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m)
	if rcode != dns.RcodeRefused {
		t.Fatalf("rcode = %d, want the next plugin's REFUSED", rcode)
	}
}

func TestServeDNSPassOn(t *testing.T) {
	tests := []struct {
		name   string
		fall   []string
		qname  string
		qtype  uint16
		passed bool
	}{
		{"unknown prepared query", nil, "geo.query.consul.", dns.TypeA, false},
		{"connect: answered from the replica", nil, "web.connect.consul.", dns.TypeA, false},
		{"ingress without any gateway registered", nil, "web.ingress.consul.", dns.TypeA, false},
		{"virtual: answered from the replica", nil, "web.virtual.consul.", dns.TypeA, false},
		{"virtual of a peer", nil, "web.virtual.other.peer.consul.", dns.TypeA, true},
		{"peer", nil, "web.service.other.peer.consul.", dns.TypeA, true},
		{"NXDOMAIN without fallthrough", nil, "nope.service.consul.", dns.TypeA, false},
		{"NXDOMAIN with fallthrough", []string{}, "nope.service.consul.", dns.TypeA, true},
		{"NXDOMAIN outside the fallthrough zones", []string{"example.org."}, "nope.service.consul.", dns.TypeA, false},
		{"an answer is never passed on", []string{}, "web.service.consul.", dns.TypeA, false},
		// fallthrough is about names that do not exist, as in CoreDNS: a
		// name that exists without the type asked is answered NODATA.
		{"NODATA with fallthrough", []string{}, "web.service.consul.", dns.TypeTXT, false},
		{"NODATA of a name above data, with fallthrough", []string{}, "service.consul.", dns.TypeA, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions(), Next: test.NextHandler(dns.RcodeRefused, nil)})
			if tc.fall != nil {
				c.Fall.SetZonesFromArgs(tc.fall)
			}
			c.publish(testSnapshot())
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, tc.qtype)
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			rcode, _ := c.ServeDNS(context.Background(), rec, m)
			if passed := rcode == dns.RcodeRefused; passed != tc.passed {
				t.Errorf("passed on = %v, want %v", passed, tc.passed)
			}
			if !tc.passed && rec.Msg == nil {
				t.Error("neither passed on nor answered")
			}
		})
	}
}

func TestServeDNSOptions(t *testing.T) {
	opts := answer.DefaultOptions()
	opts.OnlyPassing = true
	opts.SOAMinTTL = 7
	opts.TTL.Node = 3
	if err := opts.TTL.SetService("we*", 30); err != nil {
		t.Fatal(err)
	}
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: opts})
	c.publish(testSnapshot())
	tests := []test.Case{
		{ // only_passing drops the warning instance
			Qname: "web.service.consul.", Qtype: dns.TypeA,
			Answer: aRecords("web.service.consul.", 30, "10.0.0.1", "10.1.0.2"),
		},
		{
			Qname: "n2.node.consul.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("n2.node.consul. 3 IN A 10.0.0.2")},
		},
		{
			Qname: "nope.service.consul.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Ns: []dns.RR{test.SOA("consul. 7 IN SOA ns.consul. hostmaster.consul. 12 3600 600 86400 7")},
		},
	}
	for _, tc := range tests {
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		if _, err := c.ServeDNS(context.Background(), rec, tc.Msg()); err != nil {
			t.Fatal(err)
		}
		if err := test.SortAndCheck(rec.Msg, tc); err != nil {
			t.Errorf("%s: %v", tc.Qname, err)
		}
	}

	// a_record_limit caps, and every query draws its own order.
	opts.ARecordLimit = 1
	opts.OnlyPassing = false
	c = withLocal(&Consul{Zones: []string{"consul."}, opts: opts})
	c.publish(testSnapshot())
	seen := map[string]bool{}
	for range 200 {
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		m := new(dns.Msg)
		m.SetQuestion("web.service.consul.", dns.TypeA)
		c.ServeDNS(context.Background(), rec, m)
		if len(rec.Msg.Answer) != 1 {
			t.Fatalf("%d answers with a_record_limit 1", len(rec.Msg.Answer))
		}
		seen[rec.Msg.Answer[0].(*dns.A).A.String()] = true
	}
	if len(seen) != 3 {
		t.Errorf("200 queries answered with only %v: answers are not shuffled", seen)
	}
}

func TestServeDNSHAProxyWeights(t *testing.T) {
	opts := answer.DefaultOptions()
	opts.HAProxyWeights = true
	opts.NodeMetaTXT = false
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: opts})
	c.publish(testSnapshot())
	tc := test.Case{
		Qname: "web.service.consul.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{ // HAProxy's w/256+1 gives back 10, 10 and 2
			test.SRV("web.service.consul. 0 IN SRV 1 2559 8080 n1.node.dc1.consul."),
			test.SRV("web.service.consul. 0 IN SRV 1 2559 8081 0a010002.addr.dc1.consul."),
			test.SRV("web.service.consul. 0 IN SRV 1 511 8080 n3.node.dc1.consul."),
		},
		Extra: []dns.RR{
			test.A("0a010002.addr.dc1.consul. 0 IN A 10.1.0.2"),
			test.A("n1.node.dc1.consul. 0 IN A 10.0.0.1"),
			test.A("n3.node.dc1.consul. 0 IN A 10.0.0.3"),
		},
	}
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	c.ServeDNS(context.Background(), rec, tc.Msg())
	if err := test.SortAndCheck(rec.Msg, tc); err != nil {
		t.Error(err)
	}
}

func TestMatchZone(t *testing.T) {
	zones := []string{"consul.", "dc1.consul.", "example.org."}
	for _, name := range []string{
		"consul.", "web.service.consul.", "web.service.dc1.consul.", "dc1.consul.", "xdc1.consul.",
		"notconsul.", "a.example.org.", "example.org.", "org.", ".", "consul.org.", "web.service.consul.example.",
		`web.service\.consul.`, `web.service\\.consul.`, `a.dc1\.consul.`, `web.service\\\.consul.`, `x\046consul.`,
	} {
		if got, want := matchZone(zones, name), plugin.Zones(zones).Matches(name); got != want {
			t.Errorf("matchZone(%q) = %q, want %q as plugin.Zones.Matches", name, got, want)
		}
	}
	if got := matchZone([]string{"."}, "web.service.consul."); got != "." {
		t.Errorf("the root zone matches %q, want .", got)
	}
}

// TestServeWhilePublishing asks questions while new snapshots are published
// and prepared: run with -race, it shows the request path and publishing
// share the prepared records safely, and every answer is whole.
func TestServeWhilePublishing(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	first := benchCatalog(50, 3, 10)
	c.publish(first)
	done := make(chan struct{})
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			qtype := []uint16{dns.TypeA, dns.TypeSRV}[w%2]
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("service-%d.service.consul.", i%50), qtype)
				rec := dnstest.NewRecorder(&test.ResponseWriter{})
				if _, err := c.ServeDNS(context.Background(), rec, m); err != nil || rec.Msg.Rcode != dns.RcodeSuccess || len(rec.Msg.Answer) != 3 {
					errs <- fmt.Errorf("%s: %v, answer %v", m.Question[0].Name, err, rec.Msg)
					return
				}
			}
		}()
	}
	services := first.Services
	for i := range 200 {
		key := fmt.Sprintf("service-%d", i%50)
		old := services[key]
		services = maps.Clone(services)
		services[key] = &snapshot.Service{Name: old.Name, Index: uint64(1000 + i), Instances: old.Instances}
		c.publish(snapshot.New("dc1", 0, services, first.Nodes, time.Now()))
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
