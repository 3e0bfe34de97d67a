package replica

import (
	"context"
	"sync"
)

// queue is a set of service keys waiting to be fetched, in arrival order. A
// key queued twice before it is fetched is fetched once.
type queue struct {
	mu      sync.Mutex
	order   []string
	pending map[string]bool
	ready   chan struct{} // capacity 1: wakes a waiting fetcher
}

func newQueue() *queue {
	return &queue{pending: make(map[string]bool), ready: make(chan struct{}, 1)}
}

func (q *queue) push(keys ...string) {
	q.mu.Lock()
	for _, k := range keys {
		if !q.pending[k] {
			q.pending[k] = true
			q.order = append(q.order, k)
		}
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop returns the oldest key, waiting for one until ctx is done.
func (q *queue) pop(ctx context.Context) (string, bool) {
	for {
		q.mu.Lock()
		if len(q.order) > 0 {
			k := q.order[0]
			q.order = q.order[1:]
			delete(q.pending, k)
			more := len(q.order) > 0
			q.mu.Unlock()
			if more {
				// Pass the wake-up on so other fetchers work in parallel.
				select {
				case q.ready <- struct{}{}:
				default:
				}
			}
			return k, true
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-ctx.Done():
			return "", false
		}
	}
}
