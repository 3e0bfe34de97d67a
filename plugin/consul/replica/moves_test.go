package replica

import (
	"slices"
	"testing"
	"time"
)

// TestMoveTracker plays moves of the service list's index, their
// explanations and the passing of time through the tracker, on a clock of
// the test's own.
func TestMoveTracker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	type step struct {
		at      int      // ms after t0
		add     []uint64 // moves
		explain []uint64 // changes seen
		wait    int      // >= 0: the unread moves wait this long (ms); -1: none
	}
	for _, tc := range []struct {
		name     string
		steps    []step
		at       int  // when to ask
		due      bool // a move is past its deadline unexplained
		next     time.Duration
		waiting  bool // some move waits for its deadline
		takeAll  []uint64
		unreadAt int // moves left unread
	}{
		{name: "nothing moved", steps: nil, at: 0},
		{
			name:  "a move read, waiting for its explanation",
			steps: []step{{at: 0, add: []uint64{10}, wait: 50}},
			at:    20, next: 30 * time.Millisecond, waiting: true, takeAll: []uint64{10},
		},
		{
			name:  "a move never explained is due at its deadline",
			steps: []step{{at: 0, add: []uint64{10}, wait: 50}},
			at:    50, due: true, waiting: true, takeAll: []uint64{10},
		},
		{
			name:  "explained by a change at exactly its index",
			steps: []step{{at: 0, add: []uint64{10}, wait: 50}, {at: 5, explain: []uint64{10}, wait: -1}},
			at:    60,
		},
		{
			name:  "a change seen before the move explains it too",
			steps: []step{{at: 0, explain: []uint64{10}, wait: -1}, {at: 1, add: []uint64{10}, wait: 50}},
			at:    60,
		},
		{
			name:  "a change at a later index explains only its own move",
			steps: []step{{at: 0, add: []uint64{10, 11}, wait: 50}, {at: 5, explain: []uint64{11}, wait: -1}},
			at:    60, due: true, waiting: true, takeAll: []uint64{10},
		},
		{
			name:  "each move keeps its own deadline",
			steps: []step{{at: 0, add: []uint64{10}, wait: 50}, {at: 40, add: []uint64{12}, wait: 1000}},
			at:    45, next: 5 * time.Millisecond, waiting: true, takeAll: []uint64{10, 12},
		},
		{
			name:  "moves not read yet wait for no deadline",
			steps: []step{{at: 0, add: []uint64{10, 11}, wait: -1}},
			at:    5000, takeAll: []uint64{10, 11}, unreadAt: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMoveTracker()
			for _, s := range tc.steps {
				for _, i := range s.add {
					m.add(i)
				}
				for _, i := range s.explain {
					m.explain(i)
				}
				if s.wait >= 0 {
					m.wait(m.takeUnread(), ms(s.at+s.wait))
				}
			}
			now := ms(tc.at)
			if got := len(m.unread); got != tc.unreadAt {
				t.Errorf("%d moves unread, want %d", got, tc.unreadAt)
			}
			if got := m.due(now); got != tc.due {
				t.Errorf("due = %v, want %v", got, tc.due)
			}
			next, waiting := m.next(now)
			if waiting != tc.waiting || next != tc.next {
				t.Errorf("next = %v, %v; want %v, %v", next, waiting, tc.next, tc.waiting)
			}
			if got := m.takeAll(); !slices.Equal(got, tc.takeAll) && len(got)+len(tc.takeAll) > 0 {
				t.Errorf("takeAll = %v, want %v", got, tc.takeAll)
			}
			if m.due(now) || len(m.takeAll()) != 0 {
				t.Error("moves left after takeAll")
			}
		})
	}
}

// TestMoveTrackerBounded: past maxMoves unread the oldest go (a sweep
// follows anyway), and every move wakes the sweeper once at most.
func TestMoveTrackerBounded(t *testing.T) {
	m := newMoveTracker()
	for i := range uint64(maxMoves + 10) {
		m.add(i + 1)
	}
	unread := m.takeUnread()
	if len(unread) != maxMoves || unread[0] != 11 {
		t.Errorf("%d unread from %d, want %d from 11", len(unread), unread[0], maxMoves)
	}
	if len(m.wake) != 1 {
		t.Errorf("%d wake-ups pending, want 1", len(m.wake))
	}
}
