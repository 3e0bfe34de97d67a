package follower

import (
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// A tier that answers but can no longer read Consul (its agent hangs or is
// cut off) serves a state that stops moving while another tier's moves on.
// The follower then goes to a tier not known to be in the same state:
// skipAfter once the tier has reported failing reads of the local
// datacenter for that long, and not back to a tier seen so within skipFor.
// Each move costs the whole state from the other tier, so during an outage
// of Consul itself, which every tier reports, a follower moves at most once
// per skipFor.
const (
	skipAfter = 5 * time.Second
	skipFor   = 5 * time.Minute
)

// cannotRead reports whether t, which just answered, reports that it cannot
// read the local datacenter from Consul, and another tier may: the
// follower moves on.
func (f *Follower) cannotRead(t *tierConn) bool {
	since := f.state.failingOf(tier.Key{Datacenter: f.state.localName()})
	now := time.Now()
	if len(f.tiers) < 2 || since.IsZero() || now.Sub(since) < skipAfter {
		return false
	}
	t.cannotReadAt = now
	for _, o := range f.tiers {
		if o != t && (o.cannotReadAt.IsZero() || now.Sub(o.cannotReadAt) > skipFor) {
			if t.logged != errCannotRead {
				t.logged = errCannotRead
				log.Warningf("follower: tier %s has not read Consul for %s; trying the next tier", t.addr, now.Sub(since).Round(time.Second))
			}
			f.observer.Error(t.addr, errCannotRead)
			t.retryAt = now.Add(skipFor)
			return true
		}
	}
	return false
}

// failingOf is since when the tier followed reports failing reads of k;
// zero when it does not.
func (s *state) failingOf(k tier.Key) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.contact[k].failing
}

// localName is the local datacenter's name, once a state told it.
func (s *state) localName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local
}
