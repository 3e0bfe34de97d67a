package replica

import (
	"context"
	"fmt"
	"reflect"
	"time"
)

// AgentDNS is the agent's dns_config, with its domain and alt_domain, as
// /v1/agent/self reports them (DebugConfig): the settings that shape the
// agent's own DNS answers, which the plugin follows where its Corefile says
// nothing.
type AgentDNS struct {
	Domain, AltDomain string
	// ServiceTTL maps a service name, "prefix*" or "*" to its TTL.
	ServiceTTL   map[string]time.Duration
	NodeTTL      time.Duration
	OnlyPassing  bool
	ARecordLimit int
	NodeMetaTXT  bool
	SOA          SOA
	// What the plugin does not follow, reported so it can say so.
	EnableTruncate     bool
	UDPAnswerLimit     int
	Recursors          []string
	DisableCompression bool
	AllowStale         bool
}

// SOA is dns_config.soa.
type SOA struct{ Refresh, Retry, Expire, Minttl uint32 }

// agentDNSJSON is how DebugConfig carries AgentDNS: durations as Go
// duration strings.
type agentDNSJSON struct {
	DNSDomain, DNSAltDomain string
	DNSServiceTTL           map[string]string
	DNSNodeTTL              string
	DNSOnlyPassing          bool
	DNSARecordLimit         int
	DNSNodeMetaTXT          bool
	DNSSOA                  SOA
	DNSEnableTruncate       bool
	DNSUDPAnswerLimit       int
	DNSRecursors            []string
	DNSDisableCompression   bool
	DNSAllowStale           bool
}

// convert reads j; nil when the agent reported no DNS settings (no
// DebugConfig: an agent too old, or a proxy in front that strips it).
func (j *agentDNSJSON) convert() (*AgentDNS, error) {
	if j.DNSDomain == "" {
		return nil, nil
	}
	a := &AgentDNS{Domain: j.DNSDomain, AltDomain: j.DNSAltDomain, OnlyPassing: j.DNSOnlyPassing,
		ARecordLimit: j.DNSARecordLimit, NodeMetaTXT: j.DNSNodeMetaTXT, SOA: j.DNSSOA,
		EnableTruncate: j.DNSEnableTruncate, UDPAnswerLimit: j.DNSUDPAnswerLimit, Recursors: j.DNSRecursors,
		DisableCompression: j.DNSDisableCompression, AllowStale: j.DNSAllowStale}
	var err error
	if a.NodeTTL, err = agentDuration("DNSNodeTTL", j.DNSNodeTTL); err != nil {
		return nil, err
	}
	if len(j.DNSServiceTTL) > 0 {
		a.ServiceTTL = make(map[string]time.Duration, len(j.DNSServiceTTL))
	}
	for pattern, s := range j.DNSServiceTTL {
		if a.ServiceTTL[pattern], err = agentDuration("DNSServiceTTL["+pattern+"]", s); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func agentDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("the agent's %s %q: %w", field, s, err)
	}
	return d, nil
}

// agentLoop reads the agent again every AgentInterval, so that a change to
// its dns_config (a `consul reload`) reaches the answers: Consul offers no
// blocking query on its own configuration. A token that may no longer read
// the agent keeps what was followed, said once.
func (r *Replicator) agentLoop(last *AgentDNS) {
	refused := false
	for sleep(r.run.ctx, r.cfg.AgentInterval) {
		var self Agent
		_, err := r.request(r.run.ctx, r.cfg.LivenessTimeout, func(ctx context.Context) (Meta, error) {
			var err error
			self, err = r.src.Agent(ctx)
			if denied(err) {
				// Not an outage: the catalog may still be read.
				return Meta{KnownLeader: true}, nil
			}
			return Meta{KnownLeader: true}, err
		})
		switch {
		case err != nil:
			continue // counted with the other requests; tried again next time
		case self.DNS == nil:
			// Said only when something was followed: an agent that never
			// reported its settings was said to at start.
			if !refused && last != nil {
				log.Warningf("the agent's DNS settings can no longer be read (the token may lack agent:read): keeping those read before")
			}
			refused = true
			continue
		}
		refused = false
		if !reflect.DeepEqual(last, self.DNS) {
			last = self.DNS
			r.cfg.OnAgentDNS(*self.DNS)
		}
	}
}
