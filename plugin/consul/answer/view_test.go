package answer

import (
	"maps"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

var zones = []string{"consul."}

func catalog(services map[string]*snapshot.Service, nodes map[string]*snapshot.Node) *snapshot.Snapshot {
	return snapshot.New("dc1", 0, services, nodes, time.Unix(0, 0))
}

func web(port uint16) *snapshot.Service {
	return &snapshot.Service{Name: "web", Index: uint64(port), Instances: []snapshot.Instance{
		{ID: "web-1", Node: "n1", NodeAddress: "10.0.0.1", Port: port, WeightPassing: 1},
		{ID: "web-2", Node: "n2", NodeAddress: "10.0.0.2", Address: "10.1.0.2", Port: port, WeightPassing: 1},
	}}
}

func srv(t *testing.T, v *View, qname string) *dns.Msg {
	t.Helper()
	res := Lookup(v, Question{Name: qname, Lower: qname, Zone: "consul.", Type: dns.TypeSRV})
	if res.Rcode != dns.RcodeSuccess || len(res.Answer) == 0 {
		t.Fatalf("%s SRV: rcode %d, %d answers", qname, res.Rcode, len(res.Answer))
	}
	return &dns.Msg{Answer: res.Answer, Extra: res.Extra}
}

// TestViewSharesUnchanged: a view prepares only what changed since the one
// before, and answers from the new data for what did.
func TestViewSharesUnchanged(t *testing.T) {
	nodes := map[string]*snapshot.Node{"n1": {Name: "n1", Address: "10.0.0.1", Meta: map[string]string{"rack": "r1"}}}
	services := map[string]*snapshot.Service{"web": web(80), "db": {Name: "db", Instances: []snapshot.Instance{
		{ID: "db-1", Node: "n1", NodeAddress: "10.0.0.1", Port: 5432},
	}}}
	v1 := NewView(catalog(services, nodes), nil, zones, DefaultOptions())

	services = maps.Clone(services)
	services["web"] = web(81)
	nodes = map[string]*snapshot.Node{"n1": {Name: "n1", Address: "10.0.0.1", Meta: map[string]string{"rack": "r2"}}}
	v2 := NewView(catalog(services, nodes), v1, zones, DefaultOptions())

	db1, _ := v1.service("db")
	db2, _ := v2.service("db")
	if db1 != db2 {
		t.Error("an unchanged service was prepared again")
	}
	web1, _ := v1.service("web")
	web2, _ := v2.service("web")
	if web1 == web2 {
		t.Fatal("a changed service kept what was prepared for its old value")
	}
	for _, rr := range srv(t, v2, "web.service.consul.").Answer {
		if port := rr.(*dns.SRV).Port; port != 81 {
			t.Errorf("SRV port %d, want the new 81", port)
		}
	}
	// The node's meta changed while its services did not: SRV answers of
	// an unchanged service carry the new meta.
	var txt []string
	for _, rr := range srv(t, v2, "db.service.consul.").Extra {
		if rr, ok := rr.(*dns.TXT); ok {
			txt = append(txt, rr.Txt...)
		}
	}
	if len(txt) != 1 || txt[0] != "rack=r2" {
		t.Errorf("node meta in extra = %q, want the new rack=r2", txt)
	}
	// The old view still answers from its own data.
	for _, rr := range srv(t, v1, "web.service.consul.").Answer {
		if port := rr.(*dns.SRV).Port; port != 80 {
			t.Errorf("old view: SRV port %d, want 80", port)
		}
	}
}

// TestViewOtherOptions: a reloaded server block with other options that
// takes over a snapshot prepares it again for itself, and the block still
// serving until it stops keeps answering with its own options.
func TestViewOtherOptions(t *testing.T) {
	snap := catalog(map[string]*snapshot.Service{"web": web(80)}, nil)
	consul := NewView(snap, nil, zones, DefaultOptions())
	opt := DefaultOptions()
	opt.HAProxyWeights = true
	haproxy := NewView(snap, nil, zones, opt)
	for _, tc := range []struct {
		v      *View
		weight uint16
	}{{consul, 1}, {haproxy, 255}, {consul, 1}} {
		for _, rr := range srv(t, tc.v, "web.service.consul.").Answer {
			if w := rr.(*dns.SRV).Weight; w != tc.weight {
				t.Errorf("weight %d, want %d", w, tc.weight)
			}
		}
	}
}

// TestAnswerRecordsAreCopies: the records that carry the question's name are
// built for each question, so a plugin that changes them in one answer (a
// TTL, a name) changes no other answer.
func TestAnswerRecordsAreCopies(t *testing.T) {
	v := NewView(catalog(map[string]*snapshot.Service{"web": web(80)}, nil), nil, zones, DefaultOptions())
	for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
		q := Question{Name: "web.service.consul.", Lower: "web.service.consul.", Zone: "consul.", Type: qtype}
		first := Lookup(v, q)
		for _, rr := range first.Answer {
			rr.Header().Ttl = 999
			rr.Header().Name = "changed."
		}
		for _, rr := range Lookup(v, q).Answer {
			if h := rr.Header(); h.Ttl == 999 || h.Name == "changed." {
				t.Fatalf("%s: a change to one answer's record shows in the next: %s", dns.TypeToString[qtype], rr)
			}
		}
	}
}

// TestUnpreparedZone: a zone the view was not made for is answered all the
// same, with names in that zone.
func TestUnpreparedZone(t *testing.T) {
	v := NewView(catalog(map[string]*snapshot.Service{"web": web(80)}, nil), nil, zones, DefaultOptions())
	q := "web.service.example.org."
	res := Lookup(v, Question{Name: q, Lower: q, Zone: "example.org.", Type: dns.TypeSRV})
	if len(res.Answer) != 2 || len(res.Extra) != 2 {
		t.Fatalf("%d answers, %d extra; want 2 and 2", len(res.Answer), len(res.Extra))
	}
	for _, rr := range append(res.Answer, res.Extra...) {
		name := rr.Header().Name
		if rr, ok := rr.(*dns.SRV); ok {
			name = rr.Target
		}
		if !dns.IsSubDomain("example.org.", name) {
			t.Errorf("%s is not in the zone asked", rr)
		}
	}
}
