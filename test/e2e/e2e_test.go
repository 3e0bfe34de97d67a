// Package e2e runs the real CoreDNS binary with the consul plugin against a
// real Consul agent and queries it over UDP and TCP.
package e2e

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

func query(t *testing.T, net, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: net, Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", net, dns.TypeToString[qtype], name, err)
	}
	return resp
}

// records renders a section as sorted "name type data" strings, TTL aside.
func records(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		out = append(out, strings.TrimPrefix(rr.String(), h.String()))
		out[len(out)-1] = h.Name + " " + dns.TypeToString[h.Rrtype] + " " + out[len(out)-1]
	}
	sort.Strings(out)
	return out
}

func TestCoreDNSAnswersFromConsul(t *testing.T) {
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	consulagent.Register(t, client, "node-a", "127.0.0.11", &api.AgentService{ID: "web-a", Service: "web", Port: 8001}, "passing")
	consulagent.Register(t, client, "node-b", "127.0.0.12", &api.AgentService{ID: "web-b", Service: "web", Port: 8002, Address: "127.0.1.12"}, "passing")
	consulagent.Register(t, client, "node-c", "127.0.0.13", &api.AgentService{ID: "web-c", Service: "web", Port: 8003}, "warning")
	consulagent.Register(t, client, "node-d", "127.0.0.14", &api.AgentService{ID: "web-d", Service: "web", Port: 8004}, "critical")
	consulagent.Register(t, client, "node-a", "127.0.0.11", &api.AgentService{ID: "api-a", Service: "api", Port: 9001}, "passing")

	// The consul plugin beside CoreDNS's usual neighbours; whoami answers
	// every name outside consul., which shows the plugin passes them on.
	dns1 := corednsproc.Start(t, func(p corednsproc.Ports) string {
		return fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    errors
    log
    ready 127.0.0.1:%d
    consul consul. {
        address %s
    }
    whoami
}
`, p.DNS, p.Ready, agent.HTTPAddr)
	})

	wantA := []string{
		"web.service.consul. A 127.0.0.11",
		"web.service.consul. A 127.0.0.13",
		"web.service.consul. A 127.0.1.12",
	}
	wantSRV := []string{
		"web.service.consul. SRV 1 1 8001 node-a.node.dc1.consul.",
		"web.service.consul. SRV 1 1 8002 7f00010c.addr.dc1.consul.",
		"web.service.consul. SRV 1 1 8003 node-c.node.dc1.consul.",
	}
	wantExtra := []string{
		"7f00010c.addr.dc1.consul. A 127.0.1.12",
		"node-a.node.dc1.consul. A 127.0.0.11",
		"node-c.node.dc1.consul. A 127.0.0.13",
	}
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			a := query(t, proto, dns1.Addr, "web.service.consul.", dns.TypeA)
			if a.Rcode != dns.RcodeSuccess || !a.Authoritative {
				t.Errorf("A: rcode %s, aa %v", dns.RcodeToString[a.Rcode], a.Authoritative)
			}
			if got := records(a.Answer); !slices.Equal(got, wantA) {
				t.Errorf("A answer:\n got %q\nwant %q", got, wantA)
			}

			srv := query(t, proto, dns1.Addr, "web.service.consul.", dns.TypeSRV)
			if got := records(srv.Answer); !slices.Equal(got, wantSRV) {
				t.Errorf("SRV answer:\n got %q\nwant %q", got, wantSRV)
			}
			if got := records(srv.Extra); !slices.Equal(got, wantExtra) {
				t.Errorf("SRV extra:\n got %q\nwant %q", got, wantExtra)
			}

			nx := query(t, proto, dns1.Addr, "nope.service.consul.", dns.TypeA)
			if nx.Rcode != dns.RcodeNameError || len(nx.Ns) != 1 {
				t.Errorf("unknown service: rcode %s with %d authority records, want NXDOMAIN with the SOA",
					dns.RcodeToString[nx.Rcode], len(nx.Ns))
			}

			other := query(t, proto, dns1.Addr, "example.org.", dns.TypeA)
			if other.Rcode != dns.RcodeSuccess || len(other.Extra) == 0 {
				t.Errorf("example.org. did not reach whoami: %v", other)
			}
		})
	}

	// One more instance shows up without restarting anything.
	consulagent.Register(t, client, "node-e", "127.0.0.15", &api.AgentService{ID: "web-e", Service: "web", Port: 8005}, "passing")
	registered := time.Now()
	want := append(slices.Clone(wantA[:2]), "web.service.consul. A 127.0.0.15")
	want = append(want, wantA[2])
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := records(query(t, "udp", dns1.Addr, "web.service.consul.", dns.TypeA).Answer)
		if slices.Equal(got, want) {
			t.Logf("new instance answered %s after its registration returned", time.Since(registered))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new instance not answered within 5s:\n got %q\nwant %q", got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
	srv := query(t, "tcp", dns1.Addr, "web.service.consul.", dns.TypeSRV)
	if len(srv.Answer) != 4 || len(srv.Extra) != 4 {
		t.Errorf("SRV after the new instance: %d answers, %d extras; want 4 and 4", len(srv.Answer), len(srv.Extra))
	}
}
