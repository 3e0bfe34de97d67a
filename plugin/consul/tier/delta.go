package tier

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// Diff is what changed from from to to. Snapshots are compared by pointer,
// and so are their services and nodes: a snapshot is never modified, and a
// new one shares everything that did not change with the last. from may be
// nil: every snapshot is then a whole part. From and To are left 0: the
// caller numbers the Sets.
func Diff(from, to *snapshot.Set) *Delta {
	d := &Delta{Meta: metaOf(to)}
	old := map[Key]*snapshot.Snapshot{}
	if from != nil {
		old = byKey(from)
	}
	for _, s := range all(to) {
		k := KeyOf(s)
		b, ok := old[k]
		delete(old, k)
		switch {
		case !ok:
			d.Parts = append(d.Parts, Part{Key: k, Whole: true, Snapshot: s})
		case b != s:
			d.Parts = append(d.Parts, diffSnapshot(k, b, s))
		}
	}
	d.Gone = slices.SortedFunc(maps.Keys(old), compareKeys)
	return d
}

// diffSnapshot is the part that turns b into s.
func diffSnapshot(k Key, b, s *snapshot.Snapshot) Part {
	changed := *s
	p := Part{Key: k, Snapshot: &changed}
	changed.Services, p.RemovedServices = diffEntries(b.Services, s.Services)
	changed.Nodes, p.RemovedNodes = diffEntries(b.Nodes, s.Nodes)
	// The replica keeps a list's values (and the list) while they do not
	// change: the same pointers mean the same list.
	if len(s.Queries) > 0 && slices.Equal(b.Queries, s.Queries) {
		changed.Queries, p.Kept = nil, append(p.Kept, KeptQueries)
	}
	if len(s.Coordinates) > 0 && slices.Equal(b.Coordinates, s.Coordinates) {
		changed.Coordinates, p.Kept = nil, append(p.Kept, KeptCoordinates)
	}
	if len(s.Ingress) > 0 && slices.Equal(b.Ingress, s.Ingress) {
		changed.Ingress, p.Kept = nil, append(p.Kept, KeptIngress)
	}
	if len(s.Terminating) > 0 && slices.Equal(b.Terminating, s.Terminating) {
		changed.Terminating, p.Kept = nil, append(p.Kept, KeptTerminating)
	}
	return p
}

// diffEntries is what now added or changed (by pointer) and the keys it
// removed, from base. The second pass, for removals, is made only when
// some of base's keys were not seen in the first.
func diffEntries[V comparable](base, now map[string]V) (map[string]V, []string) {
	out := map[string]V{}
	kept := 0
	for k, v := range now {
		old, ok := base[k]
		if ok {
			kept++
		}
		if !ok || old != v {
			out[k] = v
		}
	}
	if kept == len(base) {
		return out, nil
	}
	var gone []string
	for k := range base {
		if _, ok := now[k]; !ok {
			gone = append(gone, k)
		}
	}
	slices.Sort(gone)
	return out, gone
}

// metaOf is s without its snapshots.
func metaOf(s *snapshot.Set) snapshot.Set {
	return snapshot.Set{Local: s.Local, Known: s.Known, ByDistance: s.ByDistance, Cluster: s.Cluster,
		AgentDNS: s.AgentDNS, KnownPeers: s.KnownPeers}
}

func all(s *snapshot.Set) []*snapshot.Snapshot {
	return append(slices.Clip(s.Datacenters), s.Peers...)
}

func byKey(s *snapshot.Set) map[Key]*snapshot.Snapshot {
	m := make(map[Key]*snapshot.Snapshot, len(s.Datacenters)+len(s.Peers))
	for _, snap := range all(s) {
		m[KeyOf(snap)] = snap
	}
	return m
}

func compareKeys(a, b Key) int {
	return cmp.Or(strings.Compare(a.Peer, b.Peer), strings.Compare(a.Datacenter, b.Datacenter))
}

// Apply is base with d applied. base is never modified, and the result
// shares with it every snapshot, service and node d did not change. Every
// part is checked and sanitized as a snapshot file is (null entries left
// out and counted in Skipped, counts rebuilt); a part of a snapshot base
// lacks, a name that cannot be one, or a result without the local
// datacenter is an error wrapping ErrGarbage, and nothing is applied.
func Apply(base *snapshot.Set, d *Delta) (*snapshot.Set, error) {
	have := map[Key]*snapshot.Snapshot{}
	if base != nil {
		have = byKey(base)
	}
	for _, k := range d.Gone {
		if _, ok := have[k]; !ok {
			return nil, fmt.Errorf("%w: delta removes %s, which the base does not hold", ErrGarbage, k)
		}
		delete(have, k)
	}
	set := snapshot.Set{Local: snapshot.Key(d.Meta.Local), Cluster: d.Meta.Cluster, AgentDNS: d.Meta.AgentDNS,
		Known: lower(d.Meta.Known), ByDistance: d.Meta.ByDistance, KnownPeers: lower(d.Meta.KnownPeers)}
	seen := make(map[Key]bool, len(d.Parts))
	for i, p := range d.Parts {
		if err := checkPart(p, seen); err != nil {
			return nil, fmt.Errorf("%w: part %d: %v", ErrGarbage, i, err)
		}
		seen[p.Key] = true
		b, ok := have[p.Key]
		if !p.Whole && !ok {
			return nil, fmt.Errorf("%w: delta changes %s, which the base does not hold", ErrGarbage, p.Key)
		}
		snap, skipped := applyPart(b, p)
		have[p.Key], set.Skipped = snap, set.Skipped+skipped
	}
	for k, snap := range have {
		if k.Peer != "" {
			set.Peers = append(set.Peers, snap)
		} else {
			set.Datacenters = append(set.Datacenters, snap)
		}
	}
	if _, ok := have[Key{Datacenter: set.Local}]; !ok {
		return nil, fmt.Errorf("%w: no snapshot of the local datacenter %s", ErrGarbage, snapshot.Quote(set.Local))
	}
	// The order collect makes: the local datacenter first, then by name.
	slices.SortFunc(set.Datacenters, func(a, b *snapshot.Snapshot) int {
		return cmp.Or(-cmp.Compare(boolInt(a.Datacenter == set.Local), boolInt(b.Datacenter == set.Local)),
			strings.Compare(a.Datacenter, b.Datacenter))
	})
	slices.SortFunc(set.Peers, func(a, b *snapshot.Snapshot) int { return strings.Compare(a.Peer, b.Peer) })
	return &set, nil
}

// maxLabel is the longest DNS label: a datacenter's or peer's name is one
// in every name it answers.
const maxLabel = 63

// checkPart refuses a part that names no snapshot, names it otherwise than
// its snapshot does, or repeats one.
func checkPart(p Part, seen map[Key]bool) error {
	switch name := p.Datacenter + p.Peer; {
	case p.Snapshot == nil:
		return fmt.Errorf("%s has no snapshot", p.Key)
	case name == "" || len(p.Datacenter) > maxLabel || len(p.Peer) > maxLabel:
		return fmt.Errorf("snapshot named %s", snapshot.Quote(name))
	case KeyOf(p.Snapshot) != p.Key || p.Key != (Key{snapshot.Key(p.Datacenter), snapshot.Key(p.Peer)}):
		return fmt.Errorf("%s holds the snapshot of %s", p.Key, KeyOf(p.Snapshot))
	case seen[p.Key]:
		return fmt.Errorf("%s is repeated", p.Key)
	}
	return nil
}

// applyPart is the snapshot p makes of b (nil for a whole part), and how
// many null entries it left out.
func applyPart(b *snapshot.Snapshot, p Part) (*snapshot.Snapshot, int) {
	snap := *p.Snapshot
	if p.Whole {
		snap.Services, snap.Nodes = maps.Clone(snap.Services), maps.Clone(snap.Nodes)
	} else {
		snap.Services = patch(b.Services, p.Snapshot.Services, p.RemovedServices)
		snap.Nodes = patch(b.Nodes, p.Snapshot.Nodes, p.RemovedNodes)
	}
	// The part's slices may be another Set's (a delta applied in the
	// process that made it): sanitize must not drop from those in place.
	snap.Queries, snap.Coordinates = slices.Clone(snap.Queries), slices.Clone(snap.Coordinates)
	snap.Ingress, snap.Terminating = slices.Clone(snap.Ingress), slices.Clone(snap.Terminating)
	snap.Peer = p.Key.Peer
	skipped := snapshot.Sanitize(&snap)
	if !p.Whole {
		// The base's, sanitized already, and shared as they are.
		keep(&snap, b, p.Kept)
	}
	return snapshot.Rebuild(&snap), skipped
}

// keep gives snap the lists of b that kept names. A name this build does
// not know is ignored: the list is then the part's own (empty).
func keep(snap, b *snapshot.Snapshot, kept []string) {
	for _, k := range kept {
		switch k {
		case KeptQueries:
			snap.Queries = b.Queries
		case KeptCoordinates:
			snap.Coordinates = b.Coordinates
		case KeptIngress:
			snap.Ingress = b.Ingress
		case KeptTerminating:
			snap.Terminating = b.Terminating
		}
	}
}

func patch[V any](base, changed map[string]V, removed []string) map[string]V {
	out := maps.Clone(base)
	if out == nil {
		out = make(map[string]V, len(changed))
	}
	for _, k := range removed {
		delete(out, k)
	}
	maps.Copy(out, changed)
	return out
}

// lower is names in lower case: a Set's keys always are. names itself when
// it already is, so that nil and [] stay apart.
func lower(names []string) []string {
	if !slices.ContainsFunc(names, func(n string) bool { return n != snapshot.Key(n) }) {
		return names
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = snapshot.Key(n)
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
