package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// TestSoak churns a real catalog (registrations, deregistrations, health
// flaps) under questions for SOAK_DURATION (20s in make test, minutes in make
// soak): no question fails, goroutines and heap come back to their baseline,
// and the answers come to equal what Consul's catalog says.
func TestSoak(t *testing.T) {
	duration := 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil {
		duration = d
	}
	const services, instances, watchers = 30, 3, 10
	agent, client := startAgent(t)
	consulagent.Populate(t, client, services, instances, 10)
	cf := pluginCorefile(agent.HTTPAddr, fmt.Sprintf("max_watchers %d", watchers))
	cf.Pprof = true
	server := corednsproc.Start(t, cf.Build)
	server.WaitMetric(t, "coredns_consul_watched_services", 30*time.Second, is(watchers))
	baseGoroutines, baseHeap := server.Goroutines(t), server.HeapInuse(t)

	// Questions for every service, one every 500 µs at most; any answer but
	// NOERROR is a failure: the churn never touches the instances Populate
	// made, which stay passing.
	var asked, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		i := 0
		wait.Every(500*time.Microsecond, stop, func() bool {
			resp, err := dnsq.Ask(server.Addr, fmt.Sprintf("service-%d.service.consul.", i%services), dns.TypeSRV,
				dnsq.EDNS(4096), dnsq.Timeout(time.Second))
			i++
			asked.Add(1)
			if err != nil || resp.Rcode != dns.RcodeSuccess {
				failed.Add(1)
			}
			return true
		})
	}()

	// The churn, a change every 20 ms: extra instances registered,
	// deregistered and flapping.
	statuses := []string{api.HealthPassing, api.HealthWarning, api.HealthCritical}
	changes := 0
	end := time.Now().Add(duration)
	wait.Every(20*time.Millisecond, nil, func() bool {
		extra := rand.N(20)
		id := fmt.Sprintf("churn-%d", extra)
		node := fmt.Sprintf("churn-node-%d", extra)
		if rand.N(4) == 0 {
			consulagent.Deregister(t, client, node, id)
		} else {
			consulagent.Register(t, client, node, fmt.Sprintf("10.200.0.%d", extra+1), &api.AgentService{
				ID: id, Service: fmt.Sprintf("service-%d", rand.N(services)), Port: 9000,
			}, statuses[rand.N(len(statuses))])
		}
		changes++
		return time.Now().Before(end)
	})
	close(stop)
	<-done
	t.Logf("%d changes in %s; %d questions, %d failed", changes, duration, asked.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d questions failed during the churn", failed.Load(), asked.Load())
	}

	// Settled, the answers are Consul's catalog.
	wait.Until(t, 15*time.Second, func() error {
		var errs []error
		for s := range services {
			if err := matchesCatalog(t, client, server.Addr, fmt.Sprintf("service-%d", s)); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})

	g, h := server.Goroutines(t), server.HeapInuse(t)
	t.Logf("goroutines %d -> %d, heap in use %.1f -> %.1f MB", baseGoroutines, g, float64(baseHeap)/1e6, float64(h)/1e6)
	if g > baseGoroutines+20 {
		t.Errorf("goroutines grew from %d to %d", baseGoroutines, g)
	}
	if h > 2*baseHeap+16<<20 {
		t.Errorf("heap in use grew from %d to %d bytes", baseHeap, h)
	}
}

// matchesCatalog compares the A answer for a service with the addresses of
// its instances that Consul's catalog does not say are critical.
func matchesCatalog(t *testing.T, client *api.Client, addr, service string) error {
	entries, _, err := client.Health().Service(service, "", false, nil)
	if err != nil {
		return err
	}
	var want []string
	for _, e := range entries {
		if e.Checks.AggregatedStatus() != api.HealthCritical {
			want = append(want, e.Node.Address)
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	var got []string
	for _, rr := range dnsq.Query(t, addr, service+".service.consul.", dns.TypeA, dnsq.TCP).Answer {
		got = append(got, rr.(*dns.A).A.String())
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s: answered %v, Consul's catalog says %v", service, got, want)
	}
	return nil
}
