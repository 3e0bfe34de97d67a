package replica

import (
	"context"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"golang.org/x/time/rate"
)

// fetcher reads services once, at once, from a queue: new services, and
// those a detector named. Its limiter bounds fetches and sweep probes
// together.
type fetcher struct {
	queue   *queue
	limiter *rate.Limiter
}

func newFetcher(limit rate.Limit) *fetcher {
	return &fetcher{queue: newQueue(), limiter: rate.NewLimiter(limit, max(1, int(limit)/5))}
}

// serviceRead is one read of a service, with how recent it is.
type serviceRead struct {
	svc *snapshot.Service
	seq uint64
}

// fetchLoop reads queued services, one at a time, until the replica stops.
func (r *Replicator) fetchLoop() {
	for {
		key, ok := r.fetch.queue.pop(r.run.ctx)
		if !ok {
			return
		}
		r.fetchRequeued(key)
	}
}

// fetchRequeued fetches key, and queues it again if the fetch panics before
// the panic goes on to the runner: a service whose read was lost would be
// missing from every snapshot until it changed again.
func (r *Replicator) fetchRequeued(key string) {
	defer func() {
		if p := recover(); p != nil {
			r.fetch.queue.push(key)
			panic(p)
		}
	}()
	r.fetchService(key)
}

// fetchService reads one queued service, retrying with backoff: a service
// whose read fails keeps its last good data meanwhile.
func (r *Replicator) fetchService(key string) {
	r.mu.Lock()
	e := r.data.services[key]
	r.mu.Unlock()
	if e == nil {
		return // gone
	}
	name := e.name // never changes: a new spelling is a new entry
	listed := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.data.services[key] == e
	}
	var read serviceRead
	ok := r.retry(r.run.ctx, "reading service "+name, listed, func(ctx context.Context) (Meta, error) {
		if err := r.fetch.limiter.Wait(ctx); err != nil {
			return Meta{}, err
		}
		// A read at once holds what Consul had when it was sent.
		read.seq = r.data.seq.Add(1)
		// Index 0: a read at once from the servers, not a blocking query,
		// which the agent would answer from a streaming view it starts for
		// the service (memory kept for 20 minutes, for a service no
		// watcher follows) and with the view's index rather than the
		// service's own, which the move tracker needs to tell which change
		// a move of the service list's index was. The detectors read the
		// servers too, so the read sees what they saw.
		svc, meta, err := r.src.Service(ctx, name, Query{})
		read.svc = svc
		if err == nil {
			r.noteFiltered(meta, "instances and nodes")
		}
		return meta, err
	})
	if ok {
		r.applyService(r.run.ctx, key, name, read)
	}
}

// applyService stores a read of a service unless the service went away, or
// lost the watcher that read it (ctx done), meanwhile: that could resurrect
// a removed service.
func (r *Replicator) applyService(ctx context.Context, key, name string, read serviceRead) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	e := r.data.services[key]
	switch {
	case e == nil || e.name != name:
	case read.seq < e.seq:
		// Overtaken by a newer read: storing this one would bring back
		// what that one removed, until the service's next change. Not
		// told by indexes: a watcher's come from the agent's streaming
		// view (the raft index when the view started), and Consul does
		// not move a service's index when an instance leaves it by being
		// registered again under another name.
	default:
		e.seq = read.seq
		r.storeLocked(key, e, read.svc)
	}
}

// storeLocked records a fresh read of a service. A service read for the
// first time waits for a watcher; one without a watcher that turns out to
// have changed is promoted.
func (r *Replicator) storeLocked(key string, e *entry, svc *snapshot.Service) {
	first := e.svc == nil
	e.index = svc.Index
	if !first && sameInstances(e.svc.Instances, svc.Instances) {
		// Not a change: a streaming view's first answer, or a detector's
		// false alarm. It is not worth a snapshot. Compared by content,
		// not index: Consul leaves a service's index where it was when an
		// instance leaves it by being registered under another name.
		return
	}
	if !first && !sameRegistrations(e.svc.Instances, svc.Instances) {
		r.moves.explain(svc.Index)
	}
	e.svc = svc
	r.markDirty()
	switch {
	case r.watch.has(key):
		r.watch.changed(key)
	case first:
		r.watch.ramp.push(key)
	default:
		r.promoteLocked(key, e)
	}
}
