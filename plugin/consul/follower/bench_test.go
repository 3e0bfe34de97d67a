package follower

import (
	"fmt"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// benchSet is a datacenter of n services at index 10.
func benchSet(n int) *snapshot.Set {
	services := make([]*snapshot.Service, n)
	for i := range services {
		services[i] = sv(fmt.Sprintf("svc-%05d", i), 10)
	}
	return set(dc("dc1", "", 10, services...))
}

// BenchmarkMergeDelta is the merge's cost of one changed service at 5,000
// (tier.Apply's, which clones the snapshot's maps, is not counted), with
// nothing held and with 100 services held from a tier that was ahead.
func BenchmarkMergeDelta(b *testing.B) {
	for _, held := range []int{0, 100} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			base := benchSet(5000)
			seed := base
			if held > 0 {
				extra := map[string]*snapshot.Service{}
				for i := range held {
					extra[fmt.Sprintf("ghost-%d", i)] = sv(fmt.Sprintf("ghost-%d", i), 1<<40)
				}
				seed = set(with(base.Datacenters[0], 0, extra))
			}
			m := newMerger(seed, "")
			m.whole(base, false)
			// The tier's generations alternate between two Sets, one
			// service apart: a delta each way, made before timing.
			next := set(with(base.Datacenters[0], 0, map[string]*snapshot.Service{"svc-00001": sv("svc-00001", 11)}))
			sets, deltas := [2]*snapshot.Set{next, base}, [2]*tier.Delta{tier.Diff(base, next), tier.Diff(next, base)}
			for i := 0; b.Loop(); i++ {
				m.delta(sets[i%2], deltas[i%2])
			}
			if m.held != held {
				b.Fatalf("held %d, want %d", m.held, held)
			}
		})
	}
}

// BenchmarkMergeWhole is the merge of a whole state of 5,000 services from
// another tier (decoding it is not counted).
func BenchmarkMergeWhole(b *testing.B) {
	m := newMerger(benchSet(5000), "")
	other := benchSet(5000)
	for b.Loop() {
		m.whole(other, false)
	}
}
