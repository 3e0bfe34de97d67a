package tier

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
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
