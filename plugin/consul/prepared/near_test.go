package prepared

import (
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/serf/coordinate"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// at is librtt.GenerateCoordinate: a coordinate rtt away from the origin.
func at(rtt time.Duration) *coordinate.Coordinate {
	c := coordinate.NewCoordinate(coordinate.DefaultConfig())
	c.Vec[0] = rtt.Seconds()
	c.Height = 0
	return c
}

func coords(segment string, ms map[string]int) []*snapshot.Coordinate {
	var out []*snapshot.Coordinate
	for _, n := range slices.Sorted(maps.Keys(ms)) {
		out = append(out, &snapshot.Coordinate{Node: n, Segment: segment, Coord: at(time.Duration(ms[n]) * time.Millisecond)})
	}
	return out
}

func instancesOn(nodes ...string) []*snapshot.Instance {
	out := make([]*snapshot.Instance, len(nodes))
	for i, n := range nodes {
		out[i] = &snapshot.Instance{Node: n}
	}
	return out
}

func TestComputeDistance(t *testing.T) {
	// Consul's TestRTT_ComputeDistance, and incompatible dimensions.
	tests := []struct {
		a, b *coordinate.Coordinate
		want float64
	}{
		{at(0), at(10 * time.Millisecond), 0.010},
		{at(10 * time.Millisecond), at(10 * time.Millisecond), 0},
		{at(8 * time.Millisecond), at(10 * time.Millisecond), 0.002},
		{at(10 * time.Millisecond), at(8 * time.Millisecond), 0.002},
		{nil, at(8 * time.Millisecond), math.Inf(1)},
		{at(8 * time.Millisecond), nil, math.Inf(1)},
		{nil, nil, math.Inf(1)},
		{at(0), &coordinate.Coordinate{Vec: []float64{1}}, math.Inf(1)},
	}
	for i, tt := range tests {
		if got := computeDistance(tt.a, tt.b); math.Abs(got-tt.want) > 1e-9 && got != tt.want {
			t.Errorf("%d: distance %v, want %v", i, got, tt.want)
		}
	}
}

func TestSortNear(t *testing.T) {
	plain := coords("", map[string]int{"n1": 1, "n2": 2, "n3": 3, "n4": 4, "n5": 5})
	segmented := append(coords("alpha", map[string]int{"client": 10, "srv": 11, "far": 50}),
		coords("", map[string]int{"srv": 100, "other": 10})...)
	tests := []struct {
		name     string
		coords   []*snapshot.Coordinate
		in       []string
		node, dc string
		want     []string
	}{
		{name: "no node", coords: plain, in: []string{"n5", "n1", "n3"}, node: "", dc: "dc1", want: []string{"n5", "n1", "n3"}},
		{name: "agent in another datacenter", coords: plain, in: []string{"n5", "n1", "n3"}, node: "n3", dc: "dc2", want: []string{"n5", "n1", "n3"}},
		{
			name: "by distance, ties and missing coordinates keep their order", coords: plain,
			in: []string{"x1", "n5", "n4", "x2", "n1", "n2", "n3"}, node: "n3", dc: "dc1",
			want: []string{"n3", "n4", "n2", "n5", "n1", "x1", "x2"},
		},
		{name: "datacenter and node names are case-insensitive", coords: plain, in: []string{"n1", "N3"}, node: "n3", dc: "DC1", want: []string{"N3", "n1"}},
		{
			name: "source without coordinate: no sort, but the node comes first", coords: plain,
			in: []string{"n5", "n1", "nocoord", "n2"}, node: "nocoord", dc: "dc1",
			want: []string{"nocoord", "n1", "n5", "n2"},
		},
		{
			name: "the node is looked for in the first ten only", coords: nil,
			in: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "me"}, node: "me", dc: "dc1",
			want: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "me"},
		},
		{
			name: "tenth position still counts", coords: nil,
			in: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "me"}, node: "me", dc: "dc1",
			want: []string{"me", "b", "c", "d", "e", "f", "g", "h", "i", "a"},
		},
		{
			// A client in one segment compares in that segment; a server
			// (several segments) is compared in the client's; a node in the
			// default segment only makes the default segment win, where
			// the client has no coordinate.
			name: "segments", coords: segmented,
			in: []string{"other", "far", "srv"}, node: "client", dc: "dc1",
			want: []string{"srv", "far", "other"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := NewSet(&snapshot.Snapshot{Datacenter: "dc1", Coordinates: tt.coords}, nil)
			in := instancesOn(tt.in...)
			set.SortNear(in, tt.node, tt.dc)
			var got []string
			for _, i := range in {
				got = append(got, i.Node)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNearNode(t *testing.T) {
	set := NewSet(&snapshot.Snapshot{Nodes: map[string]*snapshot.Node{
		"zeta":  {Name: "Zeta", Address: "10.0.0.1"},
		"alpha": {Name: "Alpha", Address: "10.0.0.1"},
		"beta":  {Name: "beta", Address: "10.0.0.2"},
	}}, nil)
	tests := []struct {
		near, agent, ip, want string
	}{
		{"", "agent", "10.0.0.2", ""},
		{"_agent", "agent", "10.0.0.2", "agent"},
		{"_ip", "agent", "10.0.0.2", "beta"},
		{"_ip", "agent", "10.0.0.1", "Alpha"}, // first in name order
		{"_ip", "agent", "10.0.0.9", ""},
		{"_ip", "agent", "", ""},
		{"some-node", "agent", "10.0.0.2", "some-node"},
	}
	for _, tt := range tests {
		if got := set.NearNode(tt.near, tt.agent, tt.ip); got != tt.want {
			t.Errorf("NearNode(%q, %q, %q) = %q, want %q", tt.near, tt.agent, tt.ip, got, tt.want)
		}
	}
}
