package follower

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// state is what the loop learns of the tiers that others read: how current
// what is served is, and where it comes from.
type state struct {
	lastByte atomic.Int64 // when a tier last sent a byte, Unix nanoseconds

	mu           sync.Mutex
	cluster      string // the Consul cluster expected; "" until known
	local        string // the local datacenter expected; "" until known
	lastGood     time.Time
	failingSince time.Time               // every tier failed since the last good answer; zero while one answers
	firstFailure time.Time               // the first failure since the last good answer
	failedTiers  map[*tierConn]bool      // the tiers that failed since the last good answer
	contact      map[tier.Key]keyContact // as the last answer said
}

// keyContact is how current one snapshot is, as tiers said.
type keyContact struct {
	last, failing time.Time // the tier's last read of it from Consul; since when its reads fail
	missing       time.Time // since when no tier said anything of it
}

func (s *state) succeeded(tiers []*tierConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastGood, s.failingSince, s.firstFailure = time.Now(), time.Time{}, time.Time{}
	clear(s.failedTiers)
}

// tierFailed counts a failure: once every tier failed since the last good
// answer, the follower cannot reach any, since the first of them.
func (s *state) tierFailed(t *tierConn, tiers []*tierConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstFailure.IsZero() {
		s.firstFailure = time.Now()
	}
	s.failedTiers[t] = true
	if len(s.failedTiers) == len(tiers) && s.failingSince.IsZero() {
		s.failingSince = s.firstFailure
	}
}

// contactOf is Contact's answer for k.
func (s *state) contactOf(k tier.Key) (last, failing time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kc := s.contact[k]
	if !kc.last.IsZero() {
		last = s.lastGood
		if b := time.Unix(0, s.lastByte.Load()); b.After(last) {
			last = b
		}
		if kc.last.Before(last) {
			last = kc.last
		}
	}
	for _, t := range []time.Time{s.failingSince, kc.failing, kc.missing} {
		if !t.IsZero() && (failing.IsZero() || t.Before(failing)) {
			failing = t
		}
	}
	return last, failing
}

func (s *state) origin() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cluster, s.cluster != ""
}
