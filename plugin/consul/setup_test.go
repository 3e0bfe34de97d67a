package consul

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
)

func TestParse(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "")
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	tests := []struct {
		name      string
		keys      []string // server block keys
		input     string
		zones     []string
		address   string
		token     string
		tokenFile string
		dc        string
		wait      time.Duration
		ttl       uint32
	}{
		{name: "defaults", keys: []string{"consul.:53"}, input: "consul",
			zones: []string{"consul."}, address: "localhost:8500", wait: 5 * time.Minute},
		{name: "root server block serves consul.", keys: []string{".:53"}, input: "consul",
			zones: []string{"consul."}, address: "localhost:8500", wait: 5 * time.Minute},
		{name: "zones as arguments", keys: []string{".:53"}, input: "consul consul. alt.example",
			zones: []string{"consul.", "alt.example."}, address: "localhost:8500", wait: 5 * time.Minute},
		{name: "every property", keys: []string{"consul.:53"}, input: `consul {
			address 10.0.0.1:8500 https://10.0.0.2:8501
			token s3cret
			token_file /etc/consul/token
			datacenter east
			wait 30s
			service_ttl * 5s
		}`,
			zones: []string{"consul."}, address: "10.0.0.1:8500 https://10.0.0.2:8501", token: "s3cret", tokenFile: "/etc/consul/token",
			dc: "east", wait: 30 * time.Second, ttl: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.input)
			c.ServerBlockKeys = tc.keys
			cfg, err := parse(c)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !slices.Equal(cfg.zones, tc.zones) {
				t.Errorf("zones = %v, want %v", cfg.zones, tc.zones)
			}
			if got := strings.Join(cfg.replica.Addresses, " "); got != tc.address {
				t.Errorf("addresses = %q, want %q", got, tc.address)
			}
			if cfg.client.Token != tc.token || cfg.client.TokenFile != tc.tokenFile {
				t.Errorf("token = %q/%q, want %q/%q", cfg.client.Token, cfg.client.TokenFile, tc.token, tc.tokenFile)
			}
			if cfg.replica.Datacenter != tc.dc || cfg.client.Datacenter != tc.dc {
				t.Errorf("datacenter = %q, want %q", cfg.replica.Datacenter, tc.dc)
			}
			if cfg.replica.Wait != tc.wait {
				t.Errorf("wait = %s, want %s", cfg.replica.Wait, tc.wait)
			}
			if got := cfg.answer.TTL.Service("web"); got != tc.ttl {
				t.Errorf("service ttl = %d, want %d", got, tc.ttl)
			}
		})
	}
}

func TestParseReplicaOptions(t *testing.T) {
	c := caddy.NewTestController("dns", `consul {
		namespace team-a
		partition part-1
		consistency consistent
		tls /etc/consul/ca.pem /etc/consul/cert.pem /etc/consul/key.pem
		tls_server_name consul.internal
		max_watchers 50
	}`)
	c.ServerBlockKeys = []string{"consul.:53"}
	cfg, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	r, tls := cfg.replica, cfg.client.TLSConfig
	if r.Namespace != "team-a" || r.Partition != "part-1" || r.Consistency != replica.Consistent || r.MaxWatchers != 50 {
		t.Errorf("replica config = %+v", r)
	}
	if tls.CAFile != "/etc/consul/ca.pem" || tls.CertFile != "/etc/consul/cert.pem" || tls.KeyFile != "/etc/consul/key.pem" || tls.Address != "consul.internal" {
		t.Errorf("tls config = %+v", tls)
	}
	if tls.InsecureSkipVerify {
		t.Error("TLS verification must stay on")
	}
}

func TestParseEnvironment(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "10.9.9.9:8500")
	t.Setenv("CONSUL_HTTP_TOKEN", "from-env")
	c := caddy.NewTestController("dns", "consul")
	c.ServerBlockKeys = []string{"consul.:53"}
	cfg, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.replica.Addresses[0] != "10.9.9.9:8500" || cfg.client.Token != "from-env" {
		t.Errorf("address, token = %q, %q; want the CONSUL_HTTP_* values", cfg.replica.Addresses, cfg.client.Token)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{"unknown property", "consul {\n  adress 1.2.3.4\n}", `Testfile:2 - Error during parsing: unknown property "adress"`},
		{"missing address", "consul {\n  address\n}", "Testfile:2 - Error during parsing: address takes one or more addresses"},
		{"missing token", "consul {\n  token\n}", "Testfile:2 - Error during parsing: token takes exactly one argument"},
		{"bad consistency", "consul {\n  consistency eventual\n}", `Testfile:2 - Error during parsing: consistency "eventual" is not stale, default or consistent`},
		{"bad tls", "consul {\n  tls ca.pem cert.pem\n}", "Testfile:2 - Error during parsing: tls takes CA, or CA CERT KEY"},
		{"bad max_watchers", "consul {\n  max_watchers lots\n}", `Testfile:2 - Error during parsing: max_watchers: "lots" is not a number of watchers`},
		{"two arguments", "consul {\n  datacenter a b\n}", "Testfile:2 - Error during parsing: datacenter takes exactly one argument"},
		{"bad wait", "consul {\n  wait soon\n}", `Testfile:2 - Error during parsing: wait: "soon" is not a positive duration`},
		{"negative wait", "consul {\n  wait -1s\n}", `wait: "-1s" is not a positive duration`},
		{"bad service_ttl", "consul {\n  service_ttl web -5\n}", `Testfile:2 - Error during parsing: service_ttl: "-5" is not a duration`},
		{"bad service_ttl pattern", "consul {\n  service_ttl w*b 5s\n}", `Testfile:2 - Error during parsing: service TTL pattern "w*b": only a trailing * is allowed`},
		{"service_ttl without duration", "consul {\n  service_ttl web\n}", "Testfile:2 - Error during parsing: service_ttl takes a service name, PREFIX* or *, and a duration"},
		{"bad node_meta_txt", "consul {\n  node_meta_txt maybe\n}", `Testfile:2 - Error during parsing: node_meta_txt: "maybe" is not on or off`},
		{"only_passing with argument", "consul {\n  only_passing yes\n}", "Testfile:2 - Error during parsing: only_passing takes no arguments"},
		{"twice in one block", "consul\nconsul", "can only be used once per Server Block"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.input)
			c.ServerBlockKeys = []string{"consul.:53"}
			_, err := parse(c)
			if err == nil {
				t.Fatalf("parse(%q) succeeded, want an error", tc.input)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSetup(t *testing.T) {
	c := caddy.NewTestController("dns", "consul {\n address 127.0.0.1:1\n}")
	c.ServerBlockKeys = []string{"consul.:53"}
	if err := setup(c); err != nil {
		t.Fatalf("setup: %v", err)
	}
	c = caddy.NewTestController("dns", "consul {\n bogus\n}")
	if err := setup(c); err == nil || !strings.Contains(err.Error(), "plugin/consul") {
		t.Fatalf("setup error = %v, want one naming the plugin", err)
	}
}

// TestSetupReloadKeepsSnapshot checks that a reloaded block answers from the
// snapshot its predecessor held, not SERVFAIL while it syncs again.
func TestSetupReloadKeepsSnapshot(t *testing.T) {
	handler := func() *Consul {
		c := caddy.NewTestController("dns", "consul {\n address 127.0.0.1:1\n datacenter reload-test\n}")
		c.ServerBlockKeys = []string{"consul.:53"}
		if err := setup(c); err != nil {
			t.Fatalf("setup: %v", err)
		}
		plugins := dnsserver.GetConfig(c).Plugin
		return plugins[len(plugins)-1](nil).(*Consul)
	}
	first := handler()
	if first.Ready() {
		t.Fatal("a fresh block is ready before any sync")
	}
	first.publish(testSnapshot())
	second := handler()
	if !second.Ready() || second.snap.Load() != first.snap.Load() {
		t.Fatal("the reloaded block does not start from its predecessor's snapshot")
	}
}

func TestParseAnswerOptions(t *testing.T) {
	c := caddy.NewTestController("dns", `consul {
		service_ttl * 5s
		service_ttl web 30
		service_ttl db-* 20s
		service_ttl db-prim* 25s
		node_ttl 1m
		soa_min_ttl 10s
		only_passing
		a_record_limit 4
		node_meta_txt off
		fallthrough example.org
	}`)
	c.ServerBlockKeys = []string{"consul.:53"}
	cfg, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.answer
	for service, want := range map[string]uint32{"web": 30, "db-primary": 25, "db-secondary": 20, "other": 5} {
		if got := a.TTL.Service(service); got != want {
			t.Errorf("TTL of %s = %d, want %d (Consul's exact, longest prefix, * rules)", service, got, want)
		}
	}
	if a.TTL.Node != 60 || a.SOAMinTTL != 10 || !a.OnlyPassing || a.ARecordLimit != 4 || a.NodeMetaTXT {
		t.Errorf("answer options = %+v", a)
	}
	if !cfg.fall.Through("x.example.org.") || cfg.fall.Through("x.consul.") {
		t.Errorf("fallthrough zones = %v", cfg.fall)
	}
}
