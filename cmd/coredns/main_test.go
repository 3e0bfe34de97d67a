package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul"

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

// TestMainVersion runs main with -version in a child process, since
// CoreDNS exits after printing: both the plugin's line and CoreDNS's must
// be there.
func TestMainVersion(t *testing.T) {
	if os.Getenv("COREDNS_CONSUL_RUN_MAIN") == "1" {
		main()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainVersion$", "-version")
	cmd.Env = append(os.Environ(), "COREDNS_CONSUL_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("coredns -version: %v\n%s", err, out)
	}
	for _, want := range []string{"consul plugin (coredns-consul) " + consul.Version + "\n", "CoreDNS-" + coremain.CoreVersion + "\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("coredns -version printed %q, want a line %q", out, want)
		}
	}
}

// TestMainNoVersion checks the plugin's line is not printed without -version:
// -plugins output is read by scripts, one plugin name per line.
func TestMainNoVersion(t *testing.T) {
	if os.Getenv("COREDNS_CONSUL_RUN_MAIN") == "1" {
		main()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainNoVersion$", "-plugins")
	cmd.Env = append(os.Environ(), "COREDNS_CONSUL_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("coredns -plugins: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "coredns-consul") || !strings.Contains(string(out), "consul\n") {
		t.Errorf("coredns -plugins printed %q", out)
	}
}
