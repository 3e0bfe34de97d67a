package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/inspect"
)

// runShow is "snapshot show FILE|URL [-json] [-services] [-service NAME] [-dc DC]".
func runShow(args []string, stdout io.Writer) (int, error) {
	fs := flag.NewFlagSet("snapshot show", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print JSON")
	var opts inspect.Options
	fs.StringVar(&opts.Service, "service", "", "print this service's instances")
	fs.StringVar(&opts.Datacenter, "dc", "", "only this datacenter")
	fs.BoolVar(&opts.Services, "services", false, "list every service, counted by health")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError, fmt.Errorf("snapshot show: %w", err)
	}
	if len(pos) != 1 {
		return exitError, fmt.Errorf("snapshot show: %w", errUsage)
	}
	r, err := report(pos[0], opts)
	if err != nil {
		return exitError, err
	}
	if *asJSON {
		return exitOK, inspect.WriteJSON(stdout, r)
	}
	return exitOK, writeReport(stdout, r)
}

// report describes the file at source, or the live replica when source
// is a running CoreDNS's inspect endpoint.
func report(source string, opts inspect.Options) (*inspect.Report, error) {
	if isURL(source) {
		return fetchReport(source, opts)
	}
	set, version, err := readSnapshot(source)
	if err != nil {
		return nil, err
	}
	return inspect.New(source, version, set, time.Now(), opts)
}

// writeReport prints r as aligned text.
func writeReport(w io.Writer, r *inspect.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "file:\t%s\n", r.File)
	fmt.Fprintf(tw, "format version:\t%d\n", r.FormatVersion)
	fmt.Fprintf(tw, "cluster:\t%s\n", orNone(r.Cluster, "(not known)"))
	fmt.Fprintf(tw, "local datacenter:\t%s\n", r.LocalDatacenter)
	fmt.Fprintf(tw, "known datacenters:\t%s\n", orNone(strings.Join(r.KnownDatacenters, ", "), "(never read)"))
	fmt.Fprintf(tw, "by distance:\t%s\n", orNone(strings.Join(r.ByDistance, ", "), "(never read)"))
	fmt.Fprintf(tw, "known peers:\t%s\n", orNone(strings.Join(r.KnownPeers, ", "), "(none, or never read)"))
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "DATACENTER\tINDEX\tBUILT\tAGE\tSERVICES\tINSTANCES\tNODES\tQUERIES")
	for _, d := range r.Datacenters {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d%s\t%d\t%d\t%d%s\n", d.Name, d.Index,
			d.Built.Format(time.RFC3339), time.Duration(d.AgeSeconds*float64(time.Second)),
			d.Services, hidden(d.ServicesHidden), d.Instances, d.Nodes, len(d.Queries), hidden(d.QueriesHidden))
	}
	if len(r.Peers) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "PEER\tINDEX\tBUILT\tAGE\tSERVICES\tINSTANCES\tNODES")
		for _, p := range r.Peers {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d%s\t%d\t%d\n", p.Name, p.Index,
				p.Built.Format(time.RFC3339), time.Duration(p.AgeSeconds*float64(time.Second)),
				p.Services, hidden(p.ServicesHidden), p.Instances, p.Nodes)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range r.Datacenters {
		writeQueries(w, d)
		writeServiceList(w, d)
		writeService(w, d)
	}
	for _, p := range r.Peers {
		p.Name = "peer " + p.Name
		writeServiceList(w, p)
		writeService(w, p)
	}
	if hasHidden(r) {
		fmt.Fprintln(w, "\n+ the token may not read every one: more may exist than the snapshot holds")
	}
	return nil
}

func writeQueries(w io.Writer, d inspect.Datacenter) {
	if len(d.Queries) == 0 {
		return
	}
	fmt.Fprintf(w, "\nprepared queries in %s:\n", d.Name)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tTEMPLATE\tSERVICE\tID")
	for _, q := range d.Queries {
		tmpl := orNone(q.Template, "-")
		if q.Regexp != "" {
			tmpl += " " + q.Regexp
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", orNone(q.Name, "-"), tmpl, q.Service, q.ID)
	}
	tw.Flush()
}

func writeServiceList(w io.Writer, d inspect.Datacenter) {
	if d.ServiceList == nil {
		return
	}
	fmt.Fprintf(w, "\nservices in %s:\n", d.Name)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tINDEX\tINSTANCES\tPASSING\tWARNING\tCRITICAL")
	for _, s := range d.ServiceList {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\n", s.Name, s.Index, s.Instances, s.Passing, s.Warning, s.Critical)
	}
	tw.Flush()
}

func writeService(w io.Writer, d inspect.Datacenter) {
	if d.Missing != "" {
		fmt.Fprintf(w, "\nservice %s: not in the snapshot of %s\n", d.Missing, d.Name)
		return
	}
	if d.Service == nil {
		return
	}
	fmt.Fprintf(w, "\nservice %s in %s (index %d, %d instances):\n", d.Service.Name, d.Name, d.Service.Index, len(d.Service.Instances))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tID\tADDRESS\tPORT\tHEALTH\tFAILING CHECKS\tTAGS")
	for _, in := range d.Service.Instances {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\n", in.Node, in.ID, in.Address, in.Port, in.Health,
			orNone(checkList(in.FailingChecks), "-"), orNone(strings.Join(in.Tags, ","), "-"))
	}
	tw.Flush()
}

func checkList(checks []inspect.Check) string {
	parts := make([]string, len(checks))
	for i, c := range checks {
		parts[i] = c.ID + " (" + c.Health + ")"
	}
	return strings.Join(parts, ", ")
}

func hasHidden(r *inspect.Report) bool {
	for _, d := range r.Datacenters {
		if d.ServicesHidden || d.QueriesHidden {
			return true
		}
	}
	return false
}

func hidden(h bool) string {
	if h {
		return "+"
	}
	return ""
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
