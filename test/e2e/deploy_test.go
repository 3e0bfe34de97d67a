package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/freeport"
	"github.com/coredns-consul/coredns-consul/test/haproxyproc"
	"github.com/coredns-consul/coredns-consul/test/wait"

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
	agent, token := deployAgent(t)
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
				return testCorefile(t, corefile, p, agent.HTTPAddr, token)
			})
			if resp := dnsq.Query(t, server.Addr, "web.service.consul.", dns.TypeA); len(resp.Answer) != 1 {
				t.Errorf("web: %v", resp)
			}
		})
	}
}

// deployAgent starts the agent the shipped Corefiles read, with web
// registered, and a token file for every token they name.
func deployAgent(t *testing.T) (*consulagent.Process, string) {
	agent, client := startAgent(t)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return agent, token
}

// testCorefile is a shipped Corefile moved to loopback test ports p, the
// agent at consulAddr and the token file token.
func testCorefile(t *testing.T, corefile string, p corednsproc.Ports, consulAddr, token string) string {
	free := func() string { return fmt.Sprintf("127.0.0.1:%d", corednsproc.FreePort(t)) }
	rewrites := []struct{ re, to string }{
		{`(?m)^(\S*):\d+ \{$`, fmt.Sprintf("$1:%d {\n    bind 127.0.0.1", p.DNS)},
		{`(?m)^\s*bind 169\.254\.20\.10\n`, ""},
		{`ready \S+`, fmt.Sprintf("ready 127.0.0.1:%d", p.Ready)},
		{`health \S+`, "health " + free()},
		{`prometheus \S+`, "prometheus " + free()},
		{`address \S+`, "address " + consulAddr},
		{`snapshot \S+`, "snapshot " + filepath.Join(t.TempDir(), "snap")},
		{`(token_file|tier_token_file|follow_token_file) \S+`, "$1 " + token},
		{`forward \. /etc/resolv.conf`, "forward . 127.0.0.1:1"},
		// TLS between tier and follower is tested in the follower's own
		// tests; here the shipped files' other lines are.
		{`(?m)^\s*(tier_tls|follow_tls) .*\n`, ""},
	}
	for _, rw := range rewrites {
		corefile = regexp.MustCompile(rw.re).ReplaceAllString(corefile, rw.to)
	}
	return corefile
}

// TestDeployTierAndFollower runs the shipped tier and node-local follower
// Corefiles together: the follower answers what the tier replicates.
func TestDeployTierAndFollower(t *testing.T) {
	agent, token := deployAgent(t)
	tierAddr := fmt.Sprintf("127.0.0.1:%d", corednsproc.FreePort(t))
	corednsproc.Start(t, func(p corednsproc.Ports) string {
		cf := testCorefile(t, readDeploy(t, "dns-server", "Corefile.tier"), p, agent.HTTPAddr, token)
		return regexp.MustCompile(`tier_listen \S+`).ReplaceAllString(cf, "tier_listen "+tierAddr)
	})
	follower := corednsproc.Start(t, func(p corednsproc.Ports) string {
		cf := testCorefile(t, readDeploy(t, "node-local", "Corefile.follower"), p, agent.HTTPAddr, token)
		return regexp.MustCompile(`follow \S+ \S+`).ReplaceAllString(cf, "follow "+tierAddr)
	})
	if resp := dnsq.Query(t, follower.Addr, "web.service.consul.", dns.TypeA); len(resp.Answer) != 1 {
		t.Errorf("web from the follower: %v", resp)
	}
}

// TestDeployManifests checks the Kubernetes manifests and the alert rules:
// they parse; the Service, the container, the probes and the Corefile in the
// ConfigMap agree on every port; and every metric the alerts use is one the
// plugin exports.
func TestDeployManifests(t *testing.T) {
	docs := map[string]map[string]any{}
	for _, doc := range yamlDocs(t, filepath.Join(deployDir, "kubernetes", "coredns-consul.yaml")) {
		docs[doc["kind"].(string)] = doc
	}
	for _, kind := range []string{"ConfigMap", "Deployment", "Service"} {
		if docs[kind] == nil {
			t.Fatalf("coredns-consul.yaml has no %s", kind)
		}
	}
	corefile := corefileListeners(t, kubernetesCorefile(t))
	dnsPort := corefile.port(t, "dns")

	pod := dig(t, docs["Deployment"], "spec", "template", "spec").(map[string]any)
	container := dig(t, pod, "containers").([]any)[0].(map[string]any)
	containerPorts := map[string]int{} // name → port
	for _, p := range dig(t, container, "ports").([]any) {
		p := p.(map[string]any)
		containerPorts[p["name"].(string)] = toInt(t, p["containerPort"])
		if p["name"] == "dns" || p["name"] == "dns-tcp" {
			if got := toInt(t, p["containerPort"]); got != dnsPort {
				t.Errorf("container port %v is %d; the Corefile listens on %d", p["name"], got, dnsPort)
			}
		}
	}
	// The pod runs as a non-root UID with every capability dropped: it can
	// bind only ports from 1024 up, whatever the runtime allows.
	if toInt(t, dig(t, pod, "securityContext", "runAsUser")) == 0 || dnsPort < 1024 {
		t.Errorf("the DNS port %d needs root or NET_BIND_SERVICE; the pod runs as %v", dnsPort, dig(t, pod, "securityContext", "runAsUser"))
	}
	if caps := fmt.Sprint(dig(t, container, "securityContext", "capabilities")); strings.Contains(caps, "add") {
		t.Errorf("the container adds capabilities: %s", caps)
	}
	protocols := map[string]bool{}
	for _, p := range dig(t, docs["Service"], "spec", "ports").([]any) {
		p := p.(map[string]any)
		if toInt(t, p["port"]) != 53 {
			continue
		}
		protocols[p["protocol"].(string)] = true
		target := p["targetPort"]
		if name, ok := target.(string); ok {
			port, found := containerPorts[name]
			if !found {
				t.Errorf("the Service's targetPort %q names no container port", name)
			}
			target = port
		} else if target == nil {
			target = 53 // Kubernetes' default: the same as port
		}
		if got := toInt(t, target); got != dnsPort {
			t.Errorf("the Service sends %v port 53 to %d; the Corefile listens on %d", p["protocol"], got, dnsPort)
		}
	}
	if !protocols["UDP"] || !protocols["TCP"] {
		t.Errorf("the Service must offer port 53 over UDP and TCP, has %v", protocols)
	}
	for probe, plugin := range map[string]string{"readinessProbe": "ready", "livenessProbe": "health"} {
		if got := toInt(t, dig(t, container, probe, "httpGet", "port")); got != corefile.port(t, plugin) {
			t.Errorf("%s asks port %d; the Corefile has %s on %d", probe, got, plugin, corefile.port(t, plugin))
		}
	}
	scrape := dig(t, docs["Deployment"], "spec", "template", "metadata", "annotations", "prometheus.io/port").(string)
	if scrape != strconv.Itoa(corefile.port(t, "prometheus")) || containerPorts["metrics"] != corefile.port(t, "prometheus") {
		t.Errorf("metrics: scraped on %s, container port %d, Corefile %d", scrape, containerPorts["metrics"], corefile.port(t, "prometheus"))
	}
	stub := yamlDocs(t, filepath.Join(deployDir, "kubernetes", "coredns-stubdomain.yaml"))[0]
	if cf := stub["data"].(map[string]any)["Corefile"].(string); !strings.Contains(cf, "consul.:53") {
		t.Error("the stub-domain ConfigMap has no consul.:53 block")
	}

	metrics := pluginMetrics(t)
	rules := yamlDocs(t, filepath.Join(deployDir, "prometheus", "alerts.yml"))[0]
	used := 0
	for _, group := range rules["groups"].([]any) {
		for _, rule := range group.(map[string]any)["rules"].([]any) {
			rule := rule.(map[string]any)
			used += metrics.check(t, fmt.Sprintf("alert %v", rule["alert"]), rule["expr"].(string))
		}
	}
	if used == 0 {
		t.Error("no alert uses the plugin's metrics")
	}
}

// dig follows keys through nested YAML or JSON maps.
func dig(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok || m[k] == nil {
			t.Fatalf("no %q in %v", k, v)
		}
		v = m[k]
	}
	return v
}

func toInt(t *testing.T, v any) int {
	t.Helper()
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	case string:
		if i, err := strconv.Atoi(n); err == nil {
			return i
		}
	}
	t.Fatalf("%v (%T) is not a port number", v, v)
	return 0
}

// metricSet is what the plugin exports (from its source: a metric that is
// never observed does not show on /metrics) and the few standard metrics of
// CoreDNS itself that the shipped dashboards and alerts may use, each with
// its label names.
type metricSet map[string][]string

// standardMetrics are CoreDNS's own metrics that deploy/ may use, with their
// labels (plugin/metrics/vars in CoreDNS v1.15.0).
var standardMetrics = metricSet{
	"coredns_dns_responses_total": {"server", "zone", "view", "rcode", "plugin"},
}

// pluginMetrics reads the plugin's metric declarations: prometheus.*Opts
// with Namespace plugin.Namespace and Subsystem pluginName, and their labels.
func pluginMetrics(t *testing.T) metricSet {
	t.Helper()
	files, err := filepath.Glob("../../plugin/consul/*.go")
	if err != nil {
		t.Fatal(err)
	}
	// The tier's and the follower's, in packages of their own.
	more, err := filepath.Glob("../../plugin/consul/*/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, more...)
	// Declared with prometheus's options, or with the plugin's helpers that
	// take the name and the labels: gauge("name", []string{...}, help).
	decl := regexp.MustCompile(`prometheus\.(Counter|Gauge|Histogram|Summary)Opts\{(?s:.*?)Name:\s*"(\w+)"(?s:.*?)\},\s*\[\]string\{([^}]*)\}\)` +
		`|\b(counter|gauge)\("(\w+)", \[\]string\{([^}]*)\}`)
	set := metricSet{}
	for k, v := range standardMetrics {
		set[k] = v
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		source, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range decl.FindAllStringSubmatch(string(source), -1) {
			if m[1] == "" { // a helper's declaration
				m = []string{m[0], strings.ToUpper(m[4][:1]) + m[4][1:], m[5], m[6]}
			}
			name := "coredns_consul_" + m[2]
			var labels []string
			for _, l := range regexp.MustCompile(`"(\w+)"`).FindAllStringSubmatch(m[3], -1) {
				labels = append(labels, l[1])
			}
			set[name] = labels
			switch m[1] {
			case "Histogram":
				set[name+"_bucket"] = append(slices.Clone(labels), "le")
				set[name+"_sum"], set[name+"_count"] = labels, labels
			case "Summary":
				set[name+"_sum"], set[name+"_count"] = labels, labels
			}
		}
	}
	// Without labels: prometheus.NewCounter(prometheus.CounterOpts{...}).
	bare := regexp.MustCompile(`New(Counter|Gauge)\(prometheus\.(?:Counter|Gauge)Opts\{[^{}]*?Name:\s*"(\w+)"[^{}]*\}\)`)
	for _, file := range files {
		source, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range bare.FindAllStringSubmatch(string(source), -1) {
			set["coredns_consul_"+m[2]] = nil
		}
	}
	if len(set) == len(standardMetrics) {
		t.Fatal("found no metric declarations in plugin/consul")
	}
	return set
}

// check reports every metric in a PromQL expression that nothing exports,
// and every label matcher on a label the metric does not have (Prometheus
// adds instance and job). It returns how many metrics the expression uses.
func (set metricSet) check(t *testing.T, where, expr string) int {
	t.Helper()
	used := 0
	for _, m := range regexp.MustCompile(`\b((?:coredns|process|go)_\w+)(\{[^}]*\})?`).FindAllStringSubmatch(expr, -1) {
		used++
		labels, ok := set[m[1]]
		if !ok {
			t.Errorf("%s uses %s, which the plugin does not export", where, m[1])
			continue
		}
		for _, l := range regexp.MustCompile(`(\w+)\s*(?:=~|!~|!=|=)`).FindAllStringSubmatch(m[2], -1) {
			if l[1] != "instance" && l[1] != "job" && !slices.Contains(labels, l[1]) {
				t.Errorf("%s selects %s by %s; its labels are %v", where, m[1], l[1], labels)
			}
		}
	}
	return used
}

// TestDeployHAProxyConfig has the real HAProxy check the example configuration.
func TestDeployHAProxyConfig(t *testing.T) {
	out, err := exec.Command("haproxy", "-c", "-f", filepath.Join(deployDir, "haproxy", "haproxy.cfg")).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// listener is a port that a shipped file makes a server listen on.
type listener struct {
	port  int
	owner string // what listens: "coredns health", "haproxy frontend web"
	addr  string // as the file writes it, host part empty for all addresses
}

type listeners []listener

// port is the port of the CoreDNS plugin (or "dns") named.
func (ls listeners) port(t *testing.T, plugin string) int {
	t.Helper()
	for _, l := range ls {
		if l.owner == "coredns "+plugin {
			return l.port
		}
	}
	t.Fatalf("no %s listener in %v", plugin, ls)
	return 0
}

// corefileDefaults are the addresses of CoreDNS's HTTP plugins given no
// address: a Corefile that leaves one out still takes its port.
var corefileDefaults = map[string]string{"health": ":8080", "ready": ":8181", "prometheus": "localhost:9153"}

// corefileListeners reads the ports a Corefile listens on: its server
// blocks' (53 when a key has none) and those of health, ready and prometheus.
func corefileListeners(t *testing.T, corefile string) listeners {
	t.Helper()
	var ls listeners
	add := func(owner, addr string) {
		i := strings.LastIndex(addr, ":")
		port, err := strconv.Atoi(addr[i+1:])
		if i < 0 || err != nil {
			t.Fatalf("%s: no port in %q", owner, addr)
		}
		ls = append(ls, listener{port: port, owner: owner, addr: addr})
	}
	for _, m := range regexp.MustCompile(`(?m)^([^\s#{}][^{#\n]*?)[ \t]*\{[ \t]*$`).FindAllStringSubmatch(corefile, -1) {
		for _, key := range strings.Fields(m[1]) {
			if i := strings.Index(key, "://"); i >= 0 {
				key = key[i+3:]
			}
			if !strings.Contains(key, ":") {
				key += ":53"
			}
			add("coredns dns", key)
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+(health|ready|prometheus)\b[ \t]*([^\s{#]*)`).FindAllStringSubmatch(corefile, -1) {
		addr := m[2]
		if addr == "" {
			addr = corefileDefaults[m[1]]
		}
		add("coredns "+m[1], addr)
	}
	return ls
}

// haproxyListeners reads the bind lines of an HAProxy configuration.
func haproxyListeners(t *testing.T, cfg string) listeners {
	t.Helper()
	var ls listeners
	section := ""
	for _, line := range strings.Split(cfg, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			section = strings.Join(fields, " ")
			continue
		}
		if fields[0] == "bind" && len(fields) > 1 {
			addr := fields[1]
			port, err := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
			if err != nil {
				t.Fatalf("haproxy %s: no port in bind %q", section, addr)
			}
			ls = append(ls, listener{port: port, owner: "haproxy " + section, addr: addr})
		}
	}
	return ls
}

// consulAgentPorts are the ports a Consul agent with default settings listens
// on: every node of the node-local and DNS-server set-ups runs one.
var consulAgentPorts = listeners{
	{8300, "consul server RPC", ":8300"}, {8301, "consul serf LAN", ":8301"}, {8302, "consul serf WAN", ":8302"},
	{8500, "consul HTTP", "127.0.0.1:8500"}, {8501, "consul HTTPS", "127.0.0.1:8501"},
	{8502, "consul gRPC", "127.0.0.1:8502"}, {8503, "consul gRPC TLS", "127.0.0.1:8503"},
	{8600, "consul DNS", "127.0.0.1:8600"},
}

// clashes reports every port that two different servers on one host listen
// on. Both would bind without an error (CoreDNS and HAProxy set
// SO_REUSEPORT, and a specific address beats the wildcard), and requests
// would reach one of them silently.
func clashes(host string, ls listeners) []string {
	owners := map[int][]string{}
	for _, l := range ls {
		if !slices.Contains(owners[l.port], l.owner) {
			owners[l.port] = append(owners[l.port], l.owner)
		}
	}
	var out []string
	for port, o := range owners {
		if len(o) > 1 {
			out = append(out, fmt.Sprintf("%s: port %d is taken by %s", host, port, strings.Join(o, " and ")))
		}
	}
	slices.Sort(out)
	return out
}

func readDeploy(t *testing.T, path ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(append([]string{deployDir}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestDeployPortsDoNotClash checks the port plan of every host the guides
// describe: the node-local CoreDNS, HAProxy and the Consul agent on one node;
// a DNS server with its agent (and HAProxy, should someone add it there).
func TestDeployPortsDoNotClash(t *testing.T) {
	haproxy := haproxyListeners(t, readDeploy(t, "haproxy", "haproxy.cfg"))
	if len(haproxy) < 2 {
		t.Fatalf("haproxy.cfg binds %v; want the web and stats frontends", haproxy)
	}
	hosts := map[string]listeners{
		"node-local": corefileListeners(t, readDeploy(t, "node-local", "Corefile")),
		"dns-server": corefileListeners(t, readDeploy(t, "dns-server", "Corefile")),
	}
	for host, coredns := range hosts {
		all := slices.Concat(coredns, haproxy, consulAgentPorts)
		for _, c := range clashes(host, all) {
			t.Error(c)
		}
	}
	// The check itself must see a clash: CoreDNS's default health port
	// beside HAProxy's web frontend.
	if len(clashes("self-test", slices.Concat(corefileListeners(t, "consul.:53 {\n    health\n}\n"), haproxy))) == 0 {
		t.Error("a health plugin on its default port :8080 beside haproxy.cfg was not found to clash")
	}
}

// TestDeployNodeLocal runs the node-local files together, as on one node: the
// node-local Corefile and haproxy.cfg, each shipped port moved to its own
// free loopback port (one test port per shipped port, so that a clash in the
// files is a clash here too), with a real agent and a real HTTP backend.
// Each listener must answer as what it is, and HAProxy must reach the
// backend through the node-local CoreDNS.
func TestDeployNodeLocal(t *testing.T) {
	corefile := readDeploy(t, "node-local", "Corefile")
	haproxyCfg := readDeploy(t, "haproxy", "haproxy.cfg")
	coredns := corefileListeners(t, corefile)
	haproxy := haproxyListeners(t, haproxyCfg)

	agent, client := startAgent(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "backend web-1")
	}))
	t.Cleanup(backend.Close)
	consulagent.Register(t, client, "n1", "127.0.0.1", &api.AgentService{
		ID: "web-1", Service: "web", Port: backend.Listener.Addr().(*net.TCPAddr).Port,
	}, api.HealthPassing)

	testPorts := map[int]int{} // shipped port → test port
	moved := func(port string) string {
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatalf("port %q", port)
		}
		if testPorts[p] == 0 {
			testPorts[p] = freeport.Port(t)
		}
		return strconv.Itoa(testPorts[p])
	}
	rewrite := func(s, re string, to func(m []string) string) string {
		return regexp.MustCompile(re).ReplaceAllStringFunc(s, func(match string) string {
			return to(regexp.MustCompile(re).FindStringSubmatch(match))
		})
	}

	// HAProxy must ask the node-local CoreDNS where it listens.
	dnsBind := regexp.MustCompile(`(?m)^\s*bind (\S+)`).FindStringSubmatch(corefile)
	nameserver := regexp.MustCompile(`(?m)^\s*nameserver \S+ (\S+)`).FindStringSubmatch(haproxyCfg)
	if dnsBind == nil || nameserver == nil || nameserver[1] != net.JoinHostPort(dnsBind[1], strconv.Itoa(coredns.port(t, "dns"))) {
		t.Fatalf("haproxy.cfg's nameserver %v is not the node-local CoreDNS (bind %v, port %d)", nameserver, dnsBind, coredns.port(t, "dns"))
	}

	corefile = rewrite(corefile, `(?m)^(\S*):(\d+) \{$`, func(m []string) string { return m[1] + ":" + moved(m[2]) + " {" })
	corefile = rewrite(corefile, `(?m)^([ \t]*)bind \S+$`, func(m []string) string { return m[1] + "bind 127.0.0.1" })
	corefile = rewrite(corefile, `(health|ready|prometheus) \S*:(\d+)`, func(m []string) string { return m[1] + " 127.0.0.1:" + moved(m[2]) })
	corefile = rewrite(corefile, `address \S+`, func([]string) string { return "address " + agent.HTTPAddr })
	corefile = rewrite(corefile, `snapshot \S+`, func([]string) string { return "snapshot " + filepath.Join(t.TempDir(), "snap") })
	haproxyCfg = rewrite(haproxyCfg, `(?m)^([ \t]*)bind \S*:(\d+)`, func(m []string) string { return m[1] + "bind 127.0.0.1:" + moved(m[2]) })
	haproxyCfg = rewrite(haproxyCfg, `(?m)^([ \t]*nameserver \S+) \S+:(\d+)`, func(m []string) string { return m[1] + " 127.0.0.1:" + moved(m[2]) })
	// HAProxy refuses to start when it cannot raise its file limit to about
	// twice maxconn, which root can on a host and a test process may not.
	haproxyCfg = rewrite(haproxyCfg, `(?m)^([ \t]*maxconn) \d+`, func(m []string) string { return m[1] + " 1000" })
	test := func(port int) string { return "127.0.0.1:" + strconv.Itoa(testPorts[port]) }

	ports := corednsproc.Ports{DNS: testPorts[coredns.port(t, "dns")], Ready: testPorts[coredns.port(t, "ready")], Metrics: testPorts[coredns.port(t, "prometheus")]}
	server := corednsproc.StartOn(t, ports, func(corednsproc.Ports) string { return corefile })
	haproxyproc.StartConfig(t, haproxyCfg, test(haproxy[0].port))

	get := func(addr, path string) (int, string) {
		t.Helper()
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", addr, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	expect := func(what string, port int, path string, ok func(string) bool) {
		t.Helper()
		code, body := get(test(port), path)
		if code != http.StatusOK || !ok(body) {
			t.Errorf("%s (shipped port %d) GET %s: %d %.200q", what, port, path, code, body)
		}
	}
	is := func(want string) func(string) bool { return func(b string) bool { return b == want } }
	has := func(want string) func(string) bool { return func(b string) bool { return strings.Contains(b, want) } }
	expect("CoreDNS health", coredns.port(t, "health"), "/health", is("OK"))
	expect("CoreDNS ready", coredns.port(t, "ready"), "/ready", is("OK"))
	expect("CoreDNS metrics", coredns.port(t, "prometheus"), "/metrics", has("coredns_consul_services"))
	if resp := dnsq.Query(t, server.Addr, "web.service.consul.", dns.TypeA); len(resp.Answer) != 1 {
		t.Errorf("node-local CoreDNS: web.service.consul. A: %v", resp)
	}

	for _, l := range haproxy {
		switch l.owner {
		case "haproxy frontend stats":
			expect("HAProxy stats", l.port, "/stats;csv", has("# pxname,svname"))
			expect("HAProxy metrics", l.port, "/metrics", has("haproxy_process_"))
		case "haproxy frontend web":
			// The backend is found through the SRV records of the
			// node-local CoreDNS: HAProxy resolves every second.
			if err := wait.For(20*time.Second, func() error {
				if code, body := get(test(l.port), "/"); code != http.StatusOK || body != "backend web-1" {
					return fmt.Errorf("%d %.200q", code, body)
				}
				return nil
			}); err != nil {
				t.Errorf("HAProxy web (shipped port %d): %v", l.port, err)
			}
		default:
			t.Errorf("haproxy.cfg binds %s for %s, which this test does not know", l.addr, l.owner)
		}
	}
}

// TestDeployImageVersion checks that the Dockerfile stamps the version as
// `make build` does: the same -ldflags, the version from a build argument.
func TestDeployImageVersion(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LDFLAGS\s*:?=\s*((?:.*\\\n)*.*)$`).FindSubmatch(makefile)
	d := regexp.MustCompile(`-ldflags "([^"]*)"`).FindSubmatch(dockerfile)
	if m == nil || d == nil {
		t.Fatalf("no LDFLAGS in the Makefile (%q) or no -ldflags in the Dockerfile (%q)", m, d)
	}
	fromMake := strings.Fields(strings.ReplaceAll(strings.ReplaceAll(string(m[1]), "\\\n", " "), "$(VERSION)", "VERSION"))
	fromDocker := strings.Fields(strings.ReplaceAll(string(d[1]), "${VERSION}", "VERSION"))
	if !slices.Equal(fromMake, fromDocker) {
		t.Errorf("Dockerfile -ldflags %q, Makefile LDFLAGS %q", fromDocker, fromMake)
	}
	if !regexp.MustCompile(`(?m)^ARG VERSION\b`).Match(dockerfile) {
		t.Error("the Dockerfile takes no VERSION build argument")
	}
}

// TestDeployBinaryVersion runs the binary under test with -version: it names
// the plugin and its version beside CoreDNS's, and the version matches the
// one the build put in CoreDNS's commit field.
func TestDeployBinaryVersion(t *testing.T) {
	out := []byte(corednsproc.Run(t, corednsproc.Binary(t), nil, "-version"))
	plugin := regexp.MustCompile(`(?m)^consul plugin \(coredns-consul\) (\S+)$`).FindSubmatch(out)
	if plugin == nil || !regexp.MustCompile(`(?m)^CoreDNS-\d+\.\d+\.\d+$`).Match(out) {
		t.Fatalf("coredns -version printed %q; want the plugin's line and CoreDNS's", out)
	}
	// make build stamps both; a plain go build (no COREDNS_BIN) stamps
	// neither, and the plugin says "dev".
	commit := regexp.MustCompile(`(?m), coredns-consul-(\S+)$`).FindSubmatch(out)
	switch {
	case string(plugin[1]) == "dev" && commit == nil:
	case commit == nil:
		t.Errorf("plugin version %s, but CoreDNS's commit field is not stamped with it:\n%s", plugin[1], out)
	case string(commit[1]) != string(plugin[1]):
		t.Errorf("plugin version %s, but CoreDNS's commit field says coredns-consul-%s", plugin[1], commit[1])
	}
	t.Logf("%s", out)
}
