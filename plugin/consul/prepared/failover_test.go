package prepared

import (
	"slices"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

func targetNames(ts []snapshot.QueryTarget) []string {
	var out []string
	for _, t := range ts {
		if t.Peer != "" {
			out = append(out, "peer:"+t.Peer)
		} else {
			out = append(out, t.Datacenter)
		}
	}
	return out
}

// Cases from Consul's TestPreparedQuery_queryFailover; Consul's mock returns
// the other datacenters, this one's input also holds the local one.
func TestFailoverTargets(t *testing.T) {
	all := []string{"dc1", "local", "dc2", "dc3", "xxx", "dc4"}
	tests := []struct {
		name       string
		byDistance []string
		f          snapshot.QueryFailover
		want       []string
	}{
		{"no datacenters used", all, snapshot.QueryFailover{Datacenters: []string{""}}, nil},
		{"none available", []string{"local"}, snapshot.QueryFailover{NearestN: 3}, nil},
		{"nearest 3", all, snapshot.QueryFailover{NearestN: 3}, []string{"dc1", "dc2", "dc3"}},
		{"nearest 4", all, snapshot.QueryFailover{NearestN: 4}, []string{"dc1", "dc2", "dc3", "xxx"}},
		{"nearest more than known", all, snapshot.QueryFailover{NearestN: 10}, []string{"dc1", "dc2", "dc3", "xxx", "dc4"}},
		{"nearest 2 and a listed one", all, snapshot.QueryFailover{NearestN: 2, Datacenters: []string{"dc4"}}, []string{"dc1", "dc2", "dc4"}},
		{"listed overlaps nearest", all, snapshot.QueryFailover{NearestN: 2, Datacenters: []string{"dc4", "dc1"}}, []string{"dc1", "dc2", "dc4"}},
		{"listed only", all, snapshot.QueryFailover{Datacenters: []string{"dc3", "xxx"}}, []string{"dc3", "xxx"}},
		{"listed unknown, local and differently cased are skipped", all,
			snapshot.QueryFailover{Datacenters: []string{"nope", "local", "DC1", "dc2"}}, []string{"dc2"}},
		{"listed twice, tried once", all, snapshot.QueryFailover{Datacenters: []string{"dc2", "dc2"}}, []string{"dc2"}},
		{"targets with peers", []string{"local", "dc44"},
			snapshot.QueryFailover{Targets: []snapshot.QueryTarget{{Peer: "cluster-01"}, {Datacenter: "dc44"}, {Peer: "cluster-02"}}},
			[]string{"peer:cluster-01", "dc44", "peer:cluster-02"}},
		{"datacenters win over targets", all,
			snapshot.QueryFailover{Datacenters: []string{"dc3"}, Targets: []snapshot.QueryTarget{{Peer: "p"}}}, []string{"dc3"}},
		{"empty target", all, snapshot.QueryFailover{Targets: []snapshot.QueryTarget{{}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := targetNames(FailoverTargets("local", tt.byDistance, &tt.f))
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
