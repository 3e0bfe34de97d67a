package tier

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

var built = time.Unix(1700000000, 0).UTC()

func service(name string, index uint64, addrs ...string) *snapshot.Service {
	svc := &snapshot.Service{Name: name, Index: index}
	for i, a := range addrs {
		svc.Instances = append(svc.Instances, snapshot.Instance{
			ID: fmt.Sprintf("%s-%d", name, i), Node: "n1", NodeAddress: "10.0.0.1", Address: a, Port: 80,
			Tags: []string{"v1"}, Meta: map[string]string{"k": "v"}, WeightPassing: 1, WeightWarning: 1,
		})
	}
	return svc
}

func node(name, addr string) *snapshot.Node { return &snapshot.Node{Name: name, Address: addr} }

// baseSet is what every case starts from: two datacenters and a peer.
func baseSet() *snapshot.Set {
	dc1 := snapshot.New("dc1", 0, map[string]*snapshot.Service{
		"web": service("web", 7, "10.1.0.1", "10.1.0.2"), "db": service("db", 5, "10.1.0.3"),
	}, map[string]*snapshot.Node{"n1": node("n1", "10.0.0.1"), "n2": node("n2", "10.0.0.2")}, built)
	dc1.Queries = []*snapshot.Query{{ID: "q1", Name: "web", Service: snapshot.QueryService{Service: "web"}}}
	dc1.AgentNode = "n1"
	dc2 := snapshot.New("dc2", 0, map[string]*snapshot.Service{"api": service("api", 3, "10.2.0.1")},
		map[string]*snapshot.Node{"m1": node("m1", "10.2.0.1")}, built)
	p1 := snapshot.New("dc1", 0, map[string]*snapshot.Service{"pay": service("pay", 4, "10.3.0.1")}, map[string]*snapshot.Node{}, built)
	p1.Peer = "p1"
	return &snapshot.Set{Local: "dc1", Datacenters: []*snapshot.Snapshot{dc1, dc2}, Peers: []*snapshot.Snapshot{p1},
		Known: []string{"dc1", "dc2"}, Cluster: "c1.consul", KnownPeers: []string{"p1"}}
}

// changed is base with its snapshot k replaced by what edit makes of a
// copy of it (sharing every service and node edit leaves alone).
func changed(base *snapshot.Set, k Key, edit func(s *snapshot.Snapshot)) *snapshot.Set {
	next := *base
	next.Datacenters, next.Peers = slices.Clone(base.Datacenters), slices.Clone(base.Peers)
	for _, list := range [][]*snapshot.Snapshot{next.Datacenters, next.Peers} {
		for i, s := range list {
			if KeyOf(s) == k {
				c := *s
				c.Services, c.Nodes = maps.Clone(s.Services), maps.Clone(s.Nodes)
				edit(&c)
				list[i] = snapshot.Rebuild(&c)
			}
		}
	}
	return &next
}

var dc1, dc2, p1 = Key{Datacenter: "dc1"}, Key{Datacenter: "dc2"}, Key{Peer: "p1"}

func deltaCases() []struct {
	name string
	next func(*snapshot.Set) *snapshot.Set
} {
	return []struct {
		name string
		next func(*snapshot.Set) *snapshot.Set
	}{
		{"nothing", func(b *snapshot.Set) *snapshot.Set { return b }},
		{"service added", func(b *snapshot.Set) *snapshot.Set {
			return changed(b, dc1, func(s *snapshot.Snapshot) { s.Services["cache"] = service("cache", 9, "10.1.0.9") })
		}},
		{"service changed", func(b *snapshot.Set) *snapshot.Set {
			return changed(b, dc1, func(s *snapshot.Snapshot) { s.Services["web"] = service("web", 9, "10.1.0.1") })
		}},
		{"service removed", func(b *snapshot.Set) *snapshot.Set {
			return changed(b, dc1, func(s *snapshot.Snapshot) { delete(s.Services, "db"); s.Index = 9 })
		}},
		{"node added and removed", func(b *snapshot.Set) *snapshot.Set {
			return changed(b, dc2, func(s *snapshot.Snapshot) { delete(s.Nodes, "m1"); s.Nodes["m2"] = node("m2", "10.2.0.2") })
		}},
		{"queries changed", func(b *snapshot.Set) *snapshot.Set {
			return changed(b, dc1, func(s *snapshot.Snapshot) {
				s.Queries = []*snapshot.Query{{ID: "q2", Name: "db", TTL: "5s"}}
				s.QueriesHidden = true
			})
		}},
		{"peer changed", func(b *snapshot.Set) *snapshot.Set {
			return changed(b, p1, func(s *snapshot.Snapshot) { s.Services["pay"] = service("pay", 8) })
		}},
		{"datacenter added", func(b *snapshot.Set) *snapshot.Set {
			next := *b
			dc0 := snapshot.New("dc0", 1, map[string]*snapshot.Service{"x": service("x", 1, "10.9.0.1")}, map[string]*snapshot.Node{}, built)
			next.Datacenters = []*snapshot.Snapshot{b.Datacenters[0], dc0, b.Datacenters[1]}
			return &next
		}},
		{"datacenter and peer gone", func(b *snapshot.Set) *snapshot.Set {
			next := *b
			next.Datacenters, next.Peers, next.Known = b.Datacenters[:1], nil, []string{"dc1"}
			return &next
		}},
		{"peer added", func(b *snapshot.Set) *snapshot.Set {
			next := *b
			p0 := snapshot.New("dc1", 0, map[string]*snapshot.Service{}, map[string]*snapshot.Node{}, built)
			p0.Peer = "p0"
			next.Peers, next.KnownPeers = []*snapshot.Snapshot{p0, b.Peers[0]}, []string{"p0", "p1"}
			return &next
		}},
		{"meta changed", func(b *snapshot.Set) *snapshot.Set {
			next := *b
			next.Known, next.ByDistance, next.Cluster = []string{"dc1", "dc2", "dc3"}, []string{"dc2", "dc1"}, "c2.consul"
			next.AgentDNS = json.RawMessage(`{"Domain":"consul."}`)
			return &next
		}},
		{"known peers read, none", func(b *snapshot.Set) *snapshot.Set {
			next := *b
			next.Peers, next.KnownPeers = nil, []string{}
			return &next
		}},
		{"known peers never read", func(b *snapshot.Set) *snapshot.Set {
			next := *b
			next.Peers, next.KnownPeers = nil, nil
			return &next
		}},
	}
}

// TestDiffApply checks that Apply(base, Diff(base, next)) is next, in the
// process and through the wire's encoding, and that base is left alone and
// shared.
func TestDiffApply(t *testing.T) {
	for _, tc := range deltaCases() {
		t.Run(tc.name, func(t *testing.T) {
			base := baseSet()
			next := tc.next(base)
			d := Diff(base, next)
			payload, err := EncodeDelta(d)
			if err != nil {
				t.Fatal(err)
			}
			decoded, err := DecodeDelta(payload)
			if err != nil {
				t.Fatal(err)
			}
			for how, d := range map[string]*Delta{"in process": d, "decoded": decoded} {
				got, err := Apply(base, d)
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
				if !reflect.DeepEqual(got, next) {
					t.Errorf("%s: applied\n%s\nwant\n%s", how, dump(got), dump(next))
				}
				checkShared(t, how, base, got)
			}
			if !reflect.DeepEqual(base, baseSet()) {
				t.Errorf("Apply modified its base:\n%s", dump(base))
			}
		})
	}
}

// checkShared checks that every service and node got holds with the same
// content as base's is base's own.
func checkShared(t *testing.T, how string, base, got *snapshot.Set) {
	t.Helper()
	old := byKey(base)
	for k, s := range byKey(got) {
		b := old[k]
		if b == nil {
			continue
		}
		for name, svc := range s.Services {
			if was := b.Services[name]; was != svc && reflect.DeepEqual(was, svc) {
				t.Errorf("%s: %s's service %s is a copy of base's, not base's", how, k, name)
			}
		}
		for name, n := range s.Nodes {
			if was := b.Nodes[name]; was != n && reflect.DeepEqual(was, n) {
				t.Errorf("%s: %s's node %s is a copy of base's, not base's", how, k, name)
			}
		}
	}
}

func dump(s *snapshot.Set) string {
	b, _ := json.MarshalIndent(s, "", " ")
	return string(b)
}

// TestDiffSmall checks that a delta carries only what changed.
func TestDiffSmall(t *testing.T) {
	base := baseSet()
	next := changed(base, dc1, func(s *snapshot.Snapshot) { s.Services["web"] = service("web", 9, "10.1.0.1") })
	d := Diff(base, next)
	if len(d.Parts) != 1 || d.Parts[0].Key != dc1 || d.Parts[0].Whole {
		t.Fatalf("parts %+v, want dc1's alone, not whole", d.Parts)
	}
	if got := slices.Collect(maps.Keys(d.Parts[0].Snapshot.Services)); !slices.Equal(got, []string{"web"}) || len(d.Parts[0].Snapshot.Nodes) != 0 {
		t.Errorf("services %v and %d nodes sent, want web alone", got, len(d.Parts[0].Snapshot.Nodes))
	}
	if d := Diff(base, base); len(d.Parts) != 0 || len(d.Gone) != 0 {
		t.Errorf("Diff of a Set with itself: %+v", d)
	}
}

// TestApplyRefuses checks that a delta that cannot apply to the base leaves
// nothing applied and says why.
func TestApplyRefuses(t *testing.T) {
	dc3 := snapshot.New("dc3", 1, nil, nil, built)
	renamed := snapshot.New("dc2", 1, nil, nil, built)
	long := snapshot.New("d"+string(make([]byte, 70)), 1, nil, nil, built)
	tests := []struct {
		name  string
		delta Delta
	}{
		{"part of a snapshot the base lacks", Delta{Meta: snapshot.Set{Local: "dc1"}, Parts: []Part{{Key: Key{Datacenter: "dc3"}, Snapshot: dc3}}}},
		{"gone snapshot the base lacks", Delta{Meta: snapshot.Set{Local: "dc1"}, Gone: []Key{{Datacenter: "dc3"}}}},
		{"part without a snapshot", Delta{Meta: snapshot.Set{Local: "dc1"}, Parts: []Part{{Key: dc2}}}},
		{"part named otherwise than its snapshot", Delta{Meta: snapshot.Set{Local: "dc1"}, Parts: []Part{{Key: dc1, Whole: true, Snapshot: renamed}}}},
		{"part repeated", Delta{Meta: snapshot.Set{Local: "dc1"}, Parts: []Part{{Key: dc2, Whole: true, Snapshot: renamed}, {Key: dc2, Whole: true, Snapshot: renamed}}}},
		{"unnamed part", Delta{Meta: snapshot.Set{Local: "dc1"}, Parts: []Part{{Whole: true, Snapshot: snapshot.New("", 1, nil, nil, built)}}}},
		{"name longer than a label", Delta{Meta: snapshot.Set{Local: "dc1"}, Parts: []Part{{Key: KeyOf(long), Whole: true, Snapshot: long}}}},
		{"local datacenter gone", Delta{Meta: snapshot.Set{Local: "dc1"}, Gone: []Key{dc1}}},
		{"another local datacenter", Delta{Meta: snapshot.Set{Local: "dc9"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := baseSet()
			got, err := Apply(base, &tc.delta)
			if !errors.Is(err, ErrGarbage) || got != nil {
				t.Errorf("Apply = %v, %v; want nil and an error wrapping ErrGarbage", got, err)
			}
			if !reflect.DeepEqual(base, baseSet()) {
				t.Errorf("a refused delta modified the base")
			}
		})
	}
}

// TestApplySanitizes checks that null entries in a delta are left out and
// counted, as they are in a file.
func TestApplySanitizes(t *testing.T) {
	payload := `{"Meta":{"Local":"dc1"},"Parts":[` +
		`{"Datacenter":"dc1","Snapshot":{"Datacenter":"dc1","Services":{"web":null,"new":{"Name":"new","Index":11}},"Nodes":{"n9":null},"Queries":[null],"Coordinates":[null]}},` +
		`{"Datacenter":"dc3","Whole":true,"Snapshot":{"Datacenter":"dc3","Services":{"x":null}}}]}`
	d := decodeJSON(t, payload)
	got, err := Apply(baseSet(), d)
	if err != nil {
		t.Fatal(err)
	}
	if got.Skipped != 5 {
		t.Errorf("Skipped = %d, want 5", got.Skipped)
	}
	s := got.Snapshot("dc1")
	if _, ok := s.Services["web"]; ok || s.Services["new"] == nil || s.Services["db"] == nil {
		t.Errorf("dc1's services %v, want db and new", slices.Sorted(maps.Keys(s.Services)))
	}
	if svcs, inst := s.Counts(); svcs != 2 || inst != 1 || s.Index != 11 {
		t.Errorf("counts %d services, %d instances, index %d; want 2, 1, 11", svcs, inst, s.Index)
	}
	if dc3 := got.Snapshot("dc3"); dc3 == nil || len(dc3.Services) != 0 || dc3.Nodes == nil {
		t.Errorf("dc3 = %+v, want it empty with maps", dc3)
	}
}

// decodeJSON makes the delta a tier would send as JSON.
func decodeJSON(t *testing.T, s string) *Delta {
	t.Helper()
	var d Delta
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// TestApplyFromNothing checks that a delta from no Set (every part whole)
// makes the Set.
func TestApplyFromNothing(t *testing.T) {
	want := baseSet()
	got, err := Apply(nil, Diff(nil, want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("applied\n%s\nwant\n%s", dump(got), dump(want))
	}
}
