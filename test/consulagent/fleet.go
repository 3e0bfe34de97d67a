package consulagent

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/metrics"
	"github.com/coredns-consul/coredns-consul/test/procfs"
	"github.com/coredns-consul/coredns-consul/test/wait"
)

// Fleet is one Consul server and client agents joined to it over the LAN,
// as a datacenter runs them: the client agents answer HTTP and reach the
// server over its RPC port, which also carries the streaming backend's
// subscriptions (multiplexed gRPC: the server needs no gRPC port of its own
// for them). Every agent is Observable, so that Sample can measure it.
type Fleet struct {
	Server  *Process
	Clients []*Process
}

// StartFleet starts one server and clients client agents, waits until the
// server leads and every client agent has joined and answers catalog reads
// through it, and kills them all when the test ends (or at Stop). clientHCL
// is more configuration for the client agents, e.g.
// "limits { http_max_conns_per_client = 10000 }".
func StartFleet(t testing.TB, clients int, clientHCL ...string) *Fleet {
	t.Helper()
	f := &Fleet{}
	t.Cleanup(f.Stop)
	f.Server = StartProcessWith(t, Options{Name: "consul-server", HCL: Observable})
	for i := range clients {
		// Client agents start after the server listens: a join that fails
		// waits for the retry interval.
		f.Clients = append(f.Clients, Launch(t, Options{Name: fmt.Sprintf("consul-client-%d", i), Client: true,
			Join: []string{f.Server.SerfLANAddr}, HCL: slices.Concat(clientHCL, Observable)}))
	}
	for _, c := range f.Clients {
		c.WaitReady()
	}
	// The client agents register their own nodes through anti-entropy:
	// wait for them so that the catalog holds still afterwards.
	wait.Until(t, 30*time.Second, func() error {
		nodes, _, err := f.Server.Client().Catalog().Nodes(nil)
		if err == nil && len(nodes) != clients+1 {
			err = fmt.Errorf("the server lists %d nodes, not %d", len(nodes), clients+1)
		}
		return err
	})
	return f
}

// Stop kills every agent of the fleet. It may be called more than once.
func (f *Fleet) Stop() {
	for _, a := range f.Agents() {
		if a != nil {
			a.Kill()
		}
	}
}

// Agents lists the server first, then the client agents.
func (f *Fleet) Agents() []*Process { return append([]*Process{f.Server}, f.Clients...) }

// ResetPeakRSS resets the agent's peak RSS (VmHWM) to its current RSS, so
// that the next Sample reports the peak since now.
func (p *Process) ResetPeakRSS() error { return procfs.ResetPeak(p.Pid()) }

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

// Sample measures an Observable agent: memory, goroutines and its metrics.
func (p *Process) Sample() (AgentSample, error) {
	var s AgentSample
	var err error
	if s.RSS, s.PeakRSS, err = procfs.Memory(p.Pid()); err != nil {
		return s, err
	}
	if s.Metrics, err = p.Metrics(); err != nil {
		return s, err
	}
	goroutines, err := p.get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return s, err
	}
	first, _, _ := strings.Cut(goroutines, "\n")
	if _, err := fmt.Sscanf(first, "goroutine profile: total %d", &s.Goroutines); err != nil {
		return s, fmt.Errorf("goroutine profile of %s: %q: %w", p.Name, first, err)
	}
	heap, err := p.get("/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(heap, "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			s.HeapAfterGC, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if s.HeapAfterGC == 0 {
		return s, fmt.Errorf("no HeapAlloc in the heap profile of %s", p.Name)
	}
	return s, nil
}

// Metrics reads an Observable agent's metrics in Prometheus format:
// counters are cumulative since the agent started.
func (p *Process) Metrics() (map[string]float64, error) {
	text, err := p.get("/v1/agent/metrics?format=prometheus")
	if err != nil {
		return nil, err
	}
	return metrics.Parse(text), nil
}

// Goroutines is an Observable agent's go_goroutines.
func (p *Process) Goroutines() (float64, error) {
	m, err := p.Metrics()
	if err != nil {
		return 0, err
	}
	g, ok := m["go_goroutines"]
	if !ok {
		return 0, fmt.Errorf("%s exports no go_goroutines", p.Name)
	}
	return g, nil
}

func (p *Process) get(path string) (string, error) {
	body, err := metrics.Get("http://" + p.HTTPAddr + path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p.Name, err)
	}
	return body, nil
}
