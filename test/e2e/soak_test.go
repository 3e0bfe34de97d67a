package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// heapInuse reads HeapInuse from the pprof plugin's heap profile.
func heapInuse(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`# HeapInuse = (\d+)`).FindSubmatch(body)
	if m == nil {
		t.Fatal("no HeapInuse in the heap profile")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestSoak churns a real catalog (registrations, deregistrations, health
// flaps) under questions for SOAK_DURATION (20s in make test, minutes in make
// soak): no question fails, goroutines and heap come back to their baseline,
// and the final answers equal what Consul's catalog says.
func TestSoak(t *testing.T) {
	duration := 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil {
		duration = d
	}
	const services, instances = 30, 3
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	consulagent.Populate(t, client, services, instances, 10)
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", corednsproc.FreePort(t))
	server := corednsproc.Start(t, func(p corednsproc.Ports) string {
		return fmt.Sprintf("consul.:%d {\n bind 127.0.0.1\n ready 127.0.0.1:%d\n pprof %s\n consul {\n  address %s\n  max_watchers 10\n }\n}\n",
			p.DNS, p.Ready, pprofAddr, agent.HTTPAddr)
	})
	time.Sleep(2 * time.Second)
	baseGoroutines, baseHeap := goroutines(t, pprofAddr), heapInuse(t, pprofAddr)

	// Questions for every service; any answer but NOERROR is a failure: the
	// churn never touches the instances Populate made, which stay passing.
	var asked, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := &dns.Client{Net: "udp", Timeout: time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("service-%d.service.consul.", i%services), dns.TypeSRV)
			m.SetEdns0(4096, false)
			resp, _, err := c.Exchange(m, server.Addr)
			asked.Add(1)
			if err != nil || resp.Rcode != dns.RcodeSuccess {
				failed.Add(1)
			}
			time.Sleep(500 * time.Microsecond)
		}
	}()

	// The churn: extra instances registered, deregistered and flapping.
	statuses := []string{api.HealthPassing, api.HealthWarning, api.HealthCritical}
	changes := 0
	end := time.Now().Add(duration)
	for time.Now().Before(end) {
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
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	<-done
	t.Logf("%d changes in %s; %d questions, %d failed", changes, duration, asked.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d questions failed during the churn", failed.Load(), asked.Load())
	}

	// Settled, the answers are Consul's catalog.
	time.Sleep(2 * time.Second)
	for s := range services {
		name := fmt.Sprintf("service-%d", s)
		entries, _, err := client.Health().Service(name, "", false, nil)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, e := range entries {
			if e.Checks.AggregatedStatus() != api.HealthCritical {
				want = append(want, e.Node.Address)
			}
		}
		slices.Sort(want)
		want = slices.Compact(want)
		resp := query(t, "tcp", server.Addr, name+".service.consul.", dns.TypeA)
		var got []string
		for _, rr := range resp.Answer {
			got = append(got, rr.(*dns.A).A.String())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: answered %v, Consul's catalog says %v", name, got, want)
		}
	}

	g, h := goroutines(t, pprofAddr), heapInuse(t, pprofAddr)
	t.Logf("goroutines %d -> %d, heap in use %.1f -> %.1f MB", baseGoroutines, g, float64(baseHeap)/1e6, float64(h)/1e6)
	if g > baseGoroutines+20 {
		t.Errorf("goroutines grew from %d to %d", baseGoroutines, g)
	}
	if h > 2*baseHeap+16<<20 {
		t.Errorf("heap in use grew from %d to %d bytes", baseHeap, h)
	}
}
