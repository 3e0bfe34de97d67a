package replica

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// sweeper finds out what each move of the service list's index was, while
// some services have no watcher, in steps that each cost more than the last:
//  1. it reads the services' summaries (one request) and reads again those
//     whose instance or check counts, nodes or tags changed: registrations
//     and deregistrations; each move then has a deadline to be explained by
//     a change the replica sees (moveTracker);
//  2. a move still not explained at its deadline (an address or port
//     changed, or two changes that cancel out in the counts) costs a probe
//     sweep of every service without a watcher.
//
// It never waits for an explanation or for a read: reads of the summaries run
// beside it (up to maxSummaryReads at once, applied in the order they began,
// paced by readPacer), a move is read as soon as it lands, and deadlines are
// checked when they fall. Sweeps run at most one per SweepInterval or per
// four times the last sweep's duration. Its state is the sweeper loop's alone.
type sweeper struct {
	r         *Replicator
	summaries summaryDetector
	pacer     readPacer
	reads     chan summaryRead
	// inflight reads; started and applied count them in the order they began.
	inflight, started, applied int
	lastSweep                  time.Time
	sweepTook                  time.Duration
}

// summaryRead is one read of the summaries, made while the sweeper goes on.
type summaryRead struct {
	seq     int      // in the order the reads began
	covered []uint64 // the moves made before it began
	list    []Summary
	ok      bool
	start   time.Time
	took    time.Duration
}

// maxSummaryReads is how many reads of the summaries may run at once: a move
// that lands while one runs is read at once rather than after it (which
// doubled the time to find it), and no more than two ServiceDumps of this
// replica load the servers at a time.
const maxSummaryReads = 2

// quickWait is how long a move of the service list's index is given to be
// explained by a watcher's read before the summaries are read: the agent's
// streaming view usually delivers the change within a few milliseconds of
// the service list.
const quickWait = 5 * time.Millisecond

// explainWait is how long a move may take to be explained by a change the
// replica sees after a read of the summaries named services.
const explainWait = time.Second

func (r *Replicator) sweepLoop() {
	s := &sweeper{r: r, reads: make(chan summaryRead, maxSummaryReads), summaries: summaryDetector{peer: r.cfg.Peer},
		pacer: readPacer{share: summaryShare, burst: summaryBurst, minGap: r.cfg.SummaryInterval}}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(s.step(time.Now()))
		select {
		case <-r.run.ctx.Done():
			return
		case <-timer.C:
		case <-r.moves.wake:
		case read := <-s.reads:
			s.applyRead(read)
		}
	}
}

// idle is how long the sweeper sleeps with nothing to wait for: a move wakes
// it sooner.
const idle = time.Hour

// step does what is due at now, and returns how long until it must look
// again (0: at once).
func (s *sweeper) step(now time.Time) time.Duration {
	r := s.r
	need := r.summariesNeeded()
	next := idle
	switch {
	case s.summaries.known():
	case need && s.readBaseline(now):
		return 0
	case !need:
		next = idleDetectorPoll // the baseline is read once summaries are needed
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &r.moves
	switch {
	case len(t.unread) == 0:
	case s.summaries.known():
		// Read even when a watcher's change already explains the move:
		// one write can change two services (an instance registered again
		// under another service's name leaves the first), and only the
		// counts show the other one.
		if d := s.pacer.wait(now); d > 0 {
			next = min(next, d)
		} else if s.inflight < maxSummaryReads {
			s.startRead(now, t.takeUnread())
			return 0
		}
	case need || r.data.listed && r.watch.count() >= len(r.data.services):
		// Summaries needed but not read yet, or every service watched by
		// now: a watcher's change explains a move.
		t.wait(t.takeUnread(), now.Add(quickWait))
	default:
		// A service between its first read and its watcher: nothing would
		// show a second service changed by the same write, but a sweep.
		t.wait(t.takeUnread(), now)
	}
	if t.due(now) {
		wait := max(r.cfg.SweepInterval, 4*s.sweepTook) - now.Sub(s.lastSweep)
		if wait <= 0 {
			s.sweepLocked(now)
			return 0
		}
		next = min(next, wait)
	}
	if d, ok := t.next(now); ok {
		next = min(next, d)
	}
	return next
}

// readBaseline reads the summaries later reads are compared with, as soon as
// there are services no watcher follows: a baseline read after a change would
// hide it from the next diff, so the moves before it wait for a watcher's
// change or a sweep. It reports whether the read succeeded: if not, it is
// tried again on the next move, as Consul fails.
func (s *sweeper) readBaseline(now time.Time) bool {
	r := s.r
	r.mu.Lock()
	r.moves.wait(r.moves.takeUnread(), now.Add(quickWait))
	r.mu.Unlock()
	list, ok := r.readSummaries()
	s.pacer.took(now, time.Since(now))
	if ok {
		s.summaries.observe(list)
	}
	return ok
}

// startRead reads the summaries beside the loop, covering moves.
func (s *sweeper) startRead(now time.Time, moves []uint64) {
	s.started++
	s.inflight++
	s.pacer.began(now)
	read := summaryRead{seq: s.started, covered: moves, start: now}
	s.r.run.spawn("summaries", func() {
		read.list, read.ok = s.r.readSummaries()
		read.took = time.Since(read.start)
		s.reads <- read // never blocks: one slot per read in flight
	})
}

// applyRead applies a read of the summaries, unless one that began later
// was applied first, and gives the moves it covered time to be explained.
func (s *sweeper) applyRead(read summaryRead) {
	s.inflight--
	s.pacer.took(read.start, read.took)
	overtaken := read.seq < s.applied
	named := 0
	if read.ok && !overtaken {
		s.applied = read.seq
		named = s.r.applySummaries(&s.summaries, read.list)
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.moves.wait(read.covered, time.Now().Add(explainAfter(read.ok, overtaken, named)))
}

// explainAfter is how long the moves a read of the summaries covered may
// wait for an explanation before they cost a sweep.
func explainAfter(ok, overtaken bool, named int) time.Duration {
	switch {
	case !ok:
		return 0
	case overtaken, named > 0:
		// A named service is read, which takes a request. A read overtaken
		// by one that began later was not applied: that one's diff, against
		// an older read than this, named what this would have.
		return explainWait
	default:
		// A watcher slower than the summary shows its change soon.
		return 10 * quickWait
	}
}

// sweepLocked sweeps for every move the tracker holds. The probes run
// without the lock.
func (s *sweeper) sweepLocked(now time.Time) {
	r := s.r
	why := fmt.Sprintf("no change seen explains the service list's moves to %v", r.moves.takeAll())
	s.lastSweep = now
	r.mu.Unlock()
	n := r.sweep()
	r.mu.Lock()
	s.sweepTook = time.Since(now)
	r.stats.sweeps.Add(1)
	if r.cfg.Observer != nil {
		r.cfg.Observer.Swept(n)
	}
	log.Debugf("swept %d services in %s: %s", n, s.sweepTook, why)
}

// sweep asks every service without a watcher for its current index (a probe
// with no body) and reads again those whose index moved. It returns the
// number of services probed.
func (r *Replicator) sweep() int {
	type probe struct {
		key, name string
		index     uint64
	}
	var probes []probe
	r.mu.Lock()
	for key, e := range r.data.services {
		if !r.watch.has(key) {
			probes = append(probes, probe{key, e.name, e.index})
		}
	}
	r.mu.Unlock()

	work := make(chan probe)
	var wg sync.WaitGroup
	for range r.cfg.Fetchers {
		wg.Go(func() {
			for p := range work {
				if r.fetch.limiter.Wait(r.run.ctx) != nil {
					continue
				}
				// Index 0: not the agent's streaming view, which may lag the
				// catalog change that asked for this sweep, but the servers'.
				meta, err := r.request(r.run.ctx, r.cfg.RequestSlack, func(ctx context.Context) (Meta, error) {
					return r.src.ServiceIndex(ctx, p.name)
				})
				if err != nil || meta.Index != p.index {
					// A failed probe proves nothing: read it, which retries.
					r.fetch.queue.push(p.key)
				}
			}
		})
	}
	for _, p := range probes {
		select {
		case work <- p:
		case <-r.run.ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return len(probes)
}
