package replica

import (
	"context"
	"sync"
	"time"
)

// watchers decides which services have a blocking query of their own. A
// service read once waits in the ramp for one; watchers start as fast as the
// agent takes them, a bounded number waiting for their first answer at a
// time (each starts a streaming view in the agent: thousands at once grow
// its memory several times over what they cost once running), up to the
// budget. A service found changed without one takes the slot of the watched
// service that changed least recently (promotion and eviction): changes come
// in bursts, and the next one then propagates at once. Its state is guarded
// by the replica's mu.
type watchers struct {
	running map[string]*watcher // by key
	ramp    *queue              // services read once, waiting for a watcher
	// starting holds a token per watcher waiting for its first answer.
	starting chan struct{}
	// started: the first ramp ended, every service (or the budget) watched.
	started bool
}

type watcher struct {
	cancel     context.CancelFunc
	lastChange time.Time
}

func newWatchers(starts int) watchers {
	return watchers{running: make(map[string]*watcher), ramp: newQueue(), starting: make(chan struct{}, max(1, starts))}
}

func (w *watchers) count() int          { return len(w.running) }
func (w *watchers) has(key string) bool { return w.running[key] != nil }

// ramping reports whether the watchers are still first starting, until as
// many run as the services or the budget allow; once.
func (w *watchers) ramping(services, budget int) bool {
	if !w.started && len(w.running) >= min(services, budget) {
		w.started = true
	}
	return !w.started
}

// coldest is the watched service that changed least recently.
func (w *watchers) coldest() string {
	var key string
	var at time.Time
	for k, c := range w.running {
		if key == "" || c.lastChange.Before(at) {
			key, at = k, c.lastChange
		}
	}
	return key
}

// changed records a change seen by key's watcher.
func (w *watchers) changed(key string) {
	if c := w.running[key]; c != nil {
		c.lastChange = time.Now()
	}
}

// watchFrom is the index a watcher's first read blocks on. Any index below
// the service's makes the agent answer at once, from the streaming view it
// starts for the read (with the view's index): the answer says the view is
// up, which is what the ramp waits for, and it holds whatever changed since
// the service was read. The index of the data held would block, for the
// whole wait, when the service's last change is the agent's latest index.
const watchFrom = 1

// startWatcherLocked gives a service its own blocking query. A watcher the
// ramp starts (answered set, to hear of its first answer) reads from
// watchFrom; a promoted one from the index of the read that promoted it, a
// change the agent's view holds already: it blocks at once, which saves the
// request an answer at once would cost every promotion.
func (r *Replicator) startWatcherLocked(key string, e *entry, answered func()) {
	ctx, cancel := context.WithCancel(r.run.ctx)
	r.watch.running[key] = &watcher{cancel: cancel, lastChange: time.Now()}
	if answered != nil {
		// Also when the watcher ends before its first answer.
		answered = sync.OnceFunc(answered)
	}
	r.reportWatchersLocked()
	name, from := e.name, e.index
	if answered != nil || from == 0 {
		from = watchFrom
	}
	b := blocking[serviceRead]{
		what:     "service " + name,
		index:    from,
		filtered: "instances and nodes",
		answered: answered,
		read: func(ctx context.Context, q Query) (serviceRead, Meta, error) {
			svc, meta, err := r.src.Service(ctx, name, q)
			// A blocking read holds what Consul had when it returned.
			return serviceRead{svc: svc, seq: r.data.seq.Add(1)}, meta, err
		},
		apply: func(read serviceRead, _ Meta, _ bool) { r.applyService(ctx, key, name, read) },
	}
	r.run.spawn("watcher", func() {
		watch(r, ctx, b)
		if answered != nil {
			answered()
		}
	})
}

func (r *Replicator) stopWatcherLocked(key string) {
	if c := r.watch.running[key]; c != nil {
		c.cancel()
		delete(r.watch.running, key)
		r.reportWatchersLocked()
	}
}

// promoteLocked gives a service found changed without a watcher the slot of
// the watched service that changed least recently, when the budget is full.
func (r *Replicator) promoteLocked(key string, e *entry) {
	budget := r.budget.limit()
	if budget == 0 {
		return
	}
	if r.watch.count() >= budget {
		coldest := r.watch.coldest()
		r.stopWatcherLocked(coldest)
		// A change the evicted watcher was about to see, or missed while
		// Consul failed, would otherwise wait for the detectors.
		r.fetch.queue.push(coldest)
	}
	r.startWatcherLocked(key, e, nil)
}

// rampLoop gives services read once a watcher of their own while the budget
// allows, a bounded number waiting for their first answer at a time:
// services waiting for theirs are covered by the detectors meanwhile.
func (r *Replicator) rampLoop() {
	for {
		key, ok := r.watch.ramp.pop(r.run.ctx)
		if !ok {
			return
		}
		select {
		case r.watch.starting <- struct{}{}:
		case <-r.run.ctx.Done():
			return
		}
		started := false
		r.mu.Lock()
		if e := r.data.services[key]; e != nil && e.svc != nil && !r.watch.has(key) && r.watch.count() < r.budget.limit() {
			r.startWatcherLocked(key, e, func() { <-r.watch.starting })
			started = true
		}
		r.mu.Unlock()
		if !started {
			<-r.watch.starting
		}
	}
}

func (r *Replicator) rebalance() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rebalanceLocked()
}

// rebalanceLocked fits the watchers to the budget: the services that changed
// least recently lose theirs when it shrank (the detectors cover them),
// services read once without one are queued for one when it grew.
func (r *Replicator) rebalanceLocked() {
	if r.run.stopped() {
		return
	}
	budget := r.budget.limit()
	for r.watch.count() > budget {
		r.stopWatcherLocked(r.watch.coldest())
	}
	room := budget - r.watch.count()
	for key, e := range r.data.services {
		if room <= 0 {
			break
		}
		if e.svc != nil && !r.watch.has(key) {
			r.watch.ramp.push(key)
			room--
		}
	}
	r.reportWatchersLocked()
}

// allWatched reports whether every service has a watcher of its own.
func (r *Replicator) allWatched() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.data.listed && r.watch.count() >= len(r.data.services)
}

// reportWatchersLocked tells the observer how many services are watched.
func (r *Replicator) reportWatchersLocked() {
	if r.cfg.Observer != nil {
		r.cfg.Observer.Watching(r.watch.count(), len(r.data.services), r.budget.limit())
	}
}
