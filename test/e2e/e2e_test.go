package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

func TestCoreDNSAnswersFromConsul(t *testing.T) {
	agent, client := startAgent(t)
	for _, r := range []struct {
		node, addr string
		svc        *api.AgentService
		status     string
	}{
		{"node-a", "127.0.0.11", &api.AgentService{ID: "web-a", Service: "web", Port: 8001}, "passing"},
		{"node-b", "127.0.0.12", &api.AgentService{ID: "web-b", Service: "web", Port: 8002, Address: "127.0.1.12"}, "passing"},
		{"node-c", "127.0.0.13", &api.AgentService{ID: "web-c", Service: "web", Port: 8003}, "warning"},
		{"node-d", "127.0.0.14", &api.AgentService{ID: "web-d", Service: "web", Port: 8004}, "critical"},
		{"node-a", "127.0.0.11", &api.AgentService{ID: "api-a", Service: "api", Port: 9001}, "passing"},
	} {
		consulagent.Register(t, client, r.node, r.addr, r.svc, r.status)
	}

	// The consul plugin beside CoreDNS's usual neighbours; whoami answers
	// every name outside consul., which shows the plugin passes them on.
	server := corednsproc.Start(t, corednsproc.Corefile{Zone: ".", Plugins: []string{"errors", "log"},
		ConsulZones: "consul.", Consul: []string{"address " + agent.HTTPAddr}, After: []string{"whoami"}}.Build)

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
	for _, proto := range []struct {
		name string
		opts []dnsq.Option
	}{{"udp", nil}, {"tcp", []dnsq.Option{dnsq.TCP}}} {
		t.Run(proto.name, func(t *testing.T) {
			ask := func(name string, qtype uint16) *dns.Msg {
				return dnsq.Query(t, server.Addr, name, qtype, proto.opts...)
			}
			a := ask("web.service.consul.", dns.TypeA)
			if a.Rcode != dns.RcodeSuccess || !a.Authoritative {
				t.Errorf("A: rcode %s, aa %v", dns.RcodeToString[a.Rcode], a.Authoritative)
			}
			if got := dnsq.Records(a.Answer); !slices.Equal(got, wantA) {
				t.Errorf("A answer:\n got %q\nwant %q", got, wantA)
			}

			srv := ask("web.service.consul.", dns.TypeSRV)
			if got := dnsq.Records(srv.Answer); !slices.Equal(got, wantSRV) {
				t.Errorf("SRV answer:\n got %q\nwant %q", got, wantSRV)
			}
			if got := dnsq.Records(srv.Extra); !slices.Equal(got, wantExtra) {
				t.Errorf("SRV extra:\n got %q\nwant %q", got, wantExtra)
			}

			nx := ask("nope.service.consul.", dns.TypeA)
			if nx.Rcode != dns.RcodeNameError || len(nx.Ns) != 1 {
				t.Errorf("unknown service: rcode %s with %d authority records, want NXDOMAIN with the SOA",
					dns.RcodeToString[nx.Rcode], len(nx.Ns))
			}

			other := ask("example.org.", dns.TypeA)
			if other.Rcode != dns.RcodeSuccess || len(other.Extra) == 0 {
				t.Errorf("example.org. did not reach whoami: %v", other)
			}
		})
	}

	// One more instance shows up without restarting anything.
	consulagent.Register(t, client, "node-e", "127.0.0.15", &api.AgentService{ID: "web-e", Service: "web", Port: 8005}, "passing")
	registered := time.Now()
	want := slices.Insert(slices.Clone(wantA), 2, "web.service.consul. A 127.0.0.15")
	wait.Until(t, 5*time.Second, func() error {
		if got := dnsq.Records(dnsq.Query(t, server.Addr, "web.service.consul.", dns.TypeA).Answer); !slices.Equal(got, want) {
			return fmt.Errorf("new instance not answered:\n got %q\nwant %q", got, want)
		}
		return nil
	})
	t.Logf("new instance answered %s after its registration returned", time.Since(registered))
	srv := dnsq.Query(t, server.Addr, "web.service.consul.", dns.TypeSRV, dnsq.TCP)
	if len(srv.Answer) != 4 || len(srv.Extra) != 4 {
		t.Errorf("SRV after the new instance: %d answers, %d extras; want 4 and 4", len(srv.Answer), len(srv.Extra))
	}
}
