package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/sdk/testutil"
	"github.com/miekg/dns"
)

// TestACLTokens runs the real CoreDNS against an agent with ACLs on,
// default deny: a token Consul does not know is reported clearly (and never
// printed), a token that may read only part of the catalog gets a clear
// warning and serves what it may read, and a sufficient token serves it all.
func TestACLTokens(t *testing.T) {
	const root = "9c0f2e43-1111-4222-8333-944455556666"
	agent := consulagent.Start(t, func(c *testutil.TestServerConfig) {
		c.ACL.Enabled = true
		c.ACL.DefaultPolicy = "deny"
		c.ACL.Tokens.InitialManagement = root
	})
	cfg := consulagent.Config(agent)
	cfg.Token = root
	admin, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
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

	start := func(secret, extra string) *corednsproc.Server {
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		return corednsproc.StartOn(t, corednsproc.Ports{DNS: corednsproc.FreePort(t), Ready: corednsproc.FreePort(t), Metrics: corednsproc.FreePort(t)},
			func(p corednsproc.Ports) string {
				return fmt.Sprintf("consul.:%d {\n bind 127.0.0.1\n ready 127.0.0.1:%d\n prometheus 127.0.0.1:%d\n consul {\n  address %s\n  token_file %s\n%s }\n}\n",
					p.DNS, p.Ready, p.Metrics, agent.HTTPAddr, file, extra)
			})
	}

	t.Run("sufficient token", func(t *testing.T) {
		server := start(everything, "")
		for _, name := range []string{"web", "db"} {
			if got := answers(t, server.Addr, name+".service.consul."); got != 1 {
				t.Errorf("%s: %d", name, got)
			}
		}
	})

	t.Run("token that may read part of the catalog", func(t *testing.T) {
		server := start(webOnly, "")
		if got := answers(t, server.Addr, "web.service.consul."); got != 1 {
			t.Errorf("web: %d answers, want 1", got)
		}
		if got := answers(t, server.Addr, "db.service.consul."); got != -dns.RcodeNameError {
			t.Errorf("db: %d, want NXDOMAIN: the token may not read it", got)
		}
		if !strings.Contains(server.Output(), "the ACL token may not read all") {
			t.Errorf("no warning about the token's rights:\n%s", server.Output())
		}
		if !strings.Contains(server.Metrics(t), "coredns_consul_acl_filtered_total") {
			t.Error("no acl_filtered metric")
		}
	})

	t.Run("unknown token", func(t *testing.T) {
		// ready never turns 200: start without waiting for it.
		file := filepath.Join(t.TempDir(), "token")
		os.WriteFile(file, []byte(unknown), 0o600)
		dnsPort, readyPort := corednsproc.FreePort(t), corednsproc.FreePort(t)
		corefile := fmt.Sprintf("consul.:%d {\n bind 127.0.0.1\n ready 127.0.0.1:%d\n consul {\n  address %s\n  token_file %s\n  startup_timeout 1s\n }\n}\n",
			dnsPort, readyPort, agent.HTTPAddr, file)
		out := runBriefly(t, corefile, 3*time.Second)
		t.Logf("log with an unknown token:\n%s", firstLines(out, 4))
		if strings.Contains(out, unknown) || strings.Contains(out, root) {
			t.Errorf("a token appears in the log:\n%s", out)
		}
		if !strings.Contains(out, "403") || !strings.Contains(strings.ToLower(out), "acl not found") {
			t.Errorf("the log does not say the token was refused:\n%s", out)
		}
	})
}

// runBriefly runs CoreDNS with corefile for d, without waiting for it to be
// ready, and returns what it printed.
func runBriefly(t *testing.T, corefile string, d time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(corednsproc.Binary(t), "-conf", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Error("CoreDNS did not stop within 10s of SIGTERM")
	}
	return out.String()
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
