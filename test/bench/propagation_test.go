package bench

// The "cost" section of the side-by-side report: for three setups (plain
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
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/faultproxy"
	"github.com/coredns-consul/coredns-consul/test/freeport"

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
	want := strings.Split(costEnv("COST_SETUPS", "a,b,c"), ",")
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

func costEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// costRun measures one setup into r.
func costRun(t *testing.T, r *costResult) {
	s := r.setup
	changes := envInt("COST_CHANGES", 100)
	changes = min(changes, r.services/3, 250) // three disjoint sets of services; 250 addresses per set
	pace := time.Duration(envInt("COST_PACE_MS", 100)) * time.Millisecond
	idle := time.Duration(envInt("COST_IDLE", 30)) * time.Second
	timeout := time.Duration(envInt("COST_TIMEOUT", 60)) * time.Second

	agent := costStartAgent(t, s.tls, s.maxConns)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	consulagent.Populate(t, client, r.services, r.instances, max(r.instances, r.services*r.instances/25))
	t.Logf("setup %s: %d services x %d instances loaded in %s", s.name, r.services, r.instances, time.Since(start).Round(time.Millisecond))

	// Three disjoint sets of services: new instances with a check (A), new
	// instances without (B), health changes of an existing instance (H).
	perm := rand.Perm(r.services)
	setA, setB, setH := perm[:changes], perm[changes:2*changes], perm[2*changes:3*changes]
	name := func(s int) string { return fmt.Sprintf("service-%d", s) }
	type target struct {
		check api.HealthCheck
		ip    net.IP
	}
	health := make([]target, changes)
	for i, svc := range setH {
		entries, _, err := client.Health().Service(name(svc), "", false, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Service.ID, "-0") && len(e.Checks) > 0 {
				for _, c := range e.Checks {
					if c.ServiceID == e.Service.ID {
						health[i] = target{check: *c, ip: net.ParseIP(e.Node.Address)}
					}
				}
			}
		}
		if health[i].ip == nil {
			t.Fatalf("no instance 0 with a check in %s", name(svc))
		}
	}

	// The agent before the plugin: its peak RSS reset to the current RSS
	// once the loading has settled.
	time.Sleep(2 * time.Second)
	r.resetPeakOK = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", agent.Pid()), []byte("5"), 0) == nil
	time.Sleep(3 * time.Second)
	r.rssBefore, r.hwmBefore = costStatusKB(agent.Pid(), "VmRSS:"), costStatusKB(agent.Pid(), "VmHWM:")
	r.gorBefore = costGoroutines(t, agent.HTTPAddr)
	t.Logf("setup %s: agent before the plugin: RSS %.0f MB, peak %.0f MB (reset: %v), %.0f goroutines",
		s.name, r.rssBefore/1024, r.hwmBefore/1024, r.resetPeakOK, r.gorBefore)

	var proxy *faultproxy.Proxy
	var proxyLog costProxyLog
	block := ""
	if s.tls {
		block = fmt.Sprintf("  address https://%s\n  tls %s\n", agent.HTTPSAddr, agent.CAFile)
	} else {
		// The proxy logs a line for every request the plugin cancels (and
		// CoreDNS's exit cancels all): counted and summed up instead.
		log.SetOutput(&proxyLog)
		t.Cleanup(func() { log.SetOutput(os.Stderr) })
		proxy = faultproxy.New(t, agent.HTTPAddr)
		block = fmt.Sprintf("  address %s\n", proxy.Addr)
	}
	start = time.Now()
	agentPorts := []int{agent.port(agent.HTTPAddr), agent.port(agent.HTTPSAddr)}
	server, err := costStartCoreDNS(t, block, time.Duration(envInt("COST_READY_WAIT", 180))*time.Second, func() {
		t.Logf("agent: %d connections open, %.0f goroutines, RSS %.0f MB", costConns(agentPorts), costGoroutines(t, agent.HTTPAddr),
			costStatusKB(agent.Pid(), "VmRSS:")/1024)
	})
	if err != nil {
		r.note = err.Error()
		t.Error(err)
		return
	}
	r.readyS = time.Since(start).Seconds()
	// Synced with every watcher running: watched_services has not moved for
	// 5 s (at most 3 minutes).
	last, stable := -1.0, 0
	for deadline := time.Now().Add(3 * time.Minute); stable < 5 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		m := server.Metrics(t)
		w, _ := costMetric(m, "coredns_consul_watched_services")
		if w == last {
			stable++
		} else {
			last, stable = w, 0
		}
		r.watched = w
		r.unwatched, _ = costMetric(m, "coredns_consul_unwatched_services")
	}
	r.syncedS = time.Since(start).Seconds() - 5
	// The agent's side of the last watchers: its goroutine count steady
	// (within 1%) for 3 s, at most a minute.
	prev, steady := costGoroutines(t, agent.HTTPAddr), 0
	for deadline := time.Now().Add(time.Minute); steady < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		g := costGoroutines(t, agent.HTTPAddr)
		if math.Abs(g-prev) <= max(10, prev/100) {
			steady++
		} else {
			steady = 0
		}
		prev = g
	}
	r.rssAfter, r.hwmAfter = costStatusKB(agent.Pid(), "VmRSS:"), costStatusKB(agent.Pid(), "VmHWM:")
	r.gorAfter = costGoroutines(t, agent.HTTPAddr)
	r.conns = costConns(agentPorts)
	t.Logf("setup %s: plugin synced: %s", s.name, costPluginSummary(server.Metrics(t)))
	t.Logf("setup %s: ready %.1f s, %0.f watched / %.0f unwatched services stable at %.1f s; agent RSS %.0f MB, peak %.0f MB, %.0f goroutines, %d connections",
		s.name, r.readyS, r.watched, r.unwatched, r.syncedS, r.rssAfter/1024, r.hwmAfter/1024, r.gorAfter, r.conns)

	counts := func() (proxied, metric float64) {
		proxied = math.NaN()
		if proxy != nil {
			proxied = float64(proxy.Requests())
		}
		metric, ok := costMetric(server.Metrics(t), "coredns_consul_requests_total")
		if !ok {
			metric = math.NaN()
		}
		return proxied, metric
	}
	p0, m0 := counts()
	time.Sleep(idle)
	p1, m1 := counts()
	r.idleProxy, r.idleMetric = (p1-p0)/idle.Seconds(), (m1-m0)/idle.Seconds()
	t.Logf("setup %s: idle for %s: %.2f requests/s at the proxy, %.2f by the metric", s.name, idle, r.idleProxy, r.idleMetric)

	// The kinds of change, in this order so that no service is changed twice
	// in a row: the sets alternate.
	const node, nodeAddr = "cost-node", "10.254.0.1"
	ipA := func(i int) net.IP { return net.IPv4(192, 168, 201, byte(i+1)) }
	ipB := func(i int) net.IP { return net.IPv4(192, 168, 202, byte(i+1)) }
	setCheck := func(i int, status string) {
		c := health[i].check
		c.Status = status
		ok, resp, _, err := client.Txn().Txn(api.TxnOps{{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: c}}}, nil)
		if err != nil || !ok {
			t.Fatalf("setting %s to %s: %v %+v", c.CheckID, status, err, resp)
		}
	}
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
			func(i int, m *dns.Msg) bool { return costHasA(m, ipA(i)) }},
		{"new instance, no check", func(i int) string { return name(setB[i]) }, dns.TypeA,
			func(i int) {
				consulagent.Register(t, client, node, nodeAddr, &api.AgentService{ID: fmt.Sprintf("cost-nochk-%d", i),
					Service: name(setB[i]), Port: 80, Address: ipB(i).String()}, "")
			},
			func(i int, m *dns.Msg) bool { return costHasA(m, ipB(i)) }},
		{"check passing -> critical", func(i int) string { return name(setH[i]) }, dns.TypeA,
			func(i int) { setCheck(i, api.HealthCritical) },
			func(i int, m *dns.Msg) bool { return costAnswered(m) && !costHasA(m, health[i].ip) }},
		{"check critical -> passing", func(i int) string { return name(setH[i]) }, dns.TypeA,
			func(i int) { setCheck(i, api.HealthPassing) },
			func(i int, m *dns.Msg) bool { return costHasA(m, health[i].ip) }},
		{"port change, no check", func(i int) string { return name(setB[i]) }, dns.TypeSRV,
			func(i int) {
				consulagent.Register(t, client, node, nodeAddr, &api.AgentService{ID: fmt.Sprintf("cost-nochk-%d", i),
					Service: name(setB[i]), Port: 9000 + i, Address: ipB(i).String()}, "")
			},
			func(i int, m *dns.Msg) bool { return costHasPort(m, uint16(9000+i)) }},
		{"deregister, with a check", func(i int) string { return name(setA[i]) }, dns.TypeA,
			func(i int) { consulagent.Deregister(t, client, node, fmt.Sprintf("cost-chk-%d", i)) },
			func(i int, m *dns.Msg) bool { return costAnswered(m) && !costHasA(m, ipA(i)) }},
		{"deregister, no check", func(i int) string { return name(setB[i]) }, dns.TypeA,
			func(i int) { consulagent.Deregister(t, client, node, fmt.Sprintf("cost-nochk-%d", i)) },
			func(i int, m *dns.Msg) bool { return costAnswered(m) && !costHasA(m, ipB(i)) }},
	}
	for _, k := range kinds {
		res := costKindResult{name: k.name, n: changes}
		p0, m0 := counts()
		sweeps0, _ := costMetric(server.Metrics(t), "coredns_consul_sweeps_total")
		seen := costTime([]string{server.Addr, agent.DNSAddr}, changes, pace, timeout, k.write, func(i int) costChange {
			return costChange{name: k.service(i) + ".service.consul.", qtype: k.qtype, done: func(m *dns.Msg) bool { return k.done(i, m) }}
		})
		res.plugin, res.consul = seen[0], seen[1]
		// Settled: the requests the kind set off are over when the count
		// has moved by no more than the idle rate for 2 s (at most 60 s).
		p1, m1 := counts()
		for quiet, deadline := 0, time.Now().Add(time.Minute); quiet < 4 && time.Now().Before(deadline); {
			time.Sleep(500 * time.Millisecond)
			pn, mn := counts()
			if mn-m1 <= max(1, r.idleMetric) || (!math.IsNaN(pn) && pn-p1 <= max(1, r.idleProxy)) {
				quiet++
			} else {
				quiet = 0
			}
			p1, m1 = pn, mn
		}
		res.proxyPer, res.metricPer = (p1-p0)/float64(changes), (m1-m0)/float64(changes)
		sweeps1, _ := costMetric(server.Metrics(t), "coredns_consul_sweeps_total")
		res.sweeps = sweeps1 - sweeps0
		t.Logf("setup %s, %s: plugin %d/%d seen, p50 %.1f ms; Consul DNS %d/%d, p50 %.1f ms; %.2f requests per change (proxy), %.2f (metric), %.0f sweeps",
			s.name, k.name, len(res.plugin), changes, costQuantile(res.plugin, 50), len(res.consul), changes, costQuantile(res.consul, 50),
			res.proxyPer, res.metricPer, res.sweeps)
		r.kinds = append(r.kinds, res)
	}
	r.errorsAfter, _ = costMetric(server.Metrics(t), "coredns_consul_request_errors_total")
	if proxy != nil {
		t.Logf("setup %s: the proxy logged %d requests canceled by the plugin and %d other errors (%d requests in all)",
			s.name, proxyLog.canceled.Load(), proxyLog.other.Load(), proxy.Requests())
	}
}

// costProxyLog counts the reverse proxy's error lines instead of printing
// them: a blocking query the plugin cancels is one "context canceled".
type costProxyLog struct{ canceled, other atomic.Int64 }

func (l *costProxyLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if strings.Contains(line, "context canceled") {
			l.canceled.Add(1)
		} else if line != "" {
			l.other.Add(1)
		}
	}
	return len(p), nil
}

// costTime makes n changes, one every pace, and times each in the DNS
// servers at addrs side by side: how long from write(i) returning until the
// answer to change(i) shows it, for each server.
func costTime(addrs []string, n int, pace, timeout time.Duration, write func(i int), change func(i int) costChange) [][]time.Duration {
	feeds := make([]chan costChange, len(addrs))
	seen := make([][]time.Duration, len(addrs))
	var wg sync.WaitGroup
	for fi, addr := range addrs {
		feeds[fi] = make(chan costChange, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen[fi] = costWatch(addr, feeds[fi], timeout)
		}()
	}
	for i := range n {
		write(i)
		c := change(i)
		c.at = time.Now()
		for _, f := range feeds {
			f <- c
		}
		time.Sleep(pace)
	}
	for _, f := range feeds {
		close(f)
	}
	wg.Wait()
	return seen
}

// costChange is one change a watcher waits to see in DNS.
type costChange struct {
	name  string
	qtype uint16
	done  func(*dns.Msg) bool
	at    time.Time
}

// costWatch asks addr about every change fed to it, each pending one about
// every millisecond, and returns how long each took to show, from its
// write returning; a change not shown within timeout of the feed closing is
// left out (missing).
func costWatch(addr string, feed <-chan costChange, timeout time.Duration) []time.Duration {
	client := &dns.Client{Net: "udp", Timeout: time.Second}
	var seen []time.Duration
	var left []costChange
	open := true
	var deadline time.Time
	for open || len(left) > 0 {
		for more := open; more; {
			select {
			case c, ok := <-feed:
				if !ok {
					open, more = false, false
					deadline = time.Now().Add(timeout)
				} else {
					left = append(left, c)
				}
			default:
				more = false
			}
		}
		if !open && time.Now().After(deadline) {
			break
		}
		next := left[:0]
		for _, c := range left {
			m := new(dns.Msg)
			m.SetQuestion(c.name, c.qtype)
			m.SetEdns0(4096, false)
			resp, _, err := client.Exchange(m, addr)
			if err == nil && c.done(resp) {
				seen = append(seen, time.Since(c.at))
			} else {
				next = append(next, c)
			}
		}
		left = next
		time.Sleep(time.Millisecond)
	}
	return seen
}

// costAnswered reports whether m is a NOERROR answer with records: an
// instance's absence counts only from an answer that has the others.
func costAnswered(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 }

func costHasA(m *dns.Msg, ip net.IP) bool {
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok && a.A.Equal(ip) {
			return true
		}
	}
	return false
}

func costHasPort(m *dns.Msg, port uint16) bool {
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok && srv.Port == port {
			return true
		}
	}
	return false
}

// costQuantile is the q-th percentile of d in ms (NaN for none), by the
// ranks the propagation section uses: p50 the middle, p99 by rounding up,
// p100 the maximum.
func costQuantile(d []time.Duration, q int) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if q == 50 {
		return ms(s[len(s)/2])
	}
	return ms(s[(len(s)*q+99)/100-1])
}

// costMetric sums the samples of the metric name in a Prometheus text
// exposition; false when there are none.
func costMetric(text, name string) (float64, bool) {
	sum, found := 0.0, false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

// costPluginSummary is the plugin's own metrics in one line, histograms left out.
func costPluginSummary(text string) string {
	var parts []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "coredns_consul_") && !strings.Contains(line, "_bucket") && !strings.Contains(line, "timestamp") {
			parts = append(parts, strings.TrimPrefix(line, "coredns_consul_"))
		}
	}
	return strings.Join(parts, "; ")
}

// costConns counts the established TCP connections whose local port is one
// of ports: with the agent's ports, the connections open to the agent.
func costConns(ports []int) int {
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "01" { // ESTABLISHED
				continue
			}
			_, portHex, ok := strings.Cut(f[1], ":")
			port, err := strconv.ParseInt(portHex, 16, 32)
			if ok && err == nil && slices.Contains(ports, int(port)) {
				n++
			}
		}
	}
	return n
}

// costStatusKB reads a field of /proc/<pid>/status, in KB.
func costStatusKB(pid int, field string) float64 { return rssBytes(pid, field) / 1024 }

// costGoroutines is the agent's goroutine count: go_goroutines from its
// Prometheus metrics, else the JSON gauge consul.runtime.num_goroutines.
func costGoroutines(t *testing.T, httpAddr string) float64 {
	client := &http.Client{Timeout: 10 * time.Second}
	if resp, err := client.Get("http://" + httpAddr + "/v1/agent/metrics?format=prometheus"); err == nil {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			if v, ok := costMetric(string(body), "go_goroutines"); ok {
				return v
			}
		}
	}
	resp, err := client.Get("http://" + httpAddr + "/v1/agent/metrics")
	if err != nil {
		t.Logf("agent metrics: %v", err)
		return math.NaN()
	}
	defer resp.Body.Close()
	var m struct {
		Gauges []struct {
			Name  string
			Value float64
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Logf("agent metrics: %v", err)
		return math.NaN()
	}
	for _, g := range m.Gauges {
		if g.Name == "consul.runtime.num_goroutines" {
			return g.Value
		}
	}
	return math.NaN()
}

// costCoreDNS is CoreDNS with the plugin, run as corednsproc runs it but
// with a longer wait for ready: a first sync over HTTPS at 5,000 services
// took longer than corednsproc's 30 s on this machine.
type costCoreDNS struct {
	Addr, readyAddr, metricsAddr string
	cmd                          *exec.Cmd
	done                         chan struct{}
}

func (c *costCoreDNS) Pid() int { return c.cmd.Process.Pid }

// Metrics is the prometheus plugin's exposition ("" when it cannot be read).
func (c *costCoreDNS) Metrics(t *testing.T) string {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + c.metricsAddr + "/metrics")
	if err != nil {
		t.Logf("coredns metrics: %v", err)
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// costStartCoreDNS starts CoreDNS serving consul. with the consul block's
// settings, waits up to wait for it to be ready (logging the plugin's
// metrics and calling progress every 30 s meanwhile), and stops it when the
// test ends.
func costStartCoreDNS(t *testing.T, settings string, wait time.Duration, progress func()) (*costCoreDNS, error) {
	t.Helper()
	dnsPort, readyPort, metricsPort := freeport.Port(t), freeport.Port(t), freeport.Port(t)
	c := &costCoreDNS{
		Addr:        fmt.Sprintf("127.0.0.1:%d", dnsPort),
		readyAddr:   fmt.Sprintf("127.0.0.1:%d", readyPort),
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", metricsPort),
	}
	dir := t.TempDir()
	debug := "" // COST_DEBUG=1: the plugin's debug lines (sweeps and why) in the log
	if os.Getenv("COST_DEBUG") == "1" {
		debug = " debug\n"
	}
	corefile := fmt.Sprintf("consul.:%d {\n bind 127.0.0.1\n%s ready %s\n prometheus %s\n consul {\n%s }\n}\n",
		dnsPort, debug, c.readyAddr, c.metricsAddr, settings)
	if err := os.WriteFile(filepath.Join(dir, "Corefile"), []byte(corefile), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "coredns.log")
	if debug != "" {
		t.Cleanup(func() { // before t.TempDir's, which was registered first
			data, _ := os.ReadFile(logPath)
			for _, line := range strings.Split(string(data), "\n") {
				if strings.Contains(line, "swept") {
					t.Log(line)
				}
			}
		})
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(corednsproc.Binary(t), "-conf", filepath.Join(dir, "Corefile"))
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting coredns: %v", err)
	}
	c.done = make(chan struct{})
	go func() { c.cmd.Wait(); logFile.Close(); close(c.done) }()
	output := func() string {
		data, _ := os.ReadFile(logPath)
		lines := strings.Split(string(data), "\n")
		lines = slices.DeleteFunc(lines, func(l string) bool { return strings.Contains(l, "plugin/ready: Plugins not ready") })
		return strings.Join(lines[max(0, len(lines)-30):], "\n")
	}
	t.Cleanup(func() {
		select {
		case <-c.done:
			return
		default:
		}
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Errorf("coredns did not stop within 10s of SIGTERM; killing it")
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	client := &http.Client{Timeout: time.Second}
	nextReport := time.Now().Add(30 * time.Second)
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(nextReport) {
			nextReport = nextReport.Add(30 * time.Second)
			t.Logf("coredns not ready yet: %s", costPluginSummary(c.Metrics(t)))
			if progress != nil {
				progress()
			}
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("CoreDNS exited during start-up:\n%s", output())
		default:
		}
		resp, err := client.Get("http://" + c.readyAddr + "/ready")
		if err != nil {
			continue
		}
		resp.Body.Close()
		m := new(dns.Msg)
		m.SetQuestion("consul.", dns.TypeSOA)
		if _, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(m, c.Addr); resp.StatusCode == http.StatusOK && err == nil {
			return c, nil
		}
	}
	summary := costPluginSummary(c.Metrics(t))
	t.Logf("coredns output (last lines):\n%s", output())
	return nil, fmt.Errorf("CoreDNS not ready after %s (plugin metrics: %s)", wait, summary)
}

// costAgent is a single-server Consul agent run as consulagent.Process runs
// it, with Prometheus metrics on and, when asked, a raised connection limit.
type costAgent struct {
	HTTPAddr, HTTPSAddr, DNSAddr, CAFile string
	cmd                                  *exec.Cmd
	done                                 chan struct{}
}

func (a *costAgent) Pid() int { return a.cmd.Process.Pid }

// port is the port of one of the agent's addresses (0 for none).
func (a *costAgent) port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func costStartAgent(t *testing.T, withTLS bool, maxConns int) *costAgent {
	t.Helper()
	ports := make([]int, 5) // http, server, serf lan, serf wan, dns
	for i := range ports {
		ports[i] = freeport.Port(t)
	}
	a := &costAgent{
		HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		DNSAddr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[4])),
	}
	args := []string{"agent", "-server", "-bootstrap-expect", "1", "-node", "consul-cost",
		"-data-dir", t.TempDir(), "-bind", "127.0.0.1", "-client", "127.0.0.1", "-log-level", "warn",
		"-http-port", strconv.Itoa(ports[0]), "-server-port", strconv.Itoa(ports[1]),
		"-serf-lan-port", strconv.Itoa(ports[2]), "-serf-wan-port", strconv.Itoa(ports[3]),
		"-dns-port", strconv.Itoa(ports[4]), "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-hcl", "performance { raft_multiplier = 1 }", "-hcl", "disable_update_check = true",
		"-hcl", `telemetry { prometheus_retention_time = "1m" disable_hostname = true }`}
	if maxConns > 0 {
		args = append(args, "-hcl", fmt.Sprintf("limits { http_max_conns_per_client = %d }", maxConns))
	}
	if withTLS {
		dir := t.TempDir()
		for _, tlsArgs := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server", "-dc", "dc1"}} {
			cmd := exec.Command(consulagent.Binary(), tlsArgs...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("consul %v: %v\n%s", tlsArgs, err, out)
			}
		}
		a.CAFile = filepath.Join(dir, "consul-agent-ca.pem")
		https := freeport.Port(t)
		a.HTTPSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(https))
		args = append(args, "-https-port", strconv.Itoa(https), "-hcl", fmt.Sprintf(
			`tls { defaults { ca_file = %q cert_file = %q key_file = %q } }`, a.CAFile,
			filepath.Join(dir, "dc1-server-consul-0.pem"), filepath.Join(dir, "dc1-server-consul-0-key.pem")))
	}
	a.cmd = exec.Command(consulagent.Binary(), args...)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "consul.log"))
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("starting consul: %v", err)
	}
	a.done = make(chan struct{})
	go func() { a.cmd.Wait(); logFile.Close(); close(a.done) }()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill()
			<-a.done
		}
	})
	// 90 s: a make bench once saw a fresh agent without a leader after 30 s,
	// while the previous setup's agent and CoreDNS were still shutting down.
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + a.HTTPAddr + "/v1/catalog/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Consul-Knownleader") == "true" {
				return a
			}
		}
	}
	out, _ := os.ReadFile(logFile.Name())
	t.Fatalf("consul at %s has no leader after 90s; its log:\n%s", a.HTTPAddr, out)
	return nil
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
				len(k.plugin), k.n, num(costQuantile(k.plugin, 50), "%.1f"), num(costQuantile(k.plugin, 99), "%.1f"), num(costQuantile(k.plugin, 100), "%.1f"),
				len(k.consul), k.n, num(costQuantile(k.consul, 50), "%.1f"), num(costQuantile(k.consul, 99), "%.1f"), num(costQuantile(k.consul, 100), "%.1f"),
				num(k.proxyPer, "%.2f"), num(k.metricPer, "%.2f"), k.sweeps)
		}
		out.WriteString("\n")
	}
}
