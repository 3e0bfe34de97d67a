package consul

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"

	"github.com/coredns/caddy"
)

func TestParse(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "")
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	tokenFile := writeFile(t, "token", "s3cret-from-file\n")
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
			token_file ` + tokenFile + `
			datacenter east
			wait 30s
			service_ttl * 5s
		}`,
			zones: []string{"consul."}, address: "10.0.0.1:8500 https://10.0.0.2:8501", token: "s3cret", tokenFile: tokenFile,
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
	ca, cert, key := testCertificate(t)
	c := caddy.NewTestController("dns", `consul {
		namespace team-a
		partition part-1
		consistency consistent
		tls `+ca+` `+cert+` `+key+`
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
	if tls.CAFile != ca || tls.CertFile != cert || tls.KeyFile != key || tls.Address != "consul.internal" {
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
		{"bad max_watchers", "consul {\n  max_watchers lots\n}", `Testfile:2 - Error during parsing: max_watchers: "lots" is not a number from 0 to 100000`},
		{"negative max_watchers", "consul {\n  max_watchers -1\n}", `Testfile:2 - Error during parsing: max_watchers: "-1" is not a number from 0 to 100000`},
		{"max_watchers past the limit", "consul {\n  max_watchers 100001\n}", `Testfile:2 - Error during parsing: max_watchers: "100001" is not a number from 0 to 100000`},
		{"bad a_record_limit", "consul {\n  a_record_limit 70000\n}", `Testfile:2 - Error during parsing: a_record_limit: "70000" is not a number from 0 to 65536`},
		{"unknown address scheme", "consul {\n  address ftp://10.0.0.1:8500\n}", `Testfile:2 - Error during parsing: address "ftp://10.0.0.1:8500": the scheme is not http, https or unix`},
		{"two arguments", "consul {\n  datacenter a b\n}", "Testfile:2 - Error during parsing: datacenter takes exactly one argument"},
		{"bad wait", "consul {\n  wait soon\n}", `Testfile:2 - Error during parsing: wait: "soon" is not a positive duration`},
		{"negative wait", "consul {\n  wait -1s\n}", `wait: "-1s" is not a positive duration`},
		{"bad service_ttl", "consul {\n  service_ttl web -5\n}", `Testfile:2 - Error during parsing: service_ttl: "-5" is not a duration`},
		{"bad service_ttl pattern", "consul {\n  service_ttl w*b 5s\n}", `Testfile:2 - Error during parsing: service TTL pattern "w*b": only a trailing * is allowed`},
		{"service_ttl without duration", "consul {\n  service_ttl web\n}", "Testfile:2 - Error during parsing: service_ttl takes a service name, PREFIX* or *, and a duration"},
		{"bad node_meta_txt", "consul {\n  node_meta_txt maybe\n}", `Testfile:2 - Error during parsing: node_meta_txt: "maybe" is not on or off`},
		{"only_passing with argument", "consul {\n  only_passing yes\n}", "Testfile:2 - Error during parsing: only_passing takes no arguments"},
		{"twice in one block", "consul\nconsul", "can only be used once per Server Block"},
		{"empty datacenters", "consul {\n  datacenters\n}", "Testfile:2 - Error during parsing: datacenters takes one or more datacenter names, or *"},
		{"* among names", "consul {\n  datacenters dc2 *\n}", "Testfile:2 - Error during parsing: datacenters: * stands for every datacenter and takes no names besides"},
		{"datacenters twice", "consul {\n  datacenters dc2\n  datacenters dc3\n}", "Testfile:3 - Error during parsing: datacenters is given twice"},
		{"datacenter not a label", "consul {\n  datacenters dc2.east\n}", `Testfile:2 - Error during parsing: datacenters: "dc2.east" is not a datacenter name (a DNS label)`},
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

// TestSetup checks that setup builds a block without reaching Consul, and
// that its errors name the plugin.
func TestSetup(t *testing.T) {
	for input, wantErr := range map[string]string{
		"consul {\n address 127.0.0.1:1\n}": "",
		"consul {\n bogus\n}":               "plugin/consul: Testfile:2",
	} {
		c := caddy.NewTestController("dns", input)
		c.ServerBlockKeys = []string{"consul.:53"}
		err := setup(c)
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), wantErr)) {
			t.Errorf("setup(%q) = %v, want an error starting %q", input, err, wantErr)
		}
	}
}

// TestParseDatacenters checks the names datacenters takes, and the share of
// the watcher budget each replica is sized for.
func TestParseDatacenters(t *testing.T) {
	tests := []struct {
		input string
		every bool
		share int
		want  []string
	}{
		{"consul", false, 1, nil},
		{"consul {\n datacenters DC2 dc3 dc2\n}", false, 3, []string{"dc2", "dc3"}},
		{"consul {\n datacenters *\n}", true, everyShare, nil},
	}
	for _, tc := range tests {
		c := caddy.NewTestController("dns", tc.input)
		c.ServerBlockKeys = []string{"consul.:53"}
		cfg, err := parse(c)
		if err != nil {
			t.Fatalf("parse(%q): %v", tc.input, err)
		}
		if !slices.Equal(cfg.datacenters, tc.want) || cfg.everyDatacenter != tc.every || cfg.share() != tc.share {
			t.Errorf("parse(%q): datacenters %q, every %v, share %d; want %q, %v, %d", tc.input,
				cfg.datacenters, cfg.everyDatacenter, cfg.share(), tc.want, tc.every, tc.share)
		}
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

// TestParseMaxWatchers checks the values max_watchers accepts, 0 included:
// 0 is "no per-service watchers", not "the default".
func TestParseMaxWatchers(t *testing.T) {
	tests := []struct {
		name, input string
		want        int
	}{
		{"not set: chosen by the addresses' scheme", "consul", replica.AutoWatchers},
		{"zero: detectors and sweeps only", "consul {\n max_watchers 0\n}", 0},
		{"the largest", "consul {\n max_watchers 100000\n}", 100000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.input)
			c.ServerBlockKeys = []string{"consul.:53"}
			cfg, err := parse(c)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.replica.MaxWatchers != tc.want {
				t.Errorf("max watchers = %d, want %d", cfg.replica.MaxWatchers, tc.want)
			}
		})
	}
}

// TestParseFileErrors checks that a file the Consul client would fail to
// read is reported at the line that names it, not at the block's end.
// TestParseTLSKeepsEnvironmentCertificate: a Corefile that names only the CA
// keeps the client certificate given in Consul's environment variables.
func TestParseTLSKeepsEnvironmentCertificate(t *testing.T) {
	ca, cert, key := testCertificate(t)
	t.Setenv("CONSUL_CLIENT_CERT", cert)
	t.Setenv("CONSUL_CLIENT_KEY", key)
	c := caddy.NewTestController("dns", "consul {\n address https://127.0.0.1:8501\n tls "+ca+"\n datacenter east\n}")
	c.ServerBlockKeys = []string{"consul.:53"}
	cfg, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.client.TLSConfig; got.CAFile != ca || got.CertFile != cert || got.KeyFile != key {
		t.Errorf("TLS files %q %q %q, want the Corefile's CA and the environment's %q %q", got.CAFile, got.CertFile, got.KeyFile, cert, key)
	}
}

func TestParseFileErrors(t *testing.T) {
	ca, cert, key := testCertificate(t)
	notPEM := writeFile(t, "not-pem", "hello\n")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	huge := writeFile(t, "huge", "")
	if err := os.Truncate(huge, 2<<20); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, option, want string
	}{
		{"huge CA", "tls " + huge, fmt.Sprintf(`Testfile:3 - Error during parsing: tls: CA file %q: 2097152 bytes, more than`, huge)},
		{"huge token file", "token_file " + huge, fmt.Sprintf(`Testfile:3 - Error during parsing: token_file %q: 2097152 bytes, more than`, huge)},
		{"missing CA", "tls " + missing, fmt.Sprintf(`Testfile:3 - Error during parsing: tls: CA file %q: no such file or directory`, missing)},
		{"CA is a directory", "tls " + dir, fmt.Sprintf(`Testfile:3 - Error during parsing: tls: CA file %q: not a regular file`, dir)},
		{"missing certificate", "tls " + ca + " " + missing + " " + key, fmt.Sprintf(`Testfile:3 - Error during parsing: tls: certificate file %q: no such file or directory`, missing)},
		{"missing key", "tls " + ca + " " + cert + " " + missing, fmt.Sprintf(`Testfile:3 - Error during parsing: tls: key file %q: no such file or directory`, missing)},
		{"CA not PEM", "tls " + notPEM, "Testfile:3 - Error during parsing: tls: "},
		{"key not matching", "tls " + ca + " " + cert + " " + notPEM, "Testfile:3 - Error during parsing: tls: "},
		{"missing token file", "token_file " + missing, fmt.Sprintf(`Testfile:3 - Error during parsing: token_file %q: no such file or directory`, missing)},
		{"token file is a directory", "token_file " + dir, fmt.Sprintf(`Testfile:3 - Error during parsing: token_file %q: not a regular file`, dir)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", "consul {\n address https://127.0.0.1:8501\n "+tc.option+"\n datacenter east\n}")
			c.ServerBlockKeys = []string{"consul.:53"}
			_, err := parse(c)
			if err == nil {
				t.Fatalf("parse succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to start with %q", err, tc.want)
			}
		})
	}
}

func TestSetupSnapshotDir(t *testing.T) {
	tmp := t.TempDir()
	aFile := writeFile(t, "a-file", "")
	existing := filepath.Join(tmp, "existing")
	if err := os.Mkdir(existing, 0o750); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		wantErr    string      // "" for success
		wantMode   os.FileMode // the directory's
	}{
		{"missing parents are created", filepath.Join(tmp, "a", "b", "consul.snapshot"), "", 0o700},
		{"an existing directory keeps its mode", filepath.Join(existing, "consul.snapshot"), "", 0o750},
		{"under a regular file", filepath.Join(aFile, "sub", "consul.snapshot"),
			fmt.Sprintf(`plugin/consul: Testfile:4 - snapshot: creating the directory %q: mkdir %s: not a directory`, filepath.Join(aFile, "sub"), aFile), 0},
		{"the path is a directory", tmp, fmt.Sprintf(`plugin/consul: Testfile:4 - snapshot: %q is a directory, not a file`, tmp), 0},
		{"the path ends in a separator", filepath.Join(tmp, "new") + "/", fmt.Sprintf(`plugin/consul: Testfile:4 - snapshot: %q names a directory, not a file`, filepath.Join(tmp, "new")+"/"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", "consul {\n address 127.0.0.1:1\n datacenter snapdir\n snapshot "+tc.path+" 1s\n}")
			c.ServerBlockKeys = []string{"consul.:53"}
			err := setup(c)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("setup error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("setup: %v", err)
			}
			fi, err := os.Stat(filepath.Dir(tc.path))
			if err != nil || !fi.IsDir() {
				t.Fatalf("the snapshot's directory was not created: %v", err)
			}
			if fi.Mode().Perm() != tc.wantMode {
				t.Errorf("directory mode = %v, want %v", fi.Mode().Perm(), tc.wantMode)
			}
			if entries, _ := os.ReadDir(filepath.Dir(tc.path)); len(entries) != 0 {
				t.Errorf("files left in the snapshot's directory: %v", entries)
			}
		})
	}
}

// writeFile writes content to a new file named name in a temporary
// directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testCertificate writes a self-signed certificate, usable as a CA, as a
// client certificate and as a server's on 127.0.0.1, and its key; it returns the CA, certificate and
// key paths.
func testCertificate(t *testing.T) (ca, cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		// A tier's certificate in the follower tests, on loopback.
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return writeFile(t, "ca.pem", certPEM), writeFile(t, "cert.pem", certPEM), writeFile(t, "key.pem", keyPEM)
}
