package consul

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/plugin/whoami"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// benchSnapshot is 1,000 services x 5 instances on 200 nodes with meta.
func benchSnapshot() *snapshot.Snapshot { return benchCatalog(1000, 5, 200) }

// benchCatalog is a snapshot of services x per instances on nodes nodes,
// every node with meta, every other instance with an address of its own.
func benchCatalog(count, per, nodeCount int) *snapshot.Snapshot {
	services := make(map[string]*snapshot.Service, count)
	nodes := make(map[string]*snapshot.Node, nodeCount)
	for n := range nodeCount {
		name := fmt.Sprintf("node-%d", n)
		nodes[name] = &snapshot.Node{Name: name, Address: fmt.Sprintf("10.0.%d.%d", n/250, n%250+1), Meta: map[string]string{"rack": "r1"}}
	}
	for s := range count {
		svc := &snapshot.Service{Name: fmt.Sprintf("service-%d", s), Index: uint64(s + 1)}
		for i := range per {
			n := (s*per + i) % nodeCount
			in := snapshot.Instance{
				ID: fmt.Sprintf("%s-%d", svc.Name, i), Node: fmt.Sprintf("node-%d", n), NodeAddress: nodes[fmt.Sprintf("node-%d", n)].Address,
				Port: uint16(8000 + i), Tags: []string{"v1"}, WeightPassing: 1, WeightWarning: 1,
			}
			if i%2 == 1 {
				in.Address = fmt.Sprintf("10.1.%d.%d", s%250, i+1)
			}
			svc.Instances = append(svc.Instances, in)
		}
		services[snapshot.Key(svc.Name)] = svc
	}
	return snapshot.New("dc1", 0, services, nodes, time.Now())
}

// discard is a ResponseWriter that drops the answer after packing it, as
// the server would send it.
type discard struct{ test.ResponseWriter }

func (*discard) WriteMsg(m *dns.Msg) error { _, err := m.Pack(); return err }

func BenchmarkServeDNS(b *testing.B) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	snap := benchSnapshot()
	snap.Queries = []*snapshot.Query{{ID: "q1", Name: "geo", Service: snapshot.QueryService{Service: "service-500", Tags: []string{"v1"}}}}
	c.publish(snap)
	for _, tc := range []struct {
		name  string
		qname string
		qtype uint16
	}{
		{"A", "service-500.service.consul.", dns.TypeA},
		{"SRV", "service-500.service.consul.", dns.TypeSRV},
		{"SRV-rfc2782", "_service-500._tcp.service.consul.", dns.TypeSRV},
		{"NXDOMAIN", "nope.service.consul.", dns.TypeA},
		{"query-SRV", "geo.query.consul.", dns.TypeSRV},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, tc.qtype)
			w := &discard{}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.ServeDNS(ctx, w, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPublish is what one changed service costs at 5,000 x 10: the
// replica's copy of its maps and the snapshot, and the handler's view, which
// prepares only the changed service.
func BenchmarkPublish(b *testing.B) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	first := benchCatalog(5000, 10, 1000)
	c.publish(first)
	services, nodes := first.Services, first.Nodes
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		key := fmt.Sprintf("service-%d", i%5000)
		old := services[key]
		changed := &snapshot.Service{Name: old.Name, Index: uint64(10000 + i), Instances: old.Instances}
		services = maps.Clone(services)
		services[key] = changed
		c.publish(snapshot.New("dc1", 0, services, maps.Clone(nodes), time.Now()))
	}
}

// BenchmarkPrepare is the first view of 5,000 x 10: what building every
// service's records costs, and what they keep alive per instance.
func BenchmarkPrepare(b *testing.B) {
	snap := benchCatalog(5000, 10, 1000)
	var live float64
	for b.Loop() {
		// A new snapshot of the same values: nothing is prepared for it yet.
		services := make(map[string]*snapshot.Service, len(snap.Services))
		for k, svc := range snap.Services {
			services[k] = &snapshot.Service{Name: svc.Name, Index: svc.Index, Instances: svc.Instances}
		}
		fresh := snapshot.New("dc1", 0, services, snap.Nodes, time.Now())
		var before, after runtime.MemStats
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		v := answer.NewView(fresh, nil, []string{"consul."}, answer.DefaultOptions())
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		live = float64(after.HeapAlloc) - float64(before.HeapAlloc)
		runtime.KeepAlive(v)
		b.StartTimer()
	}
	b.ReportMetric(live/50000, "live-B/instance")
}

// BenchmarkServeDNSOnNewGoroutine is a question as CoreDNS's server runs
// it: on a goroutine of its own, whose stack starts small and is copied each
// time it grows, below the server's own frames, with the answer scrubbed to
// the client's 512 bytes (no EDNS0, as dnsperf asks) and packed. whoami, the
// server's ceiling, is measured the same way beside it. Run it with
// GODEBUG=adaptivestackstart=0 -cpu 1: the first stack is then the 2 KB a
// profile of CoreDNS under load shows.
func BenchmarkServeDNSOnNewGoroutine(b *testing.B) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	c.publish(benchSnapshot())
	for _, tc := range []struct {
		name  string
		h     plugin.Handler
		qtype uint16
	}{
		{"A", c, dns.TypeA},
		{"SRV", c, dns.TypeSRV},
		{"whoami-A", whoami.Whoami{}, dns.TypeA},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m := new(dns.Msg)
			m.SetQuestion("service-500.service.consul.", tc.qtype)
			ctx := context.Background()
			done := make(chan struct{})
			b.ReportAllocs()
			for b.Loop() {
				go func() {
					serverFrames(func() { tc.h.ServeDNS(ctx, request.NewScrubWriter(m, &discard{}), m) })
					done <- struct{}{}
				}()
				<-done
			}
		})
	}
}

// serverFrames calls f below as much stack as CoreDNS's and miekg/dns's
// server frames take before a plugin's ServeDNS (about 900 bytes in
// CoreDNS 1.15: serveUDPPacket, serveDNS, ServePacket's handler and the
// dnsserver's ServeDNS).
//
//go:noinline
func serverFrames(f func()) byte {
	var frames [880]byte
	frames[len(frames)-1] = 1
	f()
	return frames[len(frames)-1]
}

// BenchmarkServeDNSLarge is a question for a service of 10,000 instances,
// each on a node of its own, fitted to the client as the server does it:
// 512 bytes without EDNS0, 1,232 with it (bufsize), 64 KiB over TCP.
func BenchmarkServeDNSLarge(b *testing.B) {
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
	c.publish(benchCatalog(1, 10000, 10000))
	for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
		for _, tc := range []struct {
			name string
			edns uint16
			tcp  bool
		}{{"udp-512", 0, false}, {"udp-1232", 1232, false}, {"tcp", 0, true}} {
			b.Run(dns.TypeToString[qtype]+"/"+tc.name, func(b *testing.B) {
				m := new(dns.Msg)
				m.SetQuestion("service-0.service.consul.", qtype)
				if tc.edns > 0 {
					m.SetEdns0(tc.edns, false)
				}
				w := &discard{test.ResponseWriter{TCP: tc.tcp}}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.ServeDNS(ctx, request.NewScrubWriter(m, w), m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
