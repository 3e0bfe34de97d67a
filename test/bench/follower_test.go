package bench

// The follower mode at fleet scale (issue 23): what N followers cost
// Consul's servers (nothing: the streams stay at tiers x services) and the
// tiers (connections, bytes, CPU), and how fast a change reaches every
// follower beside the tiers and Consul's own DNS.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/procfs"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

const benchTierToken = "bench-tier-token-0123456789"

// followerBench is the fleet under measurement.
type followerBench struct {
	fleet     *consulagent.Fleet
	writer    *api.Client
	tokenFile string
	tiers     []*corednsproc.Tier
	followers []*corednsproc.Follower
	services  int
	marks     int
	// streamsWanted is what the server holds with the tiers alone: one
	// stream per tier (client agent) and watched service.
	streamsWanted float64
	watched       int
}

// followerRow is what one follower count measured.
type followerRow struct {
	n                      int
	streams, streamsWanted float64
	conns                  []int // per tier
	consul, tiers, each    []time.Duration
	all                    []time.Duration // per change, until the last follower showed it
	missing                int             // follower observations not shown within the timeout
	poll                   time.Duration
	changes                int
	bytes, answers         map[string]float64 // tier deltas over the changes, by kind
	cpuChanges, cpuIdle    time.Duration      // both tiers
	idle                   time.Duration
	startTook              time.Duration // to start the followers added for this row
	followerRSS            float64       // the followers' median, bytes
	// followersCPU is every follower's CPU over the changes.
	followersCPU time.Duration
	// asked is how many followers were asked, when not all; sample is the
	// same changes timed with only a few followers asked.
	asked  int
	sample *followerRow
}

// TestFollowerFleet measures the follower mode on one Consul server, two
// client agents and a tier on each, with no follower and then for each
// follower count of FOLLOWER_SIZES (default 1,10,50; followers are added,
// never restarted, between sizes) on FOLLOWER_SERVICES services (500) of
// FOLLOWER_INSTANCES instances (3): the server's gRPC streams, each tier's
// follower connections, FOLLOWER_CHANGES changes (100, one every
// FOLLOWER_PACE_MS, 100) timed from the write returning to each DNS server
// answering them, the tiers' bytes and CPU per change and over FOLLOWER_IDLE
// idle seconds (10), FOLLOWER_WHOLE whole-state answers one at a time (50),
// and every follower restarted at once. FOLLOWER_REPORT=path (required) is
// where the markdown report goes.
//
//	FOLLOWER_REPORT=/tmp/follower.md go test -run TestFollowerFleet -count=1 -timeout 30m -v ./test/bench/
func TestFollowerFleet(t *testing.T) {
	report := os.Getenv("FOLLOWER_REPORT")
	if report == "" {
		t.Skip("a benchmark harness: run it with FOLLOWER_REPORT=FILE, as make bench-follower does")
	}
	corednsproc.Binary(t)
	began := time.Now()
	b := startFollowerBench(t, envInt("FOLLOWER_SERVICES", 500), envInt("FOLLOWER_INSTANCES", 3))
	var rows []*followerRow
	for _, n := range followerSizes(envString("FOLLOWER_SIZES", "1,10,50")) {
		rows = append(rows, b.measure(t, n))
	}
	whole := b.measureWhole(t, envInt("FOLLOWER_WHOLE", 50))
	whole.restart = b.restartAll(t)
	out := followerReport(b, rows, whole, time.Since(began))
	fmt.Print(out)
	if err := os.WriteFile(report, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}

// followerSizes parses FOLLOWER_SIZES and puts 0 first: the tiers alone,
// the baseline the tiers' cost per follower is taken from.
func followerSizes(v string) []int {
	sizes := []int{0}
	for f := range strings.SplitSeq(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			sizes = append(sizes, n)
		}
	}
	slices.Sort(sizes)
	return slices.Compact(sizes)
}

// startFollowerBench starts the fleet, loads the catalog and starts the
// tiers, and waits until the server holds a stream per tier and service.
func startFollowerBench(t *testing.T, services, instances int) *followerBench {
	b := &followerBench{services: services, tokenFile: corednsproc.WriteToken(t, benchTierToken)}
	b.fleet = consulagent.StartFleet(t, 2, "limits { http_max_conns_per_client = 10000 }")
	b.writer = b.fleet.Server.Client()
	consulagent.Populate(t, b.writer, services, instances, max(1, services*instances/20))
	base := b.streams(t)
	for _, agent := range b.fleet.Clients {
		b.tiers = append(b.tiers, corednsproc.StartTier(t, corednsproc.TierOptions{
			Address: agent.HTTPAddr, TokenFile: b.tokenFile, Snapshot: filepath.Join(t.TempDir(), "tier.snapshot"), SnapshotEvery: -1,
		}))
	}
	b.mark(t, b.tierAddrs())
	// Every service of the catalog watched by each tier: the loaded ones,
	// "consul" and the mark's.
	listed, _, err := b.writer.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	b.watched = len(listed)
	b.streamsWanted = base + float64(len(b.tiers)*b.watched)
	wait.Until(t, 3*time.Minute, func() error {
		if s := b.streams(t); s != b.streamsWanted {
			return fmt.Errorf("the server holds %.0f streams, want %.0f", s, b.streamsWanted)
		}
		return nil
	})
	return b
}

// streams is the server's gRPC streams from client agents.
func (b *followerBench) streams(t *testing.T) float64 {
	m, err := b.fleet.Server.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	return m[fleetStreams]
}

func (b *followerBench) tierAddrs() []string {
	var out []string
	for _, tr := range b.tiers {
		out = append(out, tr.Addr)
	}
	return out
}

// mark registers a change after every write before it and waits until each
// server at addrs answers it.
func (b *followerBench) mark(t *testing.T, addrs []string) {
	b.marks++
	port := uint16(1000 + b.marks)
	consulagent.Register(t, b.writer, "mark-node", "10.250.0.1", &api.AgentService{ID: "mark", Service: "bench-mark", Port: int(port)}, api.HealthPassing)
	for _, addr := range addrs {
		dnsq.Wait(t, addr, "bench-mark.service.consul.", dns.TypeSRV, time.Minute, func(m *dns.Msg) bool { return dnsq.HasPort(m, port) })
	}
}

// grow starts followers, up to eight at once, until there are n: follower
// i first reads tier i mod 2, so that the followers spread evenly over the
// tiers (the plugin spreads a fleet by node name, evenly only on average).
func (b *followerBench) grow(t *testing.T, n int) {
	added := make([]*corednsproc.Follower, n-len(b.followers))
	slots := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var listens []string
	for _, tr := range b.tiers {
		listens = append(listens, tr.Listen)
	}
	for j := range added {
		i := len(b.followers) + j
		order := corednsproc.StartingAt(listens, fmt.Sprintf("follower-%d", i), i%len(listens))
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			fl, err := corednsproc.StartFollower(t, corednsproc.FollowerOptions{Tiers: order, TokenFile: b.tokenFile,
				NodeName: fmt.Sprintf("follower-%d", i), Snapshot: filepath.Join(t.TempDir(), "follower.snapshot"), SnapshotEvery: -1})
			if err != nil {
				t.Errorf("follower %d: %v", i, err)
				return
			}
			added[j] = fl
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	b.followers = append(b.followers, added...)
}

// tierCounters are the tiers' cumulative counters, summed over the tiers.
type tierCounters struct {
	bytes, answers map[string]float64
	cpu            time.Duration
}

func (b *followerBench) readTiers(t *testing.T) tierCounters {
	c := tierCounters{bytes: map[string]float64{}, answers: map[string]float64{}}
	for _, tr := range b.tiers {
		for _, kind := range []string{"whole", "delta", "none", "refused"} {
			c.bytes[kind] += tr.MetricWhere("coredns_consul_tier_bytes_total", `kind="`+kind+`"`)
			c.answers[kind] += tr.MetricWhere("coredns_consul_tier_answers_total", `kind="`+kind+`"`)
		}
		cpu, err := tr.CPU()
		if err != nil {
			t.Fatal(err)
		}
		c.cpu += cpu
	}
	return c
}

func (c tierCounters) since(before tierCounters) (bytes, answers map[string]float64, cpu time.Duration) {
	bytes, answers = map[string]float64{}, map[string]float64{}
	for k, v := range c.bytes {
		bytes[k] = v - before.bytes[k]
	}
	for k, v := range c.answers {
		answers[k] = v - before.answers[k]
	}
	return bytes, answers, c.cpu - before.cpu
}

// measure grows the followers to n and measures the row.
func (b *followerBench) measure(t *testing.T, n int) *followerRow {
	row := &followerRow{n: n, changes: envInt("FOLLOWER_CHANGES", 100)}
	started := time.Now()
	b.grow(t, n)
	row.startTook = time.Since(started)
	var addrs []string
	for _, fl := range b.followers {
		addrs = append(addrs, fl.Addr)
	}
	b.mark(t, append(b.tierAddrs(), addrs...))
	t.Logf("N=%d: followers up and current in %s", n, time.Since(started).Round(time.Millisecond))
	var rss []float64
	for _, fl := range b.followers {
		if r, _, err := procfs.Memory(fl.Pid()); err == nil {
			rss = append(rss, r)
		}
	}
	if len(rss) > 0 {
		row.followerRSS = median(rss)
	}

	row.streamsWanted = b.streamsWanted
	row.streams, _ = settle(time.Minute, time.Second, 3, func() float64 { return b.streams(t) }, equal)
	if row.streams != row.streamsWanted {
		t.Errorf("N=%d: the server holds %.0f streams, want %.0f (tiers x watched services)", n, row.streams, row.streamsWanted)
	}
	for _, tr := range b.tiers {
		row.conns = append(row.conns, procfs.Conns(port(tr.Listen)))
	}

	before, followersBefore := b.readTiers(t), b.followersCPU(t)
	b.propagate(t, row, addrs)
	row.bytes, row.answers, row.cpuChanges = b.readTiers(t).since(before)
	row.followersCPU = b.followersCPU(t) - followersBefore
	if sample := envInt("FOLLOWER_SAMPLE", 5); n > 2*sample {
		// Asking every follower every poll takes a share of the two cores
		// that delays what is measured: the same changes again, with a few
		// followers asked.
		row.sample = &followerRow{n: n, changes: row.changes, asked: sample, streams: row.streams, streamsWanted: row.streamsWanted, conns: row.conns}
		b.propagate(t, row.sample, addrs[:sample])
	}

	row.idle = time.Duration(envInt("FOLLOWER_IDLE", 10)) * time.Second
	before = b.readTiers(t)
	pause(row.idle)
	_, _, row.cpuIdle = b.readTiers(t).since(before)
	t.Logf("N=%d: streams %.0f, conns %v, followers p50 %.1f p99 %.1f ms, all p99 %.1f ms, Consul DNS p99 %.1f ms", n,
		row.streams, row.conns, quantile(row.each, 50), quantile(row.each, 99), quantile(row.all, 99), quantile(row.consul, 99))
	return row
}

// followersCPU is the CPU every follower has used so far.
func (b *followerBench) followersCPU(t *testing.T) time.Duration {
	var sum time.Duration
	for _, fl := range b.followers {
		cpu, err := fl.CPU()
		if err != nil {
			t.Fatal(err)
		}
		sum += cpu
	}
	return sum
}

// propagate makes the row's changes one at a time (a registration, then
// its deregistration), each pace after the last, and times each from the
// write returning until Consul's DNS (client-0's), each tier and each
// follower answer it, polling every row.poll.
func (b *followerBench) propagate(t *testing.T, row *followerRow, followers []string) {
	pace := time.Duration(envInt("FOLLOWER_PACE_MS", 100)) * time.Millisecond
	servers := append(append([]string{b.fleet.Clients[0].DNSAddr}, b.tierAddrs()...), followers...)
	// Every server is asked every poll while a change is pending: spread
	// thin enough that the asking does not take the CPU it measures.
	row.poll = max(time.Duration(envInt("FOLLOWER_POLL_MS", 2))*time.Millisecond, time.Duration(len(servers))*100*time.Microsecond)
	for c := range row.changes {
		id := fmt.Sprintf("bench-%d", c/2)
		port := uint16(30000 + c/2)
		service := fmt.Sprintf("service-%d", c/2*7%b.services)
		shown := func(m *dns.Msg) bool { return dnsq.HasPort(m, port) }
		if c%2 == 0 {
			consulagent.Register(t, b.writer, "bench-node", "10.251.0.1", &api.AgentService{ID: id, Service: service, Port: int(port)}, api.HealthPassing)
		} else {
			consulagent.Deregister(t, b.writer, "bench-node", id)
			shown = func(m *dns.Msg) bool {
				return m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 && !dnsq.HasPort(m, port)
			}
		}
		took := timeOne(servers, service+".service.consul.", shown, row.poll, 10*time.Second)
		row.consul = append(row.consul, took[0]...)
		row.tiers = append(row.tiers, slices.Concat(took[1:1+len(b.tiers)]...)...)
		last := time.Duration(0)
		for _, d := range took[1+len(b.tiers):] {
			if len(d) == 0 {
				row.missing++
				continue
			}
			row.each = append(row.each, d[0])
			last = max(last, d[0])
		}
		if len(followers) > 0 {
			row.all = append(row.all, last)
		}
		pause(pace)
	}
}

// timeOne asks every server name's SRV every poll until shown accepts its
// answer, for up to timeout, all at once from when it is called: for each
// server, how long it took (none when it never showed).
func timeOne(servers []string, name string, shown func(*dns.Msg) bool, poll, timeout time.Duration) [][]time.Duration {
	began := time.Now()
	out := make([][]time.Duration, len(servers))
	var wg sync.WaitGroup
	for i, addr := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if wait.Poll(timeout, poll, nil, func() bool {
				m, err := dnsq.Ask(addr, name, dns.TypeSRV, dnsq.EDNS(4096), dnsq.Timeout(time.Second))
				return err == nil && shown(m)
			}) {
				out[i] = []time.Duration{time.Since(began)}
			}
		}()
	}
	wg.Wait()
	return out
}
