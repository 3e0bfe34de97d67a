package bench

// The "datacenters" section of the side-by-side report: two WAN-joined
// datacenters, and changes made in dc2 timed in dc2's names, as the plugin
// answers them from its replica of dc2 (read through dc1's agent) and as
// Consul's DNS in dc1 answers them (by asking dc2's servers for every
// question). DC_SERVICES (200) and DC_CHANGES (100 per kind) size it.

import (
	"fmt"
	"math/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

func datacentersSection(t *testing.T, out *strings.Builder) {
	services, changes := envInt("DC_SERVICES", 200), envInt("DC_CHANGES", 100)
	changes = min(changes, services/2, 250)
	fmt.Fprintf(out, "\n## Other datacenters: propagation of dc2's changes\n\n")
	fmt.Fprintf(out, "Two WAN-joined single-server datacenters on loopback, %d services x 3 instances in dc2. CoreDNS runs `datacenters dc2` "+
		"against dc1's agent; Consul's DNS in dc1 asks dc2's servers for every question. %d changes of each kind in dc2, one every 100ms, "+
		"each timed from the write returning until the dc2 name's answer shows it, in both side by side (p99: the %dth fastest).\n", services, changes, (changes*99+99)/100)
	for _, setup := range []struct{ name, hcl string }{
		{"the agents' default connection limit (200 per client)", ""},
		{"the limit raised to 1,000 (deploy/consul/coredns-consul.hcl)", "limits { http_max_conns_per_client = 1000 }"},
	} {
		t.Run(setup.name, func(t *testing.T) { datacentersRun(t, out, setup.name, setup.hcl, services, changes) })
	}
}

func datacentersRun(t *testing.T, out *strings.Builder, setup, hcl string, services, changes int) {
	const instances, pace, timeout = 3, 100 * time.Millisecond, 30 * time.Second
	dcs := consulagent.StartDatacentersHCL(t, hcl, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	client := dc2.Client()
	consulagent.Populate(t, client, services, instances, max(instances, services*instances/25))
	server := corednsproc.Start(t, corednsproc.Corefile{Metrics: true, Consul: []string{"address " + dc1.HTTPAddr, "datacenters dc2"}}.Build)
	// dc2 synced: its last service answers; then its watchers started.
	dnsq.Wait(t, server.Addr, fmt.Sprintf("service-%d.service.dc2.consul.", services-1), dns.TypeA, time.Minute,
		func(m *dns.Msg) bool { return len(m.Answer) == instances })
	settle(time.Minute, time.Second, 3, func() float64 {
		v, _ := server.Metric(t, "coredns_consul_watched_services")
		return v
	}, equal)
	var watching []string
	for _, line := range strings.Split(server.Metrics(t), "\n") {
		if strings.HasPrefix(line, "coredns_consul_watched_services") {
			watching = append(watching, "`"+line+"`")
		}
	}
	t.Logf("datacenters, %s: %s", setup, strings.Join(watching, ", "))

	perm := rand.Perm(services)
	setA, setH := perm[:changes], perm[changes:2*changes]
	name := func(s int) string { return fmt.Sprintf("service-%d.service.dc2.consul.", s) }
	ip := func(i int) net.IP { return net.IPv4(192, 168, 203, byte(i+1)) }
	var hNames []string
	for _, s := range setH {
		hNames = append(hNames, fmt.Sprintf("service-%d", s))
	}
	health := targets(t, client, hNames)
	const node, nodeAddr = "dc-bench-node", "10.254.1.1"
	register := func(i, port int) {
		consulagent.Register(t, client, node, nodeAddr, &api.AgentService{ID: fmt.Sprintf("dc-bench-%d", i),
			Service: fmt.Sprintf("service-%d", setA[i]), Port: port, Address: ip(i).String()}, api.HealthPassing)
	}
	type kind struct {
		name  string
		write func(i int)
		c     func(i int) change
	}
	kinds := []kind{
		{"new instance, with a check", func(i int) { register(i, 80) }, func(i int) change {
			return change{name: name(setA[i]), qtype: dns.TypeA, done: func(m *dns.Msg) bool { return dnsq.HasA(m, ip(i)) }}
		}},
		{"check passing -> critical", func(i int) { health[i].set(t, client, api.HealthCritical) }, func(i int) change {
			return change{name: name(setH[i]), qtype: dns.TypeA, done: func(m *dns.Msg) bool { return dnsq.Answered(m) && !dnsq.HasA(m, health[i].ip) }}
		}},
		{"port change", func(i int) { register(i, 9000+i) }, func(i int) change {
			return change{name: name(setA[i]), qtype: dns.TypeSRV, done: func(m *dns.Msg) bool { return dnsq.HasPort(m, uint16(9000+i)) }}
		}},
		{"check critical -> passing", func(i int) { health[i].set(t, client, api.HealthPassing) }, func(i int) change {
			return change{name: name(setH[i]), qtype: dns.TypeA, done: func(m *dns.Msg) bool { return dnsq.HasA(m, health[i].ip) }}
		}},
		{"deregister", func(i int) { consulagent.Deregister(t, client, node, fmt.Sprintf("dc-bench-%d", i)) }, func(i int) change {
			return change{name: name(setA[i]), qtype: dns.TypeA, done: func(m *dns.Msg) bool { return dnsq.Answered(m) && !dnsq.HasA(m, ip(i)) }}
		}},
	}

	fmt.Fprintf(out, "\n### %s\n\nWatchers: %s.\n\n", setup, strings.Join(watching, ", "))
	fmt.Fprintf(out, "| change in dc2 | plugin p50 / p99 (ms) | Consul DNS p50 / p99 (ms) | plugin p99 / Consul DNS p99 |\n|---|---|---|---|\n")
	for _, k := range kinds {
		seen := timeChanges([]string{server.Addr, dc1.DNSAddr}, changes, pace, timeout, k.write, k.c)
		plugin, consul := seen[0], seen[1]
		p99, c99 := quantile(plugin, 99), quantile(consul, 99)
		missing := ""
		if len(plugin) < changes || len(consul) < changes {
			missing = fmt.Sprintf(" (seen: plugin %d, Consul DNS %d of %d)", len(plugin), len(consul), changes)
		}
		fmt.Fprintf(out, "| %s%s | %.1f / %.1f | %.1f / %.1f | %.2f |\n", k.name, missing,
			quantile(plugin, 50), p99, quantile(consul, 50), c99, p99/c99)
		t.Logf("datacenters, %s: plugin p50 %.1f p99 %.1f ms; Consul DNS p50 %.1f p99 %.1f ms%s", k.name,
			quantile(plugin, 50), p99, quantile(consul, 50), c99, missing)
	}
}
