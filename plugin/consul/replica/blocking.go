package replica

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"
)

// fetchFunc runs one Consul query with opts and returns the X-Consul-Index of
// the answer. It applies whatever the answer holds before returning.
type fetchFunc func(ctx context.Context, opts *api.QueryOptions) (index uint64, err error)

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
func (r *Replicator) watch(ctx context.Context, what string, fetch fetchFunc) {
	limiter := rate.NewLimiter(r.cfg.RateLimit, r.cfg.RateBurst)
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	var index uint64
	for {
		if err := limiter.Wait(ctx); err != nil {
			return // ctx done
		}
		// Consul adds up to wait/16 of jitter to the wait; the deadline leaves
		// room for it and for a slow answer, so a hung agent cannot hold the
		// loop forever.
		reqCtx, cancel := context.WithTimeout(ctx, r.cfg.Wait+r.cfg.Wait/16+r.cfg.RequestSlack)
		opts := r.queryOptions(index)
		got, err := fetch(reqCtx, opts.WithContext(reqCtx))
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			delay := backoff.next()
			log.Warningf("%s: %v (retrying in %s)", what, err, delay.Round(time.Millisecond))
			if !sleep(ctx, delay) {
				return
			}
			continue
		}
		backoff.reset()
		index = nextIndex(what, index, got)
	}
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

func (r *Replicator) queryOptions(index uint64) *api.QueryOptions {
	return &api.QueryOptions{
		Datacenter: r.cfg.Datacenter,
		AllowStale: true,
		WaitIndex:  index,
		WaitTime:   r.cfg.Wait,
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
