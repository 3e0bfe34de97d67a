package replica

import (
	"context"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"
)

// blocking describes one blocking read for watch: how to read, and how to
// apply what was read.
type blocking[T any] struct {
	what string // for log lines
	// index is where the loop starts: 0 to read at once, or the index of
	// data the caller already holds.
	index uint64
	read  func(ctx context.Context, q Query) (T, Meta, error)
	// apply takes an answer that moved the index; reset says the index went
	// backwards (a restored snapshot, another cluster). It touches no
	// network.
	apply func(data T, meta Meta, reset bool)
	// filtered names what an answer cut short by the ACL token lacks.
	filtered string
	// paused, when set, holds the loop (and no connection) while it reports
	// true; the first read after a pause blocks on the index held, so it
	// returns at once with what changed meanwhile.
	paused func() bool
	// answered, when set, hears once that the first read ended.
	answered func()
}

// watch runs b as a Consul blocking-query loop until ctx is done. Consul's
// rules (api-docs/features/blocking) are applied here and nowhere else:
//   - the first read has index 0 and returns at once; later reads block on
//     the last index seen, and an answer at that same index changed nothing;
//   - an index that goes backwards resets the loop to that lower index
//     rather than blocking on one that may not be reached for a long time;
//   - an index of 0 after the first read is a Consul bug that would make
//     every later read return at once: it is clamped to 1;
//   - each read waits for a token, so a key that changes constantly costs a
//     bounded request rate, and errors (429s among them) back off
//     exponentially with jitter.
func watch[T any](r *Replicator, ctx context.Context, b blocking[T]) {
	limiter := rate.NewLimiter(r.cfg.RateLimit, r.cfg.RateBurst)
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	index, held := b.index, b.index
	for {
		for b.paused != nil && b.paused() {
			if !sleep(ctx, idleDetectorPoll) {
				return
			}
		}
		if limiter.Wait(ctx) != nil {
			return
		}
		var data T
		meta, err := r.request(ctx, r.blockingDeadline(), func(ctx context.Context) (m Meta, err error) {
			data, m, err = b.read(ctx, Query{Index: index, Wait: r.cfg.Wait})
			return m, err
		})
		if ctx.Err() != nil {
			return
		}
		if b.answered != nil {
			b.answered()
			b.answered = nil
		}
		if err != nil {
			r.outage.failed(b.what, err)
			if !sleep(ctx, backoff.next()) {
				return
			}
			// What answers next may be another cluster (a failover, a
			// cluster rebuilt from nothing) whose index is lower than the
			// one held: a read blocking on the held index would wait out
			// the whole wait before showing it. Index 1 reads at once, and
			// the answer's index tells whether it went backwards.
			index = min(index, 1)
			continue
		}
		backoff.reset()
		if b.filtered != "" {
			r.noteFiltered(meta, b.filtered)
		}
		if meta.Index == index && index != 0 {
			continue // the wait ran out without a change
		}
		reset := meta.Index < held
		if reset {
			log.Infof("%s: index went backwards from %d to %d, resetting", b.what, held, meta.Index)
		}
		b.apply(data, meta, reset)
		held = max(meta.Index, 1)
		index = held
	}
}

// idleDetectorPoll is how often a paused loop looks again.
const idleDetectorPoll = 100 * time.Millisecond

// blockingDeadline bounds a blocking read: Consul adds up to wait/16 of
// jitter to the wait, and a slow answer gets RequestSlack more, so a hung
// agent cannot hold a request forever.
func (r *Replicator) blockingDeadline() time.Duration {
	return r.cfg.Wait + r.cfg.Wait/16 + r.cfg.RequestSlack
}

// request sends one read with a deadline and records its outcome.
func (r *Replicator) request(ctx context.Context, deadline time.Duration, read func(context.Context) (Meta, error)) (Meta, error) {
	reqCtx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	meta, err := read(reqCtx)
	if err != nil && ctx.Err() != nil {
		return meta, err // stopped: not Consul's failure
	}
	r.stats.record(meta, err, r.cfg.Observer)
	if err == nil {
		r.outage.succeeded()
	}
	return meta, err
}

// retry runs read until it succeeds or ctx is done, backing off between
// failures; it reports whether read succeeded. wanted, when set, is asked
// before each attempt whether the read is still wanted.
func (r *Replicator) retry(ctx context.Context, what string, wanted func() bool, read func(context.Context) (Meta, error)) bool {
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	for {
		if wanted != nil && !wanted() {
			return false
		}
		_, err := r.request(ctx, r.cfg.RequestSlack, read)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.outage.failed(what, err)
		if !sleep(ctx, backoff.next()) {
			return false
		}
	}
}

// every reads at once, then every interval, sooner while it fails, and
// applies each answer: for what Consul offers no blocking query for.
func every[T any](r *Replicator, interval, timeout time.Duration, read func(context.Context) (T, Meta, error), apply func(T)) {
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	for {
		var data T
		_, err := r.request(r.run.ctx, timeout, func(ctx context.Context) (m Meta, err error) {
			data, m, err = read(ctx)
			return m, err
		})
		delay := interval
		if err == nil {
			backoff.reset()
			apply(data)
		} else {
			delay = min(delay, backoff.next())
		}
		if !sleep(r.run.ctx, delay) {
			return
		}
	}
}

// backoff is capped exponential backoff with "equal jitter": the delay is
// uniformly drawn from [d/2, d], so a fleet of replicas that lost Consul at
// the same moment does not come back in lockstep.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max}
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	half := b.cur / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits for d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
