package tier

import (
	"bytes"
	"reflect"
	"slices"
	"sync"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// generation is one Set the tier served, numbered.
type generation struct {
	n   uint64
	set *snapshot.Set
	// changed is closed when a newer generation replaces this one.
	changed chan struct{}
	// whole and deltas (by the generation they apply to) are the answers
	// that bring a follower to this generation, made once and shared by
	// every follower that gets them; dropped once it is not the current
	// one (a follower is always brought to the current generation).
	whole  *encoded
	deltas map[uint64]*encoded
}

// encoded is an answer's payload, made once.
type encoded struct {
	once    sync.Once
	payload []byte
	err     error
}

func (e *encoded) get(make func() ([]byte, error)) ([]byte, error) {
	e.once.Do(func() { e.payload, e.err = make() })
	return e.payload, e.err
}

// generations is the ring of the last History generations, the newest
// current. The Server's mu guards it.
type generations struct {
	ring []*generation // oldest first
	max  int
}

func newGenerations(history int) *generations { return &generations{max: history} }

// current is the newest generation; nil before the first Set.
func (g *generations) current() *generation {
	if len(g.ring) == 0 {
		return nil
	}
	return g.ring[len(g.ring)-1]
}

// get is generation n, when the ring holds it.
func (g *generations) get(n uint64) *generation {
	if len(g.ring) == 0 || n < g.ring[0].n || n > g.current().n {
		return nil
	}
	return g.ring[n-g.ring[0].n]
}

// add makes set the current generation and wakes what waits on the last.
func (g *generations) add(set *snapshot.Set) *generation {
	next := &generation{n: 1, set: set, changed: make(chan struct{}), whole: &encoded{}, deltas: map[uint64]*encoded{}}
	if cur := g.current(); cur != nil {
		next.n = cur.n + 1
		cur.whole, cur.deltas = nil, nil
		close(cur.changed)
	}
	if len(g.ring) == g.max {
		g.ring[0] = nil
		g.ring = g.ring[1:]
	}
	g.ring = append(g.ring, next)
	return next
}

// delta is the cached answer that brings a follower at from to cur.
func (g *generation) delta(from uint64) *encoded {
	if g.deltas == nil { // no longer current: made once for this follower
		return &encoded{}
	}
	e := g.deltas[from]
	if e == nil {
		e = &encoded{}
		g.deltas[from] = e
	}
	return e
}

// sameSet reports whether a and b hold the same snapshots (by identity: a
// snapshot is never modified) and the same metadata: persist.go's rule for
// rewriting the snapshot file.
func sameSet(a, b *snapshot.Set) bool {
	return sameMeta(a, b) && slices.Equal(a.Datacenters, b.Datacenters) && slices.Equal(a.Peers, b.Peers)
}

func sameMeta(a, b *snapshot.Set) bool {
	return a.Local == b.Local && a.Cluster == b.Cluster && bytes.Equal(a.AgentDNS, b.AgentDNS) &&
		slices.Equal(a.Known, b.Known) && slices.Equal(a.ByDistance, b.ByDistance) &&
		(a.KnownPeers == nil) == (b.KnownPeers == nil) && slices.Equal(a.KnownPeers, b.KnownPeers)
}

// classify says what changed from a to b: the coordinates, and anything
// else. A snapshot rebuilt with nothing but a new Built time changes
// neither.
func classify(a, b *snapshot.Set) (coords, other bool) {
	if !sameMeta(a, b) {
		return false, true
	}
	d := Diff(a, b)
	if len(d.Gone) > 0 {
		return false, true
	}
	old := byKey(a)
	for _, p := range d.Parts {
		if p.Whole || len(p.RemovedServices)+len(p.RemovedNodes)+len(p.Snapshot.Services)+len(p.Snapshot.Nodes) > 0 {
			return false, true
		}
		was, now := *old[p.Key], *p.Snapshot
		keep(&now, old[p.Key], p.Kept)
		coords = coords || !reflect.DeepEqual(was.Coordinates, now.Coordinates)
		was.Services, was.Nodes, was.Coordinates, was.Built = nil, nil, nil, now.Built
		now.Services, now.Nodes, now.Coordinates = nil, nil, nil
		if !reflect.DeepEqual(was, now) {
			return coords, true
		}
	}
	return coords, false
}
