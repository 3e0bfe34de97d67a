package replica

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// fetchServiceList reads the names and tags of all services and reconciles
// the replica with them: new services are read, removed ones dropped, and a
// move of the index that no watcher will see starts a sweep.
func (r *Replicator) fetchServiceList(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
	list, meta, err := client.Catalog().Services(opts)
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	r.noteFiltered(meta, "services")
	if meta.LastIndex == opts.WaitIndex {
		return meta, nil // the wait ran out without a change
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool, len(list))
	var added []string
	for name, tags := range list {
		key := snapshot.Key(name)
		seen[key] = true
		old, known := r.tags[key]
		r.names[key] = name
		r.tags[key] = tags
		switch {
		case !known:
			added = append(added, key)
		case !sameSet(old, tags) && r.watchers[key] == nil:
			r.fetches.push(key)
		}
	}
	removed := 0
	for key := range r.names {
		if !seen[key] {
			r.removeLocked(key)
			removed++
		}
	}
	// Watcher slots go to services in name order, so restarts watch the same set.
	slices.Sort(added)
	for _, key := range added {
		if len(r.watchers) < r.cfg.MaxWatchers {
			r.startWatcherLocked(key, 0)
		} else {
			r.fetches.push(key)
		}
	}
	// Registrations that change neither names nor tags move only the index:
	// the services without a watcher must be asked whether it was them.
	if r.listed && len(r.watchers) < len(r.names) {
		r.requestSweep()
	}
	if !r.listed || removed > 0 {
		r.markDirty()
	}
	r.listed = true
	return meta, nil
}

// removeLocked drops a service that is no longer in the catalog.
func (r *Replicator) removeLocked(key string) {
	if w := r.watchers[key]; w != nil {
		w.cancel()
		delete(r.watchers, key)
	}
	delete(r.names, key)
	delete(r.tags, key)
	delete(r.services, key)
}

// startWatcherLocked gives a service its own blocking query, starting from
// index (0 to read it at once).
func (r *Replicator) startWatcherLocked(key string, index uint64) {
	ctx, cancel := context.WithCancel(r.ctx)
	r.watchers[key] = &watcher{cancel: cancel, lastChange: time.Now()}
	name := r.names[key]
	r.spawn(func() {
		r.watch(ctx, "service "+name, index, func(ctx context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
			return r.fetchService(ctx, client, key, name, opts)
		})
	})
}

// fetchService reads every instance of one service with its health, and
// stores it unless the service went away meanwhile.
func (r *Replicator) fetchService(ctx context.Context, client *api.Client, key, name string, opts *api.QueryOptions) (*api.QueryMeta, error) {
	entries, meta, err := client.Health().Service(name, "", false, opts)
	if err != nil {
		return nil, fmt.Errorf("reading service %q: %w", name, err)
	}
	r.noteFiltered(meta, "instances and nodes")
	for _, e := range entries {
		if e == nil || e.Service == nil || e.Node == nil {
			// Well-formed JSON, but not an answer Consul gives: keep the
			// last good data rather than an empty service.
			return nil, fmt.Errorf("reading service %q: an entry without its node or service", name)
		}
	}
	if meta.LastIndex == opts.WaitIndex {
		return meta, nil
	}
	svc := buildService(name, entries, meta.LastIndex)
	r.mu.Lock()
	defer r.mu.Unlock()
	// A watcher whose service was removed or evicted while this read ran
	// must not store it: that could resurrect a removed service. The error
	// keeps a loop that goes on from moving its index past unstored data.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.names[key] != name {
		return meta, nil
	}
	r.storeLocked(key, svc)
	return meta, nil
}

// storeLocked records a fresh read of a service. A service without a watcher
// that turns out to have changed takes the watcher slot of the service that
// changed least recently: changes come in bursts (deploys, flapping checks),
// and the next one to this service then propagates at once.
func (r *Replicator) storeLocked(key string, svc *snapshot.Service) {
	old, had := r.services[key]
	if had && old.Index == svc.Index {
		return
	}
	r.services[key] = svc
	r.markDirty()
	if w := r.watchers[key]; w != nil {
		w.lastChange = time.Now()
		return
	}
	if !had || r.cfg.MaxWatchers == 0 {
		return
	}
	if len(r.watchers) >= r.cfg.MaxWatchers {
		coldest := ""
		var coldestAt time.Time
		for k, w := range r.watchers {
			if coldest == "" || w.lastChange.Before(coldestAt) {
				coldest, coldestAt = k, w.lastChange
			}
		}
		r.watchers[coldest].cancel()
		delete(r.watchers, coldest)
		// A change the evicted watcher was about to see, or missed while
		// Consul failed, would otherwise wait for the next sweep.
		r.fetches.push(coldest)
	}
	r.startWatcherLocked(key, svc.Index)
}

// fetchLoop reads queued services, one at a time, until the replica stops.
func (r *Replicator) fetchLoop() {
	for {
		key, ok := r.fetches.pop(r.ctx)
		if !ok {
			return
		}
		r.fetchQueued(key)
	}
}

// fetchQueued reads one queued service, retrying with backoff: a service
// whose read fails keeps its last good data meanwhile.
func (r *Replicator) fetchQueued(key string) {
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	for {
		r.mu.Lock()
		name, listed := r.names[key]
		watched := r.watchers[key] != nil
		index := uint64(1)
		if svc := r.services[key]; svc != nil {
			index = svc.Index
		}
		r.mu.Unlock()
		if !listed || watched {
			return // gone, or its watcher reads it
		}
		if err := r.limiter.Wait(r.ctx); err != nil {
			return
		}
		// A blocking query, which the agent answers from its streaming view
		// of the service at no cost to the servers. A service is queued
		// because it changed, but the agent's view may not have caught up
		// with the change yet: blocking on the index held returns as soon
		// as it has. Index 1 reads a service not held yet at once.
		_, err := r.query(r.ctx, index, fetchWait, fetchWait+r.cfg.RequestSlack, func(ctx context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
			return r.fetchService(ctx, client, key, name, opts)
		})
		if err == nil || r.ctx.Err() != nil {
			return
		}
		delay := backoff.next()
		log.Warningf("reading service %q: %v (retrying in %s)", name, err, delay.Round(time.Millisecond))
		if !sleep(r.ctx, delay) {
			return
		}
	}
}

// fetchWait bounds how long a queued fetch waits for a change that a detector
// reported but that did not happen after all.
const fetchWait = 2 * time.Second

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
