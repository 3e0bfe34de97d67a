package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
	"sigs.k8s.io/yaml"
)

const deployDir = "../../deploy"

// yamlDocs reads the YAML documents of a file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	for _, part := range strings.Split(string(data), "\n---\n") {
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(part), &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, doc)
	}
	return docs
}

// kubernetesCorefile is the Corefile in the ConfigMap of the manifests.
func kubernetesCorefile(t *testing.T) string {
	for _, doc := range yamlDocs(t, filepath.Join(deployDir, "kubernetes", "coredns-consul.yaml")) {
		if doc["kind"] == "ConfigMap" {
			return doc["data"].(map[string]any)["Corefile"].(string)
		}
	}
	t.Fatal("no ConfigMap with a Corefile in coredns-consul.yaml")
	return ""
}

// TestDeployCorefiles runs every Corefile the deployment guides ship with the
// real binary, moved to loopback test ports and a test agent.
func TestDeployCorefiles(t *testing.T) {
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func(path string) string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	corefiles := map[string]string{
		"dns-server": read(filepath.Join(deployDir, "dns-server", "Corefile")),
		"node-local": read(filepath.Join(deployDir, "node-local", "Corefile")),
		"kubernetes": kubernetesCorefile(t),
	}
	for name, corefile := range corefiles {
		t.Run(name, func(t *testing.T) {
			server := corednsproc.Start(t, func(p corednsproc.Ports) string {
				free := func() string { return fmt.Sprintf("127.0.0.1:%d", corednsproc.FreePort(t)) }
				rewrites := []struct{ re, to string }{
					{`(?m)^(\S*):53 \{$`, fmt.Sprintf("$1:%d {\n    bind 127.0.0.1", p.DNS)},
					{`(?m)^\s*bind 169\.254\.20\.10\n`, ""},
					{`ready \S+`, fmt.Sprintf("ready 127.0.0.1:%d", p.Ready)},
					{`health \S+`, "health " + free()},
					{`prometheus \S+`, "prometheus " + free()},
					{`address \S+`, "address " + agent.HTTPAddr},
					{`snapshot \S+`, "snapshot " + filepath.Join(t.TempDir(), "snap")},
					{`token_file \S+`, "token_file " + token},
					{`forward \. /etc/resolv.conf`, "forward . 127.0.0.1:1"},
				}
				for _, rw := range rewrites {
					corefile = regexp.MustCompile(rw.re).ReplaceAllString(corefile, rw.to)
				}
				return corefile
			})
			resp := query(t, "udp", server.Addr, "web.service.consul.", dns.TypeA)
			if len(resp.Answer) != 1 {
				t.Errorf("web: %v", resp)
			}
		})
	}
}

// TestDeployManifests checks the Kubernetes manifests and the alert rules:
// they parse, the probes point at ready and health, and every metric the
// alerts use is one the plugin exports.
func TestDeployManifests(t *testing.T) {
	kinds := map[string]bool{}
	for _, doc := range yamlDocs(t, filepath.Join(deployDir, "kubernetes", "coredns-consul.yaml")) {
		kinds[doc["kind"].(string)] = true
	}
	for _, kind := range []string{"ConfigMap", "Deployment", "Service"} {
		if !kinds[kind] {
			t.Errorf("coredns-consul.yaml has no %s", kind)
		}
	}
	manifest, _ := os.ReadFile(filepath.Join(deployDir, "kubernetes", "coredns-consul.yaml"))
	for _, probe := range []string{"path: /ready, port: 8181", "path: /health, port: 8080"} {
		if !bytes.Contains(manifest, []byte(probe)) {
			t.Errorf("the Deployment has no probe on %s", probe)
		}
	}
	stub := yamlDocs(t, filepath.Join(deployDir, "kubernetes", "coredns-stubdomain.yaml"))[0]
	if cf := stub["data"].(map[string]any)["Corefile"].(string); !strings.Contains(cf, "consul.:53") {
		t.Error("the stub-domain ConfigMap has no consul.:53 block")
	}

	source, err := os.ReadFile("../../plugin/consul/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for _, m := range regexp.MustCompile(`Name: "(\w+)"`).FindAllStringSubmatch(string(source), -1) {
		exported = append(exported, "coredns_consul_"+m[1])
	}
	rules := yamlDocs(t, filepath.Join(deployDir, "prometheus", "alerts.yml"))[0]
	used := 0
	for _, group := range rules["groups"].([]any) {
		for _, rule := range group.(map[string]any)["rules"].([]any) {
			expr := rule.(map[string]any)["expr"].(string)
			for _, metric := range regexp.MustCompile(`coredns_consul_\w+`).FindAllString(expr, -1) {
				used++
				if !slices.Contains(exported, metric) {
					t.Errorf("alert %v uses %s, which the plugin does not export", rule.(map[string]any)["alert"], metric)
				}
			}
		}
	}
	if used == 0 {
		t.Error("no alert uses the plugin's metrics")
	}
}

// TestDeployHAProxyConfig has the real HAProxy check the example configuration.
func TestDeployHAProxyConfig(t *testing.T) {
	out, err := exec.Command("haproxy", "-c", "-f", filepath.Join(deployDir, "haproxy", "haproxy.cfg")).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}
