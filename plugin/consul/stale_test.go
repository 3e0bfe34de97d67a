package consul

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// unreachable returns a started replica whose Consul never answers.
func unreachable(t *testing.T) *replica.Replicator {
	cfg := replica.DefaultConfig()
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	failed := make(failures, 1)
	cfg.Observer = failed
	r, err := replica.New(&api.Config{Address: "127.0.0.1:1"}, cfg, func(*snapshot.Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Stop)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case <-failed:
		case <-timeout:
			t.Fatal("the replica never noticed Consul was unreachable")
		}
		if _, failing := r.Contact(); !failing.IsZero() {
			return r
		}
	}
}

// failures is a replica.Observer that tells of failed requests.
type failures chan struct{}

func (f failures) Request(err error) {
	if err != nil {
		select {
		case f <- struct{}{}:
		default:
		}
	}
}
func (failures) Published(time.Duration) {}
func (failures) Filtered()               {}
func (failures) Swept(int)               {}
func (failures) Watching(int, int, int)  {}
func (failures) Panicked(string)         {}
func (failures) Invalid(string, int)     {}

func TestServeStale(t *testing.T) {
	r := unreachable(t)
	tests := []struct {
		name      string
		built     time.Duration // snapshot age
		maxStale  time.Duration
		staleTTL  time.Duration
		serviceTT uint32
		rcode     int
		ttl       uint32
	}{
		{"served for as long as the outage lasts", 72 * time.Hour, 0, 0, 60, dns.RcodeSuccess, 60},
		{"served within max_stale", time.Minute, time.Hour, 0, 60, dns.RcodeSuccess, 60},
		{"SERVFAIL past max_stale", 2 * time.Hour, time.Hour, 0, 60, dns.RcodeServerFailure, 0},
		{"stale_ttl caps the TTL while stale", time.Minute, 0, 5 * time.Second, 60, dns.RcodeSuccess, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := answer.DefaultOptions()
			opts.TTL.SetService("*", tc.serviceTT)
			c := withLocal(&Consul{Zones: []string{"consul."}, opts: opts, maxStale: tc.maxStale, staleTTL: tc.staleTTL})
			c.local.feed = &feed{replica: r}
			snap := testSnapshot()
			snap.Built = time.Now().Add(-tc.built)
			c.local.serve(snap)
			m := new(dns.Msg)
			m.SetQuestion("web.service.consul.", dns.TypeSRV)
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			rcode, _ := c.ServeDNS(context.Background(), rec, m)
			if rcode == dns.RcodeServerFailure {
				if tc.rcode != rcode {
					t.Fatalf("SERVFAIL, want %s", dns.RcodeToString[tc.rcode])
				}
				return
			}
			if rec.Msg == nil || rec.Msg.Rcode != tc.rcode {
				t.Fatalf("answer %v, want rcode %s", rec.Msg, dns.RcodeToString[tc.rcode])
			}
			for _, rr := range append(rec.Msg.Answer, rec.Msg.Extra...) {
				if rr.Header().Ttl != tc.ttl {
					t.Errorf("TTL %d in %s, want %d", rr.Header().Ttl, rr, tc.ttl)
				}
			}
			// The cap copies what it changes: the records the view shares
			// with every other answer keep their TTL.
			q := "web.service.consul."
			res := answer.Lookup(c.local.view.Load(), answer.Question{Name: q, Lower: q, Zone: "consul.", Type: dns.TypeSRV})
			for _, rr := range append(res.Answer, res.Extra...) {
				if rr.Header().Ttl != tc.serviceTT {
					t.Errorf("TTL %d in the view's %s after a capped answer, want %d", rr.Header().Ttl, rr, tc.serviceTT)
				}
			}
		})
	}
}

// TestWaitReady checks that start-up waits for the local datacenter and the
// listed ones, up to its timeout, and no longer than they take.
func TestWaitReady(t *testing.T) {
	dc2 := snapshot.New("dc2", 1, nil, nil, time.Unix(0, 0))
	tests := []struct {
		name string
		want []string
		// arrive happens while waitReady waits.
		arrive func(c *Consul)
	}{
		{"the local snapshot", nil, func(c *Consul) { c.publish(testSnapshot()) }},
		{"a listed datacenter's snapshot", []string{"dc2"}, func(c *Consul) {
			c.publish(testSnapshot())
			d := &datacenter{name: "dc2", label: "dc2", zones: c.Zones, changed: &c.changed}
			c.addRemoteLocked(d)
			d.publish(dc2)
		}},
		{"a listed datacenter Consul does not know", []string{"dc9"}, func(c *Consul) {
			c.publish(testSnapshot())
			c.datacentersRead([]string{"dc1"}, nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
			c.want = tc.want
			start := time.Now()
			c.waitReady(50 * time.Millisecond)
			if waited := time.Since(start); waited < 50*time.Millisecond {
				t.Errorf("returned after %s with nothing to answer from, before the 50ms timeout", waited)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.waitReady(time.Hour)
			}()
			tc.arrive(c)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("still waiting 10s after what it waits for arrived")
			}
		})
	}
}

// TestSignalAwait checks that a notify between await's look at the
// condition and its wait is not lost.
func TestSignalAwait(t *testing.T) {
	var s signal
	var ready atomic.Bool
	looked := 0
	cond := func() bool {
		if looked++; looked == 1 {
			// The condition comes true, and is notified, right after
			// this first look: await must see it without another notify.
			go func() {
				ready.Store(true)
				s.notify()
			}()
		}
		return ready.Load()
	}
	if !s.await(cond, time.After(10*time.Second)) {
		t.Fatal("await missed a notify that came while it looked at the condition")
	}
	if s.await(func() bool { return false }, time.After(time.Millisecond)) {
		t.Error("await reported a condition that never held")
	}
}
