package bench

// The "queries" section of the side-by-side report: prepared query
// definitions created, changed and deleted, each timed from the write
// returning until the query's name answers accordingly, in the plugin and in
// Consul's DNS side by side.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

func queriesSection(t *testing.T, out *strings.Builder) {
	const services, instances, pace, timeout = 200, 3, 100 * time.Millisecond, 30 * time.Second
	changes := envInt("QUERY_CHANGES", 20)
	agent := consulagent.StartProcess(t)
	client := agent.Client()
	consulagent.Populate(t, client, services, instances, 25)
	server := corednsproc.Start(t, corednsproc.Corefile{Consul: []string{"address " + agent.HTTPAddr}}.Build)
	ids := make([]string, changes)
	name := func(i int) string { return fmt.Sprintf("bench-query-%d", i) }
	def := func(i int, service string) *api.PreparedQueryDefinition {
		return &api.PreparedQueryDefinition{ID: ids[i], Name: name(i), Service: api.ServiceQuery{Service: service}, DNS: api.QueryDNSOptions{TTL: "7s"}}
	}
	qname := func(i int) string { return name(i) + ".query.consul." }
	kinds := []struct {
		name  string
		write func(i int)
		done  func(i int, m *dns.Msg) bool
	}{
		{"created", func(i int) {
			id, _, err := client.PreparedQuery().Create(def(i, fmt.Sprintf("service-%d", i)), nil)
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = id
		}, func(i int, m *dns.Msg) bool { return len(m.Answer) == instances }},
		{"changed (another service, more instances)", func(i int) {
			consulagent.Register(t, client, "query-bench-node", "10.253.0.1",
				&api.AgentService{ID: fmt.Sprintf("extra-%d", i), Service: fmt.Sprintf("service-%d", services-1-i), Port: 81}, api.HealthPassing)
			if _, err := client.PreparedQuery().Update(def(i, fmt.Sprintf("service-%d", services-1-i)), nil); err != nil {
				t.Fatal(err)
			}
		}, func(i int, m *dns.Msg) bool { return len(m.Answer) == instances+1 }},
		{"deleted", func(i int) {
			if _, err := client.PreparedQuery().Delete(ids[i], nil); err != nil {
				t.Fatal(err)
			}
		}, func(i int, m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError }},
	}
	fmt.Fprintf(out, "\n## Prepared queries: definitions created, changed and deleted\n\n")
	fmt.Fprintf(out, "A single-server agent, %d services x %d instances; %d definitions of each kind of change, one every %s, each timed "+
		"from the write returning until `<name>.query.consul` answers accordingly (the change of service registers one more instance "+
		"first, so the new answer differs).\n\n", services, instances, changes, pace)
	fmt.Fprintf(out, "| definition | plugin p50 / p99 (ms) | Consul DNS p50 / p99 (ms) |\n|---|---|---|\n")
	for _, k := range kinds {
		seen := timeChanges([]string{server.Addr, agent.DNSAddr}, changes, pace, timeout, k.write, func(i int) change {
			return change{name: qname(i), qtype: dns.TypeA, done: func(m *dns.Msg) bool { return k.done(i, m) }}
		})
		missing := ""
		if len(seen[0]) < changes || len(seen[1]) < changes {
			missing = fmt.Sprintf(" (seen: plugin %d, Consul DNS %d of %d)", len(seen[0]), len(seen[1]), changes)
		}
		fmt.Fprintf(out, "| %s%s | %.1f / %.1f | %.1f / %.1f |\n", k.name, missing,
			quantile(seen[0], 50), quantile(seen[0], 99), quantile(seen[1], 50), quantile(seen[1], 99))
		t.Logf("queries, %s: plugin p50 %.1f p99 %.1f ms; Consul DNS p50 %.1f p99 %.1f ms%s", k.name,
			quantile(seen[0], 50), quantile(seen[0], 99), quantile(seen[1], 50), quantile(seen[1], 99), missing)
	}
}
