package follower

import (
	"cmp"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// apply takes a tier's answer: it brings base, the tier's Set, to the
// answer's generation and merges it into what is served. Whatever cannot be
// applied leaves base and what is served as they were.
func (f *Follower) apply(t *tierConn, env tier.Envelope, payload []byte) error {
	if err := f.state.checkOrigin(env.Cluster, ""); err != nil {
		return err
	}
	f.fine.update(env.Tier, env.Contact, time.Now())
	f.merge.fineSince = f.fine.of
	var next *snapshot.Set
	switch env.Kind {
	case tier.KindWhole:
		set, err := snapshot.Decode(payload)
		if err != nil {
			return fail(errGarbage, "whole state of generation %d: %w", env.Generation, err)
		}
		if err := f.state.checkOrigin(set.Cluster, set.Local); err != nil {
			return err
		}
		next = f.merge.whole(set, f.merge.base != nil && env.Tier == f.baseTier)
	case tier.KindDelta:
		if f.merge.base == nil || env.Tier != f.baseTier || env.From != f.gen {
			return fail(errGarbage, "%w: a delta from generation %d of tier %.40q, while the follower holds %d of %.40q",
				tier.ErrGarbage, env.From, env.Tier, f.gen, f.baseTier)
		}
		d, err := tier.DecodeDelta(payload)
		if err != nil {
			return fail(errGarbage, "delta to generation %d: %w", env.Generation, err)
		}
		if err := f.state.checkOrigin(d.Meta.Cluster, snapshot.Key(d.Meta.Local)); err != nil {
			return err
		}
		base, err := tier.Apply(f.merge.base, d)
		if err != nil {
			return fail(errGarbage, "delta to generation %d: %w", env.Generation, err)
		}
		next = f.merge.delta(base, d)
	case tier.KindNone:
		if len(f.merge.div) > 0 && env.Tier == f.baseTier {
			// What the tier holds otherwise than mine may have settled.
			next = f.merge.delta(f.merge.base, &tier.Delta{})
		}
	}
	if env.Kind != tier.KindNone {
		f.baseTier, f.gen = env.Tier, env.Generation
		f.state.adopt(f.merge.base)
	}
	t.id = env.Tier
	f.observer.Answer(t.addr, env.Kind, len(payload))
	f.observer.Held(f.merge.held)
	if next == nil {
		next = f.current()
	}
	f.state.contacted(env.Contact, next)
	f.publish(next)
	return nil
}

// fineTracker keeps since when the tier followed has said, answer after
// answer, that it reads each snapshot from Consul fine (recently, and
// without failing since): a tier that just came back from an outage, or
// that was just moved to, is not believed over mine before settle.
type fineTracker struct {
	tier  string
	since map[tier.Key]time.Time
}

func (t *fineTracker) update(id string, contacts []tier.Contact, now time.Time) {
	if t.since == nil || id != t.tier {
		t.tier, t.since = id, map[tier.Key]time.Time{}
	}
	fine := make(map[tier.Key]bool, len(contacts))
	for _, c := range contacts {
		fine[c.Key] = c.FailingFor == 0 && c.LastAgo < settle
	}
	for k := range t.since {
		if !fine[k] {
			delete(t.since, k)
		}
	}
	for k, ok := range fine {
		if _, held := t.since[k]; ok && !held {
			t.since[k] = now
		}
	}
}

// of is since when k has been read fine; zero when it is not.
func (t *fineTracker) of(k tier.Key) time.Time { return t.since[k] }

// checkOrigin refuses what comes from another Consul cluster than the one
// expected (the snapshot file's, else the first tier's whose state was
// used), or from another local datacenter; "" is not known, and passes.
func (s *state) checkOrigin(cluster, local string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case cluster != "" && s.cluster != "" && cluster != s.cluster:
		return fail(errCluster, "serves Consul cluster %s, this follower's is %s", snapshot.Quote(cluster), snapshot.Quote(s.cluster))
	case local != "" && s.local != "" && local != s.local:
		return fail(errCluster, "serves local datacenter %s, this follower's is %s", snapshot.Quote(local), snapshot.Quote(s.local))
	}
	return nil
}

// adopt makes the cluster and local datacenter of a state that was used
// the expected ones, where none were known: not before, so that a tier
// that answers garbage cannot make the others refused.
func (s *state) adopt(set *snapshot.Set) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cluster = cmp.Or(s.cluster, set.Cluster)
	s.local = cmp.Or(s.local, set.Local)
}

// contacted keeps how current the tier said it is with Consul, per
// snapshot of set; a snapshot it said nothing of is failing from then on
// (the tier no longer holds it).
func (s *state) contacted(contacts []tier.Contact, set *snapshot.Set) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	reported := make(map[tier.Key]bool, len(contacts))
	for _, c := range contacts {
		kc := keyContact{last: now.Add(-c.LastAgo)}
		if c.FailingFor > 0 {
			kc.failing = now.Add(-c.FailingFor)
		}
		s.contact[c.Key], reported[c.Key] = kc, true
	}
	if set == nil {
		return
	}
	for k := range byKey(set) {
		if kc := s.contact[k]; !reported[k] && kc.missing.IsZero() {
			kc.missing = now
			s.contact[k] = kc
		}
	}
}
