package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
)

func TestConsulDirectiveOrder(t *testing.T) {
	pos := func(name string) int {
		t.Helper()
		i := slices.Index(dnsserver.Directives, name)
		if i < 0 {
			t.Fatalf("directive %q missing from %v", name, dnsserver.Directives)
		}
		return i
	}
	consul := pos("consul")
	for _, before := range []string{"log", "errors", "prometheus", "cache", "kubernetes", "file"} {
		if pos(before) >= consul {
			t.Errorf("%s must run before consul", before)
		}
	}
	for _, after := range []string{"etcd", "forward"} {
		if pos(after) <= consul {
			t.Errorf("%s must run after consul", after)
		}
	}
}

func TestInsertDirectiveUnknown(t *testing.T) {
	if _, err := insertDirective([]string{"a", "b"}, "consul", "etcd"); err == nil {
		t.Fatal("want an error for a missing anchor directive")
	}
}

func TestWriteVersion(t *testing.T) {
	defer func(v string) { consul.Version = v }(consul.Version)
	consul.Version = "v1.2.3-4-gabcdef0-dirty"
	var b strings.Builder
	writeVersion(&b)
	if want := "consul plugin (coredns-consul) v1.2.3-4-gabcdef0-dirty\n"; b.String() != want {
		t.Errorf("version line %q, want %q", b.String(), want)
	}
}

// TestMainFlags runs main in a child process, since CoreDNS exits after
// printing: -version prints the plugin's line beside CoreDNS's, and -plugins
// does not, since scripts read its output one plugin name per line.
func TestMainFlags(t *testing.T) {
	if os.Getenv("COREDNS_CONSUL_RUN_MAIN") == "1" {
		main()
		return
	}
	tests := []struct {
		flag           string
		want, unwanted []string
	}{
		{"-version", []string{"consul plugin (coredns-consul) " + consul.Version + "\n", "CoreDNS-" + coremain.CoreVersion + "\n"}, nil},
		{"-plugins", []string{"consul\n"}, []string{"coredns-consul"}},
	}
	for _, tc := range tests {
		t.Run(tc.flag, func(t *testing.T) {
			out := corednsproc.Run(t, os.Args[0], []string{"COREDNS_CONSUL_RUN_MAIN=1"}, "-test.run=^TestMainFlags$", tc.flag)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("coredns %s printed %q, want a line %q", tc.flag, out, w)
				}
			}
			for _, u := range tc.unwanted {
				if strings.Contains(out, u) {
					t.Errorf("coredns %s printed %q, with %q", tc.flag, out, u)
				}
			}
		})
	}
}
