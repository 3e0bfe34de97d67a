package consulagent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/freeport"

	"github.com/hashicorp/consul/api"
)

// Fleet is one Consul server and client agents joined to it over the LAN,
// each a process on its own free loopback ports, as a datacenter runs them:
// the client agents answer HTTP and reach the server over its RPC port,
// which also carries the streaming backend's subscriptions (multiplexed
// gRPC: the server needs no gRPC port of its own for them).
type Fleet struct {
	Server  *FleetAgent
	Clients []*FleetAgent
}

// FleetAgent is one agent of a Fleet. Every agent of a fleet serves
// /debug/pprof (enable_debug) and keeps its metrics for Prometheus-format
// reads, so that Sample can measure it.
type FleetAgent struct {
	Name     string
	Server   bool
	HTTPAddr string
	DNSAddr  string
	// SerfLANAddr is the address other agents join.
	SerfLANAddr string
	// LogFile holds the agent's output.
	LogFile string

	t       testing.TB
	args    []string
	cmd     *exec.Cmd
	done    chan struct{}
	stopped sync.Once
}

// fleetHCL is configuration every agent of a fleet gets: debug endpoints
// for goroutine counts and heap after GC, and cumulative counters in
// /v1/agent/metrics?format=prometheus.
var fleetHCL = []string{
	"disable_update_check = true",
	"enable_debug = true",
	`telemetry { prometheus_retention_time = "24h" disable_hostname = true }`,
}

// StartFleet starts one server and clients client agents, waits until the
// server leads and every client agent has joined and answers catalog reads
// through it, and kills them all when the test ends (or at Stop). clientHCL
// is more configuration for the client agents, as -hcl arguments, e.g.
// "limits { http_max_conns_per_client = 10000 }".
func StartFleet(t testing.TB, clients int, clientHCL ...string) *Fleet {
	t.Helper()
	if _, err := os.Stat(Binary()); err != nil {
		t.Fatalf("no consul binary at %s (run `make consul`): %v", Binary(), err)
	}
	f := &Fleet{}
	t.Cleanup(f.Stop)

	f.Server = newFleetAgent(t, "consul-server", true, nil)
	f.Server.start()
	f.Server.waitReady(60 * time.Second)
	for i := range clients {
		// Client agents start after the server listens: a join that fails
		// waits for the retry interval.
		c := newFleetAgent(t, fmt.Sprintf("consul-client-%d", i), false, append([]string{
			"-retry-join", f.Server.SerfLANAddr, "-retry-interval", "1s",
		}, hclArgs(clientHCL)...))
		c.start()
		f.Clients = append(f.Clients, c)
	}
	for _, c := range f.Clients {
		c.waitReady(60 * time.Second)
	}
	// The client agents register their own nodes through anti-entropy:
	// wait for them so that the catalog holds still afterwards.
	deadline := time.Now().Add(30 * time.Second)
	for {
		nodes, _, err := f.Server.Client().Catalog().Nodes(nil)
		if err == nil && len(nodes) == clients+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server lists %d nodes, not %d, after 30s (%v)", len(nodes), clients+1, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return f
}

// Stop kills every agent of the fleet. It may be called more than once.
func (f *Fleet) Stop() {
	for _, c := range f.Clients {
		c.Kill()
	}
	if f.Server != nil {
		f.Server.Kill()
	}
}

// Agents lists the server first, then the client agents.
func (f *Fleet) Agents() []*FleetAgent { return append([]*FleetAgent{f.Server}, f.Clients...) }

func hclArgs(hcl []string) []string {
	var args []string
	for _, h := range hcl {
		args = append(args, "-hcl", h)
	}
	return args
}

func newFleetAgent(t testing.TB, name string, server bool, extra []string) *FleetAgent {
	var ports [5]int // http, server, serf lan, serf wan, dns
	for i := range ports {
		ports[i] = freeport.Port(t)
	}
	a := &FleetAgent{
		Name: name, Server: server, t: t,
		HTTPAddr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		SerfLANAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2])),
		DNSAddr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[4])),
		LogFile:     filepath.Join(t.TempDir(), name+".log"),
	}
	a.args = []string{"agent", "-node", name, "-data-dir", t.TempDir(),
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-log-level", "warn",
		"-http-port", strconv.Itoa(ports[0]), "-server-port", strconv.Itoa(ports[1]),
		"-serf-lan-port", strconv.Itoa(ports[2]), "-serf-wan-port", strconv.Itoa(ports[3]),
		"-dns-port", strconv.Itoa(ports[4]), "-grpc-port", "-1", "-grpc-tls-port", "-1"}
	if server {
		a.args = append(a.args, "-server", "-bootstrap-expect", "1",
			"-hcl", "performance { raft_multiplier = 1 }")
	}
	a.args = append(a.args, hclArgs(fleetHCL)...)
	a.args = append(a.args, extra...)
	return a
}

func (a *FleetAgent) start() {
	a.t.Helper()
	a.cmd = exec.Command(Binary(), a.args...)
	logFile, err := os.Create(a.LogFile)
	if err != nil {
		a.t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	if err := a.cmd.Start(); err != nil {
		a.t.Fatalf("starting consul %s: %v", a.Name, err)
	}
	a.done = make(chan struct{})
	go func() { a.cmd.Wait(); logFile.Close(); close(a.done) }()
}

// waitReady waits until the agent answers catalog reads with a known leader:
// for a client agent, until it has joined and reaches the server over RPC.
func (a *FleetAgent) waitReady(limit time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			log, _ := os.ReadFile(a.LogFile)
			a.t.Fatalf("consul %s exited:\n%s", a.Name, log)
		default:
		}
		resp, err := http.Get("http://" + a.HTTPAddr + "/v1/catalog/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Consul-Knownleader") == "true" {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.t.Fatalf("consul %s at %s not ready after %s", a.Name, a.HTTPAddr, limit)
}

// Pid is the agent's process ID.
func (a *FleetAgent) Pid() int { return a.cmd.Process.Pid }

// Config returns a client configuration for the agent's HTTP API.
func (a *FleetAgent) Config() *api.Config {
	return &api.Config{Address: a.HTTPAddr, Scheme: "http"}
}

// Client returns an API client for the agent.
func (a *FleetAgent) Client() *api.Client {
	client, err := api.NewClient(a.Config())
	if err != nil {
		a.t.Fatal(err)
	}
	return client
}

// Kill ends the agent with SIGKILL.
func (a *FleetAgent) Kill() {
	a.stopped.Do(func() {
		if a.cmd == nil || a.cmd.Process == nil {
			return
		}
		a.cmd.Process.Kill()
		<-a.done
	})
}

// ResetPeakRSS resets the process's peak RSS (VmHWM) to its current RSS, so
// that the next Sample reports the peak since now (clear_refs value 5).
func (a *FleetAgent) ResetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", a.Pid()), []byte("5"), 0)
}

// AgentSample is one measurement of an agent process.
type AgentSample struct {
	// RSS and PeakRSS are VmRSS and VmHWM from /proc/<pid>/status, in bytes,
	// read before the forced GC.
	RSS, PeakRSS float64
	// HeapAfterGC is HeapAlloc right after a forced GC
	// (/debug/pprof/heap?gc=1), in bytes: the live heap.
	HeapAfterGC float64
	// Goroutines is the goroutine profile's total, read at once.
	Goroutines int
	// Metrics are /v1/agent/metrics?format=prometheus series, keyed by name
	// with labels as printed (consul_runtime_num_goroutines is the gauge
	// the runtime reports every few seconds).
	Metrics map[string]float64
}

// Sample measures the agent: memory, goroutines and its metrics.
func (a *FleetAgent) Sample() (AgentSample, error) {
	var s AgentSample
	var err error
	if s.RSS, s.PeakRSS, err = procMemory(a.Pid()); err != nil {
		return s, err
	}
	if s.Metrics, err = a.Metrics(); err != nil {
		return s, err
	}
	goroutines, err := a.get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return s, err
	}
	first, _, _ := strings.Cut(goroutines, "\n")
	if _, err := fmt.Sscanf(first, "goroutine profile: total %d", &s.Goroutines); err != nil {
		return s, fmt.Errorf("goroutine profile of %s: %q: %w", a.Name, first, err)
	}
	heap, err := a.get("/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(heap, "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			s.HeapAfterGC, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if s.HeapAfterGC == 0 {
		return s, fmt.Errorf("no HeapAlloc in the heap profile of %s", a.Name)
	}
	return s, nil
}

// Metrics reads the agent's metrics in Prometheus format: counters are
// cumulative since the agent started.
func (a *FleetAgent) Metrics() (map[string]float64, error) {
	text, err := a.get("/v1/agent/metrics?format=prometheus")
	if err != nil {
		return nil, err
	}
	m := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

func (a *FleetAgent) get(path string) (string, error) {
	resp, err := http.Get("http://" + a.HTTPAddr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s: %s", a.Name, path, resp.Status, body)
	}
	return string(body), nil
}

// procMemory reads VmRSS and VmHWM of a process, in bytes.
func procMemory(pid int) (rss, peak float64, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb * 1024
		case "VmHWM:":
			peak = kb * 1024
		}
	}
	if rss == 0 || peak == 0 {
		return 0, 0, fmt.Errorf("no VmRSS or VmHWM for pid %d", pid)
	}
	return rss, peak, nil
}
