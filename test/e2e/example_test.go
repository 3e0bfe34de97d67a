package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

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
