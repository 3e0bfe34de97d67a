package consul

import (
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

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
