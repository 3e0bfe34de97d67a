package tier

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/serf/coordinate"
)

// largeSet is a catalog of services x instances as the replica holds one:
// tags, meta and tagged addresses on every instance, 100 nodes.
func largeSet(services, instances int) *snapshot.Set {
	svcs := make(map[string]*snapshot.Service, services)
	nodes := map[string]*snapshot.Node{}
	for n := range 100 {
		name := fmt.Sprintf("node-%03d", n)
		nodes[name] = &snapshot.Node{Name: name, Address: fmt.Sprintf("10.0.%d.%d", n/250, n%250+1), Meta: map[string]string{"rack": "r1"}}
	}
	for s := range services {
		svc := &snapshot.Service{Name: fmt.Sprintf("service-%04d", s), Index: uint64(1000 + s)}
		for i := range instances {
			node := fmt.Sprintf("node-%03d", (s+i)%100)
			svc.Instances = append(svc.Instances, snapshot.Instance{
				ID: fmt.Sprintf("%s-%d", svc.Name, i), Node: node, NodeAddress: nodes[node].Address,
				Address: fmt.Sprintf("10.%d.%d.%d", 1+i, s/250, s%250+1), Port: uint16(8000 + i),
				TaggedAddresses: map[string]string{"lan_ipv4": fmt.Sprintf("10.%d.%d.%d", 1+i, s/250, s%250+1)},
				Tags:            []string{"v1", "primary"}, Meta: map[string]string{"version": "1.2.3", "team": "core"},
				WeightPassing: 1, WeightWarning: 1,
			})
		}
		svcs[svc.Name] = svc
	}
	dc1 := snapshot.New("dc1", 0, svcs, nodes, time.Unix(1700000000, 0).UTC())
	return &snapshot.Set{Local: "dc1", Datacenters: []*snapshot.Snapshot{dc1}, Known: []string{"dc1"}, Cluster: "c1.consul"}
}

// oneChanged is set with one service's instance moved to another port.
func oneChanged(set *snapshot.Set) *snapshot.Set {
	return changed(set, dc1, func(s *snapshot.Snapshot) {
		old := s.Services["service-2500"]
		svc := &snapshot.Service{Name: old.Name, Index: old.Index + 10000, Instances: append([]snapshot.Instance(nil), old.Instances...)}
		svc.Instances[0].Port++
		s.Services[svc.Name] = svc
	})
}

// TestDeltaSize checks that the delta for one changed service of 5,000
// is small beside the whole state, and reports both.
func TestDeltaSize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a catalog of 5,000 services")
	}
	base := largeSet(5000, 5)
	next := oneChanged(base)
	var whole bytes.Buffer
	if err := snapshot.Encode(&whole, next); err != nil {
		t.Fatal(err)
	}
	delta, err := EncodeDelta(Diff(base, next))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("5,000 services x 5 instances: whole %d bytes, one-service delta %d bytes", whole.Len(), len(delta))
	if len(delta) > 2048 {
		t.Errorf("one-service delta is %d bytes, want at most 2 KiB", len(delta))
	}
}

func BenchmarkDiff(b *testing.B) {
	base := largeSet(5000, 5)
	next := oneChanged(base)
	b.ReportAllocs()
	for b.Loop() {
		Diff(base, next)
	}
}

func BenchmarkApply(b *testing.B) {
	base := largeSet(5000, 5)
	d := Diff(base, oneChanged(base))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Apply(base, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWhole is what the tier spends once per generation a new
// follower asks for.
func BenchmarkWhole(b *testing.B) {
	set := largeSet(5000, 5)
	b.ReportAllocs()
	for b.Loop() {
		var buf bytes.Buffer
		if err := snapshot.Encode(&buf, set); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeltaAnswer is the tier's cost per generation for one changed
// service: the Diff and its encoding, shared by every follower.
func BenchmarkDeltaAnswer(b *testing.B) {
	base := largeSet(5000, 5)
	next := oneChanged(base)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeDelta(Diff(base, next)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDeltaKeepsLists checks that a delta leaves out the lists a snapshot
// shares with its base (5,000 nodes' coordinates and the prepared queries
// here), and that Apply gives them back.
func TestDeltaKeepsLists(t *testing.T) {
	base := changed(largeSet(5000, 1), dc1, func(s *snapshot.Snapshot) {
		for i := range 5000 {
			s.Coordinates = append(s.Coordinates, &snapshot.Coordinate{Node: fmt.Sprintf("node-%d", i),
				Coord: &coordinate.Coordinate{Vec: []float64{1, 2, 3, 4, 5, 6, 7, 8}, Error: 1.5, Adjustment: 0.1, Height: 0.01}})
		}
		s.Queries = []*snapshot.Query{{ID: "q1", Name: "web"}}
	})
	next := oneChanged(base)
	payload, err := EncodeDelta(Diff(base, next))
	if err != nil {
		t.Fatal(err)
	}
	if len(payload) > 2048 {
		t.Errorf("one-service delta with 5,000 coordinates is %d bytes, want at most 2 KiB", len(payload))
	}
	d, err := DecodeDelta(payload)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Apply(base, d)
	if err != nil {
		t.Fatal(err)
	}
	if g, b := got.Snapshot("dc1"), base.Snapshot("dc1"); len(g.Coordinates) != 5000 || &g.Coordinates[0] != &b.Coordinates[0] || len(g.Queries) != 1 {
		t.Errorf("applied: %d coordinates (shared with the base: %v), %d queries; want the base's 5,000 and 1",
			len(g.Coordinates), len(g.Coordinates) > 0 && &g.Coordinates[0] == &b.Coordinates[0], len(g.Queries))
	}
}
