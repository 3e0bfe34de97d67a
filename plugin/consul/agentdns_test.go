package consul

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	golog "log"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// testAgentDNS is an agent with a dns_config that differs from Consul's
// defaults in every setting the plugin follows.
func testAgentDNS() replica.AgentDNS {
	return replica.AgentDNS{Domain: "MyDom", AltDomain: "alt.example",
		ServiceTTL: map[string]time.Duration{"*": 5 * time.Second, "web*": 7 * time.Second}, NodeTTL: 9 * time.Second,
		OnlyPassing: true, ARecordLimit: 2, NodeMetaTXT: false, SOA: replica.SOA{Refresh: 100, Retry: 60, Expire: 1000, Minttl: 11},
		UDPAnswerLimit: 3, AllowStale: true}
}

func parseBlock(t *testing.T, key, input string) *config {
	t.Helper()
	c := caddy.NewTestController("dns", input)
	c.ServerBlockKeys = []string{key}
	cfg, err := parse(c)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return cfg
}

// TestFollowAgentDNS: the agent's settings fill in what the Corefile does
// not say; what it says wins, zones included.
func TestFollowAgentDNS(t *testing.T) {
	tests := []struct {
		name, key, input string
		zones            []string
		domain           string // the apex SOA's zone
		webTTL, otherTTL uint32
		nodeTTL, soaMin  uint32
		onlyPassing      bool
		limit            int
		metaTXT          bool
	}{
		{name: "nothing set: all the agent's", key: ".:53", input: "consul",
			zones: []string{"mydom.", "alt.example."}, domain: "mydom.",
			webTTL: 7, otherTTL: 5, nodeTTL: 9, soaMin: 11, onlyPassing: true, limit: 2},
		{name: "the Corefile wins", key: ".:53", input: `consul {
				service_ttl web 1s
				node_ttl 2s
				a_record_limit 0
				node_meta_txt on
				soa_min_ttl 4
			}`,
			zones: []string{"mydom.", "alt.example."}, domain: "mydom.",
			webTTL: 1, otherTTL: 0, nodeTTL: 2, soaMin: 4, onlyPassing: true, limit: 0, metaTXT: true},
		{name: "zones of the server block", key: "consul.:53", input: "consul",
			zones: []string{"consul."}, webTTL: 7, otherTTL: 5, nodeTTL: 9, soaMin: 11, onlyPassing: true, limit: 2},
		{name: "zones as arguments, both of the agent's", key: ".:53", input: "consul alt.example mydom",
			zones: []string{"alt.example.", "mydom."}, domain: "mydom.",
			webTTL: 7, otherTTL: 5, nodeTTL: 9, soaMin: 11, onlyPassing: true, limit: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := follow(parseBlock(t, tc.key, tc.input), testAgentDNS())
			o := got.opts
			if !slices.Equal(got.zones, tc.zones) || o.Domain != tc.domain {
				t.Errorf("zones %v, SOA domain %q; want %v, %q", got.zones, o.Domain, tc.zones, tc.domain)
			}
			if web, other := o.TTL.Service("web"), o.TTL.Service("db"); web != tc.webTTL || other != tc.otherTTL {
				t.Errorf("service TTLs web %d, other %d; want %d, %d", web, other, tc.webTTL, tc.otherTTL)
			}
			if o.TTL.Node != tc.nodeTTL || o.SOAMinTTL != tc.soaMin || o.OnlyPassing != tc.onlyPassing ||
				o.ARecordLimit != tc.limit || o.NodeMetaTXT != tc.metaTXT {
				t.Errorf("got %s; want node_ttl %d, soa_min_ttl %d, only_passing %t, a_record_limit %d, node_meta_txt %t",
					describeOptions(&o), tc.nodeTTL, tc.soaMin, tc.onlyPassing, tc.limit, tc.metaTXT)
			}
			if o.SOARefresh != 100 || o.SOARetry != 60 || o.SOAExpire != 1000 {
				t.Errorf("SOA timers %d/%d/%d, want the agent's 100/60/1000", o.SOARefresh, o.SOARetry, o.SOAExpire)
			}
		})
	}
}

// TestAgentDNSServed: once the agent's settings are read, the snapshot
// served is answered with them, under the agent's domain and alt_domain;
// with agent_dns off, nothing changes.
func TestAgentDNSServed(t *testing.T) {
	for _, follows := range []bool{true, false} {
		input := "consul"
		if !follows {
			input = "consul {\n agent_dns off\n}"
		}
		cfg := parseBlock(t, ".:53", input)
		c := withLocal(&Consul{Zones: cfg.zones, opts: cfg.answer, cfg: cfg, Next: test.NextHandler(dns.RcodeRefused, nil)})
		c.publish(testSnapshot())
		c.agentDNSRead(testAgentDNS())
		tests := []test.Case{
			{Qname: "web.service.alt.example.", Qtype: dns.TypeA,
				Answer: aRecords("web.service.alt.example.", 7, "10.0.0.1", "10.1.0.2")}, // a_record_limit 2, only_passing
			{Qname: "web.service.consul.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused}, // not a zone of the agent's
			{Qname: "n2.node.mydom.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("n2.node.mydom. 9 IN A 10.0.0.2")}},
			{Qname: "nope.service.alt.example.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
				Ns: []dns.RR{test.SOA("alt.example. 11 IN SOA ns.alt.example. hostmaster.alt.example. 12 100 60 1000 11")}},
			// Consul names its alt_domain apex's SOA after its domain.
			{Qname: "alt.example.", Qtype: dns.TypeSOA,
				Answer: []dns.RR{test.SOA("mydom. 11 IN SOA ns.mydom. hostmaster.mydom. 12 100 60 1000 11")},
				Ns:     []dns.RR{test.NS("alt.example. 9 IN NS ns.alt.example.")}},
		}
		if !follows {
			tests = []test.Case{
				{Qname: "web.service.consul.", Qtype: dns.TypeA, Answer: aRecords("web.service.consul.", 0, "10.0.0.1", "10.0.0.3", "10.1.0.2")},
				{Qname: "web.service.alt.example.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
			}
		}
		for _, tc := range tests {
			m, _ := ask(t, c, tc.Qname, tc.Qtype)
			if m == nil {
				m = new(dns.Msg)
				m.Rcode = dns.RcodeRefused // the next plugin's
			}
			if err := test.SortAndCheck(m, tc); err != nil {
				t.Errorf("agent_dns %t: %s %s: %v", follows, tc.Qname, dns.TypeToString[tc.Qtype], err)
			}
		}
	}
}

// TestAgentDNSChanged: a change to the agent's settings that keeps its
// zones reaches the answers of the snapshot served.
func TestAgentDNSChanged(t *testing.T) {
	cfg := parseBlock(t, ".:53", "consul")
	c := withLocal(&Consul{Zones: cfg.zones, opts: cfg.answer, cfg: cfg})
	c.publish(testSnapshot())
	a := testAgentDNS()
	for _, ttl := range []uint32{9, 20} {
		a.NodeTTL = time.Duration(ttl) * time.Second
		c.agentDNSRead(a)
		m, _ := ask(t, c, "n2.node.mydom.", dns.TypeA)
		if len(m.Answer) != 1 || m.Answer[0].Header().Ttl != ttl {
			t.Errorf("node_ttl %ds: answered %v", ttl, m.Answer)
		}
	}
}

// TestUnfollowedLoggedOnce: a setting the plugin does not follow is named
// once, however often the agent is read, and one left at Consul's default
// is not named at all.
func TestUnfollowedLoggedOnce(t *testing.T) {
	var out bytes.Buffer
	golog.SetOutput(&out)
	defer golog.SetOutput(io.Discard)
	logged.Clear()
	a := testAgentDNS()
	a.Recursors, a.EnableTruncate = []string{"1.1.1.1"}, true
	cfg := parseBlock(t, ".:53", "consul")
	c := withLocal(&Consul{Zones: cfg.zones, opts: cfg.answer, cfg: cfg})
	for range 3 {
		c.agentDNSRead(a)
		a.NodeTTL += time.Second // a change: followed again
	}
	for setting, want := range map[string]int{"sets recursors": 1, "sets enable_truncate": 1, "udp_answer_limit": 0, "allow_stale": 0,
		"following the agent's DNS settings": 3} {
		if n := strings.Count(out.String(), setting); n != want {
			t.Errorf("%q logged %d times, want %d:\n%s", setting, n, want, out.String())
		}
	}
}

// TestReloadKeepsAgentDNS: a reload that hands the running replica over
// answers with the agent's settings from its first answer, not from the
// replica's next read of the agent, 30 s later.
func TestReloadKeepsAgentDNS(t *testing.T) {
	agent := consulagent.StartProcessWith(t, consulagent.Options{HCL: []string{`dns_config { service_ttl { "*" = "7s" } }`}})
	register(t, agent.Client(), "web-1")
	block := func(nodeTTL string) string {
		return fmt.Sprintf("consul {\n address %s\n node_ttl %s\n}", agent.HTTPAddr, nodeTTL)
	}
	old := startCorefile(t, block("1s"))
	eventually(t, old[0], "answering web with the agent's TTL", func() bool {
		n, ttl := answers(t, old[0], "web.service.consul.")
		return n == 1 && ttl == 7
	})
	next, err := reload(t, old, block("2s"))
	if err != nil {
		t.Fatal(err)
	}
	if next[0].local.feed.replica != old[0].local.feed.replica {
		t.Fatal("the reloaded block made a replica of its own")
	}
	if n, ttl := answers(t, next[0], "web.service.consul."); n != 1 || ttl != 7 {
		t.Errorf("the first answer after the reload: %d records, TTL %d; want 1 with the agent's 7", n, ttl)
	}
}

// TestAgentDNSFromFile: a CoreDNS restarted while Consul is down answers as
// the agent did, under its domain and alt_domain, from the settings the
// snapshot file kept; a domain no name can have is not taken from it.
func TestAgentDNSFromFile(t *testing.T) {
	tests := []struct {
		name   string
		domain string
		qname  string // answered from the file, with web's TTL from the agent
		zones  []string
	}{
		{"the agent's domains", "MyDom", "web.service.alt.example.", []string{"mydom.", "alt.example."}},
		{"a domain that is no name", "bad..name", "web.service.consul.", []string{"consul."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := testAgentDNS()
			a.Domain = tc.domain
			set := oneService("dc1", "web")
			var err error
			if set.AgentDNS, err = json.Marshal(a); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "snap")
			if err := snapshot.WriteFile(path, set); err != nil {
				t.Fatal(err)
			}
			h := blockFromFile(t, ".:53", path, " startup_timeout 100ms\n")
			if err := h.startup(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { live.leave(h) }) // a started block is known to later tests' reloads
			if got := h.zones(); !slices.Equal(got, tc.zones) {
				t.Errorf("zones %v, want %v", got, tc.zones)
			}
			m, rcode := ask(t, h, tc.qname, dns.TypeA)
			if rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 7 {
				t.Errorf("%s: rcode %d, answer %v; want web with the agent's TTL 7", tc.qname, rcode, m.Answer)
			}
			if got := h.agentDNSForFile(); !bytes.Equal(got, set.AgentDNS) {
				t.Errorf("the settings written back are %s, want the file's %s", got, set.AgentDNS)
			}
		})
	}
}
