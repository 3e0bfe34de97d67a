package follower

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

func sv(name string, index uint64) *snapshot.Service {
	return &snapshot.Service{Name: name, Index: index, Instances: []snapshot.Instance{{ID: name + "-1", Node: "n1", Port: 80}}}
}

// dc makes a datacenter's snapshot (peer "") or a peer's; its index is at
// least index.
func dc(name, peer string, index uint64, services ...*snapshot.Service) *snapshot.Snapshot {
	m := map[string]*snapshot.Service{}
	for _, s := range services {
		m[snapshot.Key(s.Name)] = s
	}
	s := snapshot.New(name, index, m, map[string]*snapshot.Node{}, time.Unix(int64(index), 0))
	s.Peer, s.ListIndex = peer, index
	return s
}

func set(snaps ...*snapshot.Snapshot) *snapshot.Set {
	s := &snapshot.Set{Local: "dc1", Cluster: "c1.consul"}
	for _, snap := range snaps {
		add(s, snap)
	}
	return s
}

// with returns a copy of prev's snapshot of k with its services changed as
// given (a nil value removes), and the index raised to index: what a tier's
// next generation holds, sharing every unchanged service.
func with(prev *snapshot.Snapshot, index uint64, change map[string]*snapshot.Service) *snapshot.Snapshot {
	services := maps.Clone(prev.Services)
	for name, s := range change {
		if s == nil {
			delete(services, name)
		} else {
			services[name] = s
		}
	}
	s := snapshot.New(prev.Datacenter, index, services, prev.Nodes, prev.Built)
	s.Peer, s.ListIndex = prev.Peer, index
	return s
}

// indexes lists a snapshot's services as name: index.
func indexes(s *snapshot.Snapshot) map[string]uint64 {
	if s == nil {
		return nil
	}
	out := map[string]uint64{}
	for name, svc := range s.Services {
		out[name] = svc.Index
	}
	return out
}

// mergeCase is a follower seeded with seed that merges bases in turn.
type mergeCase struct {
	name     string
	seed     *snapshot.Set
	bases    []*snapshot.Set // merged in turn: the first whole, each next as a delta from the one before
	wholes   bool            // every base merged whole
	same     bool            // the wholes come from the same tier (its history overflowed)
	want     map[string]uint64
	wantHeld int
}

func mergeCases() []mergeCase {
	a10, b10, ghost30 := sv("a", 10), sv("b", 10), sv("ghost", 30)
	tierA := set(dc("dc1", "", 20, a10, b10))
	return []mergeCase{
		{
			name:  "a tier behind never replaces a newer service of the seed (the file)",
			seed:  set(dc("dc1", "", 40, sv("a", 40), b10)),
			bases: []*snapshot.Set{tierA},
			want:  map[string]uint64{"a": 40, "b": 10},
		},
		{
			name:  "a deletion from a tier ahead is taken",
			seed:  tierA,
			bases: []*snapshot.Set{set(dc("dc1", "", 25, a10))},
			want:  map[string]uint64{"a": 10},
		},
		{
			name:     "a ghost only mine has is held while base is behind it",
			seed:     set(dc("dc1", "", 30, a10, b10, ghost30)),
			bases:    []*snapshot.Set{tierA},
			want:     map[string]uint64{"a": 10, "b": 10, "ghost": 30},
			wantHeld: 1,
		},
		{
			name: "a ghost is dropped once base's index passes it, though no delta names it",
			seed: set(dc("dc1", "", 30, a10, b10, ghost30)),
			bases: []*snapshot.Set{tierA,
				set(with(tierA.Datacenters[0], 31, map[string]*snapshot.Service{"b": sv("b", 31)}))},
			want: map[string]uint64{"a": 10, "b": 31},
		},
		{
			name:  "a service mine saw deregistered is not brought back by a tier behind",
			seed:  set(dc("dc1", "", 50, a10)),
			bases: []*snapshot.Set{tierA},
			want:  map[string]uint64{"a": 10},
		},
		{
			name: "a service mine lacks is taken once base catches up",
			seed: set(dc("dc1", "", 50, a10)),
			bases: []*snapshot.Set{tierA,
				set(with(tierA.Datacenters[0], 60, nil))},
			want: map[string]uint64{"a": 10, "b": 10},
		},
		{
			name:  "a service newer than all mine has seen is taken from a tier behind",
			seed:  set(dc("dc1", "", 50, a10)),
			bases: []*snapshot.Set{set(dc("dc1", "", 20, a10, sv("new", 55)))},
			want:  map[string]uint64{"a": 10, "new": 55},
		},
		{
			name:  "a deregistration by the tier followed is taken, though it lowers the snapshot's index",
			bases: []*snapshot.Set{set(dc("dc1", "", 30, a10, b10, sv("top", 30))), tierA},
			want:  map[string]uint64{"a": 10, "b": 10},
		},
		{
			name:   "so it is when that tier answers whole (its history overflowed)",
			bases:  []*snapshot.Set{set(dc("dc1", "", 30, a10, b10, sv("top", 30))), tierA},
			wholes: true, same: true,
			want: map[string]uint64{"a": 10, "b": 10},
		},
		{
			name: "another tier behind the first: nothing moves back",
			bases: []*snapshot.Set{
				set(dc("dc1", "", 40, sv("a", 40), b10)),
				set(dc("dc1", "", 30, sv("a", 30), sv("b", 30), sv("c", 25))),
			},
			wholes: true,
			want:   map[string]uint64{"a": 40, "b": 30},
		},
	}
}

func TestMerge(t *testing.T) {
	for _, tt := range mergeCases() {
		t.Run(tt.name, func(t *testing.T) {
			m := newMerger(tt.seed, "")
			var got *snapshot.Set
			for i, base := range tt.bases {
				if i == 0 || tt.wholes {
					got = m.whole(base, i > 0 && tt.same)
				} else {
					got = m.delta(base, tier.Diff(tt.bases[i-1], base))
				}
			}
			if g := indexes(got.Snapshot("dc1")); !maps.Equal(g, tt.want) {
				t.Errorf("services %v, want %v", g, tt.want)
			}
			if m.held != tt.wantHeld {
				t.Errorf("held %d, want %d", m.held, tt.wantHeld)
			}
		})
	}
}

func TestMergeFieldsFollowTheNewerSnapshot(t *testing.T) {
	node := func(name string) map[string]*snapshot.Node {
		return map[string]*snapshot.Node{name: {Name: name, Address: "10.0.0.1"}}
	}
	newer, older := dc("dc1", "", 50, sv("a", 50)), dc("dc1", "", 20, sv("a", 20))
	newer.Nodes, older.Nodes = node("newer"), node("older")
	newer.Queries = []*snapshot.Query{{ID: "q-newer", Name: "newer"}}
	older.Queries = []*snapshot.Query{{ID: "q-older", Name: "older"}}
	for _, tt := range []struct {
		name       string
		seed, base *snapshot.Snapshot
	}{
		{"base ahead", older, newer},
		{"base behind", newer, older},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := newMerger(set(tt.seed), "").whole(set(tt.base), false).Snapshot("dc1")
			if got.Nodes["newer"] == nil || len(got.Nodes) != 1 {
				t.Errorf("nodes %v, want the newer snapshot's", slices.Collect(maps.Keys(got.Nodes)))
			}
			if len(got.Queries) != 1 || got.Queries[0].ID != "q-newer" || got.Index != 50 {
				t.Errorf("queries %v at index %d, want the newer snapshot's at 50", got.Queries, got.Index)
			}
		})
	}
}

// TestWithServicesCarriesEveryField keeps withServices in step with the
// Snapshot type: a field added there and not carried over here fails.
func TestWithServicesCarriesEveryField(t *testing.T) {
	leader := &snapshot.Snapshot{}
	v := reflect.ValueOf(leader).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.CanSet() {
			fill(t, f, v.Type().Field(i).Name)
		}
	}
	services := map[string]*snapshot.Service{"x": sv("x", 1)}
	got := reflect.ValueOf(withServices(leader, services, 99)).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if !v.Field(i).CanSet() || name == "Services" || name == "Index" {
			continue
		}
		if !reflect.DeepEqual(got.Field(i).Interface(), v.Field(i).Interface()) {
			t.Errorf("field %s not carried over", name)
		}
	}
}

// fill sets f to a value that is not its zero.
func fill(t *testing.T, f reflect.Value, name string) {
	switch f.Kind() {
	case reflect.String:
		f.SetString("x" + strings.ToLower(name))
	case reflect.Bool:
		f.SetBool(true)
	case reflect.Uint64:
		f.SetUint(7)
	case reflect.Slice:
		s := reflect.MakeSlice(f.Type(), 1, 1)
		if e := s.Index(0); e.Kind() == reflect.Pointer {
			e.Set(reflect.New(e.Type().Elem()))
		}
		f.Set(s)
	case reflect.Map:
		f.Set(reflect.MakeMap(f.Type()))
		f.SetMapIndex(reflect.ValueOf("k"), reflect.New(f.Type().Elem().Elem()))
	case reflect.Struct:
		f.Set(reflect.ValueOf(time.Unix(5, 0)))
	default:
		t.Fatalf("field %s of kind %s: teach fill it", name, f.Kind())
	}
}

func TestMergeSnapshots(t *testing.T) {
	dc2, peer := dc("dc2", "", 5, sv("x", 5)), dc("dc1", "p1", 7, sv("y", 7))
	t.Run("a new datacenter or peer is taken whole", func(t *testing.T) {
		base := set(dc("dc1", "", 20, sv("a", 10)), dc2, peer)
		got := newMerger(set(dc("dc1", "", 30, sv("a", 30))), "").whole(base, false)
		if got.Snapshot("dc2") != dc2 || got.PeerSnapshot("p1") != peer {
			t.Errorf("dc2 %p, peer %p: want base's %p, %p", got.Snapshot("dc2"), got.PeerSnapshot("p1"), dc2, peer)
		}
	})
	for _, tt := range []struct {
		name             string
		known, peers     []string
		wantDC, wantPeer bool
	}{
		{"kept while never listed", nil, nil, true, true},
		{"kept while Consul knows them", []string{"dc1", "dc2"}, []string{"p1"}, true, true},
		{"dropped once Consul no longer knows them", []string{"dc1"}, []string{}, false, false},
	} {
		t.Run("a snapshot base lacks is "+tt.name, func(t *testing.T) {
			base := set(dc("dc1", "", 20, sv("a", 10)))
			base.Known, base.KnownPeers = tt.known, tt.peers
			got := newMerger(set(dc("dc1", "", 10, sv("a", 10)), dc2, peer), "").whole(base, false)
			if (got.Snapshot("dc2") != nil) != tt.wantDC || (got.PeerSnapshot("p1") != nil) != tt.wantPeer {
				t.Errorf("dc2 kept %v, peer kept %v; want %v, %v", got.Snapshot("dc2") != nil, got.PeerSnapshot("p1") != nil, tt.wantDC, tt.wantPeer)
			}
		})
	}
}

func TestMergeNodeName(t *testing.T) {
	local, other := dc("dc1", "", 10, sv("a", 10)), dc("dc2", "", 10, sv("a", 10))
	local.AgentNode, other.AgentNode = "tier-node", "dc2-node"
	for _, tt := range []struct{ nodeName, wantLocal string }{
		{"", "tier-node"},
		{"me", "me"},
	} {
		m := newMerger(nil, tt.nodeName)
		got := m.whole(set(local, other), false)
		if a := got.Snapshot("dc1").AgentNode; a != tt.wantLocal {
			t.Errorf("node name %q: the local snapshot's AgentNode is %q, want %q", tt.nodeName, a, tt.wantLocal)
		}
		if got.Snapshot("dc2") != other {
			t.Errorf("node name %q: another datacenter's snapshot changed", tt.nodeName)
		}
		next := set(with(local, 11, map[string]*snapshot.Service{"b": sv("b", 11)}), other)
		next.Datacenters[0].AgentNode = "tier-node"
		if a := m.delta(next, tier.Diff(set(local, other), next)).Snapshot("dc1").AgentNode; a != tt.wantLocal {
			t.Errorf("node name %q: after a delta the local AgentNode is %q, want %q", tt.nodeName, a, tt.wantLocal)
		}
	}
}

// TestMergeDeltaCost checks that a delta looks at what it changed and at
// the held services, not at every service, and that mine then shares
// base's services.
func TestMergeDeltaCost(t *testing.T) {
	services := []*snapshot.Service{sv("ghost", 100)}
	for i := range 1000 {
		services = append(services, sv("s"+string(rune('a'+i%26))+string(rune('a'+i/26)), 10))
	}
	base := set(dc("dc1", "", 50, services[1:]...), dc("dc2", "", 5, sv("x", 5)))
	m := newMerger(set(dc("dc1", "", 100, services...)), "")
	m.whole(base, false)
	if m.held != 1 {
		t.Fatalf("held %d, want the ghost", m.held)
	}
	next := set(with(base.Datacenters[0], 60, map[string]*snapshot.Service{"saa": sv("saa", 60)}), base.Datacenters[1])
	got := m.delta(next, tier.Diff(base, next))
	if m.compared != 2 || got.Snapshot("dc1").Services["saa"].Index != 60 {
		t.Errorf("the delta compared %d services, want 2 (the changed one and the held one)", m.compared)
	}
	if got.Snapshot("dc2") != base.Datacenters[1] {
		t.Error("an unchanged snapshot was rebuilt")
	}
	last := set(with(next.Datacenters[0], 101, map[string]*snapshot.Service{"sab": sv("sab", 101)}), base.Datacenters[1])
	got = m.delta(last, tier.Diff(next, last))
	if m.held != 0 || got.Snapshot("dc1").Services["ghost"] != nil {
		t.Errorf("held %d after base passed the ghost's index", m.held)
	}
	if reflect.ValueOf(got.Snapshot("dc1").Services).Pointer() != reflect.ValueOf(last.Datacenters[0].Services).Pointer() {
		t.Error("mine does not share base's services once nothing differs")
	}
}

// TestMergeSettles: a tier that lacks a service mine has, has one mine
// lacks, or has a version of it whose index says older, with no index to
// settle it, is believed once it has read the datacenter fine for settle,
// and the name has differed as long; not before, not while it fails to read,
// and not when it reads fine only since lately (back from an outage).
func TestMergeSettles(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fine  time.Duration // how long before the delta the tier has read fine; <0: it does not
		after time.Duration
		want  map[string]uint64
	}{
		{"not before settle", settle, settle - time.Second, map[string]uint64{"a": 20, "top": 30}},
		{"not while the tier fails to read it", -1, settle, map[string]uint64{"a": 20, "top": 30}},
		{"not when it reads fine only lately", time.Second, settle, map[string]uint64{"a": 20, "top": 30}},
		{"once settled", settle, settle, map[string]uint64{"a": 10, "back": 5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			// Mine has top (the base's list has not passed it) and another
			// version of a, at a higher index than the base's.
			m := newMerger(set(dc("dc1", "", 30, sv("a", 20), sv("top", 30))), "")
			m.now = func() time.Time { return now }
			base := set(dc("dc1", "", 10, sv("a", 10), sv("back", 5)))
			m.whole(base, false)
			now = now.Add(tt.after)
			m.fineSince = func(tier.Key) time.Time {
				if tt.fine < 0 {
					return time.Time{}
				}
				return now.Add(-tt.fine)
			}
			got := m.delta(base, &tier.Delta{})
			if g := indexes(got.Snapshot("dc1")); !maps.Equal(g, tt.want) {
				t.Errorf("services %v, want %v", g, tt.want)
			}
		})
	}
}

// TestMergeKeepsWhatTheListHasNotPassed: a tier catching up reads changed
// services (its snapshot's index passes a service only mine has) before it
// reads the service list that names that service: mine keeps it until the
// base's list index passes it.
func TestMergeKeepsWhatTheListHasNotPassed(t *testing.T) {
	m := newMerger(set(dc("dc1", "", 36, sv("churn", 30), sv("late", 36))), "")
	behind := dc("dc1", "", 30, sv("churn", 30))
	m.whole(set(behind), false)
	// The churning service read at 50; the list still the one of 30.
	read := with(behind, 30, map[string]*snapshot.Service{"churn": sv("churn", 50)})
	got := m.delta(set(read), &tier.Delta{Parts: []tier.Part{{Key: tierKey("dc1"), Snapshot: read}}})
	if g := indexes(got.Snapshot("dc1")); !maps.Equal(g, map[string]uint64{"churn": 50, "late": 36}) {
		t.Errorf("before the list passed late: services %v, want churn 50 and late 36", g)
	}
	listed := with(read, 51, nil) // late deregistered by 51
	got = m.delta(set(listed), &tier.Delta{Parts: []tier.Part{{Key: tierKey("dc1"), Snapshot: listed}}})
	if g := indexes(got.Snapshot("dc1")); !maps.Equal(g, map[string]uint64{"churn": 50}) {
		t.Errorf("once the list passed late: services %v, want churn 50 alone", g)
	}
}
