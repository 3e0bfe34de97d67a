package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/procfs"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/miekg/dns"
)

// TestReloads reloads the real CoreDNS 50 times (SIGUSR1) while questions
// run: none fails, each reload takes effect, and goroutines and sockets
// return to where they were. Every reload changes the TTL, which answers
// show once the new configuration serves; every other reload also changes
// max_watchers, a setting of how Consul is read.
func TestReloads(t *testing.T) {
	const services, instances, reloads = 20, 2, 50
	agent, client := startAgent(t)
	consulagent.Populate(t, client, services, instances, 10)
	// The configuration after reload i (0: the first); its TTL tells it.
	config := func(i int) (corednsproc.Corefile, int) {
		ttl := 1 + i%2
		cf := pluginCorefile(agent.HTTPAddr, fmt.Sprintf("service_ttl * %ds", ttl), fmt.Sprintf("max_watchers %d", 100+i/2%2))
		cf.Pprof = true
		return cf, ttl
	}
	first, _ := config(0)
	server := corednsproc.Start(t, first.Build)
	server.WaitMetric(t, "coredns_consul_watched_services", 30*time.Second, is(services+1))
	probe := startProber(t, server.Addr, services, instances)
	probe.waitAsked()
	sockets := func() int {
		n, err := procfs.Sockets(server.Pid())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	baseGoroutines, baseSockets := server.Goroutines(t), sockets()

	for i := 1; i <= reloads; i++ {
		next, ttl := config(i)
		server.Reload(t, next.Build(server.Ports))
		dnsq.Wait(t, server.Addr, "service-2.service.consul.", dns.TypeA, 30*time.Second, func(m *dns.Msg) bool { return dnsq.TTL(m) == ttl })
	}
	// The last old instances finish stopping.
	var g, s int
	err := wait.For(30*time.Second, func() error {
		if g, s = server.Goroutines(t), sockets(); g > baseGoroutines+10 || s > baseSockets+5 {
			return fmt.Errorf("goroutines %d -> %d, sockets %d -> %d", baseGoroutines, g, baseSockets, s)
		}
		return nil
	})
	t.Logf("goroutines %d -> %d, sockets %d -> %d after %d reloads", baseGoroutines, g, baseSockets, s, reloads)
	if err != nil {
		t.Errorf("goroutines or sockets grew over %d reloads: %v", reloads, err)
	}
	probe.halt()
	probe.check(fmt.Sprintf("%d reloads", reloads))
}
