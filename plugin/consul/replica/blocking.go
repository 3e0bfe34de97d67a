package replica

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"
)

// fetchFunc runs one Consul query through client with opts, applies whatever
// the answer holds, and returns the answer's metadata.
type fetchFunc func(ctx context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error)

// watch runs fetch as a Consul blocking-query loop until ctx is done,
// following the rules in Consul's docs (api-docs/features/blocking):
//   - the first call has index 0 and returns at once; later calls block on the
//     last index seen;
//   - an index that goes backwards (a restored snapshot, a new cluster) resets
//     the loop to that lower index rather than blocking on one that may not be
//     reached for a long time;
//   - an index of 0 after the first call is a Consul bug that would make every
//     later call return at once: it is clamped to 1;
//   - each call waits for a token, so a key that changes constantly costs a
//     bounded request rate, and errors back off exponentially with jitter.
//
// index is where the loop starts: 0 to read at once, or the index of data the
// caller already holds.
func (r *Replicator) watch(ctx context.Context, what string, index uint64, fetch fetchFunc) {
	r.watchUnless(ctx, what, index, fetch, nil)
}

// watchUnless is watch, paused (holding no connection) while paused reports
// true; the first call after a pause blocks on the index held, so it returns
// at once with what changed meanwhile.
func (r *Replicator) watchUnless(ctx context.Context, what string, index uint64, fetch fetchFunc, paused func() bool) {
	limiter := rate.NewLimiter(r.cfg.RateLimit, r.cfg.RateBurst)
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	last := index // the index of the data held
	for {
		for paused != nil && paused() {
			if !sleep(ctx, idleDetectorPoll) {
				return
			}
		}
		if err := limiter.Wait(ctx); err != nil {
			return // ctx done
		}
		meta, err := r.query(ctx, index, r.cfg.Wait, r.blockingDeadline(), fetch)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			delay := backoff.next()
			log.Warningf("%s: %v (retrying in %s)", what, err, delay.Round(time.Millisecond))
			if !sleep(ctx, delay) {
				return
			}
			// What answers next may be another cluster (a failover, a
			// cluster rebuilt from nothing) whose index is lower than the
			// one held: a query blocking on the held index would wait out
			// the whole wait before showing it. Index 1 reads at once, and
			// the answer's index tells whether it went backwards.
			if index > 1 {
				index = 1
			}
			continue
		}
		backoff.reset()
		last = nextIndex(what, last, meta.LastIndex)
		index = last
	}
}

// blockingDeadline bounds a blocking query: Consul adds up to wait/16 of
// jitter to the wait, and a slow answer gets RequestSlack more, so a hung
// agent cannot hold a request forever.
func (r *Replicator) blockingDeadline() time.Duration {
	return r.cfg.Wait + r.cfg.Wait/16 + r.cfg.RequestSlack
}

// query sends one request through the active endpoint with a deadline, and
// records the outcome: a failure may move the replica to the next endpoint.
func (r *Replicator) query(ctx context.Context, index uint64, wait, deadline time.Duration, fetch fetchFunc) (*api.QueryMeta, error) {
	reqCtx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	i, client := r.endpoints.client()
	opts := r.queryOptions(index, wait).WithContext(reqCtx)
	meta, err := fetch(reqCtx, client, opts)
	if err != nil {
		// With several addresses, a log line must say which one failed.
		err = r.endpoints.named(i, err)
		if ctx.Err() == nil {
			r.endpoints.failed(i, err)
			r.stats.errors.Add(1)
			r.stats.failingSince.CompareAndSwap(0, time.Now().UnixNano())
			var status api.StatusError
			if errors.As(err, &status) && status.Code == http.StatusTooManyRequests {
				r.stats.tooMany.Add(1)
			}
			if r.cfg.Observer != nil {
				r.cfg.Observer.Request(err)
			}
		}
		return nil, err
	}
	r.stats.requests.Add(1)
	r.stats.contactAt.Store(time.Now().UnixNano())
	r.stats.failingSince.Store(0)
	if r.cfg.Observer != nil {
		r.cfg.Observer.Request(nil)
	}
	r.stats.lastContact.Store(int64(meta.LastContact))
	r.stats.knownLeader.Store(meta.KnownLeader)
	return meta, nil
}

// nextIndex applies Consul's index rules to the index returned by a query.
func nextIndex(what string, last, got uint64) uint64 {
	if got < last {
		log.Infof("%s: index went backwards from %d to %d, resetting", what, last, got)
	}
	if got == 0 {
		return 1
	}
	return got
}

func (r *Replicator) queryOptions(index uint64, wait time.Duration) *api.QueryOptions {
	return &api.QueryOptions{
		Datacenter:        r.cfg.Datacenter,
		Namespace:         r.cfg.Namespace,
		Partition:         r.cfg.Partition,
		AllowStale:        r.cfg.Consistency == Stale,
		RequireConsistent: r.cfg.Consistency == Consistent,
		WaitIndex:         index,
		WaitTime:          wait,
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
