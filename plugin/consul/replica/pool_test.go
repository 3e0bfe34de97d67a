package replica

import (
	"fmt"
	"slices"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

func TestAllocate(t *testing.T) {
	tests := []struct {
		name         string
		total        int
		bases, wants []int
		want         []int
	}{
		{"alone, wanting less", -1, []int{155}, []int{20}, []int{20}},
		{"alone, wanting more", -1, []int{155}, []int{1000}, []int{155}},
		{"a small local datacenter lends to a large remote one", -1, []int{67, 67}, []int{1, 200}, []int{1, 133}},
		{"both large: equal shares", -1, []int{67, 67}, []int{500, 200}, []int{67, 67}},
		{"the leftover goes to those wanting more", -1, []int{38, 38, 38}, []int{10, 60, 500}, []int{10, 52, 52}},
		{"order does not matter", -1, []int{38, 38, 38}, []int{500, 10, 60}, []int{52, 10, 52}},
		{"none wanted", -1, []int{67, 67}, []int{0, 0}, []int{0, 0}},
		{"no budget", -1, []int{0, 0}, []int{5, 5}, []int{0, 0}},
		{"the agent's whole limit, not the shares sized for four", 135, []int{23, 23}, []int{1, 500}, []int{1, 134}},
		{"never past HTTPSWatchers", 20000, []int{0, 0}, []int{9000, 9000}, []int{8192, 8192}},
	}
	for _, tc := range tests {
		got := allocate(tc.total, tc.bases, tc.wants)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: allocate(%v, %v) = %v, want %v", tc.name, tc.bases, tc.wants, got, tc.want)
		}
		sum, total := 0, 0
		for i := range got {
			sum += got[i]
			total += tc.bases[i]
		}
		if tc.total >= 0 {
			total = tc.total
		}
		if sum > total {
			t.Errorf("%s: %d handed out of %d", tc.name, sum, total)
		}
	}
}

// TestPoolLendsUnusedBudget runs two replicas that share a pool, each with a
// base budget of 10: the one with few services lends the rest of its budget
// to the one with many, and takes it back (the other evicting watchers) when
// its own catalog grows.
func TestPoolLendsUnusedBudget(t *testing.T) {
	small, large := newMemCatalog(), newMemCatalog()
	small.populate(1, 1)
	large.populate(30, 1)
	cfg := testConfig()
	cfg.MaxWatchers, cfg.Share, cfg.Pool = 10, 2, NewPool()
	_, a := startMem(t, small, cfg)
	_, b := startMem(t, large, cfg)
	a.waitFor(t, "the small one watching its service", func() bool { return a.watched.Load() == 1 })
	b.waitFor(t, "the large one watching its 10 and 9 lent", func() bool { return b.watched.Load() == 19 })
	for s := 1; s < 13; s++ {
		small.register(fmt.Sprintf("service-%d", s), "n1", instance(fmt.Sprintf("grown-%d", s), "10.0.0.1", 80))
	}
	a.waitSnap(t, "small grown", func(s *snapshot.Snapshot) bool { n, _ := s.Counts(); return n == 13 })
	b.waitFor(t, "the large one back to 10", func() bool { return b.watched.Load() == 10 })
	a.waitFor(t, "the small one at 10", func() bool { return a.watched.Load() == 10 })
}

// TestPoolWithoutTheAgentsLimit checks that replicas whose agent limit is
// unknown never share out more than the budget they were sized for, however
// many join ("datacenters *" sizes for four).
func TestPoolWithoutTheAgentsLimit(t *testing.T) {
	p := NewPool()
	big := &budget{}
	p.update(big, member{base: 32, want: 500, sized: 128, overhead: 20})
	var small []*budget
	for range 9 {
		r := &budget{}
		small = append(small, r)
		p.update(r, member{base: 32, want: 10, sized: 128, overhead: 20})
	}
	total := int(big.allowance.Load())
	for _, r := range small {
		if got := r.allowance.Load(); got != 10 {
			t.Errorf("a small replica is allowed %d, want the 10 it needs", got)
		}
		total += int(r.allowance.Load())
	}
	if total > 128 || big.allowance.Load() != 38 {
		t.Errorf("allowed %d in all, %d to the big one; want 128 and 38", total, big.allowance.Load())
	}
	// Known: the whole limit less every replica's own connections.
	p.update(big, member{base: 32, want: 500, sized: 128, capacity: 175, overhead: 20})
	if got := big.allowance.Load(); got != 0 {
		t.Errorf("with 10 replicas of 20 connections each under a capacity of 175, the big one is allowed %d, want 0", got)
	}
}
