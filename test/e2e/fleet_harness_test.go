package e2e

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// followFleet is the follower mode's deployment on loopback: one Consul
// server, two client agents, a tier on each client agent (so that each tier
// reads Consul through its own agent, as on two nodes), and followers that
// follow both tiers, each with its own DNS port and snapshot file.
type followFleet struct {
	consul    *consulagent.Fleet
	client    *api.Client // writes go to the server
	tokenFile string
	tiers     []*corednsproc.Tier
	followers []*corednsproc.Follower
	marks     atomic.Int64
}

const fleetToken = "follow-the-tier-0123456789"

// startFollowFleet starts the Consul fleet, lets populate load the catalog
// (f.client writes through the server), and starts the two tiers, each
// ready and answering the catalog as loaded.
func startFollowFleet(t *testing.T, populate func(f *followFleet)) *followFleet {
	t.Helper()
	began := time.Now()
	f := &followFleet{consul: consulagent.StartFleet(t, 2), tokenFile: corednsproc.WriteToken(t, fleetToken)}
	f.client = f.consul.Server.Client()
	if populate != nil {
		populate(f)
	}
	for _, agent := range f.consul.Clients {
		f.tiers = append(f.tiers, corednsproc.StartTier(t, corednsproc.TierOptions{
			Address: agent.HTTPAddr, TokenFile: f.tokenFile, Snapshot: filepath.Join(t.TempDir(), "tier.snapshot"),
		}))
	}
	f.mark(t, f.tierAddrs()...)
	t.Logf("fleet of %d agents and %d tiers up in %s", len(f.consul.Agents()), len(f.tiers), time.Since(began).Round(time.Millisecond))
	return f
}

// tierListens are the tiers' follow addresses, in order.
func (f *followFleet) tierListens() []string {
	return each(f.tiers, func(tr *corednsproc.Tier) string { return tr.Listen })
}

func (f *followFleet) tierAddrs() []string {
	return each(f.tiers, func(tr *corednsproc.Tier) string { return tr.Addr })
}

func (f *followFleet) followerAddrs() []string {
	return each(f.followers, func(fl *corednsproc.Follower) string { return fl.Addr })
}

func each[T, U any](xs []T, fn func(T) U) []U {
	out := make([]U, 0, len(xs))
	for _, x := range xs {
		out = append(out, fn(x))
	}
	return out
}

// loops run functions on a pace until halted (at the latest when the test
// ends): the load a test puts on, and what watches it.
type loops struct {
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newLoops(t *testing.T) *loops {
	l := &loops{stop: make(chan struct{})}
	t.Cleanup(l.halt)
	return l
}

// every calls fn every interval until the loops are halted or fn returns
// false.
func (l *loops) every(interval time.Duration, fn func() bool) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		wait.Every(interval, l.stop, fn)
	}()
}

func (l *loops) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// nodeName is the node_name of follower i: a client agent's or the
// server's node, in turn, so that Near "_agent" is checked against the DNS
// of the agent of that name.
func (f *followFleet) nodeName(i int) string {
	agents := f.consul.Agents()
	return agents[(i+1)%len(agents)].Name
}

// agentNamed is the agent whose node is name.
func (f *followFleet) agentNamed(t *testing.T, name string) *consulagent.Process {
	t.Helper()
	for _, a := range f.consul.Agents() {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no agent named %s", name)
	return nil
}

// startFollowers starts n followers of both tiers, in the fleet's order,
// each with a snapshot file and its node_name, and waits until each answers
// the catalog as the tiers do.
func (f *followFleet) startFollowers(t *testing.T, n int) {
	t.Helper()
	for range n {
		f.addFollower(t, corednsproc.FollowerOptions{Tiers: f.tierListens()})
	}
	f.mark(t, f.followerAddrs()...)
}

// addFollower starts one follower with the fleet's token, its own snapshot
// file and node_name unless o says otherwise; it reads o.Tiers[0] first.
func (f *followFleet) addFollower(t *testing.T, o corednsproc.FollowerOptions) *corednsproc.Follower {
	t.Helper()
	if o.TokenFile == "" {
		o.TokenFile = f.tokenFile
	}
	if o.NodeName == "" {
		o.NodeName = f.nodeName(len(f.followers))
	}
	o.Tiers = corednsproc.StartingAt(o.Tiers, o.NodeName, 0)
	if o.Snapshot == "" {
		o.Snapshot = filepath.Join(t.TempDir(), "follower.snapshot")
	}
	fl, err := corednsproc.StartFollower(t, o)
	if err != nil {
		t.Fatal(err)
	}
	f.followers = append(f.followers, fl)
	return fl
}

// mark registers a change that comes after every write before it, and
// waits until each DNS server at addrs answers it: each holds what was
// written before, as a snapshot is published whole.
func (f *followFleet) mark(t *testing.T, addrs ...string) {
	t.Helper()
	port := 1000 + int(f.marks.Add(1))
	consulagent.Register(t, f.client, "mark-node", "10.250.0.1", &api.AgentService{ID: "mark", Service: "fleet-mark", Port: port}, api.HealthPassing)
	for _, addr := range addrs {
		dnsq.Wait(t, addr, "fleet-mark.service.consul.", dns.TypeSRV, 30*time.Second, func(m *dns.Msg) bool { return dnsq.HasPort(m, uint16(port)) })
	}
}

// freezeConsul freezes every agent (SIGSTOP) and thaws them when the test
// ends, unless killed.
func (f *followFleet) freezeConsul(t *testing.T) {
	for _, a := range f.consul.Agents() {
		a.Freeze()
		t.Cleanup(a.Thaw)
	}
}

// differences asks want and got every question over TCP and describes the
// answers that differ (as record sets, with the rcode); nil when none does.
func differences(t *testing.T, want, got string, questions []question) error {
	t.Helper()
	var errs []error
	for _, q := range questions {
		w, g := exchangeTCP(t, want, q), exchangeTCP(t, got, q)
		if !sameAnswer(w, g) {
			errs = append(errs, fmt.Errorf("%s %s: %s %s %q, %s %s %q", q.name, dns.TypeToString[q.qtype],
				want, dns.RcodeToString[w.Rcode], dnsq.Normalize(w.Answer), got, dns.RcodeToString[g.Rcode], dnsq.Normalize(g.Answer)))
		}
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more", len(errs)-5))
	}
	return errors.Join(errs...)
}

// converge waits until got answers every question as want does.
func converge(t *testing.T, want, got string, questions []question, within time.Duration) {
	t.Helper()
	wait.Until(t, within, func() error { return differences(t, want, got, questions) })
}

// firstA is the first A record of the answer to name over TCP, "" for none:
// where a prepared query sorted near a node puts that node's instance.
func firstA(t *testing.T, addr, name string) string {
	t.Helper()
	m := dnsq.Query(t, addr, name, dns.TypeA, dnsq.TCP)
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

// garbageListener is a plain TCP listener on loopback that answers every
// request with a 200 whose body is not a feed: a follow line that names
// something else than a tier. It counts the requests it took.
type garbageListener struct {
	ln       net.Listener
	requests atomic.Int64
}

func startGarbage(t *testing.T) *garbageListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &garbageListener{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go g.answer(conn)
		}
	}()
	return g
}

func (g *garbageListener) answer(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	if _, err := conn.Read(buf); err != nil {
		return
	}
	n := g.requests.Add(1)
	body := strings.Repeat("not a feed answer, just bytes\x00\xff", 8)
	if n%2 == 0 {
		// A JSON line that looks like an envelope but promises more payload
		// than follows: a truncated answer.
		body = `{"Kind":"whole","Tier":"x","Generation":9,"Size":1000000,"SHA256":"00"}` + "\n" + body
	}
	fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.coredns-consul.follow\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

func (g *garbageListener) addr() string { return g.ln.Addr().String() }

// portOf is the port of a host:port, as a tier label of a follower's
// metrics holds it.
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// registerNear registers an instance of service on each agent's own node,
// through that agent (so that anti-entropy keeps it), each with its own
// address: a prepared query sorted near a node answers that node's first.
// It returns the address of each agent's instance, by node name.
func registerNear(t *testing.T, f *followFleet, service string) map[string]string {
	t.Helper()
	addrs := make(map[string]string)
	for i, a := range f.consul.Agents() {
		addr := fmt.Sprintf("10.77.0.%d", i+1)
		err := a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: service + "-" + a.Name, Name: service, Port: 7000 + i, Address: addr})
		if err != nil {
			t.Fatalf("registering %s on %s: %v", service, a.Name, err)
		}
		addrs[a.Name] = addr
	}
	wait.Until(t, 30*time.Second, func() error {
		entries, _, err := f.client.Catalog().Service(service, "", nil)
		if err == nil && len(entries) != len(addrs) {
			err = fmt.Errorf("the catalog has %d instances of %s, want %d", len(entries), service, len(addrs))
		}
		return err
	})
	return addrs
}

// explainOnFailure logs, when the test fails, how each tier's and each
// follower's snapshot file holds services: each one's index and its
// instances' ports and health, beside the snapshot's index, so that an
// answer that differs shows which side held what.
func (f *followFleet) explainOnFailure(t *testing.T, services ...string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		files := map[string]string{}
		for i, tr := range f.tiers {
			files[fmt.Sprintf("tier %d", i)] = tr.Snapshot
		}
		for i, fl := range f.followers {
			files[fmt.Sprintf("follower %d (%s)", i, fl.Addr)] = fl.Options.Snapshot
		}
		for _, name := range slices.Sorted(maps.Keys(files)) {
			set, err := snapshot.ReadFile(files[name])
			if err != nil {
				t.Logf("%s: %v", name, err)
				continue
			}
			snap := set.Snapshot(set.Local)
			line := fmt.Sprintf("%s: snapshot index %d", name, snap.Index)
			for _, s := range services {
				svc, ok := snap.Service(s)
				if !ok {
					line += fmt.Sprintf("; %s none", s)
					continue
				}
				line += fmt.Sprintf("; %s index %d", s, svc.Index)
				for _, in := range svc.Instances {
					line += fmt.Sprintf(" %d:%v", in.Port, in.Health)
				}
			}
			t.Log(line)
		}
	})
}
