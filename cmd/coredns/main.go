// Command coredns is CoreDNS with its standard plugins plus the consul plugin.
package main

import (
	"fmt"
	"os"
	"slices"

	_ "github.com/coredns-consul/coredns-consul/plugin/consul"

	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/core/plugin" // CoreDNS's standard plugins
	"github.com/coredns/coredns/coremain"
)

// consulBefore names the directive consul runs right before. That puts consul
// in the backend block: after cache, so cached answers never reach it, and
// before etcd and forward, so names it owns are never sent upstream.
const consulBefore = "etcd"

func init() {
	directives, err := insertDirective(dnsserver.Directives, "consul", consulBefore)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dnsserver.Directives = directives
}

// insertDirective returns a copy of directives with name inserted just before
// the directive before.
func insertDirective(directives []string, name, before string) ([]string, error) {
	i := slices.Index(directives, before)
	if i < 0 {
		return nil, fmt.Errorf("directive %q not found in CoreDNS's directive list", before)
	}
	return slices.Insert(slices.Clone(directives), i, name), nil
}

func main() { coremain.Run() }
