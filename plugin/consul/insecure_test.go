package consul

import (
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

// TestTLSVerification: tls in the Corefile always verifies, whatever
// CONSUL_HTTP_SSL_VERIFY says; without it, only a value that means false
// turns verification off, and that is a start-up warning, as is a token
// sent over plain HTTP to another machine. No warning names the token.
func TestTLSVerification(t *testing.T) {
	ca, _, _ := testCertificate(t)
	const token = "s3cret-token-value"
	tests := []struct {
		name, env, block string
		wantInsecure     bool
		wantWarnings     []string // each a substring of one warning, in order
	}{
		{"tls verifies despite false", "false", "address https://10.1.1.1:8501\n tls " + ca, false, nil},
		{"tls verifies despite 0", "0", "address https://10.1.1.1:8501\n tls " + ca, false, nil},
		{"false without tls", "false", "address https://10.1.1.1:8501", true, []string{"not verified"}},
		{"yes is not false", "yes", "address https://10.1.1.1:8501", false, []string{`"yes" is not true or false`}},
		{"on is not false", "on", "address https://10.1.1.1:8501", false, []string{`"on" is not true or false`}},
		{"true", "true", "address https://10.1.1.1:8501", false, nil},
		{"token over http to another machine", "", "address 10.1.1.1:8500 https://10.1.1.2:8501\n token " + token, false,
			[]string{"plain HTTP to 10.1.1.1"}},
		{"token over http with a scheme", "", "address http://consul.example:8500\n token " + token, false,
			[]string{"plain HTTP to consul.example"}},
		{"token over http to loopback", "", "address 127.0.0.1:8500 http://localhost:8500 http://[::1]:8500\n token " + token, false, nil},
		{"no token over http", "", "address 10.1.1.1:8500", false, nil},
		{"token over a unix socket", "", "address unix:///run/consul.sock\n token " + token, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CONSUL_HTTP_SSL_VERIFY", tc.env)
			t.Setenv("CONSUL_HTTP_TOKEN", "")
			c := caddy.NewTestController("dns", "consul {\n "+tc.block+"\n datacenter east\n}")
			c.ServerBlockKeys = []string{"consul.:53"}
			cfg, err := parse(c)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.client.TLSConfig.InsecureSkipVerify; got != tc.wantInsecure {
				t.Errorf("InsecureSkipVerify = %v, want %v", got, tc.wantInsecure)
			}
			if len(cfg.warnings) != len(tc.wantWarnings) {
				t.Fatalf("warnings %q, want %d", cfg.warnings, len(tc.wantWarnings))
			}
			for i, w := range cfg.warnings {
				if !strings.Contains(w, tc.wantWarnings[i]) {
					t.Errorf("warning %q, want it to say %q", w, tc.wantWarnings[i])
				}
				if strings.Contains(w, token) {
					t.Errorf("warning %q carries the token", w)
				}
			}
		})
	}
}
