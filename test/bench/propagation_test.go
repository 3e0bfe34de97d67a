package bench

// The propagation sections of the side-by-side report besides the first:
// cost, datacenters and queries.
//
// The "cost" section: for three setups (plain
// HTTP at the agent's default connection limit, plain HTTP with the limit
// raised, HTTPS), every kind of change is timed from the Consul write
// returning to the plugin's and Consul's own DNS answers showing it, and the
// plugin's cost to Consul is counted: requests per change, requests per
// second at idle, the agent's memory and goroutines per watched service.
//
// Sizes can be changed for development: COST_SETUPS (a,b,c), COST_SERVICES
// (every setup's service count), COST_INSTANCES (5), COST_CHANGES (per kind,
// 100), COST_PACE_MS (100), COST_IDLE (seconds, 30), COST_TIMEOUT (seconds a
// change may take to show before it counts as missing, 60), COST_READY_WAIT
// (seconds CoreDNS may take to be ready, 180).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/metrics"
	"github.com/coredns-consul/coredns-consul/test/procfs"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// costSetup is one configuration the cost section measures.
type costSetup struct {
	name     string
	label    string
	services int
	tls      bool
	maxConns int // the agent's limits.http_max_conns_per_client; 0 leaves Consul's default (200)
}

var costSetups = []costSetup{
	{name: "a", label: "HTTP, agent limit 200 (default)", services: 1000},
	{name: "b", label: "HTTP, agent limit 10000", services: 5000, maxConns: 10000},
	{name: "c", label: "HTTPS (HTTP/2)", services: 5000, tls: true},
}

// costKindResult is what one kind of change measured in one setup.
type costKindResult struct {
	name           string
	n              int
	plugin, consul []time.Duration
	// requests to Consul per change, counted by the proxy and by the
	// plugin's requests_total; NaN when not counted.
	proxyPer, metricPer float64
	sweeps              float64 // probe sweeps while the kind ran (coredns_consul_sweeps_total)
}

// costResult is one setup's figures.
type costResult struct {
	setup                 costSetup
	services, instances   int
	watched, unwatched    float64
	readyS, syncedS       float64
	idleProxy, idleMetric float64 // requests per second
	rssBefore, hwmBefore  float64 // KB
	rssAfter, hwmAfter    float64 // KB
	gorBefore, gorAfter   float64
	errorsAfter           float64 // the plugin's request_errors_total at the end
	conns                 int     // TCP connections open to the agent's HTTP(S) ports once synced
	kinds                 []costKindResult
	failed, resetPeakOK   bool
	note                  string // why the setup has no figures
}

// costSection runs every setup of COST_SETUPS and writes the section.
func costSection(t *testing.T, out *strings.Builder) {
	regenerationPaused.Store(true) // the zone file contender's reads of the other agent would be noise here
	defer regenerationPaused.Store(false)
	corednsproc.Binary(t)
	want := strings.Split(envString("COST_SETUPS", "a,b,c"), ",")
	var results []*costResult
	began := time.Now()
	for _, s := range costSetups {
		if !slices.Contains(want, s.name) {
			continue
		}
		if n := envInt("COST_SERVICES", 0); n > 0 {
			s.services = n
		}
		r := &costResult{setup: s, services: s.services, instances: envInt("COST_INSTANCES", 5)}
		results = append(results, r)
		ok := t.Run("cost-"+s.name, func(t *testing.T) { costRun(t, r) })
		r.failed = !ok
	}
	t.Logf("cost section took %s", time.Since(began).Round(time.Second))
	costReport(out, results)
}

// costRun measures one setup into r.
func costRun(t *testing.T, r *costResult) {
	s := r.setup
	changes := envInt("COST_CHANGES", 100)
	changes = min(changes, r.services/3, 250) // three disjoint sets of services; 250 addresses per set
	pace := time.Duration(envInt("COST_PACE_MS", 100)) * time.Millisecond
	idle := time.Duration(envInt("COST_IDLE", 30)) * time.Second
	timeout := time.Duration(envInt("COST_TIMEOUT", 60)) * time.Second

	agent := startBenchAgent(t, s.tls, s.maxConns, r.services, r.instances)
	client := agent.Client()

	// Three disjoint sets of services: new instances with a check (A), new
	// instances without (B), health changes of an existing instance (H).
	perm := rand.Perm(r.services)
	setA, setB, setH := perm[:changes], perm[changes:2*changes], perm[2*changes:3*changes]
	name := func(s int) string { return fmt.Sprintf("service-%d", s) }
	var hNames []string
	for _, svc := range setH {
		hNames = append(hNames, name(svc))
	}
	health := targets(t, client, hNames)

	// The agent before the plugin, its peak RSS reset once the loading has
	// settled.
	before, reset := baseline(t, agent)
	r.resetPeakOK = reset
	r.rssBefore, r.hwmBefore, r.gorBefore = before.rss/1024, before.peak/1024, before.goroutines
	t.Logf("setup %s: agent before the plugin: RSS %.0f MB, peak %.0f MB (reset: %v), %.0f goroutines",
		s.name, r.rssBefore/1024, r.hwmBefore/1024, r.resetPeakOK, r.gorBefore)

	start := time.Now()
	server, err := startPlugin(t, agent, s.tls)
	if err != nil {
		r.note = err.Error()
		t.Error(err)
		return
	}
	r.readyS = time.Since(start).Seconds()
	r.watched, r.unwatched = server.watchersStable()
	r.syncedS = time.Since(start).Seconds() - 5
	after := agentSettled(t, agent)
	r.rssAfter, r.hwmAfter, r.gorAfter = after.rss/1024, after.peak/1024, after.goroutines
	r.conns = procfs.Conns(port(agent.HTTPAddr), port(agent.HTTPSAddr))
	t.Logf("setup %s: plugin synced: %s", s.name, metrics.Summary(server.Metrics(t)))
	t.Logf("setup %s: ready %.1f s, %0.f watched / %.0f unwatched services stable at %.1f s; agent RSS %.0f MB, peak %.0f MB, %.0f goroutines, %d connections",
		s.name, r.readyS, r.watched, r.unwatched, r.syncedS, r.rssAfter/1024, r.hwmAfter/1024, r.gorAfter, r.conns)

	p0, m0 := server.requests()
	pause(idle)
	p1, m1 := server.requests()
	r.idleProxy, r.idleMetric = (p1-p0)/idle.Seconds(), (m1-m0)/idle.Seconds()
	t.Logf("setup %s: idle for %s: %.2f requests/s at the proxy, %.2f by the metric", s.name, idle, r.idleProxy, r.idleMetric)

	// The kinds of change, in this order so that no service is changed twice
	// in a row: the sets alternate.
	const node, nodeAddr = "cost-node", "10.254.0.1"
	ipA := func(i int) net.IP { return net.IPv4(192, 168, 201, byte(i+1)) }
	ipB := func(i int) net.IP { return net.IPv4(192, 168, 202, byte(i+1)) }
	type kind struct {
		name    string
		service func(i int) string
		qtype   uint16
		write   func(i int)
		done    func(i int, m *dns.Msg) bool
	}
	kinds := []kind{
		{"new instance, with a check", func(i int) string { return name(setA[i]) }, dns.TypeA,
			func(i int) {
				consulagent.Register(t, client, node, nodeAddr, &api.AgentService{ID: fmt.Sprintf("cost-chk-%d", i),
					Service: name(setA[i]), Port: 80, Address: ipA(i).String()}, api.HealthPassing)
			},
			func(i int, m *dns.Msg) bool { return dnsq.HasA(m, ipA(i)) }},
		{"new instance, no check", func(i int) string { return name(setB[i]) }, dns.TypeA,
			func(i int) {
				consulagent.Register(t, client, node, nodeAddr, &api.AgentService{ID: fmt.Sprintf("cost-nochk-%d", i),
					Service: name(setB[i]), Port: 80, Address: ipB(i).String()}, "")
			},
			func(i int, m *dns.Msg) bool { return dnsq.HasA(m, ipB(i)) }},
		{"check passing -> critical", func(i int) string { return name(setH[i]) }, dns.TypeA,
			func(i int) { health[i].set(t, client, api.HealthCritical) },
			func(i int, m *dns.Msg) bool { return dnsq.Answered(m) && !dnsq.HasA(m, health[i].ip) }},
		{"check critical -> passing", func(i int) string { return name(setH[i]) }, dns.TypeA,
			func(i int) { health[i].set(t, client, api.HealthPassing) },
			func(i int, m *dns.Msg) bool { return dnsq.HasA(m, health[i].ip) }},
		{"port change, no check", func(i int) string { return name(setB[i]) }, dns.TypeSRV,
			func(i int) {
				consulagent.Register(t, client, node, nodeAddr, &api.AgentService{ID: fmt.Sprintf("cost-nochk-%d", i),
					Service: name(setB[i]), Port: 9000 + i, Address: ipB(i).String()}, "")
			},
			func(i int, m *dns.Msg) bool { return dnsq.HasPort(m, uint16(9000+i)) }},
		{"deregister, with a check", func(i int) string { return name(setA[i]) }, dns.TypeA,
			func(i int) { consulagent.Deregister(t, client, node, fmt.Sprintf("cost-chk-%d", i)) },
			func(i int, m *dns.Msg) bool { return dnsq.Answered(m) && !dnsq.HasA(m, ipA(i)) }},
		{"deregister, no check", func(i int) string { return name(setB[i]) }, dns.TypeA,
			func(i int) { consulagent.Deregister(t, client, node, fmt.Sprintf("cost-nochk-%d", i)) },
			func(i int, m *dns.Msg) bool { return dnsq.Answered(m) && !dnsq.HasA(m, ipB(i)) }},
	}
	for _, k := range kinds {
		res := costKindResult{name: k.name, n: changes}
		p0, m0 := server.requests()
		sweeps0 := server.metric("coredns_consul_sweeps_total")
		seen := timeChanges([]string{server.Addr, agent.DNSAddr}, changes, pace, timeout, k.write, func(i int) change {
			return change{name: k.service(i) + ".service.consul.", qtype: k.qtype, done: func(m *dns.Msg) bool { return k.done(i, m) }}
		})
		res.plugin, res.consul = seen[0], seen[1]
		// Settled: the requests the kind set off are over when the count
		// has moved by no more than the idle rate for 2 s (at most 60 s).
		type count struct{ proxied, metric float64 }
		last, _ := settle(time.Minute, 500*time.Millisecond, 4, func() count {
			p, m := server.requests()
			return count{p, m}
		}, func(prev, cur count) bool {
			return cur.metric-prev.metric <= max(1, r.idleMetric) ||
				(!math.IsNaN(cur.proxied) && cur.proxied-prev.proxied <= max(1, r.idleProxy))
		})
		res.proxyPer, res.metricPer = (last.proxied-p0)/float64(changes), (last.metric-m0)/float64(changes)
		res.sweeps = server.metric("coredns_consul_sweeps_total") - sweeps0
		t.Logf("setup %s, %s: plugin %d/%d seen, p50 %.1f ms; Consul DNS %d/%d, p50 %.1f ms; %.2f requests per change (proxy), %.2f (metric), %.0f sweeps",
			s.name, k.name, len(res.plugin), changes, quantile(res.plugin, 50), len(res.consul), changes, quantile(res.consul, 50),
			res.proxyPer, res.metricPer, res.sweeps)
		r.kinds = append(r.kinds, res)
	}
	r.errorsAfter = server.metric("coredns_consul_request_errors_total")
	if server.proxy != nil {
		t.Logf("setup %s: the proxy logged %d requests canceled by the plugin and %d other errors (%d requests in all)",
			s.name, server.log.canceled.Load(), server.log.other.Load(), server.proxy.Requests())
	}
}

// costReport writes the section.
func costReport(out *strings.Builder, results []*costResult) {
	if len(results) == 0 {
		return
	}
	r0 := results[0]
	changes := 0
	if len(r0.kinds) > 0 {
		changes = r0.kinds[0].n
	}
	fmt.Fprintf(out, `## Propagation and cost to Consul, per setup

Method: for each setup a fresh single-server Consul agent (Prometheus telemetry on) is loaded with the
catalog (N services x %d instances, one passing check each) and one CoreDNS with the plugin at its
defaults (no max_watchers) replicates it: over plain HTTP through a counting reverse proxy
(test/faultproxy), over HTTPS directly. Seven kinds of change are written in turn, %d of each, one every
%d ms, never to the same service twice in a row (three disjoint random sets of services: new instances
with a check, new instances without, health changes of an existing instance's check; the port changes
and deregistrations reuse the instances registered before). Each change is timed from the Consul write
returning to the first DNS answer reflecting it, concurrently against the plugin and against the same
agent's own DNS interface (pending names asked again about every millisecond; an absence counts only in
a NOERROR answer that still holds the other instances; the port change is read from the SRV answer);
not shown within %d s counts as missing. Times in ms; p99 by rank rounded up, so below 100 changes it is
the maximum. Requests per change: the requests to Consul from a kind's first write until, after its
last change was seen, the count moves no more than at idle for 2 s, divided by its changes; counted by
the proxy and by the plugin's coredns_consul_requests_total (which counts a request when it completes).
Idle: requests per second over %d s after the plugin synced. Agent cost: peak RSS (VmHWM, reset to the
current RSS just before CoreDNS starts) and go_goroutines, before CoreDNS starts and once
coredns_consul_watched_services has not moved for 5 s and the agent's goroutine count has settled,
divided by the watched services and, after the semicolon, by all replicated services. Connections: TCP
connections established to the agent's HTTP and HTTPS ports once synced (the proxy's, over HTTP).

`, r0.instances, changes, envInt("COST_PACE_MS", 100), envInt("COST_TIMEOUT", 60), envInt("COST_IDLE", 30))

	num := func(v float64, format string) string {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	per := func(delta, watched float64) string {
		if watched <= 0 {
			return "-"
		}
		return num(delta/watched, "%.1f")
	}
	out.WriteString("| setup | catalog | watched / unwatched services | ready s | watchers stable s | idle requests/s (proxy; metric) | plugin request errors | connections to the agent | agent peak RSS MB before -> after | KB per watched; per service | agent goroutines before -> after | goroutines per watched; per service |\n")
	out.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.failed {
			note := r.note
			if note == "" {
				note = "see the test log"
			}
			fmt.Fprintf(out, "| (%s) %s | %d x %d | failed: %s ||||||||||\n", r.setup.name, r.setup.label, r.services, r.instances,
				strings.ReplaceAll(strings.SplitN(note, "\n", 2)[0], "|", "/"))
			continue
		}
		peakNote := ""
		if !r.resetPeakOK {
			peakNote = " (peak not reset: includes loading)"
		}
		fmt.Fprintf(out, "| (%s) %s | %d x %d | %.0f / %.0f | %.1f | %.1f | %s; %s | %.0f | %d | %.0f -> %.0f%s | %s | %.0f -> %.0f | %s |\n",
			r.setup.name, r.setup.label, r.services, r.instances, r.watched, r.unwatched, r.readyS, r.syncedS,
			num(r.idleProxy, "%.2f"), num(r.idleMetric, "%.2f"), r.errorsAfter, r.conns,
			r.hwmBefore/1024, r.hwmAfter/1024, peakNote,
			per(r.hwmAfter-r.hwmBefore, r.watched)+"; "+per(r.hwmAfter-r.hwmBefore, r.watched+r.unwatched),
			r.gorBefore, r.gorAfter,
			per(r.gorAfter-r.gorBefore, r.watched)+"; "+per(r.gorAfter-r.gorBefore, r.watched+r.unwatched))
	}
	out.WriteString("\n")
	for _, r := range results {
		if r.failed || len(r.kinds) == 0 {
			continue
		}
		fmt.Fprintf(out, "Setup (%s) %s, %d services x %d instances, %.0f of them watched:\n\n", r.setup.name, r.setup.label, r.services, r.instances, r.watched)
		out.WriteString("| change | plugin seen | plugin p50 | plugin p99 | plugin max | Consul DNS seen | Consul DNS p50 | Consul DNS p99 | Consul DNS max | requests per change (proxy; metric) | sweeps |\n")
		out.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, k := range r.kinds {
			fmt.Fprintf(out, "| %s | %d/%d | %s | %s | %s | %d/%d | %s | %s | %s | %s; %s | %.0f |\n", k.name,
				len(k.plugin), k.n, num(quantile(k.plugin, 50), "%.1f"), num(quantile(k.plugin, 99), "%.1f"), num(quantile(k.plugin, 100), "%.1f"),
				len(k.consul), k.n, num(quantile(k.consul, 50), "%.1f"), num(quantile(k.consul, 99), "%.1f"), num(quantile(k.consul, 100), "%.1f"),
				num(k.proxyPer, "%.2f"), num(k.metricPer, "%.2f"), k.sweeps)
		}
		out.WriteString("\n")
	}
}

// The "datacenters" section of the side-by-side report: two WAN-joined
// datacenters, and changes made in dc2 timed in dc2's names, as the plugin
// answers them from its replica of dc2 (read through dc1's agent) and as
// Consul's DNS in dc1 answers them (by asking dc2's servers for every
// question). DC_SERVICES (200) and DC_CHANGES (100 per kind) size it.
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

// The "queries" section of the side-by-side report: prepared query
// definitions created, changed and deleted, each timed from the write
// returning until the query's name answers accordingly, in the plugin and in
// Consul's DNS side by side.
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
