// Package consul is a CoreDNS plugin that answers Consul's DNS names
// (<service>.service.consul and friends) from a local replica of the Consul
// catalog, kept current with blocking queries.
package consul

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

const pluginName = "consul"

// Consul is the plugin's handler.
type Consul struct {
	Next  plugin.Handler
	Zones []string
	// Fall passes NXDOMAIN answers for these zones to the next plugin.
	Fall fall.F

	opts    answer.Options
	replica *replica.Replicator
	key     string // what the replica replicates, for lastSnapshots
	dc      string // the datacenter label of metrics

	// maxStale is how long past its last contact with Consul the snapshot
	// is served (0: for as long as the outage lasts); staleTTL caps the TTL
	// of answers meanwhile (0: no cap).
	maxStale, staleTTL time.Duration

	persist *persister // nil without a snapshot file

	// publishMu is held by whatever decides what is served: publish, called
	// by the replica, and recheck, called by the guard's timer. The fields
	// below it are theirs.
	publishMu  sync.Mutex
	guard      *guard             // nil without the removal guard
	guardTimer *time.Timer        // asks the guard again while it holds
	received   *snapshot.Snapshot // the newest snapshot the replica published
	stopped    bool               // after stop: the timer must not serve again

	// view is the current snapshot, prepared for answering; nil until the
	// first complete sync. The request path only ever loads it, so it takes
	// no lock.
	view atomic.Pointer[answer.View]
}

// ServeDNS implements the plugin.Handler interface.
func (c *Consul) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	qname := state.Name()
	zone := matchZone(c.Zones, qname)
	if zone == "" {
		return plugin.NextOrFailure(c.Name(), c.Next, ctx, w, r)
	}
	view := c.view.Load()
	if view == nil {
		// Not synced yet. NXDOMAIN would be cached by resolvers as a lie;
		// SERVFAIL makes them retry.
		return dns.RcodeServerFailure, nil
	}

	stale := false
	if c.replica != nil {
		if last, failing := c.replica.Contact(); !failing.IsZero() {
			// Consul cannot be reached: the data is as old as the last
			// contact, or as the snapshot when it came from the file.
			if last.Before(view.Snap.Built) {
				last = view.Snap.Built
			}
			if c.maxStale > 0 && time.Since(last) > c.maxStale {
				expiredAnswers.WithLabelValues(metrics.WithServer(ctx)).Inc()
				return dns.RcodeServerFailure, nil
			}
			stale = true
		}
	}

	res := answer.Lookup(view, answer.Question{Name: state.QName(), Lower: qname, Zone: zone, Type: state.QType()})
	if res.PassOn || (res.Rcode == dns.RcodeNameError && c.Fall.Through(qname)) {
		return plugin.NextOrFailure(c.Name(), c.Next, ctx, w, r)
	}
	if stale {
		staleAnswers.WithLabelValues(metrics.WithServer(ctx)).Inc()
		if c.staleTTL > 0 {
			ttl := uint32(c.staleTTL / time.Second)
			res.Answer, res.Ns, res.Extra = capTTL(ttl, res.Answer), capTTL(ttl, res.Ns), capTTL(ttl, res.Extra)
		}
	}

	m := new(dns.Msg)
	reply(m, r, res.Rcode)
	m.Authoritative = true
	m.Answer = res.Answer
	m.Extra = res.Extra
	m.Ns = res.Ns
	if err := w.WriteMsg(m); err != nil {
		log.Errorf("writing the answer to %s %s: %v", qname, dns.TypeToString[state.QType()], err)
		return dns.RcodeServerFailure, err
	}
	return dns.RcodeSuccess, nil
}

// Name implements the plugin.Handler interface.
func (c *Consul) Name() string { return pluginName }

// Ready implements the ready.Readiness interface: ready once a complete
// snapshot can answer.
func (c *Consul) Ready() bool { return c.view.Load() != nil }

// current is the snapshot answers are read from; nil before the first.
func (c *Consul) current() *snapshot.Snapshot {
	if v := c.view.Load(); v != nil {
		return v.Snap
	}
	return nil
}

// serve prepares snap for answering and makes it the one answers are read
// from. Only publish and start-up call it, one at a time.
func (c *Consul) serve(snap *snapshot.Snapshot) {
	c.view.Store(answer.NewView(snap, c.view.Load(), c.Zones, c.opts))
}

// publish makes snap the snapshot answers are read from, unless the removal
// guard holds it back.
func (c *Consul) publish(snap *snapshot.Snapshot) {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	c.received = snap
	c.decideLocked()
}

// recheck asks the guard again about the newest snapshot received, once the
// time it holds a drop for may have passed.
func (c *Consul) recheck() {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	if c.received != nil && !c.stopped {
		c.decideLocked()
	}
}

// stopGuard stops the guard's timer for good.
func (c *Consul) stopGuard() {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	c.stopped = true
	if c.guardTimer != nil {
		c.guardTimer.Stop()
	}
}

func (c *Consul) decideLocked() {
	snap := c.received
	if c.guard != nil {
		var recheck time.Duration
		snap, recheck = c.guard.decide(time.Now(), snap)
		holding := 0.0
		if c.guard.holding() {
			holding = 1
		}
		guardHolding.WithLabelValues(c.dc).Set(holding)
		if recheck > 0 {
			if c.guardTimer == nil {
				c.guardTimer = time.AfterFunc(recheck, c.recheck)
			} else {
				c.guardTimer.Reset(recheck)
			}
		}
		if snap == c.current() {
			return
		}
	}
	c.serve(snap)
	lastSnapshots.Store(c.key, snap)
	if c.persist != nil {
		c.persist.offer(snap)
	}
	services, instances := snap.Counts()
	serviceCount.WithLabelValues(c.dc).Set(float64(services))
	instanceCount.WithLabelValues(c.dc).Set(float64(instances))
	consulIndex.WithLabelValues(c.dc).Set(float64(snap.Index))
	snapshotTimestamp.WithLabelValues(c.dc).Set(float64(snap.Built.UnixNano()) / 1e9)
}

// capTTL returns rrs with every TTL above ttl lowered to ttl. Records are
// shared by every answer from the same view: those it changes, it copies.
func capTTL(ttl uint32, rrs []dns.RR) []dns.RR {
	out, copied := rrs, false
	for i, rr := range rrs {
		if rr.Header().Ttl <= ttl {
			continue
		}
		if !copied {
			out, copied = slices.Clone(rrs), true
		}
		out[i] = dns.Copy(rr)
		out[i].Header().Ttl = ttl
	}
	return out
}

// matchZone returns the longest of zones that name is in, as
// plugin.Zones.Matches does, without its two allocations per zone. Both
// are lower case and fully qualified.
func matchZone(zones []string, name string) string {
	best := ""
	for _, z := range zones {
		if len(z) > len(best) && inZone(name, z) {
			best = z
		}
	}
	return best
}

func inZone(name, zone string) bool {
	if zone == "." {
		return true
	}
	if !strings.HasSuffix(name, zone) {
		return false
	}
	return len(name) == len(zone) || name[len(name)-len(zone)-1] == '.'
}

// reply makes m the reply to r with rcode, as dns.Msg.SetRcode does, but
// shares r's question instead of copying it.
func reply(m, r *dns.Msg, rcode int) {
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	if m.Opcode == dns.OpcodeQuery {
		m.RecursionDesired = r.RecursionDesired
		m.CheckingDisabled = r.CheckingDisabled
	}
	m.Rcode = rcode
	if len(r.Question) > 0 {
		m.Question = r.Question[:1:1]
	}
}
