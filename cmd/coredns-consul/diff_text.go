package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/inspect"
)

// writeDiff prints d as text: one line per service only one side has, and
// per changed service one line per instance added, removed or changed.
func writeDiff(w io.Writer, d *DiffReport) error {
	fmt.Fprintf(w, "--- %s (datacenter %s)\n+++ consul %s\n", d.File, d.Datacenter, d.Consul)
	if d.Equal() {
		_, err := fmt.Fprintln(w, "no difference")
		return err
	}
	for _, name := range d.OnlyInFile {
		fmt.Fprintf(w, "- service %s (only in the file)\n", name)
	}
	for _, name := range d.OnlyInConsul {
		fmt.Fprintf(w, "+ service %s (only in Consul)\n", name)
	}
	for _, sd := range d.Changed {
		fmt.Fprintf(w, "~ service %s\n", sd.Name)
		for _, in := range sd.OnlyInFile {
			fmt.Fprintf(w, "  - %s\n", describeInstance(in))
		}
		for _, in := range sd.OnlyInConsul {
			fmt.Fprintf(w, "  + %s\n", describeInstance(in))
		}
		for _, c := range sd.Changed {
			fmt.Fprintf(w, "  ~ %s/%s: %s\n", c.Node, c.ID, strings.Join(c.Changes, "; "))
		}
	}
	_, err := fmt.Fprintf(w, "services only in the file: %d, only in Consul: %d, changed: %d\n",
		len(d.OnlyInFile), len(d.OnlyInConsul), len(d.Changed))
	return err
}

func describeInstance(in inspect.Instance) string {
	return fmt.Sprintf("%s/%s %s:%d %s", in.Node, in.ID, in.Address, in.Port, in.Health)
}
