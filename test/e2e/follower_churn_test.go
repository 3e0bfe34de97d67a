package e2e

// The follower mode under change: a tier killed during churn while the
// other is behind, and a follower started during a registration storm.

import (
	"fmt"
	"math"
	"slices"
	"sync"
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

// churnBase is the port of version 0: a churning instance's port is
// churnBase plus its version, so that an answer tells which write it shows.
const churnBase = 20000

// churn re-registers one instance of each of its services in turn, each
// time with the next version as its port, alternately passing and warning
// (both answered), and flips flap's check between critical and passing.
type churn struct {
	t        *testing.T
	client   *api.Client
	services int
	version  atomic.Int64 // the last version written
	*loops
}

func startChurn(t *testing.T, client *api.Client, services int, every time.Duration) *churn {
	c := &churn{t: t, client: client, services: services, loops: newLoops(t)}
	c.every(every, c.step)
	return c
}

func (c *churn) step() bool {
	v := c.version.Load() + 1
	k := int(v) % c.services
	status := api.HealthPassing
	if v/int64(c.services)%2 == 1 {
		status = api.HealthWarning
	}
	svc := &api.AgentService{ID: fmt.Sprintf("churn-%d", k), Service: fmt.Sprintf("churn-%d", k), Port: churnBase + int(v)}
	if err := c.register(fmt.Sprintf("churn-node-%d", k), fmt.Sprintf("10.210.0.%d", k+1), svc, status); err != nil {
		c.t.Errorf("churn: %v", err)
		return false
	}
	if v%4 == 0 {
		flap := map[bool]string{true: api.HealthCritical, false: api.HealthPassing}[v%8 == 0]
		if err := c.register("flap-node", "10.211.0.1", &api.AgentService{ID: "flap-1", Service: "flap", Port: 80}, flap); err != nil {
			c.t.Errorf("churn: %v", err)
			return false
		}
	}
	c.version.Store(v)
	return true
}

func (c *churn) register(node, addr string, svc *api.AgentService, status string) error {
	_, err := c.client.Catalog().Register(&api.CatalogRegistration{Node: node, Address: addr, Service: svc, Checks: api.HealthChecks{{
		Node: node, CheckID: "check:" + svc.ID, Name: "check", Status: status, ServiceID: svc.ID,
	}}}, nil)
	if err != nil {
		return fmt.Errorf("registering %s with %s: %w", svc.ID, status, err)
	}
	return nil
}

// waitVersion waits until the churn has written version v.
func (c *churn) waitVersion(t *testing.T, v int64) {
	t.Helper()
	wait.Until(t, 15*time.Second, func() error {
		if got := c.version.Load(); got < v {
			return fmt.Errorf("churned to version %d, want %d", got, v)
		}
		return nil
	})
}

// questions ask about every churning service and flap.
func (c *churn) questions() []question {
	var qs []question
	for k := range c.services {
		name := fmt.Sprintf("churn-%d.service.consul.", k)
		qs = append(qs, question{name, dns.TypeSRV}, question{name, dns.TypeA})
	}
	return append(qs, question{"flap.service.consul.", dns.TypeA}, question{"flap.service.consul.", dns.TypeSRV})
}

// versionWatch asks each DNS server for every churning service and every
// late one (registered once, version 0), round and round, and records each
// answer whose version is lower than one the same server answered before,
// or that has none after one did: a state that moved backwards.
type versionWatch struct {
	t         *testing.T
	services  int      // the churning ones, first in names
	names     []string // every service watched
	mu        sync.Mutex
	highest   map[string][]int64 // by server, by name
	backwards []string
	asked     atomic.Int64
	phase     atomic.Value // string: what the test is doing, for the messages
	*loops
}

func startVersionWatch(t *testing.T, addrs []string, services int, late []string) *versionWatch {
	w := &versionWatch{t: t, services: services, highest: map[string][]int64{}, loops: newLoops(t)}
	for k := range services {
		w.names = append(w.names, fmt.Sprintf("churn-%d", k))
	}
	w.names = append(w.names, late...)
	w.phase.Store("start")
	for _, addr := range addrs {
		w.highest[addr] = slices.Repeat([]int64{-1}, len(w.names))
	}
	for _, addr := range addrs {
		w.every(20*time.Millisecond, func() bool { w.round(addr); return true })
	}
	return w
}

func (w *versionWatch) round(addr string) {
	for k, name := range w.names {
		m, err := dnsq.Ask(addr, name+".service.consul.", dns.TypeSRV, dnsq.EDNS(4096), dnsq.Timeout(time.Second))
		if err != nil {
			continue // a lost datagram says nothing of the state
		}
		w.asked.Add(1)
		v := int64(-1)
		for _, rr := range m.Answer {
			if srv, ok := rr.(*dns.SRV); ok {
				v = max(v, int64(srv.Port)-churnBase)
			}
		}
		w.mu.Lock()
		if prev := w.highest[addr][k]; v < prev {
			w.backwards = append(w.backwards, fmt.Sprintf("%s %s: version %d after %d (%s) while %s", addr, name, v, prev, dns.RcodeToString[m.Rcode], w.phase.Load()))
		} else {
			w.highest[addr][k] = v
		}
		w.mu.Unlock()
	}
}

// lowest is the lowest version any server shows of any service.
func (w *versionWatch) lowest() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	low := int64(math.MaxInt64)
	for _, vs := range w.highest {
		low = min(low, slices.Min(vs[:w.services]))
	}
	return low
}

// waitLowest waits until every server shows at least version v of every
// service, or the version just before it for the services written first.
func (w *versionWatch) waitLowest(t *testing.T, v int64, within time.Duration) {
	t.Helper()
	if v < int64(2*w.services) {
		t.Fatalf("waiting for version %d: every service has one from version %d on", v, 2*w.services)
	}
	wait.Until(t, within, func() error {
		if low := w.lowest(); low < v-int64(w.services) {
			return fmt.Errorf("the followers show version %d of some service, want %d or later", low, v-int64(w.services))
		}
		return nil
	})
}

// check reports every answer that moved backwards.
func (w *versionWatch) check() {
	w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.backwards {
		w.t.Errorf("moved backwards: %s", b)
	}
	w.t.Logf("%d answers watched, %d moved backwards", w.asked.Load(), len(w.backwards))
}

// TestFollowerTierFailoverDuringChurn: with tier 1 behind (its client agent
// frozen), tier 0 is killed during churn. The followers switch to tier 1
// within 2 s; no follower's answer for a churning service ever shows an
// older version than it showed before, nor does a service registered while
// tier 1 was behind ever go, while tier 1 is behind or catching up; once
// the churn is over, every follower answers as Consul's DNS does.
func TestFollowerTierFailoverDuringChurn(t *testing.T) {
	const services = 5
	late := []string{"late-0", "late-1", "late-2"}
	f := startFollowFleet(t, nil)
	f.startFollowers(t, 3)
	c := startChurn(t, f.client, services, 40*time.Millisecond)
	w := startVersionWatch(t, f.followerAddrs(), services, late)
	f.explainOnFailure(t, append(slices.Clone(w.names), "flap")...)
	c.waitVersion(t, 2*services)
	w.waitLowest(t, c.version.Load(), 15*time.Second)

	behind := f.consul.Clients[1]
	w.phase.Store("tier 1 falls behind")
	behind.Freeze()
	t.Cleanup(behind.Thaw)
	// Every service changes twice after tier 1 stopped hearing of it, and
	// the followers (on tier 0) show it; services new since then too.
	registerLate(t, f, late)
	w.waitLowest(t, c.version.Load()+2*services, 15*time.Second)
	if v := versionOf(t, f.tiers[1].Addr, "churn-0"); v >= w.lowest() {
		t.Fatalf("tier 1 shows churn-0 at version %d, not behind the followers' %d", v, w.lowest())
	}

	switches := make([]float64, len(f.followers))
	for i, fl := range f.followers {
		switches[i] = fl.MetricWhere("coredns_consul_follower_switches_total")
	}
	killed := time.Now()
	w.phase.Store("tier 0 killed, tier 1 behind")
	f.tiers[0].Kill()
	wait.Until(t, 15*time.Second, func() error {
		for i, fl := range f.followers {
			if n := fl.MetricWhere("coredns_consul_follower_switches_total"); !(n > switches[i]) {
				return fmt.Errorf("follower %d has not switched tiers (%v)", i, n)
			}
		}
		return nil
	})
	if took := time.Since(killed); took > 2*time.Second+500*time.Millisecond {
		t.Errorf("the followers switched to tier 1 %s after tier 0 died, want within 2s", took.Round(time.Millisecond))
	} else {
		t.Logf("the followers switched to tier 1 within %s of tier 0's death", took.Round(time.Millisecond))
	}

	// The churn goes on while the only tier left is behind.
	c.waitVersion(t, c.version.Load()+2*services)
	w.phase.Store("tier 1 catching up")
	behind.Thaw()
	w.waitLowest(t, c.version.Load(), 30*time.Second)
	c.halt()
	w.phase.Store("quiet")

	f.mark(t, append(f.followerAddrs(), f.tiers[1].Addr)...)
	// The tier first: what it answers, its followers must.
	for i, addr := range append([]string{f.tiers[1].Addr}, f.followerAddrs()...) {
		converge(t, f.consul.Clients[0].DNSAddr, addr, c.questions(), 30*time.Second)
		t.Logf("%s (%d: tier 1, then the followers) answers as Consul's DNS does", addr, i)
	}
	w.check()
}

// registerLate registers services of one instance each, at version 0, and
// waits until every follower answers them.
func registerLate(t *testing.T, f *followFleet, services []string) {
	t.Helper()
	for _, name := range services {
		consulagent.Register(t, f.client, "late-node", "10.212.0.1", &api.AgentService{ID: name, Service: name, Port: churnBase}, api.HealthPassing)
	}
	for _, fl := range f.followers {
		for _, name := range services {
			dnsq.WaitCount(t, fl.Addr, name+".service.consul.", 1, 15*time.Second)
		}
	}
}

// versionOf is the version of service's churning instance that the DNS
// server at addr answers, -1 for none.
func versionOf(t *testing.T, addr, service string) int64 {
	v := int64(-1)
	for _, rr := range dnsq.Query(t, addr, service+".service.consul.", dns.TypeSRV, dnsq.TCP).Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			v = max(v, int64(srv.Port)-churnBase)
		}
	}
	return v
}

// TestFollowerStartedDuringStorm: a follower started while registrations
// pour in converges to what Consul's DNS answers once they stop.
func TestFollowerStartedDuringStorm(t *testing.T) {
	const services, writers = 150, 2
	f := startFollowFleet(t, nil)
	var written atomic.Int64
	storm := newLoops(t)
	for range writers {
		storm.every(time.Millisecond, func() bool {
			i := int(written.Add(1))
			node := fmt.Sprintf("storm-node-%d", i%40)
			_, err := f.client.Catalog().Register(&api.CatalogRegistration{Node: node, Address: fmt.Sprintf("10.220.0.%d", i%40+1),
				Service: &api.AgentService{ID: fmt.Sprintf("storm-%d", i), Service: fmt.Sprintf("storm-%d", i%services), Port: 1024 + i}}, nil)
			if err != nil {
				t.Errorf("storm: %v", err)
				return false
			}
			return true
		})
	}
	wait.Until(t, 30*time.Second, func() error {
		if n := written.Load(); n < 300 {
			return fmt.Errorf("%d registrations so far", n)
		}
		return nil
	})
	fl := f.addFollower(t, corednsproc.FollowerOptions{Tiers: f.tierListens()})
	started := written.Load()
	wait.Until(t, 30*time.Second, func() error {
		if n := written.Load(); n < started+1000 {
			return fmt.Errorf("%d registrations since the follower started, want 1000", n-started)
		}
		return nil
	})
	storm.halt()
	t.Logf("%d registrations, %d of them after the follower started", written.Load(), written.Load()-started)

	var questions []question
	for k := range services {
		name := fmt.Sprintf("storm-%d.service.consul.", k)
		questions = append(questions, question{name, dns.TypeA}, question{name, dns.TypeSRV})
	}
	f.mark(t, fl.Addr)
	converge(t, f.consul.Clients[0].DNSAddr, fl.Addr, questions, 30*time.Second)
}
