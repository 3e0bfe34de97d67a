package e2e

import (
	"fmt"
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
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// TestBufsizeLimitsUDPReplies: a question advertising 65,000 bytes for a
// service of 300 instances gets, through bufsize 1232, a reply of at most
// 1,232 bytes over UDP with TC set, and the whole answer over TCP. Without
// bufsize the same question is answered with over 4 KB: the amplification
// the shipped Corefiles close.
func TestBufsizeLimitsUDPReplies(t *testing.T) {
	const instances = 300
	agent, client := startAgent(t)
	consulagent.Populate(t, client, 1, instances, instances)
	for _, tc := range []struct {
		name    string
		plugins []string
		limit   int // the most a UDP reply may take; 0 for none
	}{
		{"bufsize 1232", []string{"bufsize 1232"}, 1232},
		{"without bufsize", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := corednsproc.Start(t, corednsproc.Corefile{Plugins: tc.plugins, Consul: []string{"address " + agent.HTTPAddr}}.Build)
			name := "service-0.service.consul."
			wait.Until(t, 30*time.Second, func() error {
				if n := len(dnsq.Query(t, server.Addr, name, dns.TypeA, dnsq.TCP).Answer); n != instances {
					return fmt.Errorf("%d A records over TCP, want %d", n, instances)
				}
				return nil
			})
			for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
				udp := dnsq.Query(t, server.Addr, name, qtype, dnsq.EDNS(65000))
				udp.Compress = true // as it came: what it unpacked from was compressed
				packed, err := udp.Pack()
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s over UDP, EDNS0 65,000: %d bytes, TC %v", dns.TypeToString[qtype], len(packed), udp.Truncated)
				switch {
				case tc.limit > 0 && (len(packed) > tc.limit || !udp.Truncated):
					t.Errorf("%s over UDP: %d bytes, TC %v; want at most %d with TC", dns.TypeToString[qtype], len(packed), udp.Truncated, tc.limit)
				case tc.limit == 0 && len(packed) <= 4096:
					t.Errorf("%s over UDP without bufsize: %d bytes; the test no longer shows the amplification", dns.TypeToString[qtype], len(packed))
				}
				if n := len(dnsq.Query(t, server.Addr, name, qtype, dnsq.TCP, dnsq.EDNS(65000)).Answer); n != instances {
					t.Errorf("%s over TCP: %d records, want all %d", dns.TypeToString[qtype], n, instances)
				}
			}
		})
	}
}

// TestShippedCorefilesUseBufsize: every server block of every Corefile the
// project ships that answers with the consul plugin limits UDP replies with
// bufsize 1232.
func TestShippedCorefilesUseBufsize(t *testing.T) {
	root := filepath.Join("..", "..")
	read := func(parts ...string) string {
		b, err := os.ReadFile(filepath.Join(append([]string{root}, parts...)...))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	files := map[string]string{
		"Corefile.example":                          read("Corefile.example"),
		"deploy/dns-server/Corefile":                read("deploy", "dns-server", "Corefile"),
		"deploy/node-local/Corefile":                read("deploy", "node-local", "Corefile"),
		"deploy/kubernetes/coredns-consul.yaml":     kubernetesCorefile(t),
		"deploy/kubernetes/coredns-stubdomain.yaml": read("deploy", "kubernetes", "coredns-stubdomain.yaml"),
		"scripts/demo.sh":                           read("scripts", "demo.sh"),
		"plugin/consul/README.md":                   read("plugin", "consul", "README.md"),
	}
	block := regexp.MustCompile(`(?m)^\s*consul\.:\S+ \{\n(?:.*\n)*?\s*\}\n\s*(?:\}|$)`)
	for file, text := range files {
		blocks := block.FindAllString(text, -1)
		if len(blocks) == 0 {
			t.Errorf("%s: no consul. server block found", file)
		}
		for _, b := range blocks {
			if !strings.Contains(b, "bufsize 1232") {
				t.Errorf("%s: a consul. server block without bufsize 1232:\n%s", file, b)
			}
		}
	}
}

// TestUnrepresentableValuesKeepGoodInstances: a real agent holds values DNS
// cannot carry (a node name over 63 bytes, an address with an empty label,
// node meta over 255 bytes) beside good instances: the service's answers
// keep the good instances, over UDP and TCP, and the plugin says so once
// rather than at every question.
func TestUnrepresentableValuesKeepGoodInstances(t *testing.T) {
	agent, client := startAgent(t)
	long := strings.Repeat("n", 64)
	for _, r := range []struct {
		node, addr string
		svc        *api.AgentService
	}{
		{"good-a", "127.0.0.11", &api.AgentService{ID: "web-a", Service: "web", Port: 8001}},
		{"good-b", "127.0.0.12", &api.AgentService{ID: "web-b", Service: "web", Port: 8002}},
		{long, "127.0.0.13", &api.AgentService{ID: "web-long", Service: "web", Port: 8003}},
		{"empty-label", "127.0.0.14", &api.AgentService{ID: "web-empty", Service: "web", Port: 8004, Address: "a..example.com"}},
	} {
		consulagent.Register(t, client, r.node, r.addr, r.svc, "passing")
	}
	meta := &api.CatalogRegistration{Node: "good-b", Address: "127.0.0.12", NodeMeta: map[string]string{"big": strings.Repeat("m", 500)}}
	if _, err := client.Catalog().Register(meta, nil); err != nil {
		t.Fatal(err)
	}
	server := corednsproc.Start(t, corednsproc.Corefile{Plugins: []string{"errors"}, Consul: []string{"address " + agent.HTTPAddr}}.Build)
	name := "web.service.consul."
	wantSRV := []string{"good-a.node.dc1.consul.", "good-b.node.dc1.consul."}
	for _, opts := range [][]dnsq.Option{{dnsq.EDNS(4096)}, {dnsq.TCP}} {
		var srv *dns.Msg
		wait.Until(t, 30*time.Second, func() error {
			srv = dnsq.Query(t, server.Addr, name, dns.TypeSRV, opts...)
			var targets []string
			for _, rr := range srv.Answer {
				targets = append(targets, rr.(*dns.SRV).Target)
			}
			if srv.Rcode != dns.RcodeSuccess || strings.Join(slices.Sorted(slices.Values(targets)), " ") != strings.Join(wantSRV, " ") {
				return fmt.Errorf("SRV: %s, targets %v; want %v", dns.RcodeToString[srv.Rcode], targets, wantSRV)
			}
			return nil
		})
		var txt []string
		for _, rr := range srv.Extra {
			if rr, ok := rr.(*dns.TXT); ok {
				txt = append(txt, strings.Join(rr.Txt, ""))
			}
		}
		if want := "big=" + strings.Repeat("m", 500); len(txt) != 1 || txt[0] != want {
			t.Errorf("node meta in SRV extra: %q, want the 504-byte string whole", txt)
		}
		// The long node's instance keeps its A record: only its SRV target
		// cannot be named.
		a := dnsq.Query(t, server.Addr, name, dns.TypeA, opts...)
		if a.Rcode != dns.RcodeSuccess || len(a.Answer) != 3 {
			t.Errorf("A: %s, %v; want the 3 instances with an address", dns.RcodeToString[a.Rcode], a.Answer)
		}
	}
	// For the record: what Consul's own DNS answers for the same catalog.
	for _, qtype := range []uint16{dns.TypeSRV, dns.TypeA} {
		if m, err := dnsq.Ask(agent.DNSAddr, name, qtype, dnsq.TCP); err == nil {
			t.Logf("Consul's DNS, %s over TCP: %s, %d answers: %v", dns.TypeToString[qtype], dns.RcodeToString[m.Rcode], len(m.Answer), m.Answer)
		} else {
			t.Logf("Consul's DNS, %s over TCP: %v", dns.TypeToString[qtype], err)
		}
	}
	if n := strings.Count(server.Output(), "left out of answers"); n == 0 || n > 2 {
		t.Errorf("%d log lines about the records left out, want one per view", n)
	}
	if strings.Contains(server.Output(), "[ERROR]") {
		t.Errorf("an ERROR line:\n%s", server.Output())
	}
}

// TestEscapedDotGoesToNextPlugin: in a root server block, a name whose last
// label only looks like consul.'s (web.service\.consul.: "service.consul"
// is one label) is not the plugin's: whoami answers it, as any name outside
// consul.; a name under consul. with an escaped dot in a label is NXDOMAIN
// from the plugin.
func TestEscapedDotGoesToNextPlugin(t *testing.T) {
	agent, client := startAgent(t)
	consulagent.Register(t, client, "node-a", "127.0.0.11", &api.AgentService{ID: "web-a", Service: "web", Port: 8001}, "passing")
	server := corednsproc.Start(t, corednsproc.Corefile{Zone: ".", ConsulZones: "consul.",
		Consul: []string{"address " + agent.HTTPAddr}, After: []string{"whoami"}}.Build)
	wait.Until(t, 30*time.Second, func() error {
		if m := dnsq.Query(t, server.Addr, "web.service.consul.", dns.TypeA); len(m.Answer) != 1 {
			return fmt.Errorf("web.service.consul.: %v", m.Answer)
		}
		return nil
	})
	for _, tc := range []struct {
		name   string
		rcode  int
		whoami bool
	}{
		{`web.service\.consul.`, dns.RcodeSuccess, true},
		{`we\.b.service.consul.`, dns.RcodeNameError, false},
	} {
		for _, opts := range [][]dnsq.Option{nil, {dnsq.TCP}} {
			m := dnsq.Query(t, server.Addr, tc.name, dns.TypeA, opts...)
			// whoami answers with the client's address in the additional section.
			if m.Rcode != tc.rcode || (len(m.Extra) > 0) != tc.whoami {
				t.Errorf("%s: %s, %d extra; want %s from whoami=%v", tc.name, dns.RcodeToString[m.Rcode], len(m.Extra), dns.RcodeToString[tc.rcode], tc.whoami)
			}
		}
	}
}
