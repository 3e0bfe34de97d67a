package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// catalog generates a varied catalog: nodes with IPv4 and IPv6 addresses,
// tagged addresses and meta; services with several instances per node, own
// IPv4, IPv6 and hostname addresses, tags, weights, and passing, warning,
// critical and maintenance checks.
func catalog(t *testing.T, client *api.Client, seed uint64) (services, nodes []string) {
	rng := rand.New(rand.NewPCG(seed, seed))
	type node struct {
		name, addr string
		tagged     map[string]string
		meta       map[string]string
	}
	var ns []node
	for i := range 8 {
		n := node{name: fmt.Sprintf("node-%d", i), addr: fmt.Sprintf("10.0.%d.%d", i/4, i+1)}
		switch i % 4 {
		case 1:
			n.meta = map[string]string{"rack": fmt.Sprintf("r%d", i), "zone": "z1", "rfc1035-note": "plain"}
		case 2:
			n.addr = fmt.Sprintf("2001:db8::%x", i+1)
		case 3:
			// A node whose tagged lan_ipv6 address differs from its address:
			// Consul targets it by address for SRV, by node name for A.
			n.tagged = map[string]string{"lan_ipv4": n.addr, "lan_ipv6": fmt.Sprintf("2001:db8:1::%x", i+1)}
		}
		ns = append(ns, n)
		nodes = append(nodes, n.name)
	}
	tags := []string{"v1", "v2", "primary", "canary"}
	statuses := []string{api.HealthPassing, api.HealthPassing, api.HealthPassing, api.HealthWarning, api.HealthCritical, "maintenance"}
	for s := range 16 {
		name := fmt.Sprintf("svc-%d", s)
		services = append(services, name)
		for i := range 1 + rng.IntN(6) {
			n := ns[rng.IntN(len(ns))]
			svc := &api.AgentService{
				// Distinct ports: Consul and the plugin both keep one SRV
				// record per target and port, the first in a random order.
				ID: fmt.Sprintf("%s-%d", name, i), Service: name, Port: 8000 + i,
				Tags:    []string{tags[rng.IntN(len(tags))]},
				Weights: api.AgentWeights{Passing: 1 + rng.IntN(10), Warning: 1 + rng.IntN(3)},
			}
			switch rng.IntN(6) {
			case 0:
				svc.Address = fmt.Sprintf("10.9.%d.%d", s, i+1)
			case 1:
				svc.Address = fmt.Sprintf("2001:db8:9::%x:%x", s, i+1)
			case 2:
				svc.Address = n.addr // own address equal to the node's
			case 3:
				svc.TaggedAddresses = map[string]api.ServiceAddress{
					"lan_ipv4": {Address: fmt.Sprintf("10.8.%d.%d", s, i+1), Port: svc.Port},
				}
			}
			if s == 7 && i == 0 {
				svc.Address = "api.example.com" // reached by hostname
			}
			status := statuses[rng.IntN(len(statuses))]
			checks := api.HealthChecks{{Node: n.name, CheckID: "check:" + svc.ID, Name: "check", Status: status, ServiceID: svc.ID}}
			if status == "maintenance" {
				checks = api.HealthChecks{{Node: n.name, CheckID: "_service_maintenance:" + svc.ID, Name: "Service Maintenance Mode",
					Status: api.HealthCritical, ServiceID: svc.ID}}
			}
			reg := &api.CatalogRegistration{Node: n.name, Address: n.addr, TaggedAddresses: n.tagged, NodeMeta: n.meta, Service: svc, Checks: checks}
			if _, err := client.Catalog().Register(reg, nil); err != nil {
				t.Fatalf("registering %s: %v", svc.ID, err)
			}
		}
	}
	return services, nodes
}

// TestDifferentialAgainstConsulDNS asks Consul's own DNS interface and the
// plugin the same questions about the same generated catalog and compares
// the answers as record sets, plus the rcodes. Differences the plugin makes
// on purpose are not asked here; the plugin's README lists them.
func TestDifferentialAgainstConsulDNS(t *testing.T) {
	for _, seed := range []uint64{42, 2026} {
		t.Run(fmt.Sprintf("catalog %d", seed), func(t *testing.T) { differential(t, seed) })
	}
}

func differential(t *testing.T, seed uint64) {
	agent, client := startAgent(t)
	services, nodes := catalog(t, client, seed)
	plugin := startPlugin(t, agent.HTTPAddr)

	questions := catalogQuestions(services, nodes, "consul.")
	// Over TCP: over UDP without EDNS, Consul cuts answers to 3 records.
	compare(t, agent.DNSAddr, plugin.Addr, questions)
}

// catalogQuestions are the questions asked about a generated catalog in
// domain (fully qualified).
func catalogQuestions(services, nodes []string, domain string) []question {
	var questions []question
	ask := func(name string, types ...uint16) {
		for _, qt := range types {
			questions = append(questions, question{name, qt})
		}
	}
	for _, s := range append(services, "consul", "no-such-service") {
		ask(s+".service."+domain, dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY, dns.TypeMX)
		ask(s+".service.dc1."+domain, dns.TypeA, dns.TypeSRV)
		ask(s+".service.dc1.dc."+domain, dns.TypeSRV)
		ask(s+".service.dc9."+domain, dns.TypeA)
		ask("_"+s+"._tcp.service."+domain, dns.TypeSRV)
		ask("_"+s+"._tcp."+domain, dns.TypeSRV)
		for _, tag := range []string{"v1", "primary", "nope"} {
			ask(tag+"."+s+".service."+domain, dns.TypeA, dns.TypeSRV)
			ask("_"+s+"._"+tag+".service."+domain, dns.TypeSRV)
		}
	}
	for _, n := range append(nodes, "no-such-node") {
		ask(n+".node."+domain, dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeANY)
		ask(n+".node.dc1."+domain, dns.TypeA)
		ask(n+".node.dc9."+domain, dns.TypeA)
	}
	for _, ip := range []string{"10.0.0.1", "192.168.7.9", "2001:db8::3"} {
		parsed := net.ParseIP(ip)
		raw := parsed.To4()
		if raw == nil {
			raw = parsed.To16()
		}
		ask(fmt.Sprintf("%x.addr.%s", []byte(raw), domain), dns.TypeA, dns.TypeAAAA)
		ask(fmt.Sprintf("%x.addr.dc1.%s", []byte(raw), domain), dns.TypeA)
	}
	ask(domain, dns.TypeSOA, dns.TypeNS)
	ask("0a00zz01.addr."+domain, dns.TypeA)
	ask("a.b.c.d."+domain, dns.TypeA)

	return questions
}

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
	// answering during it, names never asked included. An agent's own node
	// is first registered by the leader with a part of its meta, the rest
	// (consul-network-segment) coming with the agent's first anti-entropy
	// sync, seconds later: a change the plugin rightly follows, so the
	// answers are taken once it has arrived.
	for _, dc := range []string{"dc1", "dc2"} {
		waitFor(t, plugin.Addr, "consul.service."+dc+".consul.", dns.TypeSRV, func(m *dns.Msg) bool {
			return slices.ContainsFunc(m.Extra, func(rr dns.RR) bool {
				txt, ok := rr.(*dns.TXT)
				return ok && slices.ContainsFunc(txt.Txt, func(s string) bool { return strings.HasPrefix(s, "consul-network-segment=") })
			})
		})
	}
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

// TestPreparedQueries creates prepared queries of every kind the plugin runs
// (tag filters and negation, OnlyPassing, IgnoreCheckIDs, node and service
// meta, a TTL, templates of both kinds, failover to a second datacenter) and
// compares the plugin's answers with Consul's DNS, rcodes included. Then it
// checks that every query is still answered while Consul is frozen, after
// it is killed and after a restart from the snapshot file, and that a
// definition created, changed and deleted shows up in DNS.
func TestPreparedQueries(t *testing.T) {
	dcs := consulagent.StartDatacenters(t, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	client := dc1.Client()
	services, _ := catalog(t, client, 11)
	consulagent.Register(t, client, "meta-node", "10.30.0.1", &api.AgentService{ID: "metered-1", Service: "metered", Port: 81,
		Meta: map[string]string{"tier": "gold"}}, api.HealthPassing)
	consulagent.Register(t, client, "meta-node", "10.30.0.1", &api.AgentService{ID: "metered-2", Service: "metered", Port: 82,
		Meta: map[string]string{"tier": "silver"}}, api.HealthPassing)
	// A service with one critical check the ignore query ignores.
	consulagent.Register(t, client, "flaky-node", "10.30.0.2", &api.AgentService{ID: "flaky-1", Service: "flaky", Port: 83}, api.HealthCritical)
	consulagent.Register(t, client, "flaky-node", "10.30.0.2", &api.AgentService{ID: "flaky-2", Service: "flaky", Port: 84}, api.HealthPassing)
	consulagent.Register(t, dc2.Client(), "far-node", "10.40.0.1", &api.AgentService{ID: "far-1", Service: "far", Port: 90}, api.HealthPassing)

	defs := []*api.PreparedQueryDefinition{
		{Name: "tagged", Service: api.ServiceQuery{Service: services[1], Tags: []string{"v1"}}},
		{Name: "not-canary", Service: api.ServiceQuery{Service: services[2], Tags: []string{"!canary"}}},
		{Name: "passing", Service: api.ServiceQuery{Service: services[3], OnlyPassing: true}},
		{Name: "zoned", Service: api.ServiceQuery{Service: services[4], NodeMeta: map[string]string{"zone": "z1"}}},
		{Name: "gold", Service: api.ServiceQuery{Service: "metered", ServiceMeta: map[string]string{"tier": "gold"}}},
		{Name: "ttl", Service: api.ServiceQuery{Service: services[5]}, DNS: api.QueryDNSOptions{TTL: "42s"}},
		{Name: "ignore", Service: api.ServiceQuery{Service: "flaky", IgnoreCheckIDs: []string{"check:flaky-1"}}},
		{Name: "near", Service: api.ServiceQuery{Service: services[6], Near: "_agent"}},
		{Name: "tpl-", Template: api.QueryTemplate{Type: "name_prefix_match"}, Service: api.ServiceQuery{Service: "${name.suffix}"}},
		{Name: "re-", Template: api.QueryTemplate{Type: "name_prefix_match", Regexp: `^re-(.+?)-(v1|v2|)$`, RemoveEmptyTags: true},
			Service: api.ServiceQuery{Service: "${match(1)}", Tags: []string{"${match(2)}"}}},
		{Name: "failover", Service: api.ServiceQuery{Service: "far", Failover: api.QueryFailoverOptions{Datacenters: []string{"dc2"}}}},
		{Name: "nearest", Service: api.ServiceQuery{Service: "far", Failover: api.QueryFailoverOptions{NearestN: 1}}},
		{Name: "empty", Service: api.ServiceQuery{Service: "no-such-service"}},
	}
	var ids []string
	for _, d := range defs {
		id, _, err := client.PreparedQuery().Create(d, nil)
		if err != nil {
			t.Fatalf("creating query %q: %v", d.Name, err)
		}
		ids = append(ids, id)
	}

	snapshotPath := filepath.Join(t.TempDir(), "consul.snapshot")
	corefile := twoDatacenters(dc1.HTTPAddr, snapshotPath)
	plugin := corednsproc.Start(t, corefile)
	waitFor(t, plugin.Addr, "far.service.dc2.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	// Failover needs the datacenters' distances, read at start-up; until
	// then such a query goes to the next plugin.
	waitFor(t, plugin.Addr, "nearest.query.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })

	names := []string{"tagged", "not-canary", "passing", "zoned", "gold", "ttl", "ignore", "near",
		"tpl-" + services[7], "tpl-" + services[8], "tpl-no-such-service", "re-" + services[9] + "-v1", "re-" + services[9] + "-",
		"failover", "nearest", "empty", "no-such-query", ids[0]}
	var questions []question
	for _, n := range names {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV} {
			questions = append(questions, question{n + ".query.consul.", qt})
		}
		questions = append(questions, question{"_" + n + "._tcp.query.consul.", dns.TypeSRV},
			question{n + ".query.dc1.consul.", dns.TypeSRV})
	}
	questions = append(questions, question{"failover.query.dc2.consul.", dns.TypeA}, question{"nope.query.dc9.consul.", dns.TypeA})

	t.Run("differential", func(t *testing.T) {
		compare(t, dc1.DNSAddr, plugin.Addr, questions)
	})

	t.Run("definitions propagate", func(t *testing.T) {
		d := &api.PreparedQueryDefinition{Name: "later", Service: api.ServiceQuery{Service: services[10]}}
		id, _, err := client.PreparedQuery().Create(d, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitFor(t, plugin.Addr, "later.query.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess })
		created := time.Since(start)
		d.ID, d.Service.Service = id, "metered"
		if _, err := client.PreparedQuery().Update(d, nil); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		waitFor(t, plugin.Addr, "later.query.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
		changed := time.Since(start)
		if _, err := client.PreparedQuery().Delete(id, nil); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		waitFor(t, plugin.Addr, "later.query.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
		t.Logf("shown in DNS after: created %s, changed %s, deleted %s", created.Round(time.Millisecond),
			changed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	})

	t.Run("catch-all template", func(t *testing.T) {
		// A template without a name answers every name no other query has.
		d := &api.PreparedQueryDefinition{Template: api.QueryTemplate{Type: "name_prefix_match"},
			Service: api.ServiceQuery{Service: "${name.full}", Near: "_ip"}}
		if _, _, err := client.PreparedQuery().Create(d, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, plugin.Addr, "metered.query.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
		more := []question{{"metered.query.consul.", dns.TypeSRV}, {"no-such-query.query.consul.", dns.TypeA}, {"tagged.query.consul.", dns.TypeA}}
		for _, svc := range services {
			more = append(more, question{svc + ".query.consul.", dns.TypeA}, question{"_" + svc + "._tcp.query.consul.", dns.TypeSRV})
		}
		compare(t, dc1.DNSAddr, plugin.Addr, more)
		questions = append(questions, more...)
	})

	want := answersOf(t, plugin.Addr, questions)
	same := func(t *testing.T, addr string) { sameAnswers(t, addr, questions, want) }
	t.Run("Consul frozen", func(t *testing.T) {
		dc1.Freeze()
		defer dc1.Thaw()
		plugin.WaitMetric(t, stale, 30*time.Second, is(1))
		same(t, plugin.Addr)
	})
	t.Run("Consul killed, CoreDNS restarted from the file", func(t *testing.T) {
		waitSnapshotFile(t, plugin, snapshotPath)
		dc1.Kill()
		same(t, plugin.Addr)
		plugin.Stop(t)
		restarted := corednsproc.StartOn(t, plugin.Ports, corefile)
		same(t, restarted.Addr)
	})
}
