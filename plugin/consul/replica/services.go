package replica

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"
)

// listDiff is how the service list differs from the services held, by key.
type listDiff struct {
	added    map[string]string // key → name
	removed  []string
	retagged []string
}

func (d listDiff) empty() bool { return len(d.added)+len(d.removed)+len(d.retagged) == 0 }

// diffList compares the service list Consul gave with the services held. A
// name whose spelling changed is removed and added again: its watcher asks
// for the old spelling.
func diffList(held map[string]*entry, list map[string][]string) listDiff {
	d := listDiff{added: make(map[string]string)}
	seen := make(map[string]bool, len(list))
	for name, tags := range list {
		key := snapshot.Key(name)
		seen[key] = true
		switch e := held[key]; {
		case e == nil:
			d.added[key] = name
		case e.name != name:
			d.removed = append(d.removed, key)
			d.added[key] = name
		case !sameSet(e.tags, tags):
			d.retagged = append(d.retagged, key)
		}
	}
	for key := range held {
		if !seen[key] {
			d.removed = append(d.removed, key)
		}
	}
	slices.Sort(d.removed)
	slices.Sort(d.retagged)
	return d
}

// fetchServiceList reads the names and tags of all services and reconciles
// the replica with them: new services are read, removed ones dropped, and a
// move of the index tells the sweeper to find out what changed when not
// every service is watched.
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
	if r.servicesHidden != meta.ResultsFilteredByACLs {
		r.servicesHidden = meta.ResultsFilteredByACLs
		r.markDirty()
	}
	if meta.LastIndex < r.listIndex.Load() {
		// Another cluster, or one restored from a snapshot: indexes start
		// over, and reads with lower indexes than those held are current.
		for _, e := range r.services {
			e.index = 0
		}
	}
	d := diffList(r.services, list)
	for _, key := range d.removed {
		r.removeLocked(key)
	}
	added := make([]string, 0, len(d.added))
	for key, name := range d.added {
		r.services[key] = &entry{name: name, tags: list[name]}
		added = append(added, key)
	}
	// Read in name order, so that restarts tend to watch the same set.
	slices.Sort(added)
	r.fetches.push(added...)
	for _, key := range d.retagged {
		e := r.services[key]
		e.tags = list[e.name]
		if e.watcher == nil {
			r.fetches.push(key)
		}
	}
	if !d.empty() {
		r.noteChangeLocked(meta.LastIndex)
	}
	// Registrations that change neither names nor tags move only the index:
	// unless every service is watched, the sweeper must find out which.
	r.listIndex.Store(meta.LastIndex)
	if r.listed && r.watchers < len(r.services) {
		if len(r.moves) == maxMoves {
			r.moves = r.moves[1:]
		}
		r.moves = append(r.moves, meta.LastIndex)
		select {
		case r.moved <- struct{}{}:
		default:
		}
	}
	if !r.listed || len(d.removed) > 0 {
		r.markDirty()
	}
	r.listed = true
	r.joinPoolLocked()
	r.warnBudgetLocked()
	r.reportWatchersLocked()
	return meta, nil
}

// removeLocked drops a service that is no longer in the catalog.
func (r *Replicator) removeLocked(key string) {
	if e := r.services[key]; e != nil && e.watcher != nil {
		r.stopWatcherLocked(e)
	}
	delete(r.services, key)
}

type watcher struct {
	cancel     context.CancelFunc
	lastChange time.Time
}

// startWatcherLocked gives a service its own blocking query, starting from
// the index of the data held.
func (r *Replicator) startWatcherLocked(key string, e *entry) {
	ctx, cancel := context.WithCancel(r.ctx)
	e.watcher = &watcher{cancel: cancel, lastChange: time.Now()}
	r.watchers++
	r.reportWatchersLocked()
	name, index := e.name, e.index
	r.spawn(func() {
		r.watch(ctx, "service "+name, index, func(ctx context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
			return r.fetchService(ctx, client, key, name, opts, true)
		})
	})
}

func (r *Replicator) stopWatcherLocked(e *entry) {
	e.watcher.cancel()
	e.watcher = nil
	r.watchers--
	r.reportWatchersLocked()
}

// rampLoop gives services read once a watcher of their own, at most
// WatchRate a second, while the budget allows: services waiting for theirs
// are covered by the detectors meanwhile.
func (r *Replicator) rampLoop() {
	limiter := rate.NewLimiter(r.cfg.WatchRate, max(1, int(r.cfg.WatchRate)/10))
	for {
		key, ok := r.ramp.pop(r.ctx)
		if !ok {
			return
		}
		if r.budget() == 0 {
			continue
		}
		if limiter.Wait(r.ctx) != nil {
			return
		}
		r.mu.Lock()
		if e := r.services[key]; e != nil && e.svc != nil && e.watcher == nil && r.watchers < r.budgetLocked() {
			r.startWatcherLocked(key, e)
		}
		r.mu.Unlock()
	}
}

// fetchService reads every instance of one service with its health, and
// stores it unless the service went away meanwhile.
func (r *Replicator) fetchService(ctx context.Context, client *api.Client, key, name string, opts *api.QueryOptions, byWatcher bool) (*api.QueryMeta, error) {
	// How recent the data is: a read at once holds what Consul had when it
	// was sent; a blocking query, what Consul had when it returned.
	seq := r.readSeq.Add(1)
	entries, meta, err := client.Health().Service(name, "", false, opts)
	if err != nil {
		return nil, fmt.Errorf("reading service %q: %w", name, err)
	}
	if byWatcher {
		seq = r.readSeq.Add(1)
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
	e := r.services[key]
	switch {
	case e == nil || e.name != name:
	case seq < e.seq:
		// Overtaken by a newer read: storing this one would bring back
		// what that one removed, until the service's next change. Not
		// told by indexes: a watcher's come from the agent's streaming
		// view (the raft index when the view started), and Consul does
		// not move a service's index when an instance leaves it by being
		// registered again under another name.
	default:
		e.seq = seq
		r.storeLocked(key, e, svc)
	}
	return meta, nil
}

// storeLocked records a fresh read of a service. A service read for the
// first time waits for a watcher. One without a watcher that turns out to
// have changed takes the watcher slot of the service that changed least
// recently: changes come in bursts (deploys, flapping checks), and the next
// one to this service then propagates at once.
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
		r.noteChangeLocked(svc.Index)
	}
	e.svc = svc
	r.markDirty()
	switch {
	case e.watcher != nil:
		e.watcher.lastChange = time.Now()
	case first:
		r.ramp.push(key)
	case r.budgetLocked() > 0 && r.watchers >= r.budgetLocked():
		var coldest *entry
		coldestKey := ""
		for k, c := range r.services {
			if c.watcher != nil && (coldest == nil || c.watcher.lastChange.Before(coldest.watcher.lastChange)) {
				coldest, coldestKey = c, k
			}
		}
		r.stopWatcherLocked(coldest)
		// A change the evicted watcher was about to see, or missed while
		// Consul failed, would otherwise wait for the detectors.
		r.fetches.push(coldestKey)
		r.startWatcherLocked(key, e)
	case r.budgetLocked() > 0:
		r.startWatcherLocked(key, e)
	}
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
		e := r.services[key]
		if e == nil {
			r.mu.Unlock()
			return // gone
		}
		name := e.name
		r.mu.Unlock()
		if err := r.limiter.Wait(r.ctx); err != nil {
			return
		}
		// Index 0: a read at once from the servers, not a blocking query,
		// which the agent would answer from a streaming view it starts for
		// the service (memory kept for 20 minutes, for a service no watcher
		// follows) and with the view's index rather than the service's own,
		// which the sweeper needs to tell which change a move of the
		// service list's index was. The detectors read the servers too, so
		// the read sees what they saw: through one agent, the same server.
		_, err := r.query(r.ctx, 0, 0, r.cfg.RequestSlack, func(ctx context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
			return r.fetchService(ctx, client, key, name, opts, false)
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

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
