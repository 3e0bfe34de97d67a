package bench

// The "peers" section of the side-by-side report: how fast a health change
// in an exporting cluster reaches the plugin replicating the importer's
// view of it (peers <name>), beside the importing cluster's own DNS, and
// what each replicated peer costs in requests.
//
// Sizes can be changed for development: PEER_SERVICES (50), PEER_CHANGES
// (per kind, at most one per service, 50).

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

func peersSection(t *testing.T, out *strings.Builder) {
	const instances, pace, timeout, peer = 3, 100 * time.Millisecond, 30 * time.Second, "exp"
	services := envInt("PEER_SERVICES", 50)
	// One change per service and kind: a check set again to its own status
	// would show at once.
	changes := min(envInt("PEER_CHANGES", 50), services)
	p := consulagent.StartPeered(t, peer)
	client := p.Exporter.Client()
	consulagent.Populate(t, client, services, instances, instances)
	var names []string
	for s := range services {
		names = append(names, fmt.Sprintf("service-%d", s))
	}
	p.Export(t, names...)
	server := corednsproc.Start(t, corednsproc.Corefile{Metrics: true, Consul: []string{"address " + p.Importer.HTTPAddr, "peers " + peer}}.Build)
	name := func(s int) string { return fmt.Sprintf("service-%d.service.%s.peer.consul.", s%services, peer) }
	for s := range services {
		dnsq.Wait(t, server.Addr, name(s), dns.TypeA, time.Minute, func(m *dns.Msg) bool { return len(m.Answer) == instances })
	}
	label := `{datacenter="peer:` + peer + `"}`
	// Timed once the watchers have started, as a running replica has them.
	watched, _ := settle(time.Minute, time.Second, 3, func() float64 {
		v, _ := server.Metric(t, "coredns_consul_watched_services"+label)
		return v
	}, equal)

	// Each instance of a service is on a node of its own: a change is seen
	// as one A record fewer (or more).
	health := targets(t, client, names)
	count := func(want int) func(*dns.Msg) bool {
		return func(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess && len(m.Answer) == want }
	}
	register := func(i int) {
		consulagent.Register(t, client, "peer-bench-node", "10.254.2.1", &api.AgentService{ID: fmt.Sprintf("peer-bench-%d", i),
			Service: names[i%services], Port: 80, Address: fmt.Sprintf("192.168.204.%d", i%250+1)}, api.HealthPassing)
	}
	kinds := []struct {
		name  string
		write func(i int)
		want  int
	}{
		{"check passing -> critical", func(i int) { health[i%services].set(t, client, api.HealthCritical) }, instances - 1},
		{"check critical -> passing", func(i int) { health[i%services].set(t, client, api.HealthPassing) }, instances},
		{"new instance, with a check", register, instances + 1},
	}
	fmt.Fprintf(out, "\n## Cluster peers: propagation of the exporter's changes\n\n")
	fmt.Fprintf(out, "Two single-server clusters on loopback, peered; the exporter exports %d services x %d instances. CoreDNS runs `peers %s` "+
		"against the importer's agent, beside the importer's own DNS. %d changes of each kind in the exporter, one every 100ms, "+
		"each timed from the write returning until the `<service>.service.%s.peer.consul` answer shows it (p99: the %dth fastest). "+
		"Watched: %.0f of %d imported services.\n\n", services, instances, peer, changes, peer, (changes*99+99)/100, watched, services)
	fmt.Fprintf(out, "| change in the exporter | plugin p50 / p99 (ms) | Consul DNS p50 / p99 (ms) | goal: p99 <= max(250, 1.5 x Consul DNS p99) | the peer's requests per change |\n|---|---|---|---|---|\n")
	requests := func() float64 {
		v, _ := server.Metric(t, "coredns_consul_requests_total"+label)
		return v
	}
	for _, k := range kinds {
		r0 := requests()
		seen := timeChanges([]string{server.Addr, p.Importer.DNSAddr}, changes, pace, timeout, k.write,
			func(i int) change { return change{name: name(i), qtype: dns.TypeA, done: count(k.want)} })
		perChange := (requests() - r0) / float64(changes)
		plugin, consul := seen[0], seen[1]
		p99, c99 := quantile(plugin, 99), quantile(consul, 99)
		goal := math.Max(250, 1.5*c99)
		missing := ""
		if len(plugin) < changes || len(consul) < changes {
			missing = fmt.Sprintf(" (seen: plugin %d, Consul DNS %d of %d)", len(plugin), len(consul), changes)
		}
		fmt.Fprintf(out, "| %s%s | %.1f / %.1f | %.1f / %.1f | %.0f ms: %s | %.1f |\n", k.name, missing,
			quantile(plugin, 50), p99, quantile(consul, 50), c99, goal, map[bool]string{true: "met", false: "missed"}[p99 <= goal], perChange)
		t.Logf("peers, %s: plugin p50 %.1f p99 %.1f ms; Consul DNS p50 %.1f p99 %.1f ms%s; %.1f requests per change", k.name,
			quantile(plugin, 50), p99, quantile(consul, 50), c99, missing, perChange)
		if p99 > goal {
			t.Errorf("peers, %s: plugin p99 %.1f ms over the goal of %.0f ms", k.name, p99, goal)
		}
	}
	const idle = 20 * time.Second
	r0 := requests()
	pause(idle)
	fmt.Fprintf(out, "\nAt idle the peer's replica made %.2f requests/s (coredns_consul_requests_total%s over %s).\n",
		(requests()-r0)/idle.Seconds(), label, idle)
}
