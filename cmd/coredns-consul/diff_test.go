package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/inspect"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

func TestCompare(t *testing.T) {
	inst := func(node, id string, port uint16, h snapshot.Health) snapshot.Instance {
		in := snapshot.Instance{ID: id, Node: node, NodeAddress: "10.0.0.1", Port: port, Health: h}
		if h != snapshot.Passing {
			in.Checks = []snapshot.Check{{ID: "service:" + id, Health: h}}
		}
		return in
	}
	snap := func(services ...*snapshot.Service) *snapshot.Snapshot {
		m := map[string]*snapshot.Service{}
		for _, s := range services {
			m[snapshot.Key(s.Name)] = s
		}
		return snapshot.New("dc1", 1, m, nil, time.Now())
	}
	svc := func(name string, ins ...snapshot.Instance) *snapshot.Service {
		return &snapshot.Service{Name: name, Index: 1, Instances: ins}
	}
	web := svc("web", inst("a", "web-1", 80, snapshot.Passing), inst("b", "web-2", 80, snapshot.Passing))
	for _, tc := range []struct {
		name       string
		file, live *snapshot.Snapshot
		want       DiffReport
	}{
		{"equal, whatever the index", snap(web, svc("db", inst("a", "db", 5432, snapshot.Passing))),
			snap(&snapshot.Service{Name: "web", Index: 99, Instances: web.Instances}, svc("db", inst("a", "db", 5432, snapshot.Passing))),
			DiffReport{}},
		{"service only on one side, names matched without case", snap(web, svc("Old")), snap(svc("WEB", web.Instances...), svc("new")),
			DiffReport{OnlyInFile: []string{"Old"}, OnlyInConsul: []string{"new"}}},
		{"instances added, removed, changed", snap(web),
			snap(svc("web", inst("a", "web-1", 81, snapshot.Critical), inst("c", "web-2", 80, snapshot.Passing))),
			DiffReport{Changed: []ServiceDiff{{Name: "web",
				OnlyInFile:   []inspect.Instance{inspect.NewInstance(web.Instances[1])},
				OnlyInConsul: []inspect.Instance{inspect.NewInstance(inst("c", "web-2", 80, snapshot.Passing))},
				Changed: []InstanceDiff{{Node: "a", ID: "web-1", Changes: []string{
					"port: 80 -> 81", "health: passing -> critical", "failing checks: - -> service:web-1 (critical)"}}},
			}}}},
		{"address and tags", snap(web),
			snap(svc("web", snapshot.Instance{ID: "web-1", Node: "a", NodeAddress: "10.0.0.1", Address: "10.9.9.9", Port: 80, Tags: []string{"x"}}, web.Instances[1])),
			DiffReport{Changed: []ServiceDiff{{Name: "web", OnlyInFile: []inspect.Instance{}, OnlyInConsul: []inspect.Instance{},
				Changed: []InstanceDiff{{Node: "a", ID: "web-1", Changes: []string{"address: 10.0.0.1 -> 10.9.9.9", "tags: - -> x"}}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := compare(tc.file, tc.live)
			want := tc.want
			want.Datacenter = "dc1"
			for _, s := range []*[]string{&want.OnlyInFile, &want.OnlyInConsul} {
				if *s == nil {
					*s = []string{}
				}
			}
			if want.Changed == nil {
				want.Changed = []ServiceDiff{}
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
			if got.Equal() != (tc.name == "equal, whatever the index") {
				t.Errorf("Equal() = %v", got.Equal())
			}
		})
	}
}
