package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/inspect"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// The JSON schema of "snapshot diff -json" (docs/operations.md).

// DiffReport is how a snapshot file's datacenter differs from a live Consul.
type DiffReport struct {
	File         string        `json:"file"`
	Consul       string        `json:"consul"`
	Datacenter   string        `json:"datacenter"`
	OnlyInFile   []string      `json:"only_in_file"`
	OnlyInConsul []string      `json:"only_in_consul"`
	Changed      []ServiceDiff `json:"changed"`
}

// ServiceDiff is a service both hold, with different instances.
type ServiceDiff struct {
	Name         string             `json:"name"`
	OnlyInFile   []inspect.Instance `json:"only_in_file"`
	OnlyInConsul []inspect.Instance `json:"only_in_consul"`
	Changed      []InstanceDiff     `json:"changed"`
}

// InstanceDiff is an instance both hold (same node and ID) that differs;
// each change reads "field: file value -> Consul value".
type InstanceDiff struct {
	Node    string   `json:"node"`
	ID      string   `json:"id"`
	Changes []string `json:"changes"`
}

// Equal reports whether nothing differs.
func (d *DiffReport) Equal() bool {
	return len(d.OnlyInFile) == 0 && len(d.OnlyInConsul) == 0 && len(d.Changed) == 0
}

// runDiff is "snapshot diff FILE [CONSUL_ADDRESS] [-json] [-dc DC]
// [-token-file FILE] [-ca FILE]".
func runDiff(args []string, stdout io.Writer) (int, error) {
	fs := flag.NewFlagSet("snapshot diff", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print JSON")
	dc := fs.String("dc", "", "the datacenter to compare (default: the file's local one)")
	tokenFile := fs.String("token-file", "", "read the ACL token from this file")
	ca := fs.String("ca", "", "verify Consul's certificate with this CA file")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError, fmt.Errorf("snapshot diff: %w", err)
	}
	if len(pos) < 1 || len(pos) > 2 {
		return exitError, fmt.Errorf("snapshot diff: %w", errUsage)
	}
	set, _, err := readSnapshot(pos[0])
	if err != nil {
		return exitError, err
	}
	name := *dc
	if name == "" {
		name = set.Local
	}
	file := set.Snapshot(name)
	if file == nil {
		return exitError, fmt.Errorf("%s holds no snapshot of datacenter %s (it holds %s)", pos[0], snapshot.Quote(name), inspect.DatacenterNames(set))
	}
	cfg := api.DefaultConfig() // CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN(_FILE), CONSUL_CACERT...
	if len(pos) == 2 {
		cfg.Address = pos[1]
	}
	if *tokenFile != "" {
		cfg.Token, cfg.TokenFile = "", *tokenFile
	}
	if *ca != "" {
		cfg.TLSConfig.CAFile = *ca
	}
	live, err := readLive(cfg, file.Datacenter)
	if err != nil {
		return exitError, err
	}
	d := compare(file, live)
	d.File, d.Consul = pos[0], cfg.Address
	if *asJSON {
		err = inspect.WriteJSON(stdout, d)
	} else {
		err = writeDiff(stdout, d)
	}
	if err != nil || !d.Equal() {
		return exitDiff, err
	}
	return exitOK, nil
}

// compare lists how live differs from file.
func compare(file, live *snapshot.Snapshot) *DiffReport {
	d := &DiffReport{Datacenter: file.Datacenter, OnlyInFile: []string{}, OnlyInConsul: []string{}, Changed: []ServiceDiff{}}
	for _, key := range sortedKeys(file.Services, live.Services) {
		f, inFile := file.Services[key]
		l, inLive := live.Services[key]
		switch {
		case !inLive:
			d.OnlyInFile = append(d.OnlyInFile, f.Name)
		case !inFile:
			d.OnlyInConsul = append(d.OnlyInConsul, l.Name)
		default:
			if sd := compareService(f, l); sd != nil {
				d.Changed = append(d.Changed, *sd)
			}
		}
	}
	return d
}

func sortedKeys[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// compareService compares one service's instances, matched by node and
// service ID; nil when they are the same.
func compareService(file, live *snapshot.Service) *ServiceDiff {
	byKey := func(svc *snapshot.Service) map[string]snapshot.Instance {
		m := make(map[string]snapshot.Instance, len(svc.Instances))
		for _, in := range svc.Instances {
			m[in.Node+"\x00"+in.ID] = in
		}
		return m
	}
	f, l := byKey(file), byKey(live)
	sd := ServiceDiff{Name: file.Name, OnlyInFile: []inspect.Instance{}, OnlyInConsul: []inspect.Instance{}, Changed: []InstanceDiff{}}
	for _, key := range sortedKeys(f, l) {
		a, inFile := f[key]
		b, inLive := l[key]
		switch {
		case !inLive:
			sd.OnlyInFile = append(sd.OnlyInFile, inspect.NewInstance(a))
		case !inFile:
			sd.OnlyInConsul = append(sd.OnlyInConsul, inspect.NewInstance(b))
		default:
			if changes := instanceChanges(a, b); len(changes) > 0 {
				sd.Changed = append(sd.Changed, InstanceDiff{Node: a.Node, ID: a.ID, Changes: changes})
			}
		}
	}
	if len(sd.OnlyInFile)+len(sd.OnlyInConsul)+len(sd.Changed) == 0 {
		return nil
	}
	return &sd
}

// instanceChanges names every field that decides an answer and differs.
func instanceChanges(a, b snapshot.Instance) []string {
	va, vb := inspect.NewInstance(a), inspect.NewInstance(b)
	var out []string
	change := func(field string, x, y any) {
		if sx, sy := fmt.Sprint(x), fmt.Sprint(y); sx != sy {
			out = append(out, fmt.Sprintf("%s: %s -> %s", field, orNone(sx, "-"), orNone(sy, "-")))
		}
	}
	change("address", va.Address, vb.Address)
	change("node address", a.NodeAddress, b.NodeAddress)
	change("port", a.Port, b.Port)
	change("tags", strings.Join(a.Tags, ","), strings.Join(b.Tags, ","))
	change("health", va.Health, vb.Health)
	change("failing checks", checkList(va.FailingChecks), checkList(vb.FailingChecks))
	change("tagged addresses", sortedMap(a.TaggedAddresses), sortedMap(b.TaggedAddresses))
	change("node tagged addresses", sortedMap(a.NodeTaggedAddresses), sortedMap(b.NodeTaggedAddresses))
	change("meta", sortedMap(a.Meta), sortedMap(b.Meta))
	change("weights", [2]int{a.WeightPassing, a.WeightWarning}, [2]int{b.WeightPassing, b.WeightWarning})
	return out
}

// sortedMap prints a map the same way whatever its order; fmt sorts keys.
func sortedMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	return fmt.Sprint(m)
}
