package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/metrics"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// TestOutage kills, freezes and empties a real Consul agent under a real
// CoreDNS while questions for every service run, most never asked before the
// outage, and restarts CoreDNS while Consul is down.
func TestOutage(t *testing.T) {
	const services, instances = 30, 3
	agent := consulagent.StartProcess(t)
	client := agent.Client()
	consulagent.Populate(t, client, services, instances, 10)
	snapshotPath := filepath.Join(t.TempDir(), "consul.snapshot")
	corefile := pluginCorefile(agent.HTTPAddr, "snapshot "+snapshotPath+" 100ms").Build
	server := corednsproc.Start(t, corefile)

	// Only five services are asked for before the outage.
	warm := startProber(t, server.Addr, 7, instances)
	warm.waitAsked()
	waitSnapshotFile(t, server, snapshotPath)
	warm.halt()
	warm.check("before the outage")
	probe := startProber(t, server.Addr, services, instances)

	// Each phase lasts until the plugin says Consul cannot be reached (the
	// liveness ping's detection), and the prober went through every service.
	agent.Freeze()
	server.WaitMetric(t, stale, 30*time.Second, is(1))
	probe.waitAsked()
	probe.check("Consul frozen (SIGSTOP)")
	agent.Thaw()
	bounce(t, client, server.Addr, "service-0", instances)
	server.WaitMetric(t, stale, 30*time.Second, is(0))
	probe.check("Consul thawed")

	agent.Kill()
	server.WaitMetric(t, stale, 30*time.Second, is(1))
	probe.waitAsked()
	probe.check("Consul killed (SIGKILL)")

	// CoreDNS restarted while Consul is down answers from the file at once.
	restarted := corednsproc.Start(t, corefile)
	probe.setAddr(restarted.Addr)
	server.Stop(t)
	for s := range services {
		if got := dnsq.Count(t, restarted.Addr, fmt.Sprintf("service-%d.service.consul.", s)); got != instances {
			t.Errorf("restarted while Consul is down: service-%d has %d answers, want %d", s, got, instances)
		}
	}
	probe.waitAsked()
	probe.check("CoreDNS restarted while Consul is down")

	// Consul comes back with its data, and a change shows up.
	agent.Restart()
	bounce(t, client, restarted.Addr, "service-1", instances)
	probe.check("Consul back with its data")
	probe.halt()

	// Consul comes back empty, with lower indexes. With the guard, the old
	// data is held for the guard's time; without it, the empty truth is
	// served: NXDOMAIN.
	guarded := corednsproc.Start(t, pluginCorefile(agent.HTTPAddr, "snapshot "+filepath.Join(t.TempDir(), "guarded")+" 100ms", "guard 0.5 4s").Build)
	// The guard may start holding before RestartEmpty returns (it waits for
	// the new agent's leader): watch for it from before the restart.
	heldAt := make(chan time.Time, 1)
	go func() {
		defer close(heldAt)
		// The replicas come back after their backoff.
		if wait.Poll(time.Minute, 20*time.Millisecond, nil, func() bool {
			text, err := metrics.Get("http://" + guarded.MetricsAddr + "/metrics")
			held, _ := metrics.Sum(text, `coredns_consul_guard_holding{datacenter="local"}`)
			return err == nil && held == 1
		}) {
			heldAt <- time.Now()
		}
	}()
	agent.RestartEmpty()
	held, ok := <-heldAt
	if !ok {
		t.Fatal("guard on: the guard never held the empty snapshot back")
	}
	if got := dnsq.Count(t, guarded.Addr, "service-2.service.consul."); got != instances {
		t.Errorf("guard on: service-2 has %d answers while the guard holds, want the held %d", got, instances)
	}
	dnsq.WaitCount(t, guarded.Addr, "service-2.service.consul.", -dns.RcodeNameError, 40*time.Second)
	if d := time.Since(held); d < 3*time.Second {
		t.Errorf("guard on: the empty truth was served %s after the guard held it, before its 4s\n%s", d, guarded.Output())
	}
	// Without the guard the empty truth is served as soon as it is read.
	dnsq.WaitCount(t, restarted.Addr, "service-2.service.consul.", -dns.RcodeNameError, 40*time.Second)
}

// bounce registers one more instance of service and removes it again,
// waiting for the DNS server at addr to show each change.
func bounce(t *testing.T, client *api.Client, addr, service string, instances int) {
	t.Helper()
	consulagent.Register(t, client, "node-extra", "10.99.0.1", &api.AgentService{ID: "extra", Service: service, Port: 80}, "passing")
	dnsq.WaitCount(t, addr, service+".service.consul.", instances+1, 10*time.Second)
	consulagent.Deregister(t, client, "node-extra", "extra")
	dnsq.WaitCount(t, addr, service+".service.consul.", instances, 10*time.Second)
}
