package bench

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-cleanhttp"
)

// BenchmarkFleetCost measures what watched services cost Consul's client
// agents and its server, with one server and two client agents as processes
// on loopback. For each size S (FLEET_SERVICES, default "500,2000"; 0 is
// always measured too) it starts a fresh fleet, loads S services of
// FLEET_INSTANCES instances (default 3) with one check each, and runs the
// real replica with every service watched (max_watchers S+1: the catalog's
// own "consul" service is one more): first one instance on client agent 0,
// then one on client agent 1 (a second subscriber per service for the
// server), then a second instance on client agent 0 (a second watcher of
// the same views), then none. After each step it samples every agent
// (RSS, peak RSS, heap after GC, goroutines, the server's gRPC streams).
// With the three instances running it makes FLEET_CHANGES changes (default
// 20: register, critical, passing, deregister of one instance of a random
// service) and counts, per change, the blocking queries that returned on
// each client agent by endpoint, the server's RPCs, and each instance's
// requests, publishes and bytes read. FLEET_REPORT=path writes the tables
// as markdown; FLEET_SETTLE (seconds, default 10) is how long every agent's
// goroutine count must hold steady before each sample.
//
//	go test -run '^$' -bench FleetCost -benchtime 1x -timeout 30m ./test/bench/
func BenchmarkFleetCost(b *testing.B) {
	sizes := fleetSizes(os.Getenv("FLEET_SERVICES"))
	instances := envInt("FLEET_INSTANCES", 3)
	changes := envInt("FLEET_CHANGES", 20)
	steadyFor := time.Duration(envInt("FLEET_SETTLE", 10)) * time.Second
	for range b.N {
		began := time.Now()
		var results []*fleetResult
		for _, s := range sizes {
			results = append(results, fleetMeasure(b, s, instances, changes, steadyFor))
		}
		out := fleetReport(results, instances, time.Since(began))
		fmt.Print(out)
		if path := os.Getenv("FLEET_REPORT"); path != "" {
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// fleetSizes parses FLEET_SERVICES and puts 0 first.
func fleetSizes(v string) []int {
	if v == "" {
		v = "500,2000"
	}
	sizes := []int{0}
	for f := range strings.SplitSeq(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 && !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	return sizes
}

// fleetPhase is one sample of every agent: server, client-0, client-1.
type fleetPhase struct {
	name    string
	samples []consulagent.AgentSample
}

// fleetChangeTotals sums the counters' deltas over the changes of one kind.
type fleetChangeTotals struct {
	n int
	// returns[agent][path] are completed HTTP requests on each client agent.
	returns []map[string]float64
	// serverRPC and serverQueries are the server's consul_rpc_request and
	// consul_rpc_query; pings the client agents' /v1/status/leader
	// requests, each one RPC to the server.
	serverRPC, serverQueries, pings float64
	// per instance
	requests, publishes, bytes []float64
	streamsOpened              float64
}

type fleetResult struct {
	services, watchers int
	phases             []fleetPhase
	syncTimes          []time.Duration // per instance, Start to first snapshot
	dials              []int64         // per instance, connections opened up to the changes
	changes            map[string]*fleetChangeTotals
	kinds              []string
}

// fleetInstance is one running replica: a plugin instance.
type fleetInstance struct {
	name      string
	r         *replica.Replicator
	counter   *fleetConnCounter
	publishes atomic.Int64
}

// fleetConnCounter counts the connections a transport opens and the bytes it
// reads from them (the wire bytes: Consul gzips larger answers).
type fleetConnCounter struct{ dials, bytes atomic.Int64 }

type fleetConn struct {
	net.Conn
	c *fleetConnCounter
}

func (c *fleetConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.c.bytes.Add(int64(n))
	return n, err
}

func (c *fleetConnCounter) transport() *http.Transport {
	t := cleanhttp.DefaultPooledTransport()
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.dials.Add(1)
		return &fleetConn{Conn: conn, c: c}, nil
	}
	return t
}

// fleetStartInstance starts a replica on agent that watches up to watchers
// services, and waits until it published its first snapshot and runs every
// watcher.
func fleetStartInstance(b *testing.B, name string, agent *consulagent.Process, watchers int) (*fleetInstance, time.Duration) {
	b.Helper()
	inst := &fleetInstance{name: name, counter: &fleetConnCounter{}}
	cfg := replica.DefaultConfig()
	cfg.MaxWatchers = watchers
	consul := agent.Config()
	consul.Transport = inst.counter.transport()
	first := make(chan struct{})
	start := time.Now()
	r, err := replica.New(consul, cfg, func(*snapshot.Snapshot) {
		if inst.publishes.Add(1) == 1 {
			close(first)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	inst.r = r
	r.Start()
	select {
	case <-first:
	case <-time.After(3 * time.Minute):
		b.Fatalf("%s: no snapshot after 3 minutes (%+v)", name, r.Stats())
	}
	synced := time.Since(start)
	wait.Until(b, time.Minute, func() error {
		if n := r.Stats().Watchers; n != watchers {
			return fmt.Errorf("%s: %d watchers, not %d", name, n, watchers)
		}
		return nil
	})
	return inst, synced
}

const fleetStreams = `consul_grpc_server_streams{server_type="internal"}`

// fleetWaitStreams waits until the server holds at least want streams from
// client agents (one per client agent and watched service).
func fleetWaitStreams(b *testing.B, server *consulagent.Process, want float64) {
	b.Helper()
	wait.Until(b, 2*time.Minute, func() error {
		m, err := server.Metrics()
		if err == nil && m[fleetStreams] < want {
			err = fmt.Errorf("the server holds %.0f streams, not %.0f", m[fleetStreams], want)
		}
		return err
	})
}

func fleetSample(b *testing.B, f *consulagent.Fleet, name string) fleetPhase {
	b.Helper()
	p := fleetPhase{name: name}
	for _, a := range f.Agents() {
		s, err := a.Sample()
		if err != nil {
			b.Fatal(err)
		}
		p.samples = append(p.samples, s)
	}
	b.Logf("%-34s server %s | client-0 %s | client-1 %s", name,
		fleetBrief(p.samples[0]), fleetBrief(p.samples[1]), fleetBrief(p.samples[2]))
	return p
}

func fleetBrief(s consulagent.AgentSample) string {
	return fmt.Sprintf("rss %4.0f MB peak %4.0f heap %4.0f g %5d", s.RSS/1e6, s.PeakRSS/1e6, s.HeapAfterGC/1e6, s.Goroutines)
}

// fleetResetPeaks makes the next samples report the peak RSS of the step
// that follows.
func fleetResetPeaks(b *testing.B, f *consulagent.Fleet) {
	for _, a := range f.Agents() {
		if err := a.ResetPeakRSS(); err != nil {
			b.Logf("resetting the peak RSS of %s: %v (peaks are since the start)", a.Name, err)
		}
	}
}

// fleetSettle waits until every agent's goroutine count has held steady
// (within 1%) for the settle time, polled every second, at most a minute
// past it: the step's watchers and views are all in place, or gone.
func fleetSettle(b *testing.B, f *consulagent.Fleet, quiet time.Duration) {
	b.Helper()
	for _, a := range f.Agents() {
		n := max(1, int(quiet/time.Second))
		if _, ok := settle(quiet+time.Minute, time.Second, n, func() float64 {
			g, err := a.Goroutines()
			if err != nil {
				b.Fatal(err)
			}
			return g
		}, within1pct); !ok {
			b.Logf("%s: goroutines not steady after %s", a.Name, quiet+time.Minute)
		}
	}
}

// fleetRequests is the instances' requests to Consul so far.
func fleetRequests(insts []*fleetInstance) float64 {
	n := 0.0
	for _, in := range insts {
		n += float64(in.r.Stats().Requests)
	}
	return n
}

// fleetCounters are the cumulative counters read around each change.
type fleetCounters struct {
	metrics                     []map[string]float64 // server, client-0, client-1
	requests, publishes, bytess []float64
}

func fleetRead(b *testing.B, f *consulagent.Fleet, insts []*fleetInstance) fleetCounters {
	b.Helper()
	var c fleetCounters
	for _, a := range f.Agents() {
		m, err := a.Metrics()
		if err != nil {
			b.Fatal(err)
		}
		c.metrics = append(c.metrics, m)
	}
	for _, in := range insts {
		c.requests = append(c.requests, float64(in.r.Stats().Requests))
		c.publishes = append(c.publishes, float64(in.publishes.Load()))
		c.bytess = append(c.bytess, float64(in.counter.bytes.Load()))
	}
	return c
}

// fleetPaths maps consul_api_http_count series to their path label.
func fleetPaths(m map[string]float64) map[string]float64 {
	paths := make(map[string]float64)
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, "consul_api_http_count{")
		if !ok {
			continue
		}
		_, path, _ := strings.Cut(rest, `path="`)
		path, _, _ = strings.Cut(path, `"`)
		paths[path] += v
	}
	return paths
}

// fleetAdd adds the deltas between before and after to t.
func fleetAdd(t *fleetChangeTotals, before, after fleetCounters) {
	t.n++
	if t.returns == nil {
		t.returns = make([]map[string]float64, len(after.metrics)-1)
		for i := range t.returns {
			t.returns[i] = make(map[string]float64)
		}
		t.requests = make([]float64, len(after.requests))
		t.publishes = make([]float64, len(after.requests))
		t.bytes = make([]float64, len(after.requests))
	}
	for i := 1; i < len(after.metrics); i++ {
		pb, pa := fleetPaths(before.metrics[i]), fleetPaths(after.metrics[i])
		for p, v := range pa {
			switch p {
			case "v1_agent_metrics", "debug_pprof_":
				continue // the measurement itself
			}
			if d := v - pb[p]; d != 0 {
				t.returns[i-1][p] += d
			}
		}
		t.pings += pa["v1_status_leader"] - pb["v1_status_leader"]
	}
	s0, s1 := before.metrics[0], after.metrics[0]
	t.serverRPC += s1["consul_rpc_request"] - s0["consul_rpc_request"]
	t.serverQueries += s1["consul_rpc_query"] - s0["consul_rpc_query"]
	const opened = `consul_grpc_server_stream_count{server_type="internal"}`
	t.streamsOpened += s1[opened] - s0[opened]
	for i := range after.requests {
		t.requests[i] += after.requests[i] - before.requests[i]
		t.publishes[i] += after.publishes[i] - before.publishes[i]
		t.bytes[i] += after.bytess[i] - before.bytess[i]
	}
}

// fleetMeasure runs the steps for one size on a fresh fleet.
func fleetMeasure(b *testing.B, services, instances, changes int, steadyFor time.Duration) *fleetResult {
	b.Helper()
	began := time.Now()
	f := consulagent.StartFleet(b, 2, "limits { http_max_conns_per_client = 10000 }")
	defer f.Stop()
	writer := f.Server.Client()
	if services > 0 {
		consulagent.Populate(b, writer, services, instances, max(1, services*instances/20))
	}
	// The node the changes go to exists before the first sample.
	const node, nodeAddr = "fleet-node", "10.254.0.1"
	consulagent.Register(b, writer, node, nodeAddr, &api.AgentService{ID: "fleet-warmup", Service: "fleet-warmup", Port: 1}, api.HealthPassing)
	consulagent.Deregister(b, writer, node, "fleet-warmup")
	b.Logf("S=%d: fleet up and catalog loaded in %s", services, time.Since(began).Round(time.Millisecond))

	res := &fleetResult{services: services, watchers: services + 1, changes: map[string]*fleetChangeTotals{}}
	fleetSettle(b, f, steadyFor)
	res.phases = append(res.phases, fleetSample(b, f, "no plugin"))
	base, err := f.Server.Metrics()
	if err != nil {
		b.Fatal(err)
	}
	baseStreams := base[fleetStreams]

	var insts []*fleetInstance
	step := func(name string, agent *consulagent.Process, streams float64) {
		fleetResetPeaks(b, f)
		inst, synced := fleetStartInstance(b, name, agent, res.watchers)
		insts = append(insts, inst)
		res.syncTimes = append(res.syncTimes, synced)
		fleetWaitStreams(b, f.Server, streams)
		fleetSettle(b, f, steadyFor)
		res.phases = append(res.phases, fleetSample(b, f, "+ instance "+name))
	}
	step("A on client-0", f.Clients[0], baseStreams+float64(res.watchers))
	step("B on client-1", f.Clients[1], baseStreams+2*float64(res.watchers))
	step("C on client-0", f.Clients[0], baseStreams+2*float64(res.watchers))
	for _, in := range insts {
		res.dials = append(res.dials, in.counter.dials.Load())
	}

	if services > 0 {
		res.kinds = []string{"register", "critical", "passing", "deregister"}
		quiet := time.Duration(envInt("FLEET_QUIET_MS", 1000)) * time.Millisecond
		var service string
		for c := range changes {
			kind := res.kinds[c%4]
			if kind == "register" {
				service = fmt.Sprintf("service-%d", rand.N(services))
			}
			id := fmt.Sprintf("fleet-%d", c/4)
			before := fleetRead(b, f, insts)
			switch kind {
			case "deregister":
				consulagent.Deregister(b, writer, node, id)
			default:
				status := map[string]string{"register": api.HealthPassing, "critical": api.HealthCritical, "passing": api.HealthPassing}[kind]
				consulagent.Register(b, writer, node, nodeAddr, &api.AgentService{ID: id, Service: service, Port: 80, Address: "192.168.0.1"}, status)
			}
			for i, in := range insts {
				if !wait.Poll(10*time.Second, time.Millisecond, nil, func() bool { return float64(in.publishes.Load()) != before.publishes[i] }) {
					b.Fatalf("change %d (%s %s): instance %s published nothing in 10s", c, kind, service, in.name)
				}
			}
			// The detectors and their follow-ups are over when no instance
			// has made a request for quiet.
			settle(10*time.Second, quiet/4, 4, func() float64 { return fleetRequests(insts) }, equal)
			after := fleetRead(b, f, insts)
			if res.changes[kind] == nil {
				res.changes[kind] = &fleetChangeTotals{}
			}
			fleetAdd(res.changes[kind], before, after)
		}
		// The same counters over an idle window as long as the changes took.
		idle := time.Duration(changes) * (quiet + 100*time.Millisecond)
		before := fleetRead(b, f, insts)
		pause(idle)
		res.changes["idle"] = &fleetChangeTotals{}
		fleetAdd(res.changes["idle"], before, fleetRead(b, f, insts))
		res.changes["idle"].n = changes // per window of one change's length
		res.kinds = append(res.kinds, "idle")
	}

	fleetResetPeaks(b, f)
	for _, in := range insts {
		in.r.Stop()
	}
	fleetSettle(b, f, steadyFor)
	res.phases = append(res.phases, fleetSample(b, f, "all instances stopped"))
	b.Logf("S=%d measured in %s", services, time.Since(began).Round(time.Second))
	return res
}

func fleetMB(v float64) string { return fmt.Sprintf("%.0f", v/1e6) }

// fleetReport formats the results as markdown.
func fleetReport(results []*fleetResult, instances int, took time.Duration) string {
	var out strings.Builder
	kernel, _ := exec.Command("uname", "-r").Output()
	version, _ := exec.Command(consulagent.Binary(), "version").Output()
	consulVersion, _, _ := strings.Cut(string(version), "\n")
	fmt.Fprintf(&out, "Measured %s on %d cores (%s, Linux %s), %s, %s; %d instances per service, one check each; the run took %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), fleetMemTotal(), strings.TrimSpace(string(kernel)),
		consulVersion, runtime.Version(), instances, took.Round(time.Second))

	fleetHeading(&out, "Agents after each step", "RSS, peak RSS (VmHWM, reset before each step), heap after a forced GC, in MB; goroutines from the goroutine profile; `streams`: the server's gRPC streams from client agents (`consul.grpc.server.streams`, internal).",
		"| S | step | server RSS / peak / heap | server goroutines | streams | client-0 RSS / peak / heap | client-0 goroutines | client-1 RSS / peak / heap | client-1 goroutines |",
		"|---:|---|---|---:|---:|---|---:|---|---:|")
	for _, r := range results {
		for _, p := range r.phases {
			fmt.Fprintf(&out, "| %d | %s |", r.services, p.name)
			for i, s := range p.samples {
				fmt.Fprintf(&out, " %s / %s / %s | %d |", fleetMB(s.RSS), fleetMB(s.PeakRSS), fleetMB(s.HeapAfterGC), s.Goroutines)
				if i == 0 {
					fmt.Fprintf(&out, " %.0f |", s.Metrics[fleetStreams])
				}
			}
			out.WriteString("\n")
		}
	}

	fleetHeading(&out, "Per watched service", "Deltas between steps divided by the watched services (S+1), in KB of heap after GC, KB of RSS and goroutines. The first instance on an agent pays the agent's views and subscriptions; the server pays a stream per client agent and service; a second instance on the same agent shares its views.",
		"| S | watched | client agent, 1st instance: heap KB / RSS KB / goroutines | same on client-1 | client agent, 2nd instance on it | server, 1st subscribing agent | server, 2nd subscribing agent | client-0 after all stopped (views linger) | sync s (A, B, C) | connections (A, B, C) |",
		"|---:|---:|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		w := float64(r.watchers)
		d := func(agent, from, to int) string {
			a, z := r.phases[from].samples[agent], r.phases[to].samples[agent]
			return fmt.Sprintf("%.1f / %.1f / %.2f", (z.HeapAfterGC-a.HeapAfterGC)/1024/w, (z.RSS-a.RSS)/1024/w, float64(z.Goroutines-a.Goroutines)/w)
		}
		var syncs []string
		for _, s := range r.syncTimes {
			syncs = append(syncs, fmt.Sprintf("%.1f", s.Seconds()))
		}
		dials := fmt.Sprint(r.dials)
		fmt.Fprintf(&out, "| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.services, r.watchers,
			d(1, 0, 1), d(2, 1, 2), d(1, 2, 3), d(0, 0, 1), d(0, 1, 2), d(1, 0, 4), strings.Join(syncs, ", "), strings.Trim(dials, "[]"))
	}

	fleetHeading(&out, "Per change", "Averages per change, with instance A and C on client-0 and B on client-1. `returns`: HTTP requests that completed on each client agent, by endpoint (a blocking query that returned, then was sent again); `pings`: /v1/status/leader, the replica's liveness probe every 5 s per instance. Server RPCs: `consul.rpc.request` on the server (the client agents' forwarded queries and pings, and background traffic: compare with the `idle` row); blocking: `consul.rpc.query`, blocking queries the server started. KB: bytes each instance read off the wire. `idle` is the same counters over a window as long as one change's, with no change.",
		"| S | change | n | client-0 returns | client-1 returns | pings | server RPCs | server blocking queries | new streams | requests (A, B, C) | publishes (A, B, C) | KB read (A, B, C) |",
		"|---:|---|---:|---|---|---:|---:|---:|---:|---|---|---|")
	for _, r := range results {
		for _, k := range r.kinds {
			t := r.changes[k]
			n := float64(t.n)
			paths := func(m map[string]float64) string {
				var parts []string
				for _, p := range slices.Sorted(maps.Keys(m)) {
					if p == "v1_status_leader" {
						continue
					}
					name := strings.TrimSuffix(strings.TrimPrefix(p, "v1_"), "_")
					parts = append(parts, fmt.Sprintf("%s %.2g", strings.ReplaceAll(name, "_", "/"), m[p]/n))
				}
				if len(parts) == 0 {
					return "none"
				}
				return strings.Join(parts, ", ")
			}
			per := func(xs []float64, scale float64) string {
				var parts []string
				for _, x := range xs {
					parts = append(parts, fmt.Sprintf("%.3g", x/n/scale))
				}
				return strings.Join(parts, ", ")
			}
			fmt.Fprintf(&out, "| %d | %s | %d | %s | %s | %.2g | %.3g | %.3g | %.2g | %s | %s | %s |\n", r.services, k, t.n,
				paths(t.returns[0]), paths(t.returns[1]), t.pings/n, t.serverRPC/n, t.serverQueries/n, t.streamsOpened/n,
				per(t.requests, 1), per(t.publishes, 1), per(t.bytes, 1024))
		}
	}
	return out.String()
}

// fleetHeading starts a table of the report: its heading, what it shows,
// its header and alignment rows.
func fleetHeading(out *strings.Builder, title, intro, header, align string) {
	if out.Len() > 0 && !strings.HasSuffix(out.String(), "\n\n") {
		out.WriteString("\n")
	}
	fmt.Fprintf(out, "### %s\n\n%s\n\n%s\n%s\n", title, intro, header, align)
}

func fleetMemTotal() string {
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	for line := range strings.SplitSeq(string(meminfo), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return fmt.Sprintf("%.0f GB RAM", kb/1024/1024)
		}
	}
	return "memory unknown"
}
