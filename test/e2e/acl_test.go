package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// TestACLTokens runs the real CoreDNS against an agent with ACLs on,
// default deny: a token Consul does not know is reported clearly (and never
// printed), a token that may read only part of the catalog gets a clear
// warning and serves what it may read, and a sufficient token serves it all.
func TestACLTokens(t *testing.T) {
	const root = "9c0f2e43-1111-4222-8333-944455556666"
	agent, _ := startAgent(t, fmt.Sprintf(`acl { enabled = true default_policy = "deny" tokens { initial_management = %q } }`, root))
	cfg := agent.Config()
	cfg.Token = root
	admin, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The first writes may come before the ACL system is up.
	wait.Until(t, 30*time.Second, func() error {
		_, _, err := admin.ACL().TokenReadSelf(nil)
		return err
	})
	consulagent.Register(t, admin, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	consulagent.Register(t, admin, "n1", "10.0.0.1", &api.AgentService{ID: "db-1", Service: "db", Port: 5432}, "passing")
	token := func(name, rules string) string {
		policy, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: policy.ID}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok.SecretID
	}
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
