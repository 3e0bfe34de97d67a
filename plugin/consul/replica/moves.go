package replica

import (
	"slices"
	"time"
)

// moveTracker decides which moves of the service list's index still need an
// explanation, and when one is overdue. The service list's index moves on
// every registration change anywhere, and while some services have no
// watcher, each move must be explained by a change the replica saw at
// exactly that index (a watcher's, a fetch's, or the list's own), or else
// found by a sweep. It is pure: the caller passes the time, and guards it
// with the replica's mu.
type moveTracker struct {
	// unread are the moves no read of the summaries covers yet; pending
	// those waiting for an explanation until their deadline, each checked
	// on its own: a move explained by a later one's change could hide a
	// port change.
	unread  []uint64
	pending []pendingMove
	seen    changeRing
	// wake tells the sweeper of a move (capacity 1).
	wake chan struct{}
}

// pendingMove is a move waiting to be explained until deadline.
type pendingMove struct {
	index    uint64
	deadline time.Time
}

func newMoveTracker() moveTracker { return moveTracker{wake: make(chan struct{}, 1)} }

// add records a move of the service list's index. Past maxMoves unread the
// oldest is dropped: a sweep follows anyway.
func (t *moveTracker) add(index uint64) {
	if len(t.unread) == maxMoves {
		t.unread = t.unread[1:]
	}
	t.unread = append(t.unread, index)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// explain records a registration change the replica saw at index.
func (t *moveTracker) explain(index uint64) { t.seen.add(index) }

// takeUnread returns the moves no read covers yet, and forgets them.
func (t *moveTracker) takeUnread() []uint64 {
	m := t.unread
	t.unread = nil
	return m
}

// wait gives moves until deadline to be explained.
func (t *moveTracker) wait(moves []uint64, deadline time.Time) {
	for _, m := range moves {
		t.pending = append(t.pending, pendingMove{m, deadline})
	}
}

// due reports whether a move is past its deadline unexplained.
func (t *moveTracker) due(now time.Time) bool {
	t.dropExplained()
	return slices.ContainsFunc(t.pending, func(m pendingMove) bool { return !m.deadline.After(now) })
}

// next is how long until the next deadline falls; false when none waits.
func (t *moveTracker) next(now time.Time) (time.Duration, bool) {
	t.dropExplained()
	if len(t.pending) == 0 {
		return 0, false
	}
	soonest := t.pending[0].deadline
	for _, m := range t.pending[1:] {
		if m.deadline.Before(soonest) {
			soonest = m.deadline
		}
	}
	return max(0, soonest.Sub(now)), true
}

// takeAll returns every move, pending or unread, and forgets them: a sweep
// covers them all.
func (t *moveTracker) takeAll() []uint64 {
	t.dropExplained()
	moves := make([]uint64, 0, len(t.pending)+len(t.unread))
	for _, m := range t.pending {
		moves = append(moves, m.index)
	}
	moves = append(moves, t.unread...)
	t.pending, t.unread = t.pending[:0], nil
	return moves
}

func (t *moveTracker) dropExplained() {
	t.pending = slices.DeleteFunc(t.pending, func(m pendingMove) bool { return t.seen.has(m.index) })
}

// maxMoves bounds the moves of the service list waiting to be read.
const maxMoves = 256

// changeRing holds the indexes of the latest changes. Only the exact index
// counts: an agent's streaming view may answer with an index past the
// change's own.
type changeRing struct {
	at   [256]uint64
	next int
}

func (c *changeRing) add(index uint64) {
	c.at[c.next] = index
	c.next = (c.next + 1) % len(c.at)
}

func (c *changeRing) has(index uint64) bool {
	for _, i := range c.at {
		if i == index && i != 0 {
			return true
		}
	}
	return false
}
