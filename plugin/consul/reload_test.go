package consul

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/test/consulagent"

	"github.com/coredns/caddy"
	"github.com/coredns/caddy/caddyfile"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

// loadCorefile sets up blocks as caddy sets up the server blocks of one
// Corefile: one after the other, in one instance. It stops at the first
// error.
func loadCorefile(t *testing.T, blocks ...string) ([]*Consul, error) {
	t.Helper()
	var first *caddy.Controller
	var handlers []*Consul
	for i, block := range blocks {
		c := caddy.NewTestController("dns", block)
		if first == nil {
			first = c
		} else {
			shared := *first // the same instance, and so the same generation
			shared.Dispenser = caddyfile.NewDispenser("Testfile", strings.NewReader(block))
			c = &shared
		}
		c.ServerBlockIndex = i
		c.ServerBlockKeys = []string{"consul.:53"}
		if err := setup(c); err != nil {
			return handlers, err
		}
		plugins := dnsserver.GetConfig(c).Plugin
		handlers = append(handlers, plugins[len(plugins)-1](nil).(*Consul))
	}
	return handlers, nil
}

// startCorefile loads blocks and starts them; they shut down when the test
// ends, unless a reload shut them down before.
func startCorefile(t *testing.T, blocks ...string) []*Consul {
	t.Helper()
	handlers, err := loadCorefile(t, blocks...)
	if err != nil {
		t.Fatal(err)
	}
	start(t, handlers)
	return handlers
}

func start(t *testing.T, handlers []*Consul) {
	t.Helper()
	for _, h := range handlers {
		if err := h.startup(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, h := range handlers {
			if isLive(h) {
				h.shutdown()
			}
		}
	})
}

// reload replaces old with blocks as caddy reloads a Corefile: the new
// blocks are set up, started, and then the old ones shut down. When a setup
// fails, the old blocks hear that the restart failed, and run on.
func reload(t *testing.T, old []*Consul, blocks ...string) ([]*Consul, error) {
	t.Helper()
	handlers, err := loadCorefile(t, blocks...)
	if err != nil {
		for _, h := range old {
			h.restartFailed()
		}
		return nil, err
	}
	start(t, handlers)
	for _, h := range old {
		h.shutdown()
	}
	return handlers, nil
}

func isLive(h *Consul) bool {
	live.mu.Lock()
	defer live.mu.Unlock()
	return slices.Contains(live.blocks, h)
}

// noLeaks checks, once the test's blocks have shut down, that none of the
// goroutines they started is left.
func noLeaks(t *testing.T) {
	baseline := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, baseline) })
}

// eventually waits until cond holds, looking again whenever h serves a
// snapshot.
func eventually(t *testing.T, h *Consul, what string, cond func() bool) {
	t.Helper()
	if !h.changed.await(cond, time.After(30*time.Second)) {
		t.Fatalf("not %s after 30s", what)
	}
}

// waitFor waits until cond holds, for what no snapshot announces.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("not %s after 30s", what)
		}
	}
}

// answers returns the A records h answers for name, and their TTL.
func answers(t *testing.T, h *Consul, name string) (n int, ttl uint32) {
	t.Helper()
	msg, rcode := ask(t, h, name, dns.TypeA)
	if rcode != dns.RcodeSuccess || len(msg.Answer) == 0 {
		return 0, 0
	}
	return len(msg.Answer), msg.Answer[0].Header().Ttl
}

// requestsDuring returns how many requests the replicas of the local
// datacenter, old and new, made to Consul during window, while f ran at its
// start.
func requestsDuring(t *testing.T, window time.Duration, f func()) uint64 {
	t.Helper()
	count := func() uint64 {
		var m dto.Metric
		if err := requests.WithLabelValues("local").Write(&m); err != nil {
			t.Fatal(err)
		}
		return uint64(m.GetCounter().GetValue())
	}
	before, began := count(), time.Now()
	f()
	time.Sleep(window - time.Since(began)) // a rate: time passing is the point
	return count() - before
}

func (f *feed) isStopped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stopped
}

func (f *feed) hasPublished() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest != nil
}

// register registers an instance of web, on a node and an address of its
// own: it adds an A record.
func register(t *testing.T, client *api.Client, id string) {
	t.Helper()
	registered++
	addr := fmt.Sprintf("10.0.0.%d", registered)
	consulagent.Register(t, client, "n-"+id, addr, &api.AgentService{ID: id, Service: "web", Port: 80}, "passing")
}

var registered int // instances register one after the other

// TestReloadHandsOverTheReplica: a reload that changes only how answers are
// written keeps the running replica, costs Consul no request beyond the idle
// rate, and answers with the new settings at once.
func TestReloadHandsOverTheReplica(t *testing.T) {
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	register(t, client, "web-1")
	noLeaks(t)
	block := func(ttl string) string {
		return fmt.Sprintf("consul {\n address %s\n service_ttl * %s\n}", agent.HTTPAddr, ttl)
	}
	old := startCorefile(t, block("5s"))
	eventually(t, old[0], "answering web with TTL 5", func() bool { n, ttl := answers(t, old[0], "web.service.consul."); return n == 1 && ttl == 5 })
	r := old[0].local.feed.replica.(*replica.Replicator)
	waitFor(t, "watching every service", func() bool { s := r.Stats(); return s.Services > 0 && s.Watchers == s.Services })

	const window = 2 * time.Second
	idle := requestsDuring(t, window, func() {})
	var next []*Consul
	reloaded := requestsDuring(t, window, func() {
		var err error
		if next, err = reload(t, old, block("30s")); err != nil {
			t.Fatal(err)
		}
		if _, ttl := answers(t, next[0], "web.service.consul."); ttl != 30 {
			t.Errorf("the first answer after the reload has TTL %d, want the new 30", ttl)
		}
	})
	t.Logf("requests to Consul in %s: %d idle, %d across the reload", window, idle, reloaded)
	// A new replica reads the agent, the service list, the nodes, the
	// checks, the queries and web at least; the periodic reads (liveness,
	// datacenters, coordinates) may fall in one window and not the other.
	if reloaded > idle+3 {
		t.Errorf("%d requests across the reload, %d in as long idle", reloaded, idle)
	}
	if got := next[0].local.feed.replica; got != r {
		t.Fatal("the reloaded block made a replica of its own")
	}

	// The old block is gone; the replica feeds the new one.
	register(t, client, "web-2")
	eventually(t, next[0], "answering web-2", func() bool { n, _ := answers(t, next[0], "web.service.consul."); return n == 2 })
}

// TestReloadNewSettingsMakeANewReplica: a reload that changes how Consul is
// read starts a new replica, and the old one stops once the new one has
// published, never before: the new block answers meanwhile.
func TestReloadNewSettingsMakeANewReplica(t *testing.T) {
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	register(t, client, "web-1")
	tests := []struct{ name, before, after string }{
		{"token", "address " + agent.HTTPAddr + "\n token one", "address " + agent.HTTPAddr + "\n token two"},
		{"address", "address " + agent.HTTPAddr, "address http://" + agent.HTTPAddr},
		{"datacenter", "address " + agent.HTTPAddr, "address " + agent.HTTPAddr + "\n datacenter dc1"},
		{"wait", "address " + agent.HTTPAddr, "address " + agent.HTTPAddr + "\n wait 1m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			noLeaks(t)
			old := startCorefile(t, "consul {\n "+tc.before+"\n}")
			eventually(t, old[0], "answering web", func() bool { n, _ := answers(t, old[0], "web.service.consul."); return n == 1 })
			was := old[0].local.feed
			next, err := reload(t, old, "consul {\n "+tc.after+"\n}")
			if err != nil {
				t.Fatal(err)
			}
			now := next[0].local.feed
			if now == was {
				t.Fatal("the reloaded block kept the replica although it reads Consul otherwise")
			}
			if n, _ := answers(t, next[0], "web.service.consul."); n != 1 {
				t.Errorf("the reloaded block answers %d records right after the reload, want 1", n)
			}
			waitFor(t, "the old replica stopped", func() bool {
				stopped := was.isStopped() // first: it stops after the new one published
				if stopped && !now.hasPublished() {
					t.Fatal("the old replica stopped before the new one had published")
				}
				return stopped
			})
			register(t, client, "web-"+tc.name)
			eventually(t, next[0], "answering web-"+tc.name, func() bool { n, _ := answers(t, next[0], "web.service.consul."); return n == 2 })
			consulagent.Deregister(t, client, "n-web-"+tc.name, "web-"+tc.name)
		})
	}
}

// TestReloadFails: a reload that fails, at setup or once its blocks have
// started, leaves the old block and its replica running.
func TestReloadFails(t *testing.T) {
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	register(t, client, "web-1")
	good := fmt.Sprintf("consul {\n address %s\n service_ttl * 7s\n}", agent.HTTPAddr)
	tests := []struct {
		name   string
		reload func(t *testing.T, old []*Consul)
	}{
		{"setup error after the first block", func(t *testing.T, old []*Consul) {
			if _, err := reload(t, old, good, "consul {\n bogus\n}"); err == nil {
				t.Fatal("the reload with a bad block succeeded")
			}
		}},
		{"servers fail once the blocks started", func(t *testing.T, old []*Consul) {
			next, err := loadCorefile(t, good, good+"\n")
			if err != nil {
				t.Fatal(err)
			}
			start(t, next)
			// What caddy does when the new servers do not start.
			for _, h := range old {
				h.restartFailed()
			}
			for _, h := range next {
				if isLive(h) {
					t.Error("a block of the failed reload runs on")
				}
			}
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			noLeaks(t)
			old := startCorefile(t, good, good)
			for _, h := range old {
				eventually(t, h, "answering web", func() bool { n, _ := answers(t, h, "web.service.consul."); return n > 0 })
			}
			feeds := []*feed{old[0].local.feed, old[1].local.feed}
			tc.reload(t, old)
			id := fmt.Sprintf("web-after-%d", i)
			register(t, client, id)
			for j, h := range old {
				if !isLive(h) || h.local.feed != feeds[j] || !h.local.feed.feeds(h.local) {
					t.Fatalf("block %d does not run on with its replica", j)
				}
				eventually(t, h, "answering "+id, func() bool { n, _ := answers(t, h, "web.service.consul."); return n == i+2 })
			}
		})
	}
}

// TestReloadKeepsEachBlocksReplica: two blocks with the same settings keep
// one replica each across a reload, with the datacenters they replicate and
// their watcher pool, and each is stopped once.
func TestReloadKeepsEachBlocksReplica(t *testing.T) {
	noLeaks(t)
	block := func(ttl string) string {
		return "consul {\n address 127.0.0.1:1\n datacenter dc1\n datacenters dc2\n startup_timeout 10ms\n node_ttl " + ttl + "\n}"
	}
	old := startCorefile(t, block("1"), block("1"))
	if old[0].local.feed == old[1].local.feed {
		t.Fatal("two blocks share a replica")
	}
	next, err := reload(t, old, block("2"), block("2"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range next {
		was, now := old[i], next[i]
		if now.local.feed != was.local.feed || now.remoteNamed("dc2").feed != was.remoteNamed("dc2").feed {
			t.Errorf("block %d did not take over its predecessor's replicas", i)
		}
		if now.pool != was.pool {
			t.Errorf("block %d has a watcher pool of its own", i)
		}
		for _, d := range now.all() {
			if !d.feed.feeds(d) {
				t.Errorf("block %d: the replica of %s does not feed it", i, d.label)
			}
		}
	}
}

// TestReloadEveryDatacenter: with "datacenters *", the datacenters the
// reloaded block replicated are taken over at once, before any list is read.
func TestReloadEveryDatacenter(t *testing.T) {
	noLeaks(t)
	block := "consul {\n address 127.0.0.1:1\n datacenter dc1\n datacenters *\n startup_timeout 10ms\n}"
	old := startCorefile(t, block)
	old[0].datacentersRead([]string{"dc1", "dc2", "dc3"}, nil)
	next, err := reload(t, old, block)
	if err != nil {
		t.Fatal(err)
	}
	for _, dc := range []string{"dc2", "dc3"} {
		d := next[0].remoteNamed(dc)
		if d == nil || d.feed != old[0].remoteNamed(dc).feed {
			t.Errorf("%s: not taken over", dc)
		}
	}
	if !next[0].knows("dc3", false) {
		t.Error("the datacenters Consul knows were not passed on")
	}
}

// TestSetupReloadKeepsSnapshot checks that a reloaded block answers from the
// snapshot its predecessor held, not SERVFAIL while it syncs again.
func TestSetupReloadKeepsSnapshot(t *testing.T) {
	noLeaks(t)
	block := func(token string) string {
		return "consul {\n address 127.0.0.1:1\n datacenter reload-test\n startup_timeout 10ms\n token " + token + "\n}"
	}
	first := startCorefile(t, block("a"))
	if first[0].Ready() {
		t.Fatal("a fresh block is ready before any sync")
	}
	first[0].publish(testSnapshot())
	for _, token := range []string{"a", "b"} { // handed over, and made anew
		handlers, err := loadCorefile(t, block(token))
		if err != nil {
			t.Fatal(err)
		}
		if second := handlers[0]; !second.Ready() || second.current() != first[0].current() {
			t.Fatalf("token %s: the reloaded block does not start from its predecessor's snapshot", token)
		}
	}
}

// TestCaddyReload reloads a DNS server in this process through caddy, as the
// reload plugin does, so that the hooks run in caddy's own order: a reload
// that changes a TTL keeps the replica, one whose Corefile is wrong or whose
// servers cannot start leaves the running one as it was.
func TestCaddyReload(t *testing.T) {
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	register(t, client, "caddy-1")
	noLeaks(t)
	if !slices.Contains(dnsserver.Directives, pluginName) {
		dnsserver.Directives = append(dnsserver.Directives, pluginName)
	}
	busy, err := net.Listen("tcp", ":0") // a port no server can take
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	block := func(listen, ttl string) string {
		return fmt.Sprintf("consul.:%s {\n consul {\n  address %s\n  service_ttl * %s\n }\n}\n", listen, agent.HTTPAddr, ttl)
	}
	corefile := func(blocks ...string) caddy.Input {
		return caddy.CaddyfileInput{ServerTypeName: "dns", Contents: []byte(strings.Join(blocks, ""))}
	}

	inst, err := caddy.Start(corefile(block("0", "5s")))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		inst.ShutdownCallbacks()
		inst.Stop()
	}()
	_, port, _ := net.SplitHostPort(inst.Servers()[0].LocalAddr().String())
	server := net.JoinHostPort("127.0.0.1", port)
	ttl := func() uint32 {
		m := new(dns.Msg)
		m.SetQuestion("web.service.consul.", dns.TypeA)
		r, err := dns.Exchange(m, server)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			t.Fatalf("asking %s: %v, %v", server, err, r)
		}
		return r.Answer[0].Header().Ttl
	}
	running := func() *Consul {
		live.mu.Lock()
		defer live.mu.Unlock()
		if len(live.blocks) != 1 {
			t.Fatalf("%d blocks run, want 1", len(live.blocks))
		}
		return live.blocks[0]
	}
	first := running()
	if got := ttl(); got != 5 {
		t.Fatalf("TTL %d, want 5", got)
	}

	if inst, err = inst.Restart(corefile(block("0", "30s"))); err != nil {
		t.Fatal(err)
	}
	second := running()
	if second == first || second.local.feed != first.local.feed {
		t.Fatal("the reload did not hand the replica over")
	}
	if got := ttl(); got != 30 {
		t.Errorf("TTL %d after the reload, want 30", got)
	}

	for _, failing := range []caddy.Input{
		corefile(block("0", "60s"), "example.:53 {\n consul {\n  bogus\n }\n}\n"),
		corefile(block("0", "60s"), block(fmt.Sprint(busy.Addr().(*net.TCPAddr).Port), "60s")),
	} {
		if inst, err = inst.Restart(failing); err == nil {
			t.Fatalf("the reload to\n%s\nsucceeded", failing.Body())
		}
		if running() != second || !second.local.feed.feeds(second.local) {
			t.Fatal("the failed reload took the running block's replica")
		}
		if got := ttl(); got != 30 {
			t.Errorf("TTL %d after a failed reload, want 30", got)
		}
	}
	register(t, client, "caddy-2")
	eventually(t, second, "answering caddy-2", func() bool { n, _ := answers(t, second, "web.service.consul."); return n == 2 })
}
