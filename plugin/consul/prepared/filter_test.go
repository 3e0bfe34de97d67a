package prepared

import (
	"slices"
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

func nodesOf(instances []*snapshot.Instance) string {
	var names []string
	for _, i := range instances {
		names = append(names, i.Node)
	}
	slices.Sort(names)
	return strings.Join(names, "|")
}

func oneService(instances ...snapshot.Instance) *snapshot.Snapshot {
	return &snapshot.Snapshot{
		Datacenter: "dc1",
		Services:   map[string]*snapshot.Service{"web": {Name: "web", Instances: instances}},
		Nodes:      map[string]*snapshot.Node{},
	}
}

// Consul's TestPreparedQuery_tagFilter.
func TestFilterTags(t *testing.T) {
	s := oneService(
		snapshot.Instance{Node: "node1", Tags: []string{"foo"}},
		snapshot.Instance{Node: "node2", Tags: []string{"foo", "BAR"}},
		snapshot.Instance{Node: "node3"},
		snapshot.Instance{Node: "node4", Tags: []string{"foo", "baz"}},
		snapshot.Instance{Node: "node5", Tags: []string{"foo", "zoo"}},
		snapshot.Instance{Node: "node6", Tags: []string{"bar"}},
	)
	tests := []struct {
		tags []string
		want string
	}{
		{nil, "node1|node2|node3|node4|node5|node6"},
		{[]string{"foo"}, "node1|node2|node4|node5"},
		{[]string{"!foo"}, "node3|node6"},
		{[]string{"!foo", "bar"}, "node6"},
		{[]string{"!foo", "!bar"}, "node3"},
		{[]string{"nope"}, ""},
		{[]string{"bar"}, "node2|node6"},
		{[]string{"BAR"}, "node2|node6"},
		{[]string{"bAr"}, "node2|node6"},
		{[]string{"!BaR"}, "node1|node3|node4|node5"},
		{[]string{""}, ""},
		{[]string{"!"}, "node1|node2|node3|node4|node5|node6"},
	}
	for _, tt := range tests {
		got := nodesOf(Filter(s, &snapshot.QueryService{Service: "web", Tags: tt.tags}))
		if got != tt.want {
			t.Errorf("tags %q: got %q, want %q", tt.tags, got, tt.want)
		}
	}
}

func TestFilterHealth(t *testing.T) {
	crit := func(id string) snapshot.Check { return snapshot.Check{ID: id, Health: snapshot.Critical} }
	warn := func(id string) snapshot.Check { return snapshot.Check{ID: id, Health: snapshot.Warning} }
	s := oneService(
		snapshot.Instance{Node: "pass", Health: snapshot.Passing},
		snapshot.Instance{Node: "warn", Health: snapshot.Warning, Checks: []snapshot.Check{warn("w")}},
		snapshot.Instance{Node: "crit", Health: snapshot.Critical, Checks: []snapshot.Check{crit("c1")}},
		snapshot.Instance{Node: "crit2", Health: snapshot.Critical, Checks: []snapshot.Check{crit("c1"), crit("c2")}},
		snapshot.Instance{Node: "critwarn", Health: snapshot.Critical, Checks: []snapshot.Check{crit("c1"), warn("w")}},
		// A snapshot without the checks: the aggregate decides.
		snapshot.Instance{Node: "unknown", Health: snapshot.Critical},
		snapshot.Instance{Node: "partial", Health: snapshot.Critical, Checks: []snapshot.Check{warn("w")}},
	)
	tests := []struct {
		name        string
		onlyPassing bool
		ignore      []string
		want        string
	}{
		{"critical out", false, nil, "pass|warn"},
		{"only passing", true, nil, "pass"},
		{"ignore c1", false, []string{"c1"}, "crit|critwarn|pass|warn"},
		{"ignore c1 c2", false, []string{"c1", "c2"}, "crit|crit2|critwarn|pass|warn"},
		{"ignore c1, only passing", true, []string{"c1"}, "crit|pass"},
		{"ignore c1 w, only passing", true, []string{"c1", "w"}, "crit|critwarn|pass|warn"},
		{"ignore is case-sensitive", false, []string{"C1"}, "pass|warn"},
		{"ignore w, only passing", true, []string{"w"}, "pass|warn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nodesOf(Filter(s, &snapshot.QueryService{Service: "web", OnlyPassing: tt.onlyPassing, IgnoreCheckIDs: tt.ignore}))
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFilterMeta(t *testing.T) {
	s := oneService(
		snapshot.Instance{Node: "a", Meta: map[string]string{"version": "2"}},
		snapshot.Instance{Node: "B", Meta: map[string]string{"version": "1"}},
		snapshot.Instance{Node: "c"},
		snapshot.Instance{Node: "ghost", Meta: map[string]string{"version": "2"}},
	)
	s.Nodes = map[string]*snapshot.Node{
		"a": {Name: "a", Meta: map[string]string{"rack": "r1", "zone": "z"}},
		"b": {Name: "B", Meta: map[string]string{"rack": "r1"}},
		"c": {Name: "c", Meta: map[string]string{"rack": "R1"}},
	}
	tests := []struct {
		name              string
		nodeMeta, svcMeta map[string]string
		want              string
	}{
		{"none", nil, nil, "B|a|c|ghost"},
		{"node meta, case-sensitive value, node looked up case-insensitively", map[string]string{"rack": "r1"}, nil, "B|a"},
		{"every node meta key", map[string]string{"rack": "r1", "zone": "z"}, nil, "a"},
		{"empty value must be present", map[string]string{"zone": ""}, nil, ""},
		{"service meta", nil, map[string]string{"version": "2"}, "a|ghost"},
		{"both", map[string]string{"rack": "r1"}, map[string]string{"version": "1"}, "B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nodesOf(Filter(s, &snapshot.QueryService{Service: "web", NodeMeta: tt.nodeMeta, ServiceMeta: tt.svcMeta}))
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFilterService(t *testing.T) {
	s := oneService(snapshot.Instance{Node: "a"})
	if got := nodesOf(Filter(s, &snapshot.QueryService{Service: "WEB"})); got != "a" {
		t.Errorf("service name case: got %q", got)
	}
	if got := Filter(s, &snapshot.QueryService{Service: "db"}); got != nil {
		t.Errorf("unknown service: got %v", got)
	}
	got := Filter(s, &snapshot.QueryService{Service: "web"})
	if got[0] != &s.Services["web"].Instances[0] {
		t.Error("instances are not pointers into the snapshot")
	}
}
