package follower

import (
	"fmt"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/wait"
)

// TestSkipsATierThatCannotRead: the tier followed answers, but reports that
// it has not read Consul for a while (its agent hangs); the other tier reads
// fine and is ahead. The follower moves to it, counts it, and does not come
// back while the first still cannot read.
func TestSkipsATierThatCannotRead(t *testing.T) {
	behind := set(dc("dc1", "", 10, sv("a", 10)))
	ahead := set(dc("dc1", "", 20, sv("a", 20)))
	stuck := startTier(t, "", behind)
	stuck.failing.Store(tierKey("dc1"), time.Now().Add(-time.Minute))
	good := startTier(t, "", ahead)
	rec := newRecorder()
	f := start(t, Config{Observer: rec}, stuck.addr, good.addr)
	servedIndexes(t, f, 10*time.Second, map[string]uint64{"a": 20})
	if n := rec.errors(stuck.addr, errCannotRead); n != 1 {
		t.Errorf("counted %d moves off the tier that cannot read, want 1 (%v)", n, rec)
	}
	asked := stuck.requests.Load()
	// Several of the good tier's waits (Wait 5 s in tests: use a change to
	// see the follower still there).
	good.offer(set(dc("dc1", "", 30, sv("a", 30))))
	servedIndexes(t, f, 10*time.Second, map[string]uint64{"a": 30})
	if now := stuck.requests.Load(); now != asked {
		t.Errorf("the follower asked the tier that cannot read %d more times, want 0", now-asked)
	}
}

// TestStaysWhenEveryTierCannotRead: during an outage of Consul itself every
// tier reports it; the follower moves once, then stays (each move costs the
// whole state).
func TestStaysWhenEveryTierCannotRead(t *testing.T) {
	s := set(dc("dc1", "", 10, sv("a", 10)))
	var tiers []*testTier
	for range 2 {
		tt := startTier(t, "", s)
		tt.failing.Store(tierKey("dc1"), time.Now().Add(-time.Minute))
		tiers = append(tiers, tt)
	}
	rec := newRecorder()
	f := start(t, Config{Observer: rec, Wait: 200 * time.Millisecond}, tiers[0].addr, tiers[1].addr)
	servedIndexes(t, f, 10*time.Second, map[string]uint64{"a": 10})
	before := tiers[1].requests.Load()
	// Polls go on, each a chance to move.
	wait.Until(t, 10*time.Second, func() error {
		if n := tiers[1].requests.Load() - before; n < 5 {
			return fmt.Errorf("%d polls since", n)
		}
		return nil
	})
	if moves := rec.errors(tiers[0].addr, errCannotRead) + rec.errors(tiers[1].addr, errCannotRead); moves != 1 {
		t.Errorf("moved %d times between two tiers that both cannot read, want 1", moves)
	}
}
