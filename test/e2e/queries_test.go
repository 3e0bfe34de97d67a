package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

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
