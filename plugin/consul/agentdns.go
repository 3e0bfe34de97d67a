package consul

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// answering is what answers are built with: the Corefile's settings, and
// the agent's where the Corefile says nothing (agent_dns).
type answering struct {
	zones []string
	opts  answer.Options
}

// answering is what the block answers with now.
func (c *Consul) answering() answering {
	if a := c.followed.Load(); a != nil {
		return *a
	}
	return answering{zones: c.cfg.zones, opts: c.cfg.answer}
}

// zones are the zones the block answers now.
func (c *Consul) zones() []string {
	if a := c.followed.Load(); a != nil {
		return a.zones
	}
	return c.Zones
}

// agentDNSRead follows the agent's DNS settings, read at start and again
// whenever they change: every datacenter's view is prepared again with
// them, then the zones move, so that no name is matched to a zone its view
// was not prepared for.
func (c *Consul) agentDNSRead(a replica.AgentDNS) {
	if c.cfg == nil || !c.cfg.agentDNS {
		return
	}
	logUnfollowed(a)
	next := follow(c.cfg, a)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.answering(); slices.Equal(cur.zones, next.zones) && cur.opts.Equal(&next.opts) {
		return
	}
	for _, d := range c.all() {
		d.reconfigure(next.zones, next.opts)
	}
	c.followed.Store(&next)
	log.Infof("following the agent's DNS settings: zones %v, %s", next.zones, describeOptions(&next.opts))
	c.offer()
}

// agentDNSForFile are the agent's DNS settings last read, for the snapshot
// file; nil before the agent was read.
func (c *Consul) agentDNSForFile() json.RawMessage {
	a := c.fileAgentDNS
	if c.local.feed != nil {
		if read := c.local.feed.agentDNSOf(); read != nil {
			a = read
		}
	}
	if a == nil {
		return nil
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil // plain values: cannot fail
	}
	return b
}

// agentDNSOfFile are the agent's DNS settings file holds; nil for none, or
// for settings that do not decode (logged: the rest of the file stands).
func agentDNSOfFile(file *snapshot.Set) *replica.AgentDNS {
	if file == nil || len(file.AgentDNS) == 0 {
		return nil
	}
	var a replica.AgentDNS
	if err := json.Unmarshal(file.AgentDNS, &a); err != nil {
		log.Warningf("the snapshot file's agent DNS settings do not decode, left out: %.100v", err)
		return nil
	}
	return &a
}

// follow is cfg's answering, with the agent's settings for what cfg does
// not set itself.
func follow(cfg *config, a replica.AgentDNS) answering {
	opts, given := cfg.answer, cfg.given
	if !given["service_ttl"] {
		ttl := answer.TTLs{Node: opts.TTL.Node}
		for pattern, d := range a.ServiceTTL {
			if err := ttl.SetService(pattern, seconds(d)); err != nil {
				logOnce("service_ttl "+pattern, "the agent's dns_config: %v; left out", err)
			}
		}
		opts.TTL = ttl
	}
	if !given["node_ttl"] {
		opts.TTL.Node = seconds(a.NodeTTL)
	}
	if !given["only_passing"] {
		opts.OnlyPassing = a.OnlyPassing
	}
	if !given["a_record_limit"] {
		opts.ARecordLimit = a.ARecordLimit
	}
	if !given["node_meta_txt"] {
		opts.NodeMetaTXT = a.NodeMetaTXT
	}
	if !given["soa_min_ttl"] {
		opts.SOAMinTTL = a.SOA.Minttl
	}
	// No property of the Corefile sets the SOA's other timers.
	opts.SOARefresh, opts.SOARetry, opts.SOAExpire = a.SOA.Refresh, a.SOA.Retry, a.SOA.Expire

	domain, alt := fqdnLower(a.Domain), fqdnLower(a.AltDomain)
	if domain == "" || !validZone(domain) {
		logOnce("domain "+domain, "the agent's domain %.100q is no domain name: answering %v", domain, cfg.zones)
		return answering{zones: cfg.zones, opts: opts}
	}
	if !validZone(alt) {
		logOnce("alt_domain "+alt, "the agent's alt_domain %.100q is no domain name: left out", alt)
		alt = ""
	}
	agentZones := []string{domain}
	if alt != "" && alt != domain {
		agentZones = append(agentZones, alt)
	}
	zones := cfg.zones
	if !cfg.zonesGiven {
		zones = agentZones
	} else if !slices.Equal(zones, agentZones) {
		logOnce("zones "+strings.Join(agentZones, " "), "the agent answers %v, this block %v as its Corefile says", agentZones, zones)
	}
	opts.Domain = ""
	if len(agentZones) == 2 && slices.Contains(zones, domain) && slices.Contains(zones, alt) {
		opts.Domain = domain
	}
	return answering{zones: zones, opts: opts}
}

// logUnfollowed says, once per setting, which of the agent's settings that
// change its answers the plugin does not follow: those set to other than
// Consul's defaults.
func logUnfollowed(a replica.AgentDNS) {
	for _, s := range []struct {
		name string
		set  bool
	}{
		{"enable_truncate", a.EnableTruncate},
		{"udp_answer_limit", a.UDPAnswerLimit != 3},
		{"recursors", len(a.Recursors) > 0},
		{"disable_compression", a.DisableCompression},
		{"allow_stale", !a.AllowStale},
	} {
		if s.set {
			logOnce("unfollowed "+s.name, "the agent's dns_config sets %s, which the plugin does not follow (see the README)", s.name)
		}
	}
}

// logged holds what logOnce said, for the process's life: a reload or the
// agent's next read does not say it again.
var logged sync.Map

// logOnce logs a warning the first time key is seen.
func logOnce(key, format string, args ...any) {
	if _, seen := logged.LoadOrStore(key, true); !seen {
		log.Warningf(format, args...)
	}
}

// validZone reports whether zone (lower case, fully qualified) can be a
// zone: what the agent says becomes the names the plugin answers for, and
// is checked as any value read from Consul or the snapshot file.
func validZone(zone string) bool {
	if zone == "" || zone == "." {
		return zone == ""
	}
	_, ok := dns.IsDomainName(zone)
	return ok && !strings.Contains(zone, "\\")
}

func seconds(d time.Duration) uint32 { return uint32(min(d/time.Second, 1<<31-1)) }

func fqdnLower(s string) string {
	if s == "" {
		return ""
	}
	return strings.ToLower(dns.Fqdn(s))
}

func describeOptions(o *answer.Options) string {
	return fmt.Sprintf("node_ttl %ds, only_passing %t, a_record_limit %d, node_meta_txt %t, soa %d/%d/%d/%d",
		o.TTL.Node, o.OnlyPassing, o.ARecordLimit, o.NodeMetaTXT, o.SOARefresh, o.SOARetry, o.SOAExpire, o.SOAMinTTL)
}
