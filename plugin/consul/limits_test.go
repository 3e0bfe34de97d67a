package consul

import (
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
)

// TestUnrepresentableKeepsAnswer: through the handler, an instance on a
// node whose name DNS cannot carry is left out of SRV answers, counted
// once when the view is built, and its neighbours are answered.
func TestUnrepresentableKeepsAnswer(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	c.local.label = "odd"
	long := strings.Repeat("n", 64)
	nodes := map[string]*snapshot.Node{
		"n1":               {Name: "n1", Address: "10.0.0.1"},
		snapshot.Key(long): {Name: long, Address: "10.0.0.2", Meta: map[string]string{"k": strings.Repeat("v", 512)}},
	}
	svc := &snapshot.Service{Name: "web", Instances: []snapshot.Instance{
		{ID: "good", Node: "n1", NodeAddress: "10.0.0.1", Port: 80},
		{ID: "bad", Node: long, NodeAddress: "10.0.0.2", Port: 80},
	}}
	c.publish(snapshot.New("dc1", 0, map[string]*snapshot.Service{"web": svc}, nodes, time.Now()))
	w := &packing{}
	for range 3 {
		m := new(dns.Msg)
		m.SetQuestion("web.service.consul.", dns.TypeSRV)
		if _, err := c.ServeDNS(t.Context(), w, m); err != nil {
			t.Fatal(err)
		}
		if len(w.msg.Answer) != 1 || w.msg.Answer[0].(*dns.SRV).Target != "n1.node.dc1.consul." {
			t.Fatalf("SRV answer %v, want the good instance alone", w.msg.Answer)
		}
	}
	// Two records per zone: the SRV target and the node's meta's owner.
	var got dto.Metric
	if err := recordsDropped.WithLabelValues("odd", "label_too_long").Write(&got); err != nil {
		t.Fatal(err)
	}
	if got := got.GetCounter().GetValue(); got != 2 {
		t.Errorf("records_dropped_total = %v, want 2, counted once for the view", got)
	}
}

// packing is a ResponseWriter that packs what it is given, as the server
// would send it, and keeps it.
type packing struct {
	discard
	msg *dns.Msg
}

func (p *packing) WriteMsg(m *dns.Msg) error {
	p.msg = m
	return p.discard.WriteMsg(m)
}

// TestServeDNSEscapedDots: an escaped dot is inside a label. A name whose
// last labels only look like the zone's is out of the zone, for the next
// plugin as any other; one under the zone with an escaped dot in a label is
// answered as the labels it has.
func TestServeDNSEscapedDots(t *testing.T) {
	for _, tc := range []struct {
		qname string
		rcode int
	}{
		{`web.service\.consul.`, dns.RcodeRefused}, // the next plugin's
		{`web.service\046consul.`, dns.RcodeRefused},
		{`consul\.`, dns.RcodeRefused},
		{`web.service\\.consul.`, dns.RcodeNameError}, // an escaped backslash: the dot is real
		{`we\.b.service.consul.`, dns.RcodeNameError},
		{`web\.service.consul.`, dns.RcodeNameError},
		{`_web\._tcp.service.consul.`, dns.RcodeNameError},
		{`web.service.consul.`, dns.RcodeSuccess},
	} {
		c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions(), Next: test.NextHandler(dns.RcodeRefused, nil)})
		c.publish(testSnapshot())
		for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
			msg, rcode := ask(t, c, tc.qname, qtype)
			if rcode != tc.rcode {
				t.Errorf("%s %s: rcode %s, want %s", tc.qname, dns.TypeToString[qtype], dns.RcodeToString[rcode], dns.RcodeToString[tc.rcode])
			}
			if msg != nil && rcode == dns.RcodeNameError && !msg.Authoritative {
				t.Errorf("%s: NXDOMAIN not authoritative", tc.qname)
			}
		}
	}
}
