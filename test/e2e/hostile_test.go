package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/faultproxy"
	"github.com/coredns-consul/coredns-consul/test/procfs"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// hostileToken is the ACL token CoreDNS sends; it must never reach the
// redirect's target.
const hostileToken = "e2e-hostile-token-0f3c"

// TestHostileProxy runs CoreDNS against a real agent through a proxy that
// adds nulls to every JSON array, truncates bodies, sends a gzip bomb and
// redirects to another listener. Through each, CoreDNS stays up, answers
// the names it answered before as before, never sends the token to the
// redirect's target, and follows Consul again once the proxy passes.
func TestHostileProxy(t *testing.T) {
	const services, instances = 4, 2
	agent := consulagent.StartProcess(t)
	client := agent.Client()
	consulagent.Populate(t, client, services, instances, 3)
	proxy := faultproxy.New(t, agent.HTTPAddr)
	// One watcher: the other services go through the detectors, so every
	// kind of read meets the faults.
	server := corednsproc.Start(t, pluginCorefile(proxy.Addr, "token "+hostileToken, "max_watchers 1").Build)

	var questions []question
	for s := range services {
		name := fmt.Sprintf("service-%d.service.consul.", s)
		questions = append(questions, question{name, dns.TypeSRV}, question{name, dns.TypeA})
	}
	questions = append(questions, question{"node-0.node.consul.", dns.TypeA})
	before := answersOf(t, server.Addr, questions)
	for q, m := range before {
		if len(m.Answer) == 0 {
			t.Fatalf("%s %s: no answer before the faults", q.name, dns.TypeToString[q.qtype])
		}
	}

	// What each fault leaves behind once the plugin has read through it.
	seen := map[faultproxy.Mode]string{
		faultproxy.NullElements:  `coredns_consul_invalid_values_total`,
		faultproxy.TruncatedJSON: `coredns_consul_request_errors_total`,
		faultproxy.HugeBody:      `coredns_consul_request_errors_total{datacenter="local",kind="too_large"}`,
		faultproxy.Redirect:      `coredns_consul_request_errors_total{datacenter="local",kind="redirect"}`,
	}
	for i, mode := range []faultproxy.Mode{faultproxy.NullElements, faultproxy.TruncatedJSON, faultproxy.HugeBody, faultproxy.Redirect} {
		t.Run(mode.String(), func(t *testing.T) {
			was, _ := server.Metric(t, seen[mode])
			proxy.Set(mode)
			// A change makes every loop read through the fault.
			id := fmt.Sprintf("churn-%d", i)
			consulagent.Register(t, client, "node-1", "10.0.0.1", &api.AgentService{ID: id, Service: "churn", Port: 9000 + i}, "passing")
			server.WaitMetric(t, seen[mode], 10*time.Second, func(v float64) bool { return v > was })
			sameAnswers(t, server.Addr, questions, before)
			if _, peak, err := procfs.Memory(server.Pid()); err == nil {
				t.Logf("CoreDNS's peak RSS so far: %.0f MB", peak/1e6)
			}

			proxy.Set(faultproxy.Pass)
			// The loops back off up to 30 s while the fault lasts.
			dnsq.Wait(t, server.Addr, "churn.service.consul.", dns.TypeSRV, 45*time.Second, func(m *dns.Msg) bool {
				return strings.Contains(fmt.Sprint(m.Answer), fmt.Sprint(9000+i))
			})
		})
	}
	if n := proxy.TokensLeaked(); n != 0 {
		t.Errorf("the ACL token reached the redirect's target %d times", n)
	}
	if out := server.Output(); strings.Contains(out, "panic") {
		t.Errorf("CoreDNS panicked:\n%s", server.Tail(40))
	}
	for _, kind := range []string{"too_large", "redirect"} {
		server.WaitMetric(t, fmt.Sprintf(`coredns_consul_request_errors_total{datacenter="local",kind=%q}`, kind), time.Second,
			func(v float64) bool { return v > 0 })
	}
	server.WaitMetric(t, `coredns_consul_invalid_values_total{datacenter="local",what="service_entry"}`, time.Second,
		func(v float64) bool { return v > 0 })
}
