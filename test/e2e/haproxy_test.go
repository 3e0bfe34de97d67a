package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/haproxyproc"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
)

// backend is a real HTTP server on loopback that answers with its name.
type backend struct {
	name string
	port int
}

func startBackends(t *testing.T, prefix string, n int) []backend {
	var out []backend
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(srv.Close)
		out = append(out, backend{name: name, port: srv.Listener.Addr().(*net.TCPAddr).Port})
	}
	return out
}

// register puts a backend in Consul as an instance of web, on its own node,
// all nodes on 127.0.0.1: HAProxy needs allow-dup-ip.
func register(t *testing.T, client *api.Client, b backend, status string, weight int) {
	t.Helper()
	consulagent.Register(t, client, "node-"+b.name, "127.0.0.1", &api.AgentService{
		ID: b.name, Service: "web", Port: b.port, Weights: api.AgentWeights{Passing: weight, Warning: 1},
	}, status)
}

// traffic sends n requests through HAProxy and counts them by the backend
// that answered; failed requests are counted under "".
func traffic(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	got := map[string]int{}
	for range n {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			got[""]++
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			got[""]++
			continue
		}
		got[string(body)]++
	}
	return got
}

func served(counts map[string]int) []string {
	var names []string
	for name := range counts {
		if name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func names(bs []backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.name)
	}
	slices.Sort(out)
	return out
}

// waitServed sends traffic until exactly the backends in want answer it.
func waitServed(t *testing.T, addr string, want []string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	wait.Until(t, within, func() error {
		if counts := traffic(t, addr, 4*len(want)); !slices.Equal(served(counts), want) || counts[""] > 0 {
			return fmt.Errorf("HAProxy served %v (failed %d), want %v", served(counts), counts[""], want)
		}
		return nil
	})
	return time.Since(start)
}

// TestHAProxy runs the architecture this project serves: services in a real
// Consul, the real CoreDNS with the plugin, and the real HAProxy finding the
// services through SRV records, with real HTTP backends behind it.
func TestHAProxy(t *testing.T) {
	agent := consulagent.StartProcess(t)
	client := agent.Client()
	backends := startBackends(t, "web", 6)
	for _, b := range backends[:4] {
		register(t, client, b, api.HealthPassing, 10)
	}
	snapshotPath := filepath.Join(t.TempDir(), "consul.snapshot")
	corefile := pluginCorefile(agent.HTTPAddr, "snapshot "+snapshotPath+" 100ms", "srv_weights haproxy").Build
	dns := corednsproc.Start(t, corefile)
	proxy := haproxyproc.Start(t, haproxyproc.Config{Nameserver: dns.Addr, SRV: "_web._tcp.service.consul", Slots: 40})

	t.Log("1. several instances: traffic reaches all of them")
	took := waitServed(t, proxy.Addr, names(backends[:4]), 15*time.Second)
	t.Logf("   all four serving %s after HAProxy started", took.Round(time.Millisecond))

	t.Log("2. one added, one removed, one failing its check")
	register(t, client, backends[4], api.HealthPassing, 10)
	consulagent.Deregister(t, client, "node-"+backends[0].name, backends[0].name)
	register(t, client, backends[1], api.HealthCritical, 10)
	want := names([]backend{backends[2], backends[3], backends[4]})
	took = waitServed(t, proxy.Addr, want, 10*time.Second)
	t.Logf("   HAProxy followed in %s (resolve interval 500ms)", took.Round(time.Millisecond))

	t.Log("3. Consul killed for longer than HAProxy's hold times (10s)")
	agent.Kill()
	deadline := time.Now().Add(15 * time.Second)
	total := 0
	for time.Now().Before(deadline) {
		counts := traffic(t, proxy.Addr, 30)
		total += 30
		if counts[""] > 0 || !slices.Equal(served(counts), want) {
			t.Fatalf("with Consul down: served %v, %d failed", served(counts), counts[""])
		}
	}
	t.Logf("   %d requests over 15s with Consul down, none failed, all of %v used", total, want)

	t.Log("4. CoreDNS restarted while Consul is down, from its snapshot file")
	dns.Stop(t)
	dns = corednsproc.StartOn(t, dns.Ports, corefile)
	counts := traffic(t, proxy.Addr, 60)
	if counts[""] > 0 || !slices.Equal(served(counts), want) {
		t.Errorf("after the restart: served %v, %d failed", served(counts), counts[""])
	}
	// Several resolutions against the restarted server, every 500 ms.
	dns.WaitMetric(t, "coredns_dns_requests_total", 10*time.Second, func(n float64) bool { return n >= 6 })
	counts = traffic(t, proxy.Addr, 60)
	if counts[""] > 0 || !slices.Equal(served(counts), want) {
		t.Errorf("after the restart, resolved again: served %v, %d failed", served(counts), counts[""])
	}

	t.Log("5. SRV weights reach HAProxy: a canary of weight 1 beside weight 10")
	agent.Restart()
	register(t, client, backends[5], api.HealthPassing, 1)
	want = names([]backend{backends[2], backends[3], backends[4], backends[5]})
	waitServed(t, proxy.Addr, want, 15*time.Second)
	counts = traffic(t, proxy.Addr, 620)
	share := float64(counts[backends[5].name]) / 620
	t.Logf("   canary share %.3f (expected 1/31 = 0.032): %v", share, counts)
	if share > 0.08 || counts[""] > 0 {
		t.Errorf("canary share %.3f, want about 0.032 (weights 1 vs 3x10); %d failed", share, counts[""])
	}

	t.Log("6. 35 instances: every one ends up in HAProxy")
	many := startBackends(t, "many", 35)
	for _, b := range many {
		register(t, client, b, api.HealthPassing, 1)
	}
	for _, b := range backends {
		consulagent.Deregister(t, client, "node-"+b.name, b.name)
	}
	wantMany := names(many)
	took = waitServed(t, proxy.Addr, wantMany, 20*time.Second)
	t.Logf("   all 35 serving %s after registration", took.Round(time.Millisecond))
	if strings.Contains(proxy.Output(), "truncated") {
		t.Errorf("HAProxy saw truncated answers:\n%s", proxy.Output())
	}
}
