package replica

import (
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

func TestSameSnapshot(t *testing.T) {
	web := &snapshot.Service{Name: "web", Index: 5}
	n1 := &snapshot.Node{Name: "n1"}
	q := &snapshot.Query{ID: "q1"}
	build := func(change func(s *snapshot.Snapshot)) *snapshot.Snapshot {
		s := snapshot.New("dc1", 0, map[string]*snapshot.Service{"web": web}, map[string]*snapshot.Node{"n1": n1}, time.Now())
		s.Queries = []*snapshot.Query{q}
		if change != nil {
			change(s)
		}
		return s
	}
	tests := []struct {
		name   string
		change func(s *snapshot.Snapshot)
		same   bool
	}{
		{"built again from the same values", nil, true},
		{"a service read again", func(s *snapshot.Snapshot) { s.Services["web"] = &snapshot.Service{Name: "web", Index: 5} }, false},
		{"a service removed", func(s *snapshot.Snapshot) { delete(s.Services, "web") }, false},
		{"a node added", func(s *snapshot.Snapshot) { s.Nodes["n2"] = &snapshot.Node{Name: "n2"} }, false},
		{"queries hidden", func(s *snapshot.Snapshot) { s.QueriesHidden = true }, false},
		{"a query changed", func(s *snapshot.Snapshot) { s.Queries = []*snapshot.Query{{ID: "q1"}} }, false},
		{"coordinates read", func(s *snapshot.Snapshot) { s.Coordinates = []*snapshot.Coordinate{{Node: "n1"}} }, false},
		{"gateways read", func(s *snapshot.Snapshot) { s.IngressRead = true }, false},
		{"another agent node", func(s *snapshot.Snapshot) { s.AgentNode = "other" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameSnapshot(build(nil), build(tc.change)); got != tc.same {
				t.Errorf("sameSnapshot = %v, want %v", got, tc.same)
			}
		})
	}
	if sameSnapshot(nil, build(nil)) {
		t.Error("the first snapshot counts as the same as none")
	}
}

// TestListIndex: a snapshot says the index of the service list its
// services are complete for, and it follows registrations and
// deregistrations (a follower drops a service its tier lacks only once
// that index has passed it).
func TestListIndex(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(3, 1)
	_, ev := startMem(t, cat, testConfig())
	listIndex := func() uint64 {
		cat.mu.Lock()
		defer cat.mu.Unlock()
		return cat.listIdx
	}
	ev.waitSnap(t, "sync at the list's index", func(s *snapshot.Snapshot) bool { return s.ListIndex == listIndex() })
	cat.register("late", "n9", instance("late-1", "10.9.0.1", 80))
	ev.waitSnap(t, "late with the list that names it", func(s *snapshot.Snapshot) bool {
		_, ok := s.Service("late")
		return ok && s.ListIndex == listIndex() && s.ListIndex >= s.Services["late"].Index
	})
	cat.deregister("late", "late-1")
	ev.waitSnap(t, "late gone, the list past it", func(s *snapshot.Snapshot) bool {
		_, ok := s.Service("late")
		return !ok && s.ListIndex == listIndex()
	})
}
