// Package e2e runs the real CoreDNS binary with the consul plugin against
// real Consul agents (and HAProxy) and asks it over UDP and TCP. Every test
// waits on what it can observe (an answer, a metric, a log line), never for
// a fixed time.
package e2e

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/metrics"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// startAgent starts a single-server Consul agent, with more configuration
// when given, and returns it with a client.
func startAgent(t *testing.T, hcl ...string) (*consulagent.Process, *api.Client) {
	t.Helper()
	agent := consulagent.StartProcessWith(t, consulagent.Options{HCL: hcl})
	return agent, agent.Client()
}

// pluginCorefile is the Corefile of most tests: the consul plugin reading
// the agent at addr with more settings, and the prometheus plugin for the
// tests to wait on.
func pluginCorefile(addr string, settings ...string) corednsproc.Corefile {
	return corednsproc.Corefile{Metrics: true, Consul: append([]string{"address " + addr}, settings...)}
}

// startPlugin starts CoreDNS with pluginCorefile.
func startPlugin(t *testing.T, addr string, settings ...string) *corednsproc.Server {
	t.Helper()
	return corednsproc.Start(t, pluginCorefile(addr, settings...).Build)
}

// stale is the metric that says Consul cannot be reached, for the local
// datacenter.
const stale = `coredns_consul_stale{datacenter="local"}`

func is(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

// waitSnapshotFile waits until the snapshot file at path holds what server
// serves, every datacenter's snapshot as built, so that a CoreDNS started
// from it answers as server does now.
func waitSnapshotFile(t *testing.T, server *corednsproc.Server, path string) {
	t.Helper()
	wait.Until(t, 10*time.Second, func() error {
		set, err := snapshot.ReadFile(path)
		if err != nil {
			return err
		}
		served := metrics.Parse(server.Metrics(t))
		for _, snap := range set.Datacenters {
			label := snap.Datacenter
			if label == set.Local {
				label = "local"
			}
			built := served[`coredns_consul_snapshot_timestamp_seconds{datacenter="`+label+`"}`]
			if math.Abs(built-float64(snap.Built.UnixNano())/1e9) > 1e-3 {
				return fmt.Errorf("the file holds %s built at %s, CoreDNS serves one built at %.3f", label, snap.Built, built)
			}
		}
		return nil
	})
}

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
	i := 0
	wait.Every(time.Millisecond, p.stop, func() bool {
		p.mu.Lock()
		addr := p.addr
		p.mu.Unlock()
		// service-0 and service-1 change during the tests; the others do not.
		name := fmt.Sprintf("service-%d.service.consul.", 2+i%(p.services-2))
		i++
		resp, err := dnsq.Ask(addr, name, dns.TypeA, dnsq.Timeout(time.Second))
		p.asked.Add(1)
		if err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != p.want {
			p.failures.Add(1)
			p.lastFail.Store(fmt.Sprintf("%s: %v %v", name, err, resp))
		}
		return true
	})
}

func (p *prober) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// waitAsked waits until the prober has asked every service twice since the
// last check: the phase about to be checked was probed through.
func (p *prober) waitAsked() {
	p.t.Helper()
	want := int64(2 * p.services)
	wait.Until(p.t, 30*time.Second, func() error {
		if n := p.asked.Load(); n < want {
			return fmt.Errorf("the prober asked %d questions, want %d", n, want)
		}
		return nil
	})
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

type question struct {
	name  string
	qtype uint16
}

// compare asks Consul's DNS at want and the plugin at got every question over
// TCP, and reports each that is answered differently (as record sets, with
// the rcode).
func compare(t *testing.T, want, got string, questions []question) {
	t.Helper()
	differences, withRecords := 0, 0
	for _, q := range questions {
		w, g := exchangeTCP(t, want, q), exchangeTCP(t, got, q)
		if len(w.Answer) > 0 {
			withRecords++
		}
		if sameAnswer(w, g) {
			continue
		}
		differences++
		msg := fmt.Sprintf("%s %s: rcode consul %s, plugin %s", q.name, dns.TypeToString[q.qtype],
			dns.RcodeToString[w.Rcode], dns.RcodeToString[g.Rcode])
		for _, s := range []struct {
			name      string
			want, got []dns.RR
		}{{"answer", w.Answer, g.Answer}, {"authority", w.Ns, g.Ns}, {"additional", w.Extra, g.Extra}} {
			if a, b := dnsq.Normalize(s.want), dnsq.Normalize(s.got); !slices.Equal(a, b) {
				msg += fmt.Sprintf("\n  %s:\n    consul %q\n    plugin %q", s.name, a, b)
			}
		}
		t.Error(msg)
	}
	t.Logf("%d questions (%d answered with records by Consul), %d answered differently", len(questions), withRecords, differences)
}

// answersOf asks server every question.
func answersOf(t *testing.T, server string, questions []question) map[question]*dns.Msg {
	out := make(map[question]*dns.Msg, len(questions))
	for _, q := range questions {
		out[q] = exchangeTCP(t, server, q)
	}
	return out
}

// sameAnswers checks that server answers every question as it was answered
// before (want).
func sameAnswers(t *testing.T, server string, questions []question, want map[question]*dns.Msg) {
	t.Helper()
	answered := 0
	for _, q := range questions {
		got := exchangeTCP(t, server, q)
		if sameAnswer(want[q], got) {
			answered++
			continue
		}
		t.Errorf("%s %s: rcode %s, %d answers; before: rcode %s, %d answers\nnow:\n%v\nbefore:\n%v", q.name, dns.TypeToString[q.qtype],
			dns.RcodeToString[got.Rcode], len(got.Answer), dns.RcodeToString[want[q].Rcode], len(want[q].Answer), got, want[q])
	}
	t.Logf("%d of %d questions answered as before", answered, len(questions))
}

// sameAnswer reports whether two answers hold the same rcode and record
// sets.
func sameAnswer(a, b *dns.Msg) bool {
	return a.Rcode == b.Rcode && slices.Equal(dnsq.Normalize(a.Answer), dnsq.Normalize(b.Answer)) &&
		slices.Equal(dnsq.Normalize(a.Ns), dnsq.Normalize(b.Ns)) && slices.Equal(dnsq.Normalize(a.Extra), dnsq.Normalize(b.Extra))
}

func exchangeTCP(t *testing.T, server string, q question) *dns.Msg {
	t.Helper()
	return dnsq.Query(t, server, q.name, q.qtype, dnsq.TCP, dnsq.Timeout(10*time.Second))
}

// waitFor asks name until ok accepts the answer, for up to 10s.
func waitFor(t *testing.T, server, name string, qtype uint16, ok func(*dns.Msg) bool) {
	t.Helper()
	dnsq.Wait(t, server, name, qtype, 10*time.Second, ok)
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
