package bench

// What every section measures with: changes timed in several DNS servers
// side by side, quantiles, and waits for a process to settle. The sections
// wait on what they observe; pause is the one wait for time itself, where
// the time is what is measured (an idle window, a delay after start).
//
// How the sections set up what they measure: an agent with a catalog, the
// plugin's CoreDNS in front of it (directly or through a counting proxy),
// and the waits that tell when either has settled.

import (
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/faultproxy"
	"github.com/coredns-consul/coredns-consul/test/metrics"
	"github.com/coredns-consul/coredns-consul/test/procfs"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pause lets d pass: the length of a window being measured, or a delay that
// is part of the scenario. Nothing else in the benchmarks waits for time.
func pause(d time.Duration) { time.Sleep(d) }

// settle reads a value every interval until n reads in a row are each near
// the one before, for at most within; it returns the last value read and
// whether it settled.
func settle[T any](within, interval time.Duration, n int, read func() T, near func(prev, cur T) bool) (T, bool) {
	prev, run := read(), 0
	ok := wait.Poll(within, interval, nil, func() bool {
		cur := read()
		if near(prev, cur) {
			run++
		} else {
			run = 0
		}
		prev = cur
		return run >= n
	})
	return prev, ok
}

// within1pct says two goroutine counts are the same but for noise.
func within1pct(prev, cur float64) bool { return math.Abs(cur-prev) <= max(10, prev/100) }

func equal[T comparable](prev, cur T) bool { return prev == cur }

// change is one change a watcher waits to see in DNS.
type change struct {
	name  string
	qtype uint16
	done  func(*dns.Msg) bool
	kind  string // what kind of change, for figures by kind
	at    time.Time
}

// observed is how long a change of a kind took to show.
type observed struct {
	kind string
	took time.Duration
}

// timeChanges makes n changes, one every pace, and times each in the DNS
// servers at addrs side by side: how long from write(i) returning until the
// answer to describe(i) shows it, for each server. A change not shown within
// timeout of the last write is left out (missing).
func timeChanges(addrs []string, n int, pace, timeout time.Duration, write func(i int), describe func(i int) change) [][]time.Duration {
	out := make([][]time.Duration, len(addrs))
	for i, obs := range observeChanges(addrs, n, pace, timeout, write, describe) {
		for _, o := range obs {
			out[i] = append(out[i], o.took)
		}
	}
	return out
}

// observeChanges is timeChanges with each time's kind of change.
func observeChanges(addrs []string, n int, pace, timeout time.Duration, write func(i int), describe func(i int) change) [][]observed {
	feeds := make([]chan change, len(addrs))
	seen := make([][]observed, len(addrs))
	var wg sync.WaitGroup
	for fi, addr := range addrs {
		feeds[fi] = make(chan change, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen[fi] = watchChanges(addr, feeds[fi], timeout)
		}()
	}
	i := 0
	wait.Every(pace, nil, func() bool {
		write(i)
		c := describe(i)
		c.at = time.Now()
		for _, f := range feeds {
			f <- c
		}
		i++
		return i < n
	})
	for _, f := range feeds {
		close(f)
	}
	wg.Wait()
	return seen
}

// watchChanges asks addr about every change fed to it, each pending one
// about every millisecond, and returns how long each took to show, from its
// write returning; a change not shown within timeout of the feed closing is
// left out (missing).
func watchChanges(addr string, feed <-chan change, timeout time.Duration) []observed {
	var seen []observed
	var left []change
	open := true
	var deadline time.Time
	wait.Poll(0, time.Millisecond, nil, func() bool {
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
		if !open && (len(left) == 0 || time.Now().After(deadline)) {
			return true
		}
		next := left[:0]
		for _, c := range left {
			resp, err := dnsq.Ask(addr, c.name, c.qtype, dnsq.EDNS(4096), dnsq.Timeout(time.Second))
			if err == nil && c.done(resp) {
				seen = append(seen, observed{c.kind, time.Since(c.at)})
			} else {
				next = append(next, c)
			}
		}
		left = next
		return false
	})
	return seen
}

// quantile is the q-th percentile of d in ms (NaN for none): p50 the
// middle, p99 by rank rounded up (so below 100 values, the maximum), p100
// the maximum.
func quantile(d []time.Duration, q int) float64 {
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

// startBenchAgent starts an Observable single-server agent, serving HTTPS too
// when tls, with limits.http_max_conns_per_client raised to maxConns when
// that is not 0, and loads services x instances into it.
func startBenchAgent(t *testing.T, tls bool, maxConns, services, instances int) *consulagent.Process {
	t.Helper()
	hcl := consulagent.Observable
	if maxConns > 0 {
		hcl = append(hcl[:len(hcl):len(hcl)], fmt.Sprintf("limits { http_max_conns_per_client = %d }", maxConns))
	}
	agent := consulagent.StartProcessWith(t, consulagent.Options{Name: "consul-bench", TLS: tls, HCL: hcl})
	began := time.Now()
	consulagent.Populate(t, agent.Client(), services, instances, max(instances, services*instances/25))
	t.Logf("%d services x %d instances loaded in %s", services, instances, time.Since(began).Round(time.Millisecond))
	return agent
}

// agentState is what the sections report of the agent: memory in bytes
// and goroutines.
type agentState struct{ rss, peak, goroutines float64 }

func readAgent(t *testing.T, agent *consulagent.Process) agentState {
	rss, peak, err := procfs.Memory(agent.Pid())
	if err != nil {
		t.Logf("agent memory: %v", err)
	}
	g, err := agent.Goroutines()
	if err != nil {
		t.Logf("agent goroutines: %v", err)
		g = math.NaN()
	}
	return agentState{rss, peak, g}
}

// agentSettled waits until the agent's goroutine count is steady (within 1%
// for 3 s, at most a minute): a catalog loaded, or the plugin's watchers
// all open.
func agentSettled(t *testing.T, agent *consulagent.Process) agentState {
	settle(time.Minute, time.Second, 3, func() float64 { return readAgent(t, agent).goroutines }, within1pct)
	return readAgent(t, agent)
}

// baseline settles the agent before the plugin starts and resets its peak
// RSS, so that the peak read later is the plugin's doing.
func baseline(t *testing.T, agent *consulagent.Process) (agentState, bool) {
	agentSettled(t, agent)
	reset := agent.ResetPeakRSS() == nil
	return readAgent(t, agent), reset
}

// plugin is the plugin's CoreDNS under measurement and how its requests to
// Consul are counted.
type plugin struct {
	*corednsproc.Server
	corefile corednsproc.Corefile
	address  []string          // the consul block's lines that say where Consul is
	proxy    *faultproxy.Proxy // nil over HTTPS
	log      *proxyLog
}

// startPlugin starts CoreDNS with the consul plugin reading agent, over
// HTTPS when tls, else through a counting proxy, with more settings, and
// waits up to COST_READY_WAIT (180 s) for it to be ready, logging its
// progress. COST_DEBUG=1 adds the debug plugin and logs the sweeps at the
// end.
func startPlugin(t *testing.T, agent *consulagent.Process, tls bool, settings ...string) (*plugin, error) {
	p := &plugin{}
	if tls {
		p.address = []string{"address https://" + agent.HTTPSAddr, "tls " + agent.CAFile}
	} else {
		// The proxy logs a line for every request the plugin cancels (and
		// CoreDNS's exit cancels all): counted and summed up instead.
		p.log = &proxyLog{}
		log.SetOutput(p.log)
		t.Cleanup(func() { log.SetOutput(os.Stderr) })
		p.proxy = faultproxy.New(t, agent.HTTPAddr)
		p.address = []string{"address " + p.proxy.Addr}
	}
	cf := corednsproc.Corefile{Metrics: true, Consul: append(slices.Clone(p.address), settings...)}
	if os.Getenv("COST_DEBUG") == "1" {
		cf.Plugins = []string{"debug"}
	}
	p.corefile = cf
	agentPorts := []int{port(agent.HTTPAddr), port(agent.HTTPSAddr)}
	server, err := corednsproc.StartWith(t, corednsproc.Options{
		ReadyWithin: time.Duration(envInt("COST_READY_WAIT", 180)) * time.Second,
		Progress: func(s *corednsproc.Server) {
			text, _ := metrics.Get("http://" + s.MetricsAddr + "/metrics")
			a := readAgent(t, agent)
			t.Logf("coredns not ready yet: %s; agent: %d connections, %.0f goroutines, RSS %.0f MB",
				metrics.Summary(text), procfs.Conns(agentPorts...), a.goroutines, a.rss/1e6)
		},
	}, cf.Build)
	if err != nil {
		return nil, err
	}
	p.Server = server
	if len(cf.Plugins) > 0 {
		t.Cleanup(func() {
			for _, line := range strings.Split(server.Output(), "\n") {
				if strings.Contains(line, "swept") {
					t.Log(line)
				}
			}
		})
	}
	return p, nil
}

// reload has CoreDNS reload its Corefile with the consul block's settings
// replaced by settings, where Consul is read from kept.
func (p *plugin) reload(t *testing.T, settings ...string) {
	p.corefile.Consul = append(slices.Clone(p.address), settings...)
	p.Reload(t, p.corefile.Build(p.Ports))
}

// port is the port of an address, 0 for none.
func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// metric is one of the plugin's metrics, summed over its labels: 0 when it
// has no sample yet (a counter never incremented), NaN when the metrics
// cannot be read.
func (p *plugin) metric(name string) float64 {
	text, err := metrics.Get("http://" + p.MetricsAddr + "/metrics")
	if err != nil {
		return math.NaN()
	}
	v, _ := metrics.Sum(text, name)
	return v
}

// requests counts the plugin's requests to Consul so far: at the proxy
// (NaN over HTTPS) and by its coredns_consul_requests_total, which counts a
// request when it completes.
func (p *plugin) requests() (proxied, metric float64) {
	proxied = math.NaN()
	if p.proxy != nil {
		proxied = float64(p.proxy.Requests())
	}
	return proxied, p.metric("coredns_consul_requests_total")
}

// watchersStable waits until watched_services has not moved for 5 s (at
// most 3 minutes): synced with every watcher running.
func (p *plugin) watchersStable() (watched, unwatched float64) {
	watched, _ = settle(3*time.Minute, time.Second, 5, func() float64 { return p.metric("coredns_consul_watched_services") }, equal)
	return watched, p.metric("coredns_consul_unwatched_services")
}

// proxyLog counts the reverse proxy's error lines instead of printing
// them: a blocking query the plugin cancels is one "context canceled".
type proxyLog struct{ canceled, other atomic.Int64 }

func (l *proxyLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if strings.Contains(line, "context canceled") {
			l.canceled.Add(1)
		} else if line != "" {
			l.other.Add(1)
		}
	}
	return len(p), nil
}

// target is a service's instance 0, whose check the health changes flip.
type target struct {
	check api.HealthCheck
	ip    net.IP
}

// targets finds instance 0 of each service and its check.
func targets(t *testing.T, client *api.Client, services []string) []target {
	out := make([]target, len(services))
	for i, name := range services {
		entries, _, err := client.Health().Service(name, "", false, nil)
		if err != nil {
			t.Fatalf("reading %s: %v", name, err)
		}
		for _, e := range entries {
			for _, c := range e.Checks {
				if strings.HasSuffix(e.Service.ID, "-0") && c.ServiceID == e.Service.ID {
					out[i] = target{check: *c, ip: net.ParseIP(e.Node.Address)}
				}
			}
		}
		if out[i].ip == nil {
			t.Fatalf("no instance 0 with a check in %s", name)
		}
	}
	return out
}

// set writes the target's check with status.
func (tg target) set(t *testing.T, client *api.Client, status string) {
	c := tg.check
	c.Status = status
	ok, resp, _, err := client.Txn().Txn(api.TxnOps{{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: c}}}, nil)
	if err != nil || !ok {
		t.Fatalf("setting %s to %s: %v %+v", c.CheckID, status, err, resp)
	}
}
