package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"

	"github.com/miekg/dns"
)

// agentDNSConfig differs from Consul's defaults in every dns_config setting
// the plugin follows.
const agentDNSConfig = `dns_config {
	service_ttl { "*" = "5s" "svc-1*" = "7s" "svc-3" = "3s" }
	node_ttl = "9s"
	only_passing = true
	a_record_limit = 2
	enable_additional_node_meta_txt = false
	soa { min_ttl = 11 refresh = 100 retry = 60 expire = 1000 }
}`

// TestAgentDNSDifferential: against an agent with its own dns_config, domain
// and alt_domain, a CoreDNS whose Corefile repeats none of it answers every
// question in both domains as the agent's DNS does.
func TestAgentDNSDifferential(t *testing.T) {
	agent, client := startAgent(t, `domain = "mydom"`, `alt_domain = "alt.example"`, agentDNSConfig)
	services, nodes := catalog(t, client, 42)
	// A root block: its zones are not given, so the agent's are answered.
	plugin := corednsproc.Start(t, corednsproc.Corefile{Zone: ".", Metrics: true, Consul: []string{"address " + agent.HTTPAddr}}.Build)
	questions := slices.Concat(catalogQuestions(services, nodes, "mydom."), catalogQuestions(services, nodes, "alt.example."))
	compareSampled(t, agent.DNSAddr, plugin.Addr, questions)
}

// TestAgentDNSReread: a change to the agent's dns_config (a `consul reload`)
// reaches the plugin's answers within the re-read period (30 s), with no
// reload of CoreDNS.
func TestAgentDNSReread(t *testing.T) {
	dir := t.TempDir()
	configure := func(nodeTTL, serviceTTL string) {
		hcl := `dns_config { node_ttl = "` + nodeTTL + `" service_ttl { "*" = "` + serviceTTL + `" } }`
		if err := os.WriteFile(filepath.Join(dir, "dns.hcl"), []byte(hcl), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	configure("9s", "5s")
	agent := consulagent.StartProcessWith(t, consulagent.Options{ConfigDir: dir})
	catalog(t, agent.Client(), 42)
	plugin := startPlugin(t, agent.HTTPAddr)
	questions := []question{{"node-0.node.consul.", dns.TypeA}, {"consul.service.consul.", dns.TypeA}}
	ttls := func(server string) []uint32 {
		var out []uint32
		for _, q := range questions {
			m := exchangeTCP(t, server, q)
			if len(m.Answer) == 0 {
				t.Fatalf("%s: no answer", q.name)
			}
			out = append(out, m.Answer[0].Header().Ttl)
		}
		return out
	}
	if got := ttls(plugin.Addr); !slices.Equal(got, []uint32{9, 5}) {
		t.Fatalf("TTLs %v before the change, want the agent's [9 5]", got)
	}

	configure("21s", "13s")
	if err := agent.Client().Agent().Reload(); err != nil {
		t.Fatalf("consul reload: %v", err)
	}
	if got := ttls(agent.DNSAddr); !slices.Equal(got, []uint32{21, 13}) {
		t.Fatalf("the agent answers with TTLs %v after its reload, want [21 13]", got)
	}
	began := time.Now()
	dnsq.Wait(t, plugin.Addr, questions[0].name, questions[0].qtype, 45*time.Second, func(m *dns.Msg) bool {
		return len(m.Answer) > 0 && m.Answer[0].Header().Ttl == 21
	})
	t.Logf("the agent's new dns_config followed %s after its reload", time.Since(began).Round(100*time.Millisecond))
	if got := ttls(plugin.Addr); !slices.Equal(got, []uint32{21, 13}) {
		t.Errorf("TTLs %v after the change, want [21 13]", got)
	}
}

// sampled is what a server answers to one question, asked as often as it
// takes to see every record it draws from.
type sampled struct {
	Rcode              int
	Answer, Ns, Extra  []string
	MostAnswers, Asked int
}

// compareSampled is compare for an agent with a_record_limit: an answer cut
// to the limit draws its records at random, in Consul as in the plugin, so
// such questions are asked many times of each, and the records seen and the
// most in one answer are compared.
func compareSampled(t *testing.T, want, got string, questions []question) {
	t.Helper()
	differences := 0
	for _, q := range questions {
		w, g := sample(t, want, q), sample(t, got, q)
		w.Asked, g.Asked = 0, 0
		if reflect.DeepEqual(w, g) {
			continue
		}
		differences++
		t.Errorf("%s %s:\n  consul %+v\n  plugin %+v", q.name, dns.TypeToString[q.qtype], w, g)
	}
	t.Logf("%d questions, %d answered differently", len(questions), differences)
}

// sample asks server q once, and 24 times more when the answer may have been
// cut to a_record_limit (2): a record then goes unseen with a chance of
// (1-2/n)^24, 6e-5 for 6 instances.
func sample(t *testing.T, server string, q question) sampled {
	t.Helper()
	var answer, ns, extra []dns.RR
	s := sampled{}
	for s.Asked = 0; s.Asked == 0 || s.Asked < 25 && s.MostAnswers >= 2 && q.qtype != dns.TypeSRV; s.Asked++ {
		m := exchangeTCP(t, server, q)
		s.Rcode = m.Rcode
		s.MostAnswers = max(s.MostAnswers, len(m.Answer))
		answer, ns, extra = append(answer, m.Answer...), append(ns, m.Ns...), append(extra, m.Extra...)
	}
	s.Answer, s.Ns, s.Extra = dnsq.Normalize(answer), dnsq.Normalize(ns), dnsq.Normalize(extra)
	return s
}
