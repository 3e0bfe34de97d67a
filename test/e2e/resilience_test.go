package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/metrics"
	"github.com/coredns-consul/coredns-consul/test/procfs"
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

// TestClusterLeaderLoss runs the real CoreDNS against a real 3-server Consul
// cluster on loopback and kills the leader while questions run: no question
// fails, and changes propagate again once a new leader is elected.
func TestClusterLeaderLoss(t *testing.T) {
	const services, instances = 20, 2
	cluster := consulagent.StartCluster(t, 3)
	consulagent.Populate(t, cluster[0].Client(), services, instances, 10)
	var addresses []string
	for _, p := range cluster {
		addresses = append(addresses, p.HTTPAddr)
	}
	server := startPlugin(t, strings.Join(addresses, " "))
	probe := startProber(t, server.Addr, services, instances)
	probe.waitAsked()

	leaderAddr, err := cluster[1].Client().Status().Leader()
	if err != nil {
		t.Fatal(err)
	}
	var leader *consulagent.Process
	var survivors []*consulagent.Process
	for _, p := range cluster {
		if p.ServerAddr() == leaderAddr {
			leader = p
		} else {
			survivors = append(survivors, p)
		}
	}
	if leader == nil {
		t.Fatalf("leader %s is none of the servers", leaderAddr)
	}
	killed := time.Now()
	leader.Kill()
	t.Logf("killed the leader %s", leader.Name)

	// Write through a survivor until the new leader takes the write.
	client := survivors[0].Client()
	wait.Until(t, 30*time.Second, func() error {
		_, err := client.Catalog().Register(&api.CatalogRegistration{Node: "node-extra", Address: "10.99.0.1",
			Service: &api.AgentService{ID: "extra", Service: "service-0", Port: 80}}, nil)
		return err
	})
	t.Logf("a new leader took a write %s after the kill", time.Since(killed).Round(time.Millisecond))
	dnsq.WaitCount(t, server.Addr, "service-0.service.consul.", instances+1, 15*time.Second)
	t.Logf("the change was answered %s after the kill", time.Since(killed).Round(time.Millisecond))
	consulagent.Deregister(t, client, "node-extra", "extra")
	dnsq.WaitCount(t, server.Addr, "service-0.service.consul.", instances, 15*time.Second)
	probe.waitAsked()
	probe.halt()
	probe.check("leader killed")
}

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
		profile, _ := metrics.Get("http://" + server.PprofAddr + "/debug/pprof/goroutine?debug=1")
		t.Errorf("goroutines or sockets grew over %d reloads: %v; the goroutines:\n%.6000s", reloads, err, profile)
	}
	probe.halt()
	probe.check(fmt.Sprintf("%d reloads", reloads))
}

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

// TestDamagedSnapshotFile starts the real CoreDNS on damaged snapshot files:
// each is logged and ignored, start-up goes on, answers come from Consul,
// and the file is replaced by a good one.
func TestDamagedSnapshotFile(t *testing.T) {
	agent, client := startAgent(t)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")

	good := new(bytes.Buffer)
	if err := snapshot.Encode(good, &snapshot.Set{Local: "dc1", Datacenters: []*snapshot.Snapshot{snapshot.New("dc1", 1, nil, nil, time.Unix(0, 0))}}); err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good.Bytes())
	flipped[len(flipped)-2] ^= 0xff
	otherVersion := bytes.Clone(good.Bytes())
	otherVersion[19]++
	tests := map[string][]byte{
		"empty":            {},
		"truncated":        good.Bytes()[:good.Len()/2],
		"flipped byte":     flipped,
		"other version":    otherVersion,
		"not a snapshot":   []byte("hello\n"),
		"random big bytes": bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1<<16),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snap")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			server := startPlugin(t, agent.HTTPAddr, "snapshot "+path+" 10ms")
			if got := dnsq.Count(t, server.Addr, "web.service.consul."); got != 1 {
				t.Errorf("web: %d answers, want 1 from Consul", got)
			}
			if !strings.Contains(server.Output(), "ignoring the snapshot file") {
				t.Errorf("the damaged file was not reported:\n%s", server.Output())
			}
			server.Stop(t)
			set, err := snapshot.ReadFile(path)
			if err != nil {
				t.Fatalf("the file was not replaced by a good one: %v", err)
			}
			if _, ok := set.Snapshot(set.Local).Service("web"); !ok {
				t.Error("the new file lacks web")
			}
		})
	}
}
