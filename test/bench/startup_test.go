package bench

// The "startup" and "reload" sections of the side-by-side report: how fast
// changes reach DNS right after CoreDNS starts, while the plugin's watchers
// are still starting, and right after a reload that changes only a TTL;
// each side by side with the same agent's own DNS, against the bound of
// issue 21: p99 <= max(100 ms, 1.5 x Consul DNS's p99), with every change
// seen.
//
// STARTUP_SETUPS (https,http) picks the start-up setups; STARTUP_SERVICES
// overrides both setups' service count (3,000 over HTTPS, 2,000 over HTTP),
// RELOAD_SERVICES the reload's (2,000). STARTUP_CHANGES (40), STARTUP_KINDS
// (health,port,register: the kinds of change, in turn), STARTUP_PACE_MS (50),
// STARTUP_AFTER (seconds from the first answer to the first change, 5),
// RELOAD_AFTER (seconds from the reload to the first change, 3) and
// COST_TIMEOUT (seconds a change may take before it counts as missing, 60)
// size the rest.

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/procfs"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// startupInstances is every service's instance count in these sections.
const startupInstances = 3

// startupSetup is one way of reading Consul the start-up section measures.
type startupSetup struct {
	name, label string
	services    int
	tls         bool
	maxConns    int // limits.http_max_conns_per_client; 0 leaves Consul's default (200)
}

var startupSetups = []startupSetup{
	{name: "https", label: "HTTPS (HTTP/2), agent limits at their defaults", services: 3000, tls: true},
	{name: "http", label: "HTTP through the counting proxy, agent limit raised to 10000", services: 2000, maxConns: 10000},
}

// burst is a series of changes timed in the plugin and in Consul's DNS.
type burst struct {
	n              int
	kinds          []string // in the order they rotate
	plugin, consul []observed
}

// took is how long the changes of kind (all for "") took to show.
func took(obs []observed, kind string) []time.Duration {
	var d []time.Duration
	for _, o := range obs {
		if kind == "" || o.kind == kind {
			d = append(d, o.took)
		}
	}
	return d
}

// bound is what the plugin's p99 must not exceed.
func (b burst) bound() float64 { return max(100, 1.5*quantile(took(b.consul, ""), 99)) }

// meets reports whether every change was seen in the plugin within the
// bound.
func (b burst) meets() bool {
	return len(b.plugin) == b.n && quantile(took(b.plugin, ""), 99) <= b.bound()
}

// cells are the burst's columns: seen, p50 / p99 / max, for the plugin,
// then Consul's DNS, then the bound and the verdict.
func (b burst) cells() string {
	return fmt.Sprintf("%s | %s | %.0f | %s", b.side(b.plugin, ""), b.side(b.consul, ""), b.bound(), yesNo(b.meets()))
}

func (b burst) side(obs []observed, kind string) string {
	d, n := took(obs, kind), b.n
	if kind != "" {
		n = 0
		for i := range b.n {
			if b.kinds[i%len(b.kinds)] == kind {
				n++
			}
		}
	}
	return fmt.Sprintf("%d/%d | %.1f / %.1f / %.1f", len(d), n, quantile(d, 50), quantile(d, 99), quantile(d, 100))
}

// byKind is a table row per kind of change: where a miss comes from.
func (b burst) byKind(out *strings.Builder, setup string) {
	for _, k := range b.kinds {
		fmt.Fprintf(out, "| %s | %s | %s | %s |\n", setup, k, b.side(b.plugin, k), b.side(b.consul, k))
	}
}

func (b burst) String() string {
	s := fmt.Sprintf("all: plugin %s; Consul DNS %s; bound %.0f ms: meets %v", b.side(b.plugin, ""), b.side(b.consul, ""), b.bound(), b.meets())
	for _, k := range b.kinds {
		s += fmt.Sprintf("\n  %s: plugin %s; Consul DNS %s", k, b.side(b.plugin, k), b.side(b.consul, k))
	}
	return s
}

// startupKinds are the kinds of change the sections make, in turn, one per
// service: each is read from the answer that shows it.
var startupKinds = map[string]string{
	"health":   "instance 0's check passing -> critical (A)",
	"port":     "instance 0 registered again on another port (SRV)",
	"register": "a new instance with a passing check (A)",
}

// makeChanges makes one change to each target's service, the kinds of
// STARTUP_KINDS (health,port,register) in turn, one every STARTUP_PACE_MS,
// and times each in the plugin and in Consul's DNS.
func makeChanges(t *testing.T, client *api.Client, pluginAddr, consulAddr string, services []string, tg []target) burst {
	pace := time.Duration(envInt("STARTUP_PACE_MS", 50)) * time.Millisecond
	timeout := time.Duration(envInt("COST_TIMEOUT", 60)) * time.Second
	b := burst{n: len(tg), kinds: strings.Split(envString("STARTUP_KINDS", "health,port,register"), ",")}
	newIP := func(i int) net.IP { return net.IPv4(192, 168, 204, byte(i+1)) }
	write := func(i int) {
		switch b.kinds[i%len(b.kinds)] {
		case "health":
			tg[i].set(t, client, api.HealthCritical)
		case "port":
			c := tg[i].check
			if _, err := client.Catalog().Register(&api.CatalogRegistration{Node: c.Node, Address: tg[i].ip.String(), SkipNodeUpdate: true,
				Service: &api.AgentService{ID: c.ServiceID, Service: c.ServiceName, Port: 9000 + i}}, nil); err != nil {
				t.Fatalf("moving %s to port %d: %v", c.ServiceID, 9000+i, err)
			}
		case "register":
			consulagent.Register(t, client, "startup-node", "10.254.2.1", &api.AgentService{ID: fmt.Sprintf("startup-%d", i),
				Service: services[i], Port: 80, Address: newIP(i).String()}, api.HealthPassing)
		default:
			t.Fatalf("STARTUP_KINDS: no kind of change %q (%v)", b.kinds[i%len(b.kinds)], slices.Sorted(maps.Keys(startupKinds)))
		}
	}
	describe := func(i int) change {
		c := change{name: services[i] + ".service.consul.", qtype: dns.TypeA, kind: b.kinds[i%len(b.kinds)]}
		switch c.kind {
		case "health":
			c.done = func(m *dns.Msg) bool { return dnsq.Answered(m) && !dnsq.HasA(m, tg[i].ip) }
		case "port":
			c.qtype, c.done = dns.TypeSRV, func(m *dns.Msg) bool { return dnsq.HasPort(m, uint16(9000+i)) }
		case "register":
			c.done = func(m *dns.Msg) bool { return dnsq.HasA(m, newIP(i)) }
		}
		return c
	}
	seen := observeChanges([]string{pluginAddr, consulAddr}, len(tg), pace, timeout, write, describe)
	b.plugin, b.consul = seen[0], seen[1]
	return b
}

// kindsText says which changes the sections make.
func kindsText() string {
	var parts []string
	for _, k := range strings.Split(envString("STARTUP_KINDS", "health,port,register"), ",") {
		parts = append(parts, startupKinds[k])
	}
	return strings.Join(parts, ", ")
}

// changedServices picks n distinct services at random, other than
// service-0, which the sections ask to see that CoreDNS answers, and finds
// the checks to flip.
func changedServices(t *testing.T, client *api.Client, services, n int) ([]string, []target) {
	var names []string
	for _, s := range rand.Perm(services - 1)[:min(n, services-1)] {
		names = append(names, fmt.Sprintf("service-%d", s+1))
	}
	return names, targets(t, client, names)
}

// sampler polls a value until stopped, keeping its highest value and when
// it last changed: a peak RSS that does not depend on resetting VmHWM, the
// moment the last watcher started.
type sampler struct {
	max     float64
	changed time.Time
	stop    chan struct{}
	stopped sync.Once
	done    sync.WaitGroup
}

func sample(every time.Duration, read func() (float64, bool)) *sampler {
	s := &sampler{stop: make(chan struct{}), max: math.Inf(-1)}
	last := math.NaN()
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		wait.Every(every, s.stop, func() bool {
			if v, ok := read(); ok {
				if v != last {
					s.changed, last = time.Now(), v
				}
				s.max = max(s.max, v)
			}
			return true
		})
	}()
	return s
}

// end stops the sampling; it may be called more than once.
func (s *sampler) end() *sampler {
	s.stopped.Do(func() { close(s.stop) })
	s.done.Wait()
	return s
}

// startupResult is what one start-up setup measured.
type startupResult struct {
	setup                     startupSetup
	readyS, firstS, changesS  float64 // since CoreDNS was started
	watchedAtChanges, watched float64
	stableS                   float64 // watched_services stable since, from the start
	changes                   burst
	before, settled           agentState
	peakHWM, peakSampled      float64
	resetOK                   bool
	failed                    bool
	note                      string
}

// startupSection measures, for each setup, changes made soon after CoreDNS
// first answers.
func startupSection(t *testing.T, out *strings.Builder) {
	want := strings.Split(envString("STARTUP_SETUPS", "https,http"), ",")
	var results []*startupResult
	for _, s := range startupSetups {
		if !slices.Contains(want, s.name) {
			continue
		}
		if n := envInt("STARTUP_SERVICES", 0); n > 0 {
			s.services = n
		}
		r := &startupResult{setup: s}
		results = append(results, r)
		r.failed = !t.Run("startup-"+s.name, func(t *testing.T) { startupRun(t, r) })
	}
	startupReport(out, results)
}

func startupRun(t *testing.T, r *startupResult) {
	s := r.setup
	after := time.Duration(envInt("STARTUP_AFTER", 5)) * time.Second
	agent := startBenchAgent(t, s.tls, s.maxConns, s.services, startupInstances)
	client := agent.Client()
	names, tg := changedServices(t, client, s.services, envInt("STARTUP_CHANGES", 40))
	r.before, r.resetOK = baseline(t, agent)
	rss := sample(50*time.Millisecond, func() (float64, bool) {
		v, _, err := procfs.Memory(agent.Pid())
		return v, err == nil
	})
	defer rss.end()

	start := time.Now()
	server, err := startPlugin(t, agent, s.tls)
	if err != nil {
		r.note = err.Error()
		t.Fatal(err)
	}
	watched := sample(100*time.Millisecond, func() (float64, bool) {
		v := server.metric("coredns_consul_watched_services")
		return v, !math.IsNaN(v)
	})
	defer watched.end()
	r.readyS = time.Since(start).Seconds()
	if !wait.Poll(time.Minute, time.Millisecond, nil, func() bool {
		m, err := dnsq.Ask(server.Addr, "service-0.service.consul.", dns.TypeA)
		return err == nil && len(m.Answer) == startupInstances
	}) {
		t.Fatal("service-0 not answered a minute after CoreDNS was ready")
	}
	first := time.Now()
	r.firstS = first.Sub(start).Seconds()
	pause(time.Until(first.Add(after)))
	r.changesS = time.Since(start).Seconds()
	r.watchedAtChanges = server.metric("coredns_consul_watched_services")
	r.changes = makeChanges(t, client, server.Addr, agent.DNSAddr, names, tg)
	t.Logf("%s: changes from %.1f s after start, %.0f services watched then: %s", s.name, r.changesS, r.watchedAtChanges, r.changes)

	r.watched, _ = server.watchersStable()
	r.stableS = watched.end().changed.Sub(start).Seconds()
	r.settled = agentSettled(t, agent)
	r.peakHWM, r.peakSampled = r.settled.peak, rss.end().max
	t.Logf("%s: ready %.1f s, first answer %.1f s, %.0f watched at %.1f s; agent RSS %.0f MB before, peak %.0f MB (sampled %.0f), settled %.0f MB",
		s.name, r.readyS, r.firstS, r.watched, r.stableS, r.before.rss/1e6, r.peakHWM/1e6, r.peakSampled/1e6, r.settled.rss/1e6)
}

func startupReport(out *strings.Builder, results []*startupResult) {
	fmt.Fprintf(out, `## Right after start

Method: for each setup a fresh single-server agent is loaded with N services x %d instances (one passing
check each), settles, and has its peak RSS reset (VmHWM); then CoreDNS starts with the plugin at its
defaults. Once CoreDNS is ready and answers service-0, and %d s later, %d other services, picked at
random, change, one every %d ms, one change each, the kinds in turn: %s. Each change is timed from the
write returning until the answer shows it (an instance's absence only in a NOERROR answer with the
others), in the plugin and in the same agent's DNS side by side. Times in ms; p99 by rank rounded up (below 100 changes, the
maximum). The bound is issue 21's: the plugin's p99 <= max(100 ms, 1.5 x Consul DNS's p99), every
change seen within %d s. Agent: RSS before CoreDNS, its peak while the watchers start (VmHWM since the
reset, and the highest VmRSS polled every 50 ms), and settled once coredns_consul_watched_services has
held for 5 s and the agent's goroutines for 3 s. The last watcher started when watched_services, polled
every 100 ms, last moved.

`, startupInstances, envInt("STARTUP_AFTER", 5), envInt("STARTUP_CHANGES", 40), envInt("STARTUP_PACE_MS", 50), kindsText(), envInt("COST_TIMEOUT", 60))
	out.WriteString("| setup | catalog | ready s | first answer s | changes from s | watched then | last watcher started at s | plugin seen | plugin p50 / p99 / max | Consul DNS seen | Consul DNS p50 / p99 / max | bound | within |\n")
	out.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		catalog := fmt.Sprintf("%d x %d", r.setup.services, startupInstances)
		if r.failed && r.changes.n == 0 {
			fmt.Fprintf(out, "| %s | %s | failed: %s ||||||||||\n", r.setup.label, catalog, firstLine(r.note))
			continue
		}
		fmt.Fprintf(out, "| %s | %s | %.1f | %.1f | %.1f | %.0f | %.1f | %s |\n", r.setup.label, catalog, r.readyS, r.firstS,
			r.changesS, r.watchedAtChanges, r.stableS, r.changes.cells())
	}
	out.WriteString("\n| setup | agent RSS MB before | peak while the watchers start: VmHWM; polled | settled | agent goroutines before -> settled |\n|---|---|---|---|---|\n")
	for _, r := range results {
		if r.changes.n == 0 {
			continue
		}
		reset := ""
		if !r.resetOK {
			reset = " (VmHWM not reset: includes loading)"
		}
		fmt.Fprintf(out, "| %s | %.0f | %.0f%s; %.0f | %.0f | %.0f -> %.0f |\n", r.setup.label, r.before.rss/1e6,
			r.peakHWM/1e6, reset, r.peakSampled/1e6, r.settled.rss/1e6, r.before.goroutines, r.settled.goroutines)
	}
	out.WriteString("\nBy kind of change:\n\n")
	byKindHeader(out)
	for _, r := range results {
		r.changes.byKind(out, r.setup.label)
	}
	out.WriteString("\n")
}

func byKindHeader(out *strings.Builder) {
	out.WriteString("| setup | change | plugin seen | plugin p50 / p99 / max | Consul DNS seen | Consul DNS p50 / p99 / max |\n|---|---|---|---|---|---|\n")
}

// reloadSlack is how many more requests than in the idle window the
// reload's window may count and still be at the idle rate.
const reloadSlack = 3

// reloadSection measures what a reload that changes only service_ttl costs:
// requests to Consul around it, and how fast changes made soon after it
// reach DNS.
func reloadSection(t *testing.T, out *strings.Builder) {
	services := envInt("RELOAD_SERVICES", 2000)
	after := time.Duration(envInt("RELOAD_AFTER", 3)) * time.Second
	var (
		idle, reload   [2]float64 // requests in a window as long as after: proxy, metric
		applied        time.Duration
		watchedBefore  float64
		watchedAfter   float64
		changes        burst
		note           string
		agentBefore    agentState
		agentAfterLoad agentState
	)
	ok := t.Run("reload", func(t *testing.T) {
		agent := startBenchAgent(t, false, 10000, services, startupInstances)
		client := agent.Client()
		names, tg := changedServices(t, client, services, envInt("STARTUP_CHANGES", 40))
		server, err := startPlugin(t, agent, false, "service_ttl * 5s")
		if err != nil {
			note = err.Error()
			t.Fatal(err)
		}
		watchedBefore, _ = server.watchersStable()
		agentBefore = agentSettled(t, agent)

		count := func() [2]float64 { p, m := server.requests(); return [2]float64{p, m} }
		delta := func(a, b [2]float64) [2]float64 { return [2]float64{b[0] - a[0], b[1] - a[1]} }
		c0 := count()
		pause(after)
		idle = delta(c0, count())

		c0 = count()
		at := time.Now()
		server.reload(t, "service_ttl * 6s")
		dnsq.Wait(t, server.Addr, "service-0.service.consul.", dns.TypeA, time.Minute, func(m *dns.Msg) bool { return dnsq.TTL(m) == 6 })
		applied = time.Since(at)
		pause(time.Until(at.Add(after)))
		reload = delta(c0, count())
		watchedAfter = server.metric("coredns_consul_watched_services")
		t.Logf("reload: applied in %s; requests in the %s from it: %.0f (proxy), %.0f (metric); idle: %.0f, %.0f; watched %.0f -> %.0f",
			applied.Round(time.Millisecond), after, reload[0], reload[1], idle[0], idle[1], watchedBefore, watchedAfter)
		changes = makeChanges(t, client, server.Addr, agent.DNSAddr, names, tg)
		t.Logf("reload: changes from %s after it: %s", after, changes)
		agentAfterLoad = readAgent(t, agent)
	})

	fmt.Fprintf(out, `## After a reload that changes only a TTL

Method: a fresh single-server agent with limits.http_max_conns_per_client raised to 10000, loaded with
%d services x %d instances; CoreDNS with the plugin reading it over HTTP through the counting proxy,
with service_ttl * 5s. Once every watcher runs (coredns_consul_watched_services steady for 5 s) and the
agent has settled, the plugin's requests to Consul are counted over %d s of idle; then the Corefile is
rewritten with service_ttl * 6s and CoreDNS reloads it (SIGUSR1); the reload counts as applied when
answers carry the new TTL, and its requests are counted over the %d s from the signal. Then, %d s after
the signal, %d services change as in the start-up section (%s), with the same bound. Requests: at the proxy, and by coredns_consul_requests_total (counted when a request completes).

`, services, startupInstances, int(after.Seconds()), int(after.Seconds()), int(after.Seconds()), envInt("STARTUP_CHANGES", 40), kindsText())
	if !ok && changes.n == 0 {
		fmt.Fprintf(out, "Failed: %s\n\n", firstLine(note))
		return
	}
	fmt.Fprintf(out, "| requests in %d s idle (proxy; metric) | requests in the %d s from the reload (proxy; metric) | reload applied ms | watched before -> after | plugin seen | plugin p50 / p99 / max | Consul DNS seen | Consul DNS p50 / p99 / max | bound | within |\n", int(after.Seconds()), int(after.Seconds()))
	out.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(out, "| %.0f; %.0f | %.0f; %.0f | %.0f | %.0f -> %.0f | %s |\n\n", idle[0], idle[1], reload[0], reload[1], ms(applied),
		watchedBefore, watchedAfter, changes.cells())
	fmt.Fprintf(out, "No request beyond the idle rate (the proxy's count in the reload's window at most the idle window's + %d, the noise of so short a window): %s. Agent RSS %.0f MB once synced, %.0f MB after the reload and the changes.\n\n",
		reloadSlack, yesNo(reload[0] <= idle[0]+reloadSlack), agentBefore.rss/1e6, agentAfterLoad.rss/1e6)
	byKindHeader(out)
	changes.byKind(out, "after the reload")
	out.WriteString("\n")
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if line == "" {
		return "see the test log"
	}
	return strings.ReplaceAll(line, "|", "/")
}
