package consul

import (
	"context"
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
	r, err := replica.New(&api.Config{Address: "127.0.0.1:1"}, cfg, func(*snapshot.Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Stop)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, failing := r.Contact(); !failing.IsZero() {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica never noticed Consul was unreachable")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

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
			c.local.replica = r
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

func TestWaitReady(t *testing.T) {
	c := withLocal(&Consul{Zones: []string{"consul."}})
	start := time.Now()
	c.waitReady(100 * time.Millisecond)
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Errorf("returned after %s without a snapshot, before the 100ms timeout", waited)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.publish(testSnapshot())
	}()
	start = time.Now()
	c.waitReady(10 * time.Second)
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("waited %s although a snapshot arrived after 50ms", waited)
	}
}
