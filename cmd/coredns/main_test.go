package main

import (
	"slices"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
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
