package consul

import (
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

func TestParseTierAndFollow(t *testing.T) {
	token := writeFile(t, "tier.token", "tier-secret\n")
	ca, cert, key := testCertificate(t)
	tests := []struct {
		name   string
		input  string
		check  func(t *testing.T, cfg *config)
		warned string // a start-up warning containing this
	}{
		{name: "tier with a token", input: "consul {\n address 127.0.0.1:8500\n tier_listen 127.0.0.1:8701\n tier_token_file " + token + "\n tier_transfers 2\n}",
			check: func(t *testing.T, cfg *config) {
				if s := cfg.tier; s == nil || s.Listen != "127.0.0.1:8701" || s.TokenFile != token || s.Transfers != 2 || s.NoAuth {
					t.Errorf("tier settings %+v", cfg.tier)
				}
			}},
		{name: "tier with client certificates", input: "consul {\n tier_listen 127.0.0.1:8701\n tier_tls " + cert + " " + key + " " + ca + "\n}",
			check: func(t *testing.T, cfg *config) {
				if s := cfg.tier; s == nil || s.CertFile != cert || s.ClientCAFile != ca {
					t.Errorf("tier settings %+v", cfg.tier)
				}
			}},
		{name: "tier without auth, said so", input: "consul {\n tier_listen 127.0.0.1:8701\n tier_no_auth\n}",
			check: func(t *testing.T, cfg *config) {
				if s := cfg.tier; s == nil || !s.NoAuth {
					t.Errorf("tier settings %+v", cfg.tier)
				}
			}},
		{name: "follower", input: "consul {\n follow 127.0.0.1:8701 https://127.0.0.1:8702\n follow_token_file " + token + "\n follow_tls " + ca + "\n node_name web-1\n}",
			check: func(t *testing.T, cfg *config) {
				f := cfg.follow
				if f == nil || !slices.Equal(f.Addresses, []string{"127.0.0.1:8701", "https://127.0.0.1:8702"}) ||
					f.TokenFile != token || f.CAFile != ca || f.NodeName != "web-1" {
					t.Errorf("follow settings %+v", cfg.follow)
				}
				if !strings.HasPrefix(cfg.replicaKey(), "follow|") {
					t.Errorf("replica key %q is not a follower's", cfg.replicaKey())
				}
			}},
		{name: "follower of one tier is warned", input: "consul {\n follow 127.0.0.1:8701\n}", warned: "one tier",
			check: func(t *testing.T, cfg *config) {
				if cfg.follow.NodeName == "" {
					t.Error("node_name defaults to nothing, want the host name")
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.input)
			cfg, err := parse(c)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			tc.check(t, cfg)
			if tc.warned != "" && !slices.ContainsFunc(cfg.warnings, func(w string) bool { return strings.Contains(w, tc.warned) }) {
				t.Errorf("warnings %q, want one with %q", cfg.warnings, tc.warned)
			}
		})
	}
}

func TestParseTierAndFollowErrors(t *testing.T) {
	token := writeFile(t, "tier.token", "tier-secret\n")
	tests := []struct{ name, input, want string }{
		{"tier without auth", "consul {\n address 127.0.0.1:8500\n tier_listen 127.0.0.1:8701\n}",
			"Testfile:3 - tier_listen 127.0.0.1:8701: followers would read the catalog without authentication"},
		{"tier_listen not host:port", "consul {\n tier_listen 8701\n}", "Testfile:2 - Error during parsing: tier_listen \"8701\": not HOST:PORT"},
		{"tier options without tier_listen", "consul {\n tier_no_auth\n}", "tier_ properties without tier_listen"},
		{"tier token file missing", "consul {\n tier_listen 127.0.0.1:1\n tier_token_file /nonexistent/t\n}", "Testfile:3 - Error during parsing: tier_token_file \"/nonexistent/t\""},
		{"tier_tls without key", "consul {\n tier_tls cert.pem\n}", "Testfile:2 - Error during parsing: tier_tls takes CERT KEY"},
		{"follow without addresses", "consul {\n follow\n}", "Testfile:2 - Error during parsing: follow takes the addresses"},
		{"follow bad scheme", "consul {\n follow unix:///x\n}", "Testfile:2 - Error during parsing: follow \"unix:///x\": the scheme"},
		{"follow not host:port", "consul {\n follow tier-1\n}", "Testfile:2 - Error during parsing: follow \"tier-1\": not HOST:PORT"},
		{"follow with address", "consul {\n address 127.0.0.1:8500\n follow 127.0.0.1:8701 127.0.0.1:8702\n}",
			"Testfile:3 - follow: a follower reads its tiers, not Consul; address does not apply"},
		{"follow with token_file", "consul {\n follow 127.0.0.1:8701 127.0.0.1:8702\n token_file " + token + "\n}", "token_file does not apply"},
		{"follow_ without follow", "consul {\n follow_token_file " + token + "\n}", "follow_ properties or node_name without follow"},
		{"follow_tls bad CA", "consul {\n follow_tls " + token + "\n}", "Testfile:2 - Error during parsing: follow_tls: the CA file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := setup(caddy.NewTestController("dns", tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "tier-secret") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}
