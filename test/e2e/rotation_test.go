package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
)

// rotationServices are registered before a rotation: the prober asks for
// service-2 to service-5 throughout it.
const rotationServices = 6

// renameOver writes data to a new file beside path and renames it over
// path, as Vault Agent, consul-template and Kubernetes replace files.
func renameOver(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// registerRotationServices registers service-0 to service-5, one passing
// instance each.
func registerRotationServices(t *testing.T, client *api.Client) {
	t.Helper()
	for i := range rotationServices {
		name := fmt.Sprintf("service-%d", i)
		consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: name, Service: name, Port: 80}, "passing")
	}
}

// answeredWithin registers service name after a rotation and returns how
// long after each of since it is answered; the test fails past 5 s after
// the first.
func answeredWithin(t *testing.T, client *api.Client, server *corednsproc.Server, name string, since ...time.Time) []time.Duration {
	t.Helper()
	consulagent.Register(t, client, "n1", "10.0.0.9", &api.AgentService{ID: name, Service: name, Port: 80}, "passing")
	err := wait.For(5*time.Second-time.Since(since[0]), func() error {
		if n := dnsq.Count(t, server.Addr, name+".service.consul."); n != 1 {
			return fmt.Errorf("%s: %d answers", name, n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a service registered after the rotation is not answered 5 s after it: %v; CoreDNS's log ends:\n%s", err, server.Tail(20))
	}
	var took []time.Duration
	for _, s := range since {
		took = append(took, time.Since(s).Round(time.Millisecond))
	}
	return took
}

// startACLAgent starts an agent with ACLs on, default deny, and root its
// management token; it returns it with a client holding root once the ACL
// system answers.
func startACLAgent(t *testing.T, root string) (*consulagent.Process, *api.Client) {
	t.Helper()
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
	return agent, admin
}

// aclToken creates a token with a policy of its own, named name, of rules.
func aclToken(t *testing.T, admin *api.Client, name, rules string) *api.ACLToken {
	t.Helper()
	policy, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: strings.ReplaceAll(name, " ", "-"), Rules: rules}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: policy.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTokenRotation: with ACLs on (default deny), the plugin's token file is
// replaced by a rename and the old token deleted in Consul, in either
// order; a service registered afterwards is answered within 5 s with no
// reload, every known name keeps its answer meanwhile, and no token reaches
// the log. "wait 1s" makes the blocking queries in flight, which Consul may
// answer with the old token's rights, return soon: what follows is sent
// with whatever token the plugin holds.
func TestTokenRotation(t *testing.T) {
	const root = "7b1f2e43-2222-4333-8444-955566667777"
	agent, admin := startACLAgent(t, root)
	registerRotationServices(t, admin)
	const rules = `service_prefix "" { policy = "read" } node_prefix "" { policy = "read" } agent_prefix "" { policy = "read" }`

	for _, deleteFirst := range []bool{false, true} {
		order := map[bool]string{false: "rename then delete", true: "delete then rename"}[deleteFirst]
		t.Run(order, func(t *testing.T) {
			first, second := aclToken(t, admin, order+" first", rules), aclToken(t, admin, order+" second", rules)
			file := filepath.Join(t.TempDir(), "token")
			renameOver(t, file, []byte(first.SecretID+"\n"))
			server := startPlugin(t, agent.HTTPAddr, "token_file "+file, "wait 1s")
			probe := startProber(t, server.Addr, rotationServices, 1)
			probe.waitAsked()
			probe.check("before the rotation")

			deleteOld := func() time.Time {
				if _, err := admin.ACL().TokenDelete(first.AccessorID, nil); err != nil {
					t.Fatal(err)
				}
				return time.Now()
			}
			var renamed, deleted time.Time
			if deleteFirst {
				deleted = deleteOld()
				// The old token refused before the new one is there.
				server.WaitMetric(t, `coredns_consul_request_errors_total{datacenter="local",kind="denied"}`, 10*time.Second,
					func(v float64) bool { return v > 0 })
			}
			renamed = time.Now()
			renameOver(t, file, []byte(second.SecretID+"\n"))
			if !deleteFirst {
				deleted = deleteOld()
			}
			took := answeredWithin(t, admin, server, "fresh-"+strings.ReplaceAll(order, " ", "-"), renamed, deleted)
			t.Logf("%s: a service registered after the rotation answered %s after the rename, %s after the old token's deletion",
				order, took[0], took[1])
			probe.waitAsked()
			probe.check("during the rotation")

			if v, _ := server.Metric(t, `coredns_consul_credential_reloads_total{file_kind="token",result="ok"}`); v != 1 {
				t.Errorf("credential_reloads_total{token,ok} = %v, want 1", v)
			}
			server.Stop(t)
			out := server.Output()
			for _, secret := range []string{root, first.SecretID, second.SecretID} {
				if strings.Contains(out, secret) {
					t.Errorf("a token's secret is in the log:\n%s", out)
				}
			}
			if !strings.Contains(out, "new token is in use") {
				t.Errorf("the log does not say the token changed:\n%s", out)
			}
		})
	}
}

// TestTLSRotation: the agent restarts with a new CA and server certificate,
// and the plugin's CA file is replaced by a rename: the plugin follows within
// 5 s with no reload, and every known name keeps its answer meanwhile.
func TestTLSRotation(t *testing.T) {
	agent := consulagent.StartProcessWith(t, consulagent.Options{TLS: true})
	client := agent.Client()
	registerRotationServices(t, client)
	caData, err := os.ReadFile(agent.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	renameOver(t, caFile, caData)
	server := startPlugin(t, "https://"+agent.HTTPSAddr, "tls "+caFile)
	probe := startProber(t, server.Addr, rotationServices, 1)
	probe.waitAsked()
	probe.check("before the rotation")

	newCA := replaceAgentCertificates(t, agent)
	agent.Restart()
	restarted := time.Now()
	renameOver(t, caFile, newCA)
	took := answeredWithin(t, client, server, "fresh", restarted)
	t.Logf("a service registered after the rotation answered %s after the new CA file was in place", took[0])
	probe.waitAsked()
	probe.check("during the rotation")
	if v, _ := server.Metric(t, `coredns_consul_credential_reloads_total{file_kind="tls",result="ok"}`); v != 1 {
		t.Errorf("credential_reloads_total{tls,ok} = %v, want 1", v)
	}
}

// replaceAgentCertificates writes a new CA and server certificate, made by
// `consul tls`, over the files agent was started with (it reads them when
// it restarts), and returns the new CA.
func replaceAgentCertificates(t *testing.T, agent *consulagent.Process) []byte {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server", "-dc", "dc1"}} {
		cmd := exec.Command(consulagent.Binary(), args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("consul %v: %v\n%s", args, err, out)
		}
	}
	var ca []byte
	for _, name := range []string{"consul-agent-ca.pem", "dc1-server-consul-0.pem", "dc1-server-consul-0-key.pem"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		renameOver(t, filepath.Join(filepath.Dir(agent.CAFile), name), data)
		if ca == nil {
			ca = data
		}
	}
	return ca
}
