package follower

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// settle is how long a service may be served while the tier followed,
// reading its datacenter from Consul fine for as long, holds otherwise
// (lacks it, has it while mine does not, or has another version of it that
// indexes call older) before the tier is believed. Indexes of two tiers'
// reads of one service are Consul's Raft indexes, but a read through an
// agent that was cut off, or a snapshot file of older data, may carry an
// index that misleads: without settle, a follower could hold a wrong
// version until the service changes again.
var settle = 10 * time.Second

// merger keeps what the follower serves (mine) from moving backwards while
// the tier it reads (base) changes, or is replaced by another tier's Set
// that is behind. It remembers, per snapshot, the names whose service is not
// the base's (div), and since when: every other name is the same pointer in
// both, so a delta needs to look only at what it changed and at div, never
// at every service.
type merger struct {
	nodeName string
	mine     *snapshot.Set
	base     *snapshot.Set // the tier's Set mine was last merged with; nil before the first
	div      map[tier.Key]map[string]time.Time
	led      map[tier.Key]bool // mine's snapshot has base's fields (nodes, queries...), not its own
	held     int               // services mine keeps that base lacks
	compared int               // services looked at by the last merge, for tests of its cost

	// fineSince is since when the tier followed has said, in every answer,
	// that it reads k from Consul fine; zero: it does not (nil: never).
	fineSince func(k tier.Key) time.Time
	now       func() time.Time
}

// newMerger starts from seed, the snapshot file, which nothing moves back
// from; seed may be nil.
func newMerger(seed *snapshot.Set, nodeName string) *merger {
	m := &merger{nodeName: nodeName, div: map[tier.Key]map[string]time.Time{}, led: map[tier.Key]bool{}, now: time.Now}
	if seed == nil {
		return m
	}
	mine := *seed
	mine.Datacenters = slices.Clone(seed.Datacenters)
	for i, s := range mine.Datacenters {
		mine.Datacenters[i] = m.localize(mine.Local, s)
	}
	m.mine = &mine
	return m
}

// whole merges base, a Set decoded whole: every service is compared. same:
// base is the same tier's as the last (a whole because its history no
// longer reached back), so what mine took from the last base follows it.
func (m *merger) whole(base *snapshot.Set, same bool) *snapshot.Set {
	changed := map[tier.Key][]string{}
	for _, s := range slices.Concat(base.Datacenters, base.Peers) {
		changed[tier.KeyOf(s)] = nil
	}
	if !same {
		m.div, m.led = map[tier.Key]map[string]time.Time{}, map[tier.Key]bool{}
	}
	return m.merge(base, changed, same)
}

// delta merges base, the last base with d applied: only d's parts, the
// snapshots it removed and the names in div are looked at. What mine took
// from the last base follows base: a tier's own generations never move
// back.
func (m *merger) delta(base *snapshot.Set, d *tier.Delta) *snapshot.Set {
	changed := make(map[tier.Key][]string, len(d.Parts)+len(d.Gone))
	for _, p := range d.Parts {
		if p.Whole || p.Snapshot == nil {
			changed[p.Key] = nil
			continue
		}
		names := make([]string, 0, len(p.Snapshot.Services)+len(p.RemovedServices))
		for name := range p.Snapshot.Services {
			names = append(names, name)
		}
		changed[p.Key] = append(names, p.RemovedServices...)
	}
	for _, k := range d.Gone {
		changed[k] = nil
	}
	return m.merge(base, changed, true)
}

// merge makes the new mine from base. changed names, per snapshot, the
// services that may differ from the last base (a nil list: any of them); a
// snapshot not in changed is the last base's, and mine's differs from it
// only where div says. follow: base is the last base's successor.
func (m *merger) merge(base *snapshot.Set, changed map[tier.Key][]string, follow bool) *snapshot.Set {
	m.compared = 0
	old := m.mine
	if old == nil {
		old = &snapshot.Set{}
	}
	meta := base
	if ol, bl := old.Snapshot(old.Local), base.Snapshot(base.Local); ol != nil && !(follow && m.led[tier.KeyOf(ol)]) &&
		(bl == nil || bl.Index < ol.Index) {
		meta = old // base is behind: Known and the rest wait for it
	}
	next := &snapshot.Set{Local: base.Local, Known: meta.Known, ByDistance: meta.ByDistance, Cluster: meta.Cluster,
		AgentDNS: meta.AgentDNS, KnownPeers: meta.KnownPeers}
	mineByKey := byKey(old)
	for _, b := range slices.Concat(base.Datacenters, base.Peers) {
		k := tier.KeyOf(b)
		s := mineByKey[k]
		delete(mineByKey, k)
		names, ok := changed[k]
		if ok || len(m.div[k]) > 0 || s == nil {
			s = m.mergeSnapshot(next.Local, k, s, b, names, ok && names == nil, follow)
		}
		add(next, s)
	}
	// Snapshots base lacks are kept until Consul, as far as the newer of
	// mine and base know, has no such datacenter or peer.
	for _, s := range slices.Concat(old.Datacenters, old.Peers) {
		k := tier.KeyOf(s)
		if _, ok := mineByKey[k]; !ok {
			continue
		}
		delete(m.div, k)
		m.led[k] = false
		if known(next, k) {
			add(next, s)
		}
	}
	m.mine, m.base = next, base
	m.countHeld()
	return next
}

// mergeSnapshot merges b, base's snapshot of k, into s, mine's (nil: k is
// new to mine, taken whole). names are the services to compare besides
// those in div; every: all of them. follow: base succeeds the last base,
// so a name mine took from it follows it.
func (m *merger) mergeSnapshot(local string, k tier.Key, s, b *snapshot.Snapshot, names []string, every, follow bool) *snapshot.Snapshot {
	if s == nil {
		delete(m.div, k)
		m.led[k] = true
		return m.localize(local, b)
	}
	if every {
		names = slices.AppendSeq(slices.Collect(maps.Keys(s.Services)), maps.Keys(b.Services))
	}
	was := m.div[k]
	names = slices.AppendSeq(names, maps.Keys(was))
	now := m.now()
	div := map[string]time.Time{}
	var patch map[string]*snapshot.Service // mine's changes; nil values are removals
	for _, name := range names {
		if _, done := patch[name]; done {
			continue
		}
		m.compared++
		ms, bs := s.Services[name], b.Services[name]
		since, differed := was[name]
		pick := bs
		if !follow || differed {
			pick = choose(ms, bs, s.Index, b.Index, b.ListIndex)
			if pick != bs && differed && m.settled(k, since, now) {
				pick = bs
			}
		}
		if pick != bs {
			div[name] = cmp.Or(since, now)
		}
		if pick != ms {
			if patch == nil {
				patch = map[string]*snapshot.Service{}
			}
			patch[name] = pick
		}
	}
	if len(div) == 0 {
		delete(m.div, k)
	} else {
		m.div[k] = div
	}
	leader, index := b, b.Index
	if !(follow && m.led[k]) {
		index = max(s.Index, b.Index)
		if b.Index < s.Index {
			leader = s // nodes, queries and the rest follow the newer snapshot
		}
	}
	m.led[k] = leader == b
	switch {
	case len(div) == 0 && leader == b:
		return m.localize(local, b)
	case len(patch) == 0 && leader == s:
		return s
	}
	services := b.Services
	if len(div) > 0 {
		services = maps.Clone(s.Services)
		for name, svc := range patch {
			if svc == nil {
				delete(services, name)
			} else {
				services[name] = svc
			}
		}
	}
	return m.localize(local, withServices(leader, services, index))
}

// settled reports whether the tier has read k from Consul fine while a
// name differed since since for settle: it is believed over mine.
func (m *merger) settled(k tier.Key, since, now time.Time) bool {
	if m.fineSince == nil {
		return false
	}
	fine := m.fineSince(k)
	return !fine.IsZero() && now.Sub(fine) >= settle && now.Sub(since) >= settle
}

// choose picks the service mine serves under one name: ms is mine's, bs
// base's (nil: absent), mineIndex and baseIndex their snapshots' indexes,
// baseList the index of the service list base is complete for. Nothing
// moves back: base's is taken when it is as new as mine's; a service base
// lacks is dropped once base's service list has passed it (not its
// snapshot's index, the highest of any data's: a tier catching up reads
// changed services before the list that names new ones); one mine lacks
// is taken when base has seen at least as much as mine, or when it is newer
// than all mine has seen (else mine may have seen it deregistered).
func choose(ms, bs *snapshot.Service, mineIndex, baseIndex, baseList uint64) *snapshot.Service {
	switch {
	case ms == bs:
		return ms
	case ms != nil && bs != nil:
		if bs.Index >= ms.Index {
			return bs
		}
		return ms
	case bs != nil:
		if baseIndex >= mineIndex || bs.Index > mineIndex {
			return bs
		}
		return nil
	default:
		if baseList >= ms.Index {
			return nil
		}
		return ms
	}
}

// withServices returns a snapshot with every field of leader but its
// services and index.
func withServices(leader *snapshot.Snapshot, services map[string]*snapshot.Service, index uint64) *snapshot.Snapshot {
	s := snapshot.New(leader.Datacenter, index, services, leader.Nodes, leader.Built)
	s.Queries, s.QueriesHidden, s.Coordinates, s.AgentNode = leader.Queries, leader.QueriesHidden, leader.Coordinates, leader.AgentNode
	s.ServicesHidden, s.Peer, s.ListIndex = leader.ServicesHidden, leader.Peer, leader.ListIndex
	s.Ingress, s.IngressRead = leader.Ingress, leader.IngressRead
	s.Terminating, s.TerminatingRead = leader.Terminating, leader.TerminatingRead
	return s
}

// localize gives the local datacenter's snapshot the follower's own node
// name: a prepared query's Near "_agent" is the node asking, not the
// tier's. Other snapshots are returned as they are.
func (m *merger) localize(local string, s *snapshot.Snapshot) *snapshot.Snapshot {
	if m.nodeName == "" || s.Peer != "" || s.Datacenter != local || s.AgentNode == m.nodeName {
		return s
	}
	c := *s
	c.AgentNode = m.nodeName
	return &c
}

// countHeld counts the services mine keeps that base lacks.
func (m *merger) countHeld() {
	m.held = 0
	for k, names := range m.div {
		b := byKeyOne(m.base, k)
		for name := range names {
			if b == nil || b.Services[name] == nil {
				m.held++
			}
		}
	}
}

func byKey(set *snapshot.Set) map[tier.Key]*snapshot.Snapshot {
	out := make(map[tier.Key]*snapshot.Snapshot, len(set.Datacenters)+len(set.Peers))
	for _, s := range slices.Concat(set.Datacenters, set.Peers) {
		out[tier.KeyOf(s)] = s
	}
	return out
}

func byKeyOne(set *snapshot.Set, k tier.Key) *snapshot.Snapshot {
	if set == nil {
		return nil
	}
	if k.Peer != "" {
		return set.PeerSnapshot(k.Peer)
	}
	return set.Snapshot(k.Datacenter)
}

func add(set *snapshot.Set, s *snapshot.Snapshot) {
	if s.Peer != "" {
		set.Peers = append(set.Peers, s)
	} else {
		set.Datacenters = append(set.Datacenters, s)
	}
}

// known reports whether a snapshot base lacks may still be of use: Consul
// still lists its datacenter or peering, or was never asked.
func known(set *snapshot.Set, k tier.Key) bool {
	if k.Peer != "" {
		return set.KnownPeers == nil || slices.Contains(set.KnownPeers, k.Peer)
	}
	return set.Known == nil || slices.Contains(set.Known, k.Datacenter)
}
