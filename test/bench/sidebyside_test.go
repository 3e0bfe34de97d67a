package bench

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/procfs"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

var (
	report   = flag.String("report", "", "run the side-by-side benchmark and write its report to this file (make bench)")
	sections = flag.String("sections", "throughput,propagation,outage,scale,cost,startup,reload,datacenters,queries,peers", "the parts of the report to run, comma-separated")
)

// section reports whether the report's part name is to run.
func section(name string) bool { return slices.Contains(strings.Split(*sections, ","), name) }

// contender is one way of answering *.service.consul, measured side by side.
type contender struct {
	name string
	addr string
	pid  int
	// serves reports whether the contender answers names of the zone (whoami
	// answers every name with the client's address: the server's ceiling).
	serves bool
}

// TestSideBySide measures the plugin beside what users would run instead, in
// one run on one machine with one query mix, and writes docs/benchmarks.md.
func TestSideBySide(t *testing.T) {
	if *report == "" {
		t.Skip("a benchmark harness: run it with -report FILE, as make bench does")
	}
	var out strings.Builder
	header(&out)
	// Each part runs as a subtest whose agents and servers stop when it
	// ends: left running, the scale part's idle 5,000 x 10 agent took 12% of
	// a core through the parts after it, and slowed what they measured.
	parts := []struct {
		name     string
		sections []string // the -sections that run it
		run      func(t *testing.T, out *strings.Builder)
	}{
		{"side by side", []string{"throughput", "propagation", "outage"}, sideBySide},
		{"scale", []string{"scale"}, scale},
		{"cost", []string{"cost"}, costSection},
		{"startup", []string{"startup"}, startupSection},
		{"reload", []string{"reload"}, reloadSection},
		{"datacenters", []string{"datacenters"}, datacentersSection},
		{"queries", []string{"queries"}, queriesSection},
		{"peers", []string{"peers"}, peersSection},
	}
	for _, p := range parts {
		if slices.ContainsFunc(p.sections, section) {
			t.Run(p.name, func(t *testing.T) { p.run(t, &out) })
		}
	}

	if err := os.WriteFile(*report, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", *report)
}

// sideBySide is the parts that compare the plugin with every contender on
// one agent: throughput, propagation and outage.
func sideBySide(t *testing.T, out *strings.Builder) {
	const services, instances = 1000, 5
	agent := consulagent.StartProcessWith(t, consulagent.Options{TLS: true, HCL: consulagent.Observable})
	client := agent.Client()
	consulagent.Populate(t, client, services, instances, 200)

	zoneFile := filepath.Join(t.TempDir(), "consul.zone")
	writeZone(t, client, zoneFile)
	stopRegen := regenerate(t, client, zoneFile, 5*time.Second)
	defer stopRegen()

	start := func(cf corednsproc.Corefile) *corednsproc.Server {
		cf.Zone = "."
		return corednsproc.Start(t, cf.Build)
	}
	plugin := start(corednsproc.Corefile{ConsulZones: "consul.", Consul: []string{"address " + agent.HTTPAddr}})
	// The same plugin over HTTPS, where HTTP/2 lets every service have its
	// own blocking query within the agent's connection limit.
	pluginTLS := start(corednsproc.Corefile{ConsulZones: "consul.", Consul: []string{"address https://" + agent.HTTPSAddr, "tls " + agent.CAFile}})
	forward := start(corednsproc.Corefile{After: []string{"cache {\n    serve_stale\n}", "forward consul. " + agent.DNSAddr}})
	file := start(corednsproc.Corefile{After: []string{"file " + zoneFile + " consul. {\n    reload 1s\n}"}})
	whoami := start(corednsproc.Corefile{After: []string{"whoami"}})
	contenders := []contender{
		{"consul plugin", plugin.Addr, plugin.Pid(), true},
		{"consul plugin over HTTPS", pluginTLS.Addr, pluginTLS.Pid(), true},
		{"Consul DNS", agent.DNSAddr, agent.Pid(), true},
		{"forward+cache (serve_stale)", forward.Addr, forward.Pid(), true},
		{"file (consul-template style, 5s)", file.Addr, file.Pid(), true},
		{"whoami (ceiling)", whoami.Addr, whoami.Pid(), false},
	}

	// Services from 800 on are never asked before the outage: its cold names.
	const asked = 800
	queries := queryMix(t, asked)
	if section("throughput") {
		throughput(t, out, slices.Delete(slices.Clone(contenders), 1, 2), queries) // HTTP or HTTPS to Consul makes no difference here
	}
	if section("propagation") {
		// From an agent at rest: run alone, propagation would otherwise
		// start while the plugins' watchers do.
		agentSettled(t, agent)
		propagation(t, out, client, contenders[:5], asked)
	}
	if section("outage") {
		outage(t, out, agent, contenders[:5], asked, services, instances)
	}
}

func header(out *strings.Builder) {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.*)`).FindSubmatch(data); m != nil {
			cpu = string(m[1])
		}
	}
	dnsperfVersion, _ := exec.Command("dnsperf", "-h").CombinedOutput()
	v := regexp.MustCompile(`DNS Performance Testing Tool\s*Version ([\d.]+)`).FindSubmatch(dnsperfVersion)
	dp := "dnsperf"
	if v != nil {
		dp += " " + string(v[1])
	}
	consulVersion, _ := exec.Command(consulagent.Binary(), "version").Output()
	fmt.Fprintf(out, `# Benchmarks

Regenerated by `+"`make bench`"+` (test/bench/sidebyside_test.go) on %s: %d cores (%s), %s/%s, %s,
%s, CoreDNS v1.15.0, %s. The load generators run on the same cores as the servers: the
servers are pinned to core 0 and the load generator to core 1 where taskset exists, and only ratios
from this one run are compared.

Catalog: 1,000 services x 5 instances (one passing check each) on 200 nodes, in a single-server agent.
Query mix: A and SRV for every service, in random order.

`, time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), cpu, runtime.GOOS, runtime.GOARCH,
		runtime.Version(), strings.SplitN(string(consulVersion), "\n", 2)[0], dp)
}

// queryMix writes a dnsperf query file: A and SRV for every service.
func queryMix(t *testing.T, services int) string {
	var lines []string
	for s := range services {
		lines = append(lines, fmt.Sprintf("service-%d.service.consul A", s), fmt.Sprintf("service-%d.service.consul SRV", s))
	}
	rand.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	path := filepath.Join(t.TempDir(), "queries")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pin moves a process's threads to one core, when taskset is there.
func pin(pid int, core string) {
	if _, err := exec.LookPath("taskset"); err == nil {
		exec.Command("taskset", "-a", "-p", "-c", core, strconv.Itoa(pid)).Run()
	}
}

type perf struct {
	qps, avgMs, p50Ms, p99Ms float64
	lost                     string
}

// rounds is how many times throughput alternates between the contenders:
// medians of alternations resist a noisy neighbour better than one run each.
const rounds = 5

func throughput(t *testing.T, out *strings.Builder, contenders []contender, queries string) {
	results := make([]perf, len(contenders))
	qps := make([][]float64, len(contenders))
	index := func(name string) int {
		return slices.IndexFunc(contenders, func(c contender) bool { return strings.HasPrefix(c.name, name) })
	}
	// The plugin, whoami and forward+cache one after the other in each
	// round: the machine's speed drifts by as much as a fifth between runs
	// tens of seconds apart, and a ratio of two runs side by side drifts less.
	order := []int{index("consul plugin"), index("whoami"), index("forward")}
	for i := range contenders {
		if !slices.Contains(order, i) {
			order = append(order, i)
		}
	}
	for round := range rounds {
		for _, i := range order {
			c := contenders[i]
			pin(c.pid, "0")
			regenerationPaused.Store(!strings.HasPrefix(c.name, "file"))
			r := dnsperf(t, c, queries)
			qps[i] = append(qps[i], r.qps)
			if round == 0 {
				results[i] = r
			}
		}
	}
	for i, c := range contenders {
		regenerationPaused.Store(!strings.HasPrefix(c.name, "file"))
		results[i].qps = median(qps[i])
		results[i].p50Ms, results[i].p99Ms, _ = latencies(t, c, queries, 5*time.Second)
		t.Logf("%s: %.0f qps (rounds %.0f), p50 %.3f ms, p99 %.3f ms", c.name, results[i].qps, qps[i], results[i].p50Ms, results[i].p99Ms)
	}
	ceiling := results[len(results)-1].qps
	byName := func(name string) (perf, contender) {
		for i, c := range contenders {
			if strings.HasPrefix(c.name, name) {
				return results[i], c
			}
		}
		return perf{}, contender{}
	}
	fmt.Fprintf(out, "## Throughput and latency\n\ndnsperf, 10 s per contender, 20 outstanding queries, %d rounds alternating between the contenders, each round measuring the plugin, whoami and forward+cache one after the other (qps: the median; mean latency and lost: the first round); a Go client with 4 concurrent workers for 5 s (p50, p99). The zone file is regenerated only while its own server is measured.\nThe plugin over HTTPS answers from the same kind of snapshot as over HTTP and is left out here.\n\n", rounds)
	fmt.Fprintf(out, "| contender | qps | vs whoami | mean ms | p50 ms | p99 ms | lost |\n|---|---|---|---|---|---|---|\n")
	for i, c := range contenders {
		r := results[i]
		fmt.Fprintf(out, "| %s | %.0f | %.2f | %.3f | %.3f | %.3f | %s |\n", c.name, r.qps, r.qps/ceiling, r.avgMs, r.p50Ms, r.p99Ms, r.lost)
	}
	p, plugin := byName("consul plugin")
	fwd, _ := byName("forward")
	consulDNS, _ := byName("Consul DNS")
	_, whoami := byName("whoami")
	fmt.Fprintf(out, "\nRatios of the plugin's medians: %.2f x whoami (target >= 0.9), %.2f x forward+cache (target >= 1.2), %.2f x Consul DNS (target >= 5).\n",
		p.qps/ceiling, p.qps/fwd.qps, p.qps/consulDNS.qps)
	perRound := func(other int) (ratios []float64) {
		for r := range rounds {
			ratios = append(ratios, qps[index("consul plugin")][r]/qps[other][r])
		}
		return ratios
	}
	vsWhoami, vsForward := perRound(index("whoami")), perRound(index("forward"))
	fmt.Fprintf(out, "Ratios round by round (the plugin and the other measured one after the other): x whoami %.2f, median %.2f; x forward+cache %.2f, median %.2f.\n\n",
		vsWhoami, median(vsWhoami), vsForward, median(vsForward))

	// Latency under load, not at saturation: both servers get the same
	// paced load, 80% of what the plugin answers at most.
	regenerationPaused.Store(true)
	defer regenerationPaused.Store(false)
	load := 0.8 * p.qps
	pluginP99, pluginSeen := paced(t, plugin, queries, load)
	whoamiP99, whoamiSeen := paced(t, whoami, queries, load)
	t.Logf("p99 at %.0f qps: plugin %.3f ms (%d answers), whoami %.3f ms (%d answers)", load, pluginP99, pluginSeen, whoamiP99, whoamiSeen)
	fmt.Fprintf(out, "At 80%% of the plugin's peak (%.0f qps, dnsperf paced for 10 s, every answer's latency): p99 %.3f ms for the plugin (%d answers), %.3f ms for whoami (%d answers): %.2f x whoami (target <= 1.2).\n\n",
		load, pluginP99, pluginSeen, whoamiP99, whoamiSeen, pluginP99/whoamiP99)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// paced sends qps queries per second for 10 s with dnsperf and returns the
// p99 of every answer's latency, in ms, and the number of answers.
func paced(t *testing.T, c contender, queries string, qps float64) (float64, int) {
	host, port, _ := net.SplitHostPort(c.addr)
	args := []string{"dnsperf", "-s", host, "-p", port, "-d", queries, "-l", "10", "-c", "4", "-q", "500", "-t", "2", "-Q", strconv.Itoa(int(qps)), "-v"}
	if _, err := exec.LookPath("taskset"); err == nil {
		args = append([]string{"taskset", "-c", "1"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	outBytes, err := cmd.Output()
	if err != nil {
		t.Fatalf("dnsperf against %s: %v", c.name, err)
	}
	var lat []float64
	for _, line := range strings.Split(string(outBytes), "\n") {
		// "> NOERROR name type latency-in-seconds"
		if !strings.HasPrefix(line, "> ") {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			lat = append(lat, v*1000)
		}
	}
	if len(lat) == 0 {
		t.Fatalf("dnsperf against %s reported no answer", c.name)
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100], len(lat)
}

func dnsperf(t *testing.T, c contender, queries string) perf {
	host, port, _ := net.SplitHostPort(c.addr)
	args := []string{"dnsperf", "-s", host, "-p", port, "-d", queries, "-l", "10", "-c", "4", "-q", "20", "-t", "2"}
	if _, err := exec.LookPath("taskset"); err == nil {
		args = append([]string{"taskset", "-c", "1"}, args...)
	}
	outBytes, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("dnsperf against %s: %v\n%s", c.name, err, outBytes)
	}
	text := string(outBytes)
	num := func(re string) float64 {
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("dnsperf output without %q:\n%s", re, text)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	lost := regexp.MustCompile(`Queries lost:\s*(\d+ \([\d.]+%\))`).FindStringSubmatch(text)
	r := perf{qps: num(`Queries per second:\s*([\d.]+)`), avgMs: num(`Average Latency \(s\):\s*([\d.]+)`) * 1000}
	if lost != nil {
		r.lost = lost[1]
	}
	return r
}

// latencies runs a closed-loop Go client and returns p50 and p99 in ms. It
// builds its questions once and sends them with a client per worker, rather
// than asking through dnsq, so that the client's own allocations stay out of
// the latencies it measures.
func latencies(t *testing.T, c contender, queries string, d time.Duration) (p50, p99 float64, n int) {
	f, err := os.Open(queries)
	if err != nil {
		t.Fatal(err)
	}
	var qs []*dns.Msg
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(fields[0]), dns.StringToType[fields[1]])
		m.SetEdns0(4096, false)
		qs = append(qs, m)
	}
	f.Close()
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &dns.Client{Net: "udp", Timeout: time.Second}
			var mine []time.Duration
			for i := w; time.Now().Before(deadline); i += 4 {
				start := time.Now()
				if _, _, err := client.Exchange(qs[i%len(qs)], c.addr); err == nil {
					mine = append(mine, time.Since(start))
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(all)
	if len(all) == 0 {
		return 0, 0, 0
	}
	return ms(all[len(all)/2]), ms(all[len(all)*99/100]), len(all)
}

// propagation registers new instances and times, for each contender, the
// first answer that holds them; then it removes them, and waits until no
// contender answers them, so that the outage starts from the catalog it
// was given.
func propagation(t *testing.T, out *strings.Builder, client *api.Client, contenders []contender, asked int) {
	const changes, pace, timeout = 100, 50 * time.Millisecond, 120 * time.Second
	service := func(i int) string { return fmt.Sprintf("service-%d", i*7%asked) }
	ip := func(i int) net.IP { return net.IPv4(192, 168, 200, byte(i+1)) }
	var addrs []string
	for _, c := range contenders {
		addrs = append(addrs, c.addr)
	}
	register := func(i int) {
		consulagent.Register(t, client, "prop-node", "10.255.0.1", &api.AgentService{
			ID: fmt.Sprintf("prop-%d", i), Service: service(i), Port: 80, Address: ip(i).String(),
		}, api.HealthPassing)
	}
	seen := timeChanges(addrs, changes, pace, timeout, register, func(i int) change {
		return change{name: service(i) + ".service.consul.", qtype: dns.TypeA, done: func(m *dns.Msg) bool { return dnsq.HasA(m, ip(i)) }}
	})
	fmt.Fprintf(out, "## Propagation\n\n%d registrations of new instances, one every 50 ms, each to another service; for each\ncontender, the time from the registration returning to the first answer holding the new instance\n(each pending name is asked again every millisecond or so, so the figures include up to a few ms of\npolling). Not answered within 120 s of the last registration counts as missing.\n\n", changes)
	fmt.Fprintf(out, "| contender | seen | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n")
	for ci, con := range contenders {
		d := seen[ci]
		if len(d) == 0 {
			fmt.Fprintf(out, "| %s | 0/%d | - | - | - |\n", con.name, changes)
			continue
		}
		fmt.Fprintf(out, "| %s | %d/%d | %.1f | %.1f | %.1f |\n", con.name, len(d), changes, quantile(d, 50), quantile(d, 99), quantile(d, 100))
	}
	out.WriteString("\n")
	deregister := func(i int) { consulagent.Deregister(t, client, "prop-node", fmt.Sprintf("prop-%d", i)) }
	timeChanges(addrs, changes, time.Millisecond, timeout, deregister, func(i int) change {
		return change{name: service(i) + ".service.consul.", qtype: dns.TypeA, done: func(m *dns.Msg) bool { return !dnsq.HasA(m, ip(i)) }}
	})
}

// outage kills Consul and asks every contender, for the outage's duration,
// for names asked before it (warm) and names never asked (cold).
func outage(t *testing.T, out *strings.Builder, agent *consulagent.Process, contenders []contender, asked, services, instances int) {
	duration := time.Duration(envInt("BENCH_OUTAGE", 60)) * time.Second
	warm := asked // services 0..asked-1 were asked before the outage; the rest never
	ask := func(addr string, s int, qtype uint16) bool {
		resp, err := dnsq.Ask(addr, fmt.Sprintf("service-%d.service.consul.", s), qtype, dnsq.EDNS(4096), dnsq.Timeout(500*time.Millisecond))
		return err == nil && resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == instances
	}
	for _, con := range contenders {
		for s := range warm {
			ask(con.addr, s, dns.TypeA)
		}
	}
	agent.Kill()
	// Each contender gets the same outage; it starts when Consul is dead.
	type tally struct{ warmOK, warmN, coldOK, coldN int }
	tallies := make([]tally, len(contenders))
	var wg sync.WaitGroup
	for ci, con := range contenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(duration)
			cold, i := asked, 0
			wait.Every(5*time.Millisecond, nil, func() bool {
				if ask(con.addr, i%warm, dns.TypeA) {
					tallies[ci].warmOK++
				}
				tallies[ci].warmN++
				if cold < services { // each cold name asked once: the first ask is what counts
					if ask(con.addr, cold, dns.TypeA) {
						tallies[ci].coldOK++
					}
					tallies[ci].coldN++
					cold++
				}
				i++
				return time.Now().Before(deadline)
			})
		}()
	}
	wg.Wait()
	fmt.Fprintf(out, "## Outage\n\nConsul killed (SIGKILL) for %s. Names asked before the outage (warm: %d services, asked by the\nthroughput test and again just before) are asked again throughout; names no contender was ever asked\n(cold: %d services) are each asked once during the outage. Correct = NOERROR with all %d instances.\n\n", duration, asked, services-asked, instances)
	fmt.Fprintf(out, "| contender | warm answered | cold answered |\n|---|---|---|\n")
	for ci, con := range contenders {
		tl := tallies[ci]
		fmt.Fprintf(out, "| %s | %.1f%% (%d/%d) | %.1f%% (%d/%d) |\n", con.name,
			pct(tl.warmOK, tl.warmN), tl.warmOK, tl.warmN, pct(tl.coldOK, tl.coldN), tl.coldOK, tl.coldN)
	}
	out.WriteString("\nThe file contender answers from its last generated zone: it does not depend on Consul, but changes reach\nit only at the next generation (see propagation).\n\n")
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// scale loads 5,000 services x 10 instances and measures the plugin alone.
func scale(t *testing.T, out *strings.Builder) {
	services, instances := envInt("BENCH_SCALE_SERVICES", 5000), 10
	agent := consulagent.StartProcess(t)
	consulagent.Populate(t, agent.Client(), services, instances, services*instances/20)
	corednsproc.Binary(t)
	start := time.Now()
	server := corednsproc.Start(t, corednsproc.Corefile{Consul: []string{"address " + agent.HTTPAddr}}.Build)
	ready := time.Since(start)
	pin(server.Pid(), "0")
	queries := queryMix(t, services)
	r := dnsperf(t, contender{name: "plugin at scale", addr: server.Addr}, queries)
	_, rss, err := procfs.Memory(server.Pid())
	if err != nil {
		t.Error(err)
	}
	fmt.Fprintf(out, "## Scale\n\n%d services x %d instances: the plugin's CoreDNS ready (first complete sync) %.1f s after start,\npeak RSS %.0f MB, %.0f qps with the A/SRV mix over all %d services (dnsperf, as above).\n\n",
		services, instances, ready.Seconds(), rss/1e6, r.qps, services)
}

// writeZone writes the zone a consul-template job would generate: for each
// service, its passing and warning instances as A and SRV records.
func writeZone(t *testing.T, client *api.Client, path string) {
	list, meta, err := client.Catalog().Services(&api.QueryOptions{AllowStale: true})
	if err != nil {
		t.Logf("zone generation: %v", err)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN consul.\n@ 0 IN SOA ns.consul. hostmaster.consul. %d 3600 600 86400 0\n@ 0 IN NS ns.consul.\nns 0 IN A 127.0.0.1\n", meta.LastIndex)
	names := make([]string, 0, len(list))
	for name := range list {
		names = append(names, name)
	}
	sort.Strings(names)
	nodes := map[string]string{}
	for _, name := range names {
		entries, _, err := client.Health().Service(name, "", false, &api.QueryOptions{AllowStale: true})
		if err != nil {
			t.Logf("zone generation: %v", err)
			return
		}
		for _, e := range entries {
			if e.Checks.AggregatedStatus() == api.HealthCritical {
				continue
			}
			addr := e.Service.Address
			if addr == "" {
				addr = e.Node.Address
			}
			fmt.Fprintf(&b, "%s.service 0 IN A %s\n", name, addr)
			fmt.Fprintf(&b, "%s.service 0 IN SRV 1 1 %d %s.node.dc1.consul.\n", name, e.Service.Port, e.Node.Node)
			nodes[e.Node.Node] = e.Node.Address
		}
	}
	for node, addr := range nodes {
		fmt.Fprintf(&b, "%s.node.dc1 0 IN A %s\n", node, addr)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err == nil {
		os.Rename(tmp, path)
	}
}

// regenerate rewrites the zone every interval, as consul-template would.
// regenerationPaused holds the zone file's regeneration while throughput
// measures other contenders: reading the whole catalog every 5 s loads Consul
// and the machine in bursts, which disturbed the other contenders' figures.
var regenerationPaused atomic.Bool

func regenerate(t *testing.T, client *api.Client, path string, interval time.Duration) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait.Every(interval, stop, func() bool {
			if !regenerationPaused.Load() {
				writeZone(t, client, path)
			}
			return true
		})
	}()
	return func() { close(stop); <-done }
}
