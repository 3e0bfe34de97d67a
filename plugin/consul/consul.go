// Package consul is a CoreDNS plugin that answers Consul's DNS names
// (<service>.service.consul and friends) from a local replica of the Consul
// catalog, kept current with blocking queries.
package consul

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

const pluginName = "consul"

// Consul is the plugin's handler.
type Consul struct {
	Next  plugin.Handler
	Zones []string
	// Fall passes NXDOMAIN answers for these zones to the next plugin.
	Fall fall.F

	opts answer.Options
	// followed is what the block answers with once the agent's DNS
	// settings are followed (agent_dns); nil before.
	followed atomic.Pointer[answering]
	// fileAgentDNS are the agent's DNS settings the snapshot file holds,
	// followed at start-up until the agent is read; nil for none.
	fileAgentDNS *replica.AgentDNS

	// maxStale is how long past its last contact with Consul the snapshot
	// is served (0: for as long as the outage lasts); staleTTL caps the TTL
	// of answers meanwhile (0: no cap).
	maxStale, staleTTL time.Duration

	persist *persister // nil without a snapshot file
	// pool shares the agent's watcher budget between the datacenters' replicas.
	pool *replica.Pool

	// local is the agent's own datacenter: the plugin is ready once it has
	// synced. The other replicated datacenters are in remote.
	local *datacenter
	datacenters
	// peers are the replicated cluster peers (peers.go).
	peers peerSet

	// cfg is what the Corefile says, for the datacenters made as Consul
	// names them; gen the Corefile load the block belongs to. Both are
	// nil in tests that publish by hand.
	cfg *config
	gen *generation
	// tier is the server this block serves followers from (tier_listen),
	// tierSrc what it serves; nil without.
	tier    atomic.Pointer[tier.Server]
	tierSrc *tier.Source

	// changed wakes start-up's wait whenever what it waits for may have
	// come: a snapshot served, a datacenter list read, a datacenter added.
	changed signal
}

// ServeDNS implements the plugin.Handler interface.
func (c *Consul) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	// The answer is found in a frame of its own: what this one holds stays
	// small for the write below (see answer.builder on stack growth).
	var res answer.Result
	switch c.answer(ctx, w, r, &res) {
	case passOn:
		return plugin.NextOrFailure(c.Name(), c.Next, ctx, w, r)
	case serverFailure:
		return dns.RcodeServerFailure, nil
	}
	m := new(dns.Msg)
	reply(m, r, res.Rcode)
	m.Authoritative = true
	m.Answer = res.Answer
	m.Extra = res.Extra
	m.Ns = res.Ns
	if err := w.WriteMsg(m); err != nil {
		q := r.Question[0]
		log.Errorf("writing the answer to %s %s: %v", q.Name, dns.TypeToString[q.Qtype], err)
		return dns.RcodeServerFailure, err
	}
	return dns.RcodeSuccess, nil
}

// outcome is what ServeDNS does with a question.
type outcome uint8

const (
	write         outcome = iota // write the answer found
	passOn                       // the next plugin answers
	serverFailure                // SERVFAIL, written by the server
)

// answer finds the answer to r, into res.
func (c *Consul) answer(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, res *answer.Result) outcome {
	if len(r.Question) == 0 {
		return passOn
	}
	// As request.Request's QName and Name, without its copy of the request.
	var q answer.Question
	q.Name = dns.Name(r.Question[0].Name).String()
	q.Lower = strings.ToLower(q.Name)
	q.Type = r.Question[0].Qtype
	q.Zone = matchZone(c.zones(), q.Lower)
	if q.Zone == "" {
		return passOn
	}
	q.Size, q.Conn = replySize(r), w
	var name answer.Name
	answer.Parse(&q, &name)
	dc, route := c.route(name)
	if route == routeNext {
		return passOn
	}
	view := dc.view.Load()
	if view == nil {
		// Not synced yet. NXDOMAIN would be cached by resolvers as a lie;
		// SERVFAIL makes them retry.
		return serverFailure
	}
	stale, expired := dc.stale(view, c.maxStale)
	if expired {
		countAnswer(ctx, expiredAnswers)
		return serverFailure
	}

	switch {
	case route == routeUnknown:
		answer.NameError(view, &q, res)
	case name.Kind == answer.KindQuery:
		res.PassOn = c.runQuery(ctx, w, r, &q, &name, view, res)
	default:
		answer.Answer(view, &q, &name, res)
	}
	if res.PassOn || (res.Rcode == dns.RcodeNameError && c.Fall.Through(q.Lower)) {
		return passOn
	}
	if stale {
		c.staled(ctx, res)
	}
	return write
}

// staled makes res a stale answer: counted, its TTLs capped if so set.
// Rare, so in a frame of its own (see answer.builder on stack growth).
//
//go:noinline
func (c *Consul) staled(ctx context.Context, res *answer.Result) {
	countAnswer(ctx, staleAnswers)
	if c.staleTTL > 0 {
		ttl := uint32(c.staleTTL / time.Second)
		res.Answer, res.Ns, res.Extra = capTTL(ttl, res.Answer), capTTL(ttl, res.Ns), capTTL(ttl, res.Extra)
	}
}

// countAnswer counts an answer in counter, by server.
//
//go:noinline
func countAnswer(ctx context.Context, counter *prometheus.CounterVec) {
	counter.WithLabelValues(metrics.WithServer(ctx)).Inc()
}

// Name implements the plugin.Handler interface.
func (c *Consul) Name() string { return pluginName }

// current is the local snapshot answers are read from; nil before the first.
func (c *Consul) current() *snapshot.Snapshot { return c.local.current() }

// publish hands a snapshot of the local datacenter to it.
func (c *Consul) publish(snap *snapshot.Snapshot) { c.local.publish(snap) }

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
	if len(name) == len(zone) {
		return true
	}
	// The zone starts a label only after a dot that is not escaped: in
	// web.service\.consul. the last label is "service.consul".
	dot := len(name) - len(zone) - 1
	return name[dot] == '.' && !answer.Escaped(name, dot)
}

// replySize is the most the reply to r may take over UDP, as
// request.Request.Size gives it without its copy of the request: the size
// the client advertises with EDNS0 (as bufsize may have lowered it), at
// least 512 bytes. Over TCP, 64 KiB (answer.Question.Conn).
func replySize(r *dns.Msg) int {
	size := 0
	if o := r.IsEdns0(); o != nil {
		size = int(o.UDPSize())
	}
	return max(size, dns.MinMsgSize)
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
