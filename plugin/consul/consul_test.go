package consul

import (
	"context"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// testSnapshot is a small catalog: web has an instance on its node's address,
// one with its own address, one in warning and one critical; db has only a
// critical instance.
func testSnapshot() *snapshot.Snapshot {
	services := []*snapshot.Service{
		{Name: "web", Index: 10, Instances: []snapshot.Instance{
			{ID: "web-1", Node: "n1", NodeAddress: "10.0.0.1", Port: 8080, WeightPassing: 10, WeightWarning: 1},
			{ID: "web-2", Node: "n2", NodeAddress: "10.0.0.2", Address: "10.1.0.2", Port: 8081, WeightPassing: 10, WeightWarning: 1},
			{ID: "web-3", Node: "n3", NodeAddress: "10.0.0.3", Port: 8080, WeightPassing: 10, WeightWarning: 2, Health: snapshot.Warning},
			{ID: "web-4", Node: "n4", NodeAddress: "10.0.0.4", Port: 8080, Health: snapshot.Critical},
		}},
		{Name: "db", Index: 12, Instances: []snapshot.Instance{
			{ID: "db-1", Node: "n1", NodeAddress: "10.0.0.1", Port: 5432, Health: snapshot.Critical},
		}},
		{Name: "v6", Index: 11, Instances: []snapshot.Instance{
			{ID: "v6-1", Node: "n6", NodeAddress: "10.0.0.6", Address: "2001:db8::6", Port: 80},
		}},
	}
	byKey := make(map[string]*snapshot.Service)
	for _, svc := range services {
		byKey[snapshot.Key(svc.Name)] = svc
	}
	return snapshot.New("dc1", 0, byKey, nil, time.Unix(0, 0))
}

const soaRR = "consul. 0 IN SOA ns.consul. hostmaster.consul. 12 3600 600 86400 0"

// Expected records are listed in the order test.SortAndCheck sorts answers.
var serveTests = []test.Case{
	{
		Qname: "web.service.consul.", Qtype: dns.TypeA,
		Answer: []dns.RR{
			test.A("web.service.consul. 0 IN A 10.0.0.1"),
			test.A("web.service.consul. 0 IN A 10.0.0.3"),
			test.A("web.service.consul. 0 IN A 10.1.0.2"),
		},
	},
	{
		// The datacenter may be named; the question's case is echoed back.
		Qname: "WEB.service.DC1.consul.", Qtype: dns.TypeA,
		Answer: []dns.RR{
			test.A("WEB.service.DC1.consul. 0 IN A 10.0.0.1"),
			test.A("WEB.service.DC1.consul. 0 IN A 10.0.0.3"),
			test.A("WEB.service.DC1.consul. 0 IN A 10.1.0.2"),
		},
	},
	{
		Qname: "web.service.consul.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{
			test.SRV("web.service.consul. 0 IN SRV 1 10 8080 n1.node.dc1.consul."),
			test.SRV("web.service.consul. 0 IN SRV 1 10 8081 0a010002.addr.dc1.consul."),
			test.SRV("web.service.consul. 0 IN SRV 1 2 8080 n3.node.dc1.consul."),
		},
		Extra: []dns.RR{
			test.A("0a010002.addr.dc1.consul. 0 IN A 10.1.0.2"),
			test.A("n1.node.dc1.consul. 0 IN A 10.0.0.1"),
			test.A("n3.node.dc1.consul. 0 IN A 10.0.0.3"),
		},
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
		Qname: "web.service.consul.", Qtype: dns.TypeTXT,
		Ns: []dns.RR{test.SOA(soaRR)},
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
		// A datacenter that is not replicated.
		Qname: "web.service.dc2.consul.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
		Ns: []dns.RR{test.SOA(soaRR)},
	},
	{
		Qname: "consul.", Qtype: dns.TypeSOA,
		Answer: []dns.RR{test.SOA(soaRR)},
	},
}

func TestServeDNS(t *testing.T) {
	c := &Consul{Zones: []string{"consul."}}
	c.publish(testSnapshot())
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
	c := &Consul{Zones: []string{"consul."}}
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
	c := &Consul{Zones: []string{"consul."}, Next: test.NextHandler(dns.RcodeRefused, nil)}
	c.publish(testSnapshot())
	m := new(dns.Msg)
	m.SetQuestion("example.org.", dns.TypeA)
	rcode, _ := c.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m)
	if rcode != dns.RcodeRefused {
		t.Fatalf("rcode = %d, want the next plugin's REFUSED", rcode)
	}
}
