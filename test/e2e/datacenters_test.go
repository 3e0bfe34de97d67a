package e2e

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// TestOtherDatacenters runs two WAN-joined datacenters, each with its own
// generated catalog, and a CoreDNS that replicates both through dc1's agent.
// dc2's names must be answered as Consul's DNS in dc1 answers them; while dc2
// is cut off (frozen) every dc2 name must still be answered, as must both
// datacenters after a restart with both agents down.
func TestOtherDatacenters(t *testing.T) {
	dcs := consulagent.StartDatacenters(t, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	services1, nodes1 := catalog(t, dc1.Client(), 7)
	services2, nodes2 := catalog(t, dc2.Client(), 8)
	// A name only dc2 has, and one both have with other instances.
	consulagent.Register(t, dc2.Client(), "dc2-only-node", "10.20.0.1",
		&api.AgentService{ID: "only-1", Service: "only-in-dc2", Port: 7000, Tags: []string{"blue"}}, api.HealthPassing)
	services2 = append(services2, "only-in-dc2")
	nodes2 = append(nodes2, "dc2-only-node")

	snapshotPath := filepath.Join(t.TempDir(), "consul.snapshot")
	corefile := twoDatacenters(dc1.HTTPAddr, snapshotPath)
	plugin := corednsproc.Start(t, corefile)
	waitFor(t, plugin.Addr, "only-in-dc2.service.dc2.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })

	questions := datacenterQuestions("dc2", services2, nodes2)
	questions = append(questions, datacenterQuestions("dc1", services1[:4], nodes1[:2])...)
	for _, s := range services2[:3] {
		questions = append(questions, question{s + ".service.dc9.consul.", dns.TypeA}) // a datacenter nobody knows
	}

	t.Run("differential", func(t *testing.T) {
		compare(t, dc1.DNSAddr, plugin.Addr, questions)
	})

	t.Run("a change in dc2 propagates", func(t *testing.T) {
		consulagent.Register(t, dc2.Client(), "dc2-only-node", "10.20.0.1",
			&api.AgentService{ID: "only-2", Service: "only-in-dc2", Port: 7001}, api.HealthPassing)
		waitFor(t, plugin.Addr, "only-in-dc2.service.dc2.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
		waitFor(t, plugin.Addr, "only-in-dc2.service.dc2.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
		consulagent.Deregister(t, dc2.Client(), "dc2-only-node", "only-2")
		waitFor(t, plugin.Addr, "only-in-dc2.service.dc2.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	})

	t.Run("datacenters *", func(t *testing.T) {
		every := startPlugin(t, dc1.HTTPAddr, "datacenters *")
		defer every.Stop(t)
		waitFor(t, every.Addr, "only-in-dc2.service.dc2.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
		compare(t, dc1.DNSAddr, every.Addr, questions)
	})

	// What the plugin answered before the partition is what it must keep
	// answering during it, names never asked included.
	want := answersOf(t, plugin.Addr, questions)
	partitioned := func(t *testing.T, addr string) { sameAnswers(t, addr, questions, want) }

	t.Run("dc2 partitioned", func(t *testing.T) {
		dc2.Freeze()
		defer dc2.Thaw()
		// Partitioned as Consul sees it: its DNS in dc1 no longer answers
		// dc2's names.
		wait.Until(t, time.Minute, func() error {
			r, err := dnsq.Ask(dc1.DNSAddr, "only-in-dc2.service.dc2.consul.", dns.TypeA, dnsq.TCP)
			switch {
			case err != nil:
				t.Logf("Consul's DNS in dc1 meanwhile: %v", err)
			case !dnsq.Answered(r):
				t.Logf("Consul's DNS in dc1 meanwhile: %s", dns.RcodeToString[r.Rcode])
			default:
				return errors.New("Consul's DNS in dc1 still answers dc2's names")
			}
			return nil
		})
		partitioned(t, plugin.Addr)
	})

	t.Run("restarted with both datacenters down", func(t *testing.T) {
		waitSnapshotFile(t, plugin, snapshotPath)
		plugin.Stop(t)
		dc1.Kill()
		dc2.Kill()
		restarted := corednsproc.StartOn(t, plugin.Ports, corefile)
		partitioned(t, restarted.Addr)
	})
}

// TestDatacenterNotReplicated checks names in a datacenter Consul knows but
// the plugin does not replicate: they go to the next plugin (here forward to
// Consul's DNS), never NXDOMAIN; a datacenter Consul does not know is
// NXDOMAIN.
func TestDatacenterNotReplicated(t *testing.T) {
	dcs := consulagent.StartDatacenters(t, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	consulagent.Register(t, dc2.Client(), "n2", "10.20.0.2", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, api.HealthPassing)
	consulagent.Register(t, dc1.Client(), "n1", "10.10.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, api.HealthPassing)
	cf := pluginCorefile(dc1.HTTPAddr)
	cf.After = []string{"forward . " + dc1.DNSAddr}
	plugin := corednsproc.Start(t, cf.Build)
	waitFor(t, plugin.Addr, "web.service.dc2.consul.", dns.TypeA, func(m *dns.Msg) bool {
		return len(m.Answer) == 1 && m.Answer[0].(*dns.A).A.String() == "10.20.0.2"
	})
	for _, q := range []question{{"web.service.dc9.consul.", dns.TypeA}, {"n1.node.dc9.consul.", dns.TypeA}} {
		if m := exchangeTCP(t, plugin.Addr, q); m.Rcode != dns.RcodeNameError || m.Authoritative == false {
			t.Errorf("%s: rcode %s (authoritative %v), want the plugin's NXDOMAIN", q.name, dns.RcodeToString[m.Rcode], m.Authoritative)
		}
	}
	if m := exchangeTCP(t, plugin.Addr, question{"web.service.consul.", dns.TypeA}); len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "10.10.0.1" {
		t.Errorf("web.service.consul.: %v, want dc1's instance", m.Answer)
	}
}

// twoDatacenters is the Corefile of a CoreDNS that replicates dc2 too
// through the agent at addr, with a snapshot file written every 100ms.
func twoDatacenters(addr, snapshotFile string) func(corednsproc.Ports) string {
	return pluginCorefile(addr, "datacenters dc2", "snapshot "+snapshotFile+" 100ms").Build
}

type question struct {
	name  string
	qtype uint16
}

// datacenterQuestions asks every form of name in datacenter dc, both as
// <dc> and as <dc>.dc.
func datacenterQuestions(dc string, services, nodes []string) []question {
	var qs []question
	ask := func(name string, types ...uint16) {
		for _, qt := range types {
			qs = append(qs, question{name, qt})
		}
	}
	for _, s := range append(slices.Clone(services), "consul", "no-such-service") {
		ask(s+".service."+dc+".consul.", dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY)
		ask(s+".service."+dc+".dc.consul.", dns.TypeA, dns.TypeSRV)
		ask("_"+s+"._tcp.service."+dc+".consul.", dns.TypeSRV)
		for _, tag := range []string{"v1", "blue", "nope"} {
			ask(tag+"."+s+".service."+dc+".consul.", dns.TypeA, dns.TypeSRV)
			ask("_"+s+"._"+tag+".service."+dc+".consul.", dns.TypeSRV)
		}
	}
	for _, n := range append(slices.Clone(nodes), "no-such-node") {
		ask(n+".node."+dc+".consul.", dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeANY)
		ask(n+".node."+dc+".dc.consul.", dns.TypeA)
	}
	for _, ip := range []string{"10.0.0.1", "2001:db8::3"} {
		raw := net.ParseIP(ip).To4()
		if raw == nil {
			raw = net.ParseIP(ip).To16()
		}
		ask(fmt.Sprintf("%x.addr.%s.consul.", []byte(raw), dc), dns.TypeA, dns.TypeAAAA)
	}
	return qs
}

// compare asks Consul's DNS at want and the plugin at got every question over
// TCP, and reports each that is answered differently (as record sets, with
// the rcode).
func compare(t *testing.T, want, got string, questions []question) {
	t.Helper()
	differences, withRecords := 0, 0
	for _, q := range questions {
		w, g := exchangeTCP(t, want, q), exchangeTCP(t, got, q)
		if len(w.Answer) > 0 {
			withRecords++
		}
		if sameAnswer(w, g) {
			continue
		}
		differences++
		msg := fmt.Sprintf("%s %s: rcode consul %s, plugin %s", q.name, dns.TypeToString[q.qtype],
			dns.RcodeToString[w.Rcode], dns.RcodeToString[g.Rcode])
		for _, s := range []struct {
			name      string
			want, got []dns.RR
		}{{"answer", w.Answer, g.Answer}, {"authority", w.Ns, g.Ns}, {"additional", w.Extra, g.Extra}} {
			if a, b := dnsq.Normalize(s.want), dnsq.Normalize(s.got); !slices.Equal(a, b) {
				msg += fmt.Sprintf("\n  %s:\n    consul %q\n    plugin %q", s.name, a, b)
			}
		}
		t.Error(msg)
	}
	t.Logf("%d questions (%d answered with records by Consul), %d answered differently", len(questions), withRecords, differences)
}

// answersOf asks server every question.
func answersOf(t *testing.T, server string, questions []question) map[question]*dns.Msg {
	out := make(map[question]*dns.Msg, len(questions))
	for _, q := range questions {
		out[q] = exchangeTCP(t, server, q)
	}
	return out
}

// sameAnswers checks that server answers every question as it was answered
// before (want).
func sameAnswers(t *testing.T, server string, questions []question, want map[question]*dns.Msg) {
	t.Helper()
	answered := 0
	for _, q := range questions {
		got := exchangeTCP(t, server, q)
		if sameAnswer(want[q], got) {
			answered++
			continue
		}
		t.Errorf("%s %s: rcode %s, %d answers; before: rcode %s, %d answers", q.name, dns.TypeToString[q.qtype],
			dns.RcodeToString[got.Rcode], len(got.Answer), dns.RcodeToString[want[q].Rcode], len(want[q].Answer))
	}
	t.Logf("%d of %d questions answered as before", answered, len(questions))
}

// sameAnswer reports whether two answers hold the same rcode and record
// sets.
func sameAnswer(a, b *dns.Msg) bool {
	return a.Rcode == b.Rcode && slices.Equal(dnsq.Normalize(a.Answer), dnsq.Normalize(b.Answer)) &&
		slices.Equal(dnsq.Normalize(a.Ns), dnsq.Normalize(b.Ns)) && slices.Equal(dnsq.Normalize(a.Extra), dnsq.Normalize(b.Extra))
}

func exchangeTCP(t *testing.T, server string, q question) *dns.Msg {
	t.Helper()
	return dnsq.Query(t, server, q.name, q.qtype, dnsq.TCP, dnsq.Timeout(10*time.Second))
}

// waitFor asks name until ok accepts the answer, for up to 10s.
func waitFor(t *testing.T, server, name string, qtype uint16, ok func(*dns.Msg) bool) {
	t.Helper()
	dnsq.Wait(t, server, name, qtype, 10*time.Second, ok)
}
