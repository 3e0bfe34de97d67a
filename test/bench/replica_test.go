// Package bench measures the replica against a real Consul agent and the real
// CoreDNS binary: initial sync at scale and propagation of changes. Run with
// `make bench-replica`; sizes can be changed with BENCH_SERVICES,
// BENCH_INSTANCES and BENCH_IDLE.
package bench

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/procfs"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// startAgent starts the agent the benchmarks run against and returns the
// consul block's settings for it. BENCH_TLS=1 serves the API over HTTPS;
// BENCH_MAX_CONNS raises the agent's limits.http_max_conns_per_client and
// BENCH_MAX_WATCHERS sets the plugin's max_watchers.
func startAgent(b *testing.B) (*consulagent.Process, []string) {
	opts := consulagent.Options{TLS: os.Getenv("BENCH_TLS") == "1"}
	if n := envInt("BENCH_MAX_CONNS", 0); n > 0 {
		opts.HCL = []string{fmt.Sprintf("limits { http_max_conns_per_client = %d }", n)}
	}
	agent := consulagent.StartProcessWith(b, opts)
	settings := []string{"address " + agent.HTTPAddr}
	if opts.TLS {
		b.Log("Consul API over HTTPS")
		settings = []string{"address https://" + agent.HTTPSAddr, "tls " + agent.CAFile}
	}
	if n := envInt("BENCH_MAX_WATCHERS", -1); n >= 0 {
		settings = append(settings, fmt.Sprintf("max_watchers %d", n))
	}
	return agent, settings
}

// BenchmarkInitialSync loads a large catalog (5,000 services x 10 instances
// by default) and measures, in-process, the time to the first complete
// snapshot, the requests it took, 429 answers, and the request rate at idle
// afterwards; then, with the CoreDNS binary, the time to ready and the peak
// RSS of the process.
func BenchmarkInitialSync(b *testing.B) {
	services, instances := envInt("BENCH_SERVICES", 5000), envInt("BENCH_INSTANCES", 10)
	idle := time.Duration(envInt("BENCH_IDLE", 60)) * time.Second
	agent, settings := startAgent(b)
	client := agent.Client()
	began := time.Now()
	consulagent.Populate(b, client, services, instances, max(1, services*instances/20))
	b.Logf("catalog of %d services x %d instances loaded in %s", services, instances, time.Since(began).Round(time.Millisecond))

	for range b.N {
		var synced atomic.Pointer[snapshot.Snapshot]
		done := make(chan time.Duration, 1)
		start := time.Now()
		r, err := replica.New(agent.Config(), replica.DefaultConfig(), func(s *snapshot.Snapshot) {
			if synced.Load() == nil {
				done <- time.Since(start)
			}
			synced.Store(s)
		})
		if err != nil {
			b.Fatal(err)
		}
		r.Start()
		syncTime := <-done
		if n, in := synced.Load().Counts(); n != services+1 || in != services*instances+1 {
			b.Fatalf("first snapshot has %d services, %d instances", n, in)
		}
		atSync := r.Stats()
		pause(idle)
		afterIdle := r.Stats()
		r.Stop()
		b.ReportMetric(syncTime.Seconds(), "sync-s")
		b.ReportMetric(float64(atSync.Requests), "sync-requests")
		b.ReportMetric(float64(afterIdle.TooMany), "429s")
		// With the default 5-minute wait, a window shorter than the wait sees
		// only the loops that changed; the long-run idle rate is one request
		// per loop per wait.
		b.ReportMetric(float64(afterIdle.Requests-atSync.Requests)/idle.Minutes(), "idle-requests/min")
		loops := afterIdle.Watchers + 3
		b.Logf("long-run idle rate: %d loops / %s wait = %.1f requests/min", loops, replica.DefaultConfig().Wait,
			float64(loops)/replica.DefaultConfig().Wait.Minutes())
		b.Logf("in-process: sync %s, %d requests, %d errors, %d 429s, %d watchers; %d requests in %s idle",
			syncTime.Round(time.Millisecond), atSync.Requests, afterIdle.Errors, afterIdle.TooMany, afterIdle.Watchers,
			afterIdle.Requests-atSync.Requests, idle)

		corednsproc.Binary(b) // built before the clock starts
		start = time.Now()
		server := corednsproc.Start(b, corednsproc.Corefile{Consul: settings}.Build)
		ready := time.Since(start)
		_, rss, err := procfs.Memory(server.Pid())
		if err != nil {
			b.Fatal(err)
		}
		if strings.Contains(server.Output(), " 429 ") {
			b.Errorf("CoreDNS met 429s:\n%s", server.Output())
		}
		b.ReportMetric(ready.Seconds(), "coredns-ready-s")
		b.ReportMetric(rss/1e6, "coredns-peak-rss-MB")
		b.Logf("CoreDNS binary: ready %s after start, peak RSS %.0f MB", ready.Round(time.Millisecond), rss/1e6)
		server.Stop(b)
	}
}

// BenchmarkPropagation measures the time from a write to Consul returning to
// the CoreDNS binary answering with its effect, over 200 changes to random
// services of a 1,000-service catalog: a new instance registered, its check
// turning critical, passing again, and the instance deregistered.
func BenchmarkPropagation(b *testing.B) {
	services := envInt("BENCH_SERVICES", 1000)
	changes := envInt("BENCH_CHANGES", 200)
	agent, settings := startAgent(b)
	client := agent.Client()
	consulagent.Populate(b, client, services, 5, 200)
	server := corednsproc.Start(b, corednsproc.Corefile{Consul: settings}.Build)

	// has reports whether service's A answer holds ip.
	has := func(service string, ip net.IP) bool {
		return dnsq.HasA(dnsq.Query(b, server.Addr, service+".service.consul.", dns.TypeA), ip)
	}
	kinds := []string{"register", "critical", "passing", "deregister"}
	for range b.N {
		byKind := map[string][]time.Duration{}
		var all []time.Duration
		var service string // each cycle of four changes is to one random service
		for c := range changes {
			kind := kinds[c%4]
			cycle := c / 4
			if kind == "register" {
				service = fmt.Sprintf("service-%d", rand.N(services))
			}
			ip := net.IPv4(192, 168, byte(cycle>>8), byte(cycle))
			id := fmt.Sprintf("bench-%d", cycle)
			node := "bench-node"
			status := map[string]string{"register": api.HealthPassing, "critical": api.HealthCritical, "passing": api.HealthPassing}[kind]
			if kind == "deregister" {
				consulagent.Deregister(b, client, node, id)
			} else {
				consulagent.Register(b, client, node, "10.255.0.1", &api.AgentService{ID: id, Service: service, Port: 80, Address: ip.String()}, status)
			}
			written := time.Now()
			want := kind == "register" || kind == "passing"
			if !wait.Poll(10*time.Second, 200*time.Microsecond, nil, func() bool { return has(service, ip) == want }) {
				b.Fatalf("change %d (%s %s) not answered after 10s", c, kind, service)
			}
			d := time.Since(written)
			byKind[kind] = append(byKind[kind], d)
			all = append(all, d)
		}
		report := func(name string, ds []time.Duration) {
			slices.Sort(ds)
			p50, p99 := ds[len(ds)/2], ds[(len(ds)*99+99)/100-1]
			b.Logf("%-10s n=%3d p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms", name, len(ds),
				ms(p50), ms(p99), ms(ds[len(ds)-1]))
			if name == "all" {
				b.ReportMetric(ms(p50), "p50-ms")
				b.ReportMetric(ms(p99), "p99-ms")
			}
		}
		for _, k := range kinds {
			report(k, byKind[k])
		}
		report("all", all)
	}
}
