package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/metrics"
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

// TestAnswerSize checks what Consul gets wrong for HAProxy: a large answer
// over UDP without EDNS0 fits 512 bytes and says it was cut (TC), so the
// client retries over TCP; with EDNS0 it fills the client's buffer; over TCP
// it holds every instance.
func TestAnswerSize(t *testing.T) {
	agent, client := startAgent(t)
	consulagent.Populate(t, client, 1, 40, 40) // service-0 with 40 instances on 40 nodes
	server := startPlugin(t, agent.HTTPAddr, "node_meta_txt off")

	tests := []struct {
		name      string
		tcp       bool
		bufsize   uint16 // 0: no EDNS0
		truncated bool
		answers   int // exact count, or 0 for "fewer than 40"
	}{
		{"udp without EDNS0", false, 0, true, 0},
		{"udp with EDNS0 1232", false, 1232, true, 0},
		{"udp with EDNS0 8192", false, 8192, false, 40},
		{"tcp", true, 0, false, 40},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []dnsq.Option
			if tc.tcp {
				opts = append(opts, dnsq.TCP)
			}
			if tc.bufsize > 0 {
				opts = append(opts, dnsq.EDNS(tc.bufsize))
			}
			for _, qtype := range []uint16{dns.TypeSRV, dns.TypeA} {
				resp := dnsq.Query(t, server.Addr, "service-0.service.consul.", qtype, opts...)
				resp.Compress = true // as it came over the wire
				size := resp.Len()
				limit := 512
				if tc.bufsize > 0 {
					limit = int(tc.bufsize)
				}
				if !tc.tcp && size > limit {
					t.Errorf("%s: %d bytes over a %d-byte limit", dns.TypeToString[qtype], size, limit)
				}
				if qtype == dns.TypeA && tc.bufsize == 1232 {
					continue // 40 A records fit in 1232 bytes
				}
				if resp.Truncated != tc.truncated {
					t.Errorf("%s: TC = %v, want %v (%d answers, %d bytes)", dns.TypeToString[qtype], resp.Truncated, tc.truncated, len(resp.Answer), size)
				}
				if tc.answers > 0 && len(resp.Answer) != tc.answers {
					t.Errorf("%s: %d answers, want %d", dns.TypeToString[qtype], len(resp.Answer), tc.answers)
				}
				if tc.answers == 0 && (len(resp.Answer) == 0 || len(resp.Answer) >= 40) {
					t.Errorf("%s: %d answers, want some but not all", dns.TypeToString[qtype], len(resp.Answer))
				}
			}
		})
	}
}

// TestWatchedServicesMetric: with more services than max_watchers, the
// metrics say how many have a watcher and how many do not.
func TestWatchedServicesMetric(t *testing.T) {
	agent, client := startAgent(t)
	for i := range 4 {
		consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: fmt.Sprintf("s%d", i), Service: fmt.Sprintf("s%d", i), Port: 80}, "passing")
	}
	server := startPlugin(t, agent.HTTPAddr, "max_watchers 2")
	// Consul's own "consul" service makes five.
	want := map[string]float64{"services": 5, "watched_services": 2, "unwatched_services": 3}
	wait.Until(t, 10*time.Second, func() error {
		text := server.Metrics(t)
		got := map[string]float64{}
		for name := range want {
			got[name], _ = metrics.Sum(text, "coredns_consul_"+name)
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("metrics %v, want %v", got, want)
		}
		return nil
	})
}

// TestCorefileExample runs the project's Corefile.example, moved to free
// loopback ports and pointed at a test agent, and checks that it answers.
func TestCorefileExample(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "Corefile.example"))
	if err != nil {
		t.Fatal(err)
	}
	agent, client := startAgent(t)
	consulagent.Register(t, client, "node-a", "127.0.0.11", &api.AgentService{ID: "web-a", Service: "web", Port: 8001}, "passing")

	server := corednsproc.Start(t, func(p corednsproc.Ports) string {
		replacements := map[string]string{
			"ready :8181":                               fmt.Sprintf("ready 127.0.0.1:%d", p.Ready),
			"health :8182":                              fmt.Sprintf("health 127.0.0.1:%d", corednsproc.FreePort(t)),
			"prometheus :9153":                          fmt.Sprintf("prometheus 127.0.0.1:%d", p.Metrics),
			"address 127.0.0.1:8500":                    "address " + agent.HTTPAddr,
			"forward . /etc/resolv.conf":                "forward . 127.0.0.1:1", // no network here
			"snapshot /var/lib/coredns/consul.snapshot": "snapshot " + filepath.Join(t.TempDir(), "consul.snapshot"),
		}
		corefile := string(example)
		for from, to := range replacements {
			if !strings.Contains(corefile, from) {
				t.Fatalf("Corefile.example no longer contains %q; update this test", from)
			}
			corefile = strings.ReplaceAll(corefile, from, to)
		}
		// Every server block on the test's port, bound to loopback only.
		blocks := regexp.MustCompile(`(?m)^(\S*):53 \{$`)
		return blocks.ReplaceAllString(corefile, fmt.Sprintf("$1:%d {\n    bind 127.0.0.1", p.DNS))
	})

	resp := dnsq.Query(t, server.Addr, "web.service.consul.", dns.TypeSRV)
	want := []string{"web.service.consul. SRV 1 1 8001 node-a.node.dc1.consul."}
	if got := dnsq.Records(resp.Answer); len(got) != 1 || got[0] != want[0] {
		t.Errorf("SRV answer through Corefile.example:\n got %q\nwant %q", got, want)
	}
}

// TestACLTokens runs the real CoreDNS against an agent with ACLs on,
// default deny: a token Consul does not know is reported clearly (and never
// printed), a token that may read only part of the catalog gets a clear
// warning and serves what it may read, and a sufficient token serves it all.
func TestACLTokens(t *testing.T) {
	const root = "9c0f2e43-1111-4222-8333-944455556666"
	agent, admin := startACLAgent(t, root)
	consulagent.Register(t, admin, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	consulagent.Register(t, admin, "n1", "10.0.0.1", &api.AgentService{ID: "db-1", Service: "db", Port: 5432}, "passing")
	token := func(name, rules string) string { return aclToken(t, admin, name, rules).SecretID }
	webOnly := token("web-only", `service "web" { policy = "read" } node_prefix "" { policy = "read" } agent_prefix "" { policy = "read" }`)
	everything := token("dns", `service_prefix "" { policy = "read" } node_prefix "" { policy = "read" } agent_prefix "" { policy = "read" }`)
	const unknown = "0badf00d-dead-4bee-8fed-000000000000"

	start := func(t *testing.T, secret string, opts corednsproc.Options, settings ...string) (*corednsproc.Server, error) {
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		return corednsproc.StartWith(t, opts, pluginCorefile(agent.HTTPAddr, append(settings, "token_file "+file)...).Build)
	}

	t.Run("sufficient token", func(t *testing.T) {
		server, err := start(t, everything, corednsproc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"web", "db"} {
			if got := dnsq.Count(t, server.Addr, name+".service.consul."); got != 1 {
				t.Errorf("%s: %d", name, got)
			}
		}
	})

	t.Run("token that may read part of the catalog", func(t *testing.T) {
		server, err := start(t, webOnly, corednsproc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := dnsq.Count(t, server.Addr, "web.service.consul."); got != 1 {
			t.Errorf("web: %d answers, want 1", got)
		}
		if got := dnsq.Count(t, server.Addr, "db.service.consul."); got != -dns.RcodeNameError {
			t.Errorf("db: %d, want NXDOMAIN: the token may not read it", got)
		}
		if !strings.Contains(server.Output(), "the ACL token may not read all") {
			t.Errorf("no warning about the token's rights:\n%s", server.Output())
		}
		if _, ok := server.Metric(t, "coredns_consul_acl_filtered_total"); !ok {
			t.Error("no acl_filtered metric")
		}
	})

	t.Run("unknown token", func(t *testing.T) {
		// ready never turns 200: the log says why.
		server, _ := start(t, unknown, corednsproc.Options{ReadyWithin: -1}, "startup_timeout 1s")
		wait.Until(t, 30*time.Second, func() error {
			if !strings.Contains(strings.ToLower(server.Output()), "acl not found") {
				return fmt.Errorf("the log does not say the token was refused:\n%s", server.Tail(10))
			}
			return nil
		})
		server.Stop(t)
		out := server.Output()
		t.Logf("log with an unknown token:\n%s", server.Tail(4))
		if strings.Contains(out, unknown) || strings.Contains(out, root) {
			t.Errorf("a token appears in the log:\n%s", out)
		}
		if !strings.Contains(out, "403") {
			t.Errorf("the log does not say the token was refused:\n%s", out)
		}
	})
}
