package consul

import (
	"bytes"
	"fmt"
	"io"
	golog "log"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"
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
	before := droppedCount(t, "odd", "label_too_long")
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
	if got := droppedCount(t, "odd", "label_too_long") - before; got != 2 {
		t.Errorf("records_dropped_total = %v, want 2, counted once for the view", got)
	}
}

// droppedCount is records_dropped_total for dc and reason.
func droppedCount(t *testing.T, dc, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := recordsDropped.WithLabelValues(dc, reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
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

// TestAnswerBuiltToFit: an answer built only as far as the reply carries
// it is, once the server fits it to the client, what the whole answer
// was: TC set alike, within the size, as full (how many records fit
// depends on the lengths of the names drawn), and drawn from every
// instance.
func TestAnswerBuiltToFit(t *testing.T) {
	for _, count := range []int{100, 10000} {
		c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
		c.publish(benchCatalog(1, count, count))
		view := c.local.view.Load()
		for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
			for _, tc := range []struct {
				name string
				edns uint16
				tcp  bool
			}{{"udp-512", 0, false}, {"udp-1232", 1232, false}, {"udp-4096", 4096, false}, {"tcp", 0, true}} {
				m := new(dns.Msg)
				m.SetQuestion("service-0.service.consul.", qtype)
				if tc.edns > 0 {
					m.SetEdns0(tc.edns, false)
				}
				w := &packing{discard: discard{test.ResponseWriter{TCP: tc.tcp}}}
				firsts := map[string]bool{}
				for range 20 {
					if _, err := c.ServeDNS(t.Context(), request.NewScrubWriter(m, w), m); err != nil {
						t.Fatal(err)
					}
					firsts[w.msg.Answer[0].String()] = true
				}
				// The whole answer, fitted as the server fits it.
				q := answer.Question{Name: m.Question[0].Name, Lower: m.Question[0].Name, Zone: "consul.", Type: qtype}
				whole := answer.Lookup(view, q)
				full := new(dns.Msg)
				full.SetReply(m)
				full.Answer, full.Extra = whole.Answer, whole.Extra
				req := request.Request{W: w, Req: m}
				req.SizeAndDo(full)
				full = req.Scrub(full)
				what := fmt.Sprintf("%d instances, %s %s", count, dns.TypeToString[qtype], tc.name)
				packed, err := w.msg.Pack()
				if err != nil || len(packed) > req.Size() {
					t.Errorf("%s: %d bytes (%v), over %d", what, len(packed), err, req.Size())
				}
				// Cut short, the reply is full: less room left than one more
				// record takes (the largest here, an SRV record to a
				// hostname, takes under 64 bytes).
				full.Compress = true
				wholePacked, _ := full.Pack()
				if w.msg.Truncated != full.Truncated || (w.msg.Truncated && req.Size()-len(packed) >= 64) ||
					(!w.msg.Truncated && len(w.msg.Answer) != len(full.Answer)) {
					t.Errorf("%s: %d answers in %d bytes, TC %v; the whole answer fitted: %d in %d bytes, TC %v", what,
						len(w.msg.Answer), len(packed), w.msg.Truncated, len(full.Answer), len(wholePacked), full.Truncated)
				}
				if len(firsts) < 10 {
					t.Errorf("%s: 20 questions began with %d records, want them drawn at random", what, len(firsts))
				}
			}
		}
	}
}

// TestLargeServiceCost: a question for a service of 10,000 instances costs
// what its reply carries, not the service: it allocated 0.85 MB (A) and
// 2 MB (SRV) for a 512-byte reply when every record was built.
func TestLargeServiceCost(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	c.publish(benchCatalog(1, 10000, 10000))
	for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
		m := new(dns.Msg)
		m.SetQuestion("service-0.service.consul.", qtype)
		w := &discard{}
		const runs = 20
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			if _, err := c.ServeDNS(t.Context(), request.NewScrubWriter(m, w), m); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		if perQuestion := (after.TotalAlloc - before.TotalAlloc) / runs; perQuestion > 64<<10 {
			t.Errorf("%s: %d bytes allocated per question, want under 64 KiB", dns.TypeToString[qtype], perQuestion)
		}
	}
}

// TestDroppedLoggedOnce: a service with a value DNS cannot carry, changing
// at every snapshot, is counted at each but logged once a minute.
func TestDroppedLoggedOnce(t *testing.T) {
	var out bytes.Buffer
	golog.SetOutput(&out)
	defer golog.SetOutput(io.Discard)
	droppedLogged.Store(0)
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	c.local.label = "logged"
	long := strings.Repeat("n", 64)
	before := droppedCount(t, "logged", "label_too_long")
	for i := range 5 {
		svc := &snapshot.Service{Name: "web", Index: uint64(i + 1), Instances: []snapshot.Instance{{ID: "bad", Node: long, NodeAddress: "10.0.0.2", Port: uint16(80 + i)}}}
		c.publish(snapshot.New("dc1", uint64(i+1), map[string]*snapshot.Service{"web": svc}, nil, time.Now()))
	}
	if n := strings.Count(out.String(), "left out of answers"); n != 1 {
		t.Errorf("%d log lines, want 1:\n%s", n, out.String())
	}
	if got := droppedCount(t, "logged", "label_too_long") - before; got != 5 {
		t.Errorf("records_dropped_total = %v, want 5, one per snapshot that prepared the service", got)
	}
}
