// Command coredns is CoreDNS with its standard plugins plus the consul plugin.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/coredns-consul/coredns-consul/plugin/consul"

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

func main() {
	// CoreDNS's -version names only CoreDNS; an operator asking which plugin
	// build runs needs the plugin's own version too. coremain registered its
	// flags in init, so parsing here reads -version exactly as Run will (Run
	// parses again, to the same values, and rejects what it rejects).
	flag.Parse()
	if f := flag.Lookup("version"); f != nil && f.Value.String() == "true" {
		writeVersion(os.Stdout)
	}
	coremain.Run()
}

// writeVersion writes the plugin's version line, which -version prints
// before CoreDNS's own lines.
func writeVersion(w io.Writer) {
	fmt.Fprintf(w, "consul plugin (coredns-consul) %s\n", consul.Version)
}
