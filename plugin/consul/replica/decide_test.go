package replica

import (
	"maps"
	"slices"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// The replica's decisions are pure functions of plain values: these tables
// need no Consul.

func TestDiffList(t *testing.T) {
	held := map[string]*entry{
		"web": {name: "web", tags: []string{"a", "b"}},
		"db":  {name: "db"},
		"api": {name: "API"},
		"old": {name: "old"},
	}
	d := diffList(held, map[string][]string{
		"web":  {"b", "a"}, // the same tags in another order
		"db":   {"primary"},
		"api":  nil, // respelled
		"new":  nil,
		"New2": {"x"},
	})
	if want := map[string]string{"api": "api", "new": "new", "new2": "New2"}; !maps.Equal(d.added, want) {
		t.Errorf("added = %v, want %v", d.added, want)
	}
	if want := []string{"api", "old"}; !slices.Equal(d.removed, want) {
		t.Errorf("removed = %v, want %v", d.removed, want)
	}
	if want := []string{"db"}; !slices.Equal(d.retagged, want) {
		t.Errorf("retagged = %v, want %v", d.retagged, want)
	}
	if d := diffList(map[string]*entry{"web": {name: "web", tags: []string{"a"}}}, map[string][]string{"web": {"a"}}); !d.empty() {
		t.Errorf("an unchanged list differs: %+v", d)
	}
}

func TestDiffChecks(t *testing.T) {
	critical := func(svc string) nonPassingCheck { return nonPassingCheck{status: api.HealthCritical, service: svc} }
	warning := func(svc string) nonPassingCheck { return nonPassingCheck{status: api.HealthWarning, service: svc} }
	tests := []struct {
		name              string
		previous, current map[checkKey]nonPassingCheck
		services, nodes   []string
	}{
		{"nothing changed", map[checkKey]nonPassingCheck{{"n1", "c1"}: critical("web")}, map[checkKey]nonPassingCheck{{"n1", "c1"}: critical("web")}, nil, nil},
		{"a check turns critical", nil, map[checkKey]nonPassingCheck{{"n1", "c1"}: critical("Web")}, []string{"web"}, nil},
		{"a check passes again", map[checkKey]nonPassingCheck{{"n1", "c1"}: critical("web")}, nil, []string{"web"}, nil},
		{"critical to warning", map[checkKey]nonPassingCheck{{"n1", "c1"}: critical("web")}, map[checkKey]nonPassingCheck{{"n1", "c1"}: warning("web")}, []string{"web"}, nil},
		{"a node check", nil, map[checkKey]nonPassingCheck{{"n2", "serfHealth"}: critical("")}, nil, []string{"n2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			services, nodes := diffChecks(tc.previous, tc.current)
			if got := slices.Sorted(maps.Keys(services)); !slices.Equal(got, tc.services) {
				t.Errorf("services = %v, want %v", got, tc.services)
			}
			if got := slices.Sorted(maps.Keys(nodes)); !slices.Equal(got, tc.nodes) {
				t.Errorf("nodes = %v, want %v", got, tc.nodes)
			}
		})
	}
}

func TestSummaryDetector(t *testing.T) {
	base := []Summary{
		{Name: "web", Tags: []string{"a", "b"}, Nodes: []string{"n1", "n2"}, Instances: 2, Passing: 2},
		{Name: "db", Nodes: []string{"n1"}, Instances: 1},
	}
	with := func(f func(s []Summary) []Summary) []Summary {
		s := slices.Clone(base)
		return f(s)
	}
	tests := []struct {
		name string
		next []Summary
		want []string
	}{
		{"nothing changed, in another order", []Summary{base[1], {Name: "web", Tags: []string{"b", "a"}, Nodes: []string{"n2", "n1"}, Instances: 2, Passing: 2}}, nil},
		{"an instance registered without checks", with(func(s []Summary) []Summary { s[1].Instances = 2; return s }), []string{"db"}},
		{"an instance with a check", with(func(s []Summary) []Summary { s[0].Instances, s[0].Passing = 3, 3; return s }), []string{"web"}},
		{"a check turned critical", with(func(s []Summary) []Summary { s[0].Passing, s[0].Critical = 1, 1; return s }), []string{"web"}},
		{"an instance moved node", with(func(s []Summary) []Summary { s[1].Nodes = []string{"n3"}; return s }), []string{"db"}},
		{"a service appeared", append(slices.Clone(base), Summary{Name: "New", Instances: 1}), []string{"new"}},
		{"a service went away", base[:1], []string{"db"}},
		{"a peer's service is not this datacenter's", append(slices.Clone(base), Summary{Name: "x", Peer: "p"}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d summaryDetector
			if got := d.observe(base); got != nil {
				t.Fatalf("the first read names %v", got)
			}
			if got := d.observe(tc.next); !slices.Equal(got, tc.want) {
				t.Errorf("named %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWatcherBudget(t *testing.T) {
	const overhead = 22 // DefaultConfig's 16 fetchers and 6 loops
	tests := []struct {
		limit, share int
		https        bool
		want         int
	}{
		{200, 1, false, 153},         // Consul's default: 200 - 22 - 25 left to other clients
		{200, 0, false, 153},         // 0 is alone too
		{200, 2, false, 65},          // two datacenters: (200 - 25) / 2 - 22
		{5000, 1, false, 4353},       // 5000 - 22 - 625
		{10000, 1, false, 8192},      // bounded by the agent's memory
		{0, 1, false, HTTPSWatchers}, // no limit
		{200, 1, true, HTTPSWatchers},
		{200, 3, true, HTTPSWatchers}, // HTTP/2 shares connections whatever the share
		{16, 1, false, 0},             // too small for any
		{200, 9, false, 0},            // too many datacenters for the default limit
	}
	for _, tc := range tests {
		if got := watcherBudget(tc.limit, tc.https, overhead, tc.share); got != tc.want {
			t.Errorf("watcherBudget(%d, https=%v, share %d) = %d, want %d", tc.limit, tc.https, tc.share, got, tc.want)
		}
	}
	// The limit the warning recommends must give a budget that covers the
	// services it was computed for.
	for _, share := range []int{1, 2, 5} {
		for _, services := range []int{1, 150, 156, 1000, 5000, 8000} {
			limit := limitFor(services, overhead, share)
			if got := watcherBudget(limit, false, overhead, share); got < services {
				t.Errorf("limitFor(%d, share %d) = %d, which watches only %d", services, share, limit, got)
			}
		}
	}
}

func TestChangeRing(t *testing.T) {
	var c changeRing
	if c.has(0) {
		t.Error("an empty ring holds index 0")
	}
	for i := uint64(1); i <= 100; i++ { // fewer than it holds
		c.add(i)
	}
	if !c.has(100) || !c.has(1) || c.has(0) || c.has(101) {
		t.Error("the ring does not hold what was added")
	}
	for i := uint64(101); i <= 356; i++ {
		c.add(i)
	}
	if !c.has(356) || !c.has(101) || c.has(100) {
		t.Error("the ring does not hold exactly the last 256 indexes")
	}
}

func TestSameRegistrations(t *testing.T) {
	a := []snapshot.Instance{{ID: "web-1", Port: 80, Meta: map[string]string{"v": "1"}}}
	tests := []struct {
		name      string
		b         []snapshot.Instance
		same, reg bool // sameInstances, sameRegistrations
	}{
		{"equal", []snapshot.Instance{{ID: "web-1", Port: 80, Meta: map[string]string{"v": "1"}}}, true, true},
		{"health only", []snapshot.Instance{{ID: "web-1", Port: 80, Meta: map[string]string{"v": "1"}, Health: snapshot.Critical}}, false, true},
		{"port", []snapshot.Instance{{ID: "web-1", Port: 81, Meta: map[string]string{"v": "1"}}}, false, false},
		{"meta", []snapshot.Instance{{ID: "web-1", Port: 80, Meta: map[string]string{"v": "2"}}}, false, false},
		{"one more", append(slices.Clone(a), snapshot.Instance{ID: "web-2"}), false, false},
	}
	for _, tc := range tests {
		if got := sameInstances(a, tc.b); got != tc.same {
			t.Errorf("%s: sameInstances = %v", tc.name, got)
		}
		if got := sameRegistrations(a, tc.b); got != tc.reg {
			t.Errorf("%s: sameRegistrations = %v", tc.name, got)
		}
	}
}
