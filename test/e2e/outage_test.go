package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// prober asks for every service, round and round, over UDP, and counts
// answers that are not the expected instance count.
type prober struct {
	t        *testing.T
	services int
	want     int // A records per service
	mu       sync.Mutex
	addr     string
	asked    atomic.Int64
	failures atomic.Int64
	lastFail atomic.Value // string
	stop     chan struct{}
	done     chan struct{}
}

func startProber(t *testing.T, addr string, services, want int) *prober {
	p := &prober{t: t, addr: addr, services: services, want: want, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	t.Cleanup(p.halt)
	return p
}

func (p *prober) setAddr(addr string) {
	p.mu.Lock()
	p.addr = addr
	p.mu.Unlock()
}

func (p *prober) run() {
	defer close(p.done)
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		default:
		}
		p.mu.Lock()
		addr := p.addr
		p.mu.Unlock()
		m := new(dns.Msg)
		// service-0 and service-1 change during the test; the others do not.
		m.SetQuestion(fmt.Sprintf("service-%d.service.consul.", 2+i%(p.services-2)), dns.TypeA)
		resp, _, err := c.Exchange(m, addr)
		p.asked.Add(1)
		if err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != p.want {
			p.failures.Add(1)
			p.lastFail.Store(fmt.Sprintf("%s: %v %v", m.Question[0].Name, err, resp))
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *prober) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// check reports the failures since the last check.
func (p *prober) check(phase string) {
	p.t.Helper()
	asked, failed := p.asked.Swap(0), p.failures.Swap(0)
	if failed > 0 {
		p.t.Errorf("%s: %d of %d questions failed; last: %v", phase, failed, asked, p.lastFail.Load())
	} else {
		p.t.Logf("%s: %d questions, all answered", phase, asked)
	}
	if asked == 0 {
		p.t.Errorf("%s: no question was asked", phase)
	}
}

func outageCorefile(consul, snapshotPath, extra string) func(corednsproc.Ports) string {
	return func(p corednsproc.Ports) string {
		return fmt.Sprintf(`consul.:%d {
    bind 127.0.0.1
    ready 127.0.0.1:%d
    prometheus 127.0.0.1:%d
    consul {
        address %s
        snapshot %s 100ms
%s    }
}
`, p.DNS, p.Ready, p.Metrics, consul, snapshotPath, extra)
	}
}

// TestOutage kills, freezes and empties a real Consul agent under a real
// CoreDNS while questions for every service run, most never asked before the
// outage, and restarts CoreDNS while Consul is down.
func TestOutage(t *testing.T) {
	const services, instances = 30, 3
	agent := consulagent.StartProcess(t)
	client := agent.Client()
	consulagent.Populate(t, client, services, instances, 10)
	snapshotPath := filepath.Join(t.TempDir(), "consul.snapshot")
	server := corednsproc.Start(t, outageCorefile(agent.HTTPAddr, snapshotPath, ""))

	// Only five services are asked for before the outage.
	warm := startProber(t, server.Addr, 7, instances)
	time.Sleep(300 * time.Millisecond) // the snapshot file is written meanwhile
	warm.halt()
	warm.check("before the outage")
	probe := startProber(t, server.Addr, services, instances)

	agent.Freeze()
	time.Sleep(8 * time.Second) // past the liveness ping's detection
	probe.check("Consul frozen (SIGSTOP)")
	if !strings.Contains(server.Metrics(t), "coredns_consul_stale{datacenter=\"local\"} 1") {
		t.Error("the stale metric did not turn 1 while Consul was frozen")
	}
	agent.Thaw()
	bounce(t, client, server.Addr, "service-0", instances)
	probe.check("Consul thawed")

	agent.Kill()
	time.Sleep(3 * time.Second)
	probe.check("Consul killed (SIGKILL)")

	// CoreDNS restarted while Consul is down answers from the file at once.
	restarted := corednsproc.Start(t, outageCorefile(agent.HTTPAddr, snapshotPath, ""))
	probe.setAddr(restarted.Addr)
	server.Stop(t)
	for s := range services {
		if got := answers(t, restarted.Addr, fmt.Sprintf("service-%d.service.consul.", s)); got != instances {
			t.Errorf("restarted while Consul is down: service-%d has %d answers, want %d", s, got, instances)
		}
	}
	time.Sleep(time.Second)
	probe.check("CoreDNS restarted while Consul is down")

	// Consul comes back with its data, and a change shows up.
	agent.Restart()
	bounce(t, client, restarted.Addr, "service-1", instances)
	probe.check("Consul back with its data")
	probe.halt()

	// Consul comes back empty, with lower indexes. With the guard, the old
	// data is held for the guard's time; without it, the empty truth is
	// served: NXDOMAIN.
	guarded := corednsproc.Start(t, outageCorefile(agent.HTTPAddr, filepath.Join(t.TempDir(), "guarded"), "        guard 0.5 4s\n"))
	// The guard may start holding before RestartEmpty returns (it waits for
	// the new agent's leader): watch for it from before the restart.
	heldAt := make(chan time.Time, 1)
	go func() {
		defer close(heldAt)
		deadline := time.Now().Add(60 * time.Second) // the replicas come back after their backoff
		for time.Now().Before(deadline) {
			if resp, err := http.Get("http://" + guarded.MetricsAddr + "/metrics"); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if strings.Contains(string(body), `coredns_consul_guard_holding{datacenter="local"} 1`) {
					heldAt <- time.Now()
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	agent.RestartEmpty()
	held, ok := <-heldAt
	if !ok {
		t.Fatal("guard on: the guard never held the empty snapshot back")
	}
	if got := answers(t, guarded.Addr, "service-2.service.consul."); got != instances {
		t.Errorf("guard on: service-2 has %d answers while the guard holds, want the held %d", got, instances)
	}
	waitAnswers(t, guarded.Addr, "service-2.service.consul.", -dns.RcodeNameError, 40*time.Second)
	if d := time.Since(held); d < 3*time.Second {
		t.Errorf("guard on: the empty truth was served %s after the guard held it, before its 4s\n%s", d, guarded.Output())
	}
	// Without the guard the empty truth is served as soon as it is read.
	waitAnswers(t, restarted.Addr, "service-2.service.consul.", -dns.RcodeNameError, 40*time.Second)
}

// bounce registers one more instance of service and removes it again,
// waiting for the DNS server at addr to show each change.
func bounce(t *testing.T, client *api.Client, addr, service string, instances int) {
	t.Helper()
	consulagent.Register(t, client, "node-extra", "10.99.0.1", &api.AgentService{ID: "extra", Service: service, Port: 80}, "passing")
	waitAnswers(t, addr, service+".service.consul.", instances+1, 10*time.Second)
	consulagent.Deregister(t, client, "node-extra", "extra")
	waitAnswers(t, addr, service+".service.consul.", instances, 10*time.Second)
}

// answers is the number of A records for name, or minus the rcode when it is
// not NOERROR.
func answers(t *testing.T, addr, name string) int {
	t.Helper()
	resp := query(t, "udp", addr, name, dns.TypeA)
	if resp.Rcode != dns.RcodeSuccess {
		return -resp.Rcode
	}
	return len(resp.Answer)
}

func waitAnswers(t *testing.T, addr, name string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for answers(t, addr, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %d answers", name, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
