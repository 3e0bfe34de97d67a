package replica

import (
	"sync/atomic"
	"time"
)

// Stats are counters about the replica's conversation with Consul.
type Stats struct {
	Requests, Errors uint64
	// TooMany counts 429 answers: Consul refusing a connection past its
	// per-client limit.
	TooMany uint64
	// LastContact is the time since the answering server last heard from
	// the leader; KnownLeader whether it knew one (stale reads).
	LastContact time.Duration
	KnownLeader bool
	// Watchers is how many services have a blocking query of their own,
	// Budget how many may, Services how many are listed.
	Watchers, Budget, Services int
	// Sweeps counts probe sweeps, Summaries reads of the services' summaries.
	Sweeps, Summaries uint64
}

// stats are the counters every loop updates without a lock.
type stats struct {
	requests, errors, tooMany atomic.Uint64
	sweeps, summaries         atomic.Uint64
	lastContact               atomic.Int64
	knownLeader               atomic.Bool
	// contactAt is when Consul last answered, failingSince when requests
	// began to fail after that (0 while they succeed); both UnixNano.
	contactAt, failingSince atomic.Int64
	// filteredLogged is set once the ACL filtering has been logged.
	filteredLogged atomic.Bool
}

// record counts one request's outcome and tells the observer.
func (s *stats) record(meta Meta, err error, o Observer) {
	if err != nil {
		s.errors.Add(1)
		s.failingSince.CompareAndSwap(0, time.Now().UnixNano())
		if tooMany(err) {
			s.tooMany.Add(1)
		}
	} else {
		s.requests.Add(1)
		s.contactAt.Store(time.Now().UnixNano())
		s.failingSince.Store(0)
		s.lastContact.Store(int64(meta.LastContact))
		s.knownLeader.Store(meta.KnownLeader)
	}
	if o != nil {
		o.Request(err)
	}
}

// Contact reports when Consul last answered, and since when requests have
// been failing after that (zero while they succeed). It takes no lock: the
// DNS request path calls it.
func (r *Replicator) Contact() (last, failingSince time.Time) {
	if ns := r.stats.contactAt.Load(); ns != 0 {
		last = time.Unix(0, ns)
	}
	if ns := r.stats.failingSince.Load(); ns != 0 {
		failingSince = time.Unix(0, ns)
	}
	return last, failingSince
}

// Stats returns the replica's counters.
func (r *Replicator) Stats() Stats {
	r.mu.Lock()
	watchers, services, budget := r.watch.count(), len(r.data.services), r.budget.limit()
	r.mu.Unlock()
	return Stats{
		Requests:    r.stats.requests.Load(),
		Errors:      r.stats.errors.Load(),
		TooMany:     r.stats.tooMany.Load(),
		LastContact: time.Duration(r.stats.lastContact.Load()),
		KnownLeader: r.stats.knownLeader.Load(),
		Watchers:    watchers,
		Budget:      budget,
		Services:    services,
		Sweeps:      r.stats.sweeps.Load(),
		Summaries:   r.stats.summaries.Load(),
	}
}

// noteFiltered reports, once in the log and every time to the observer, that
// the token cannot read everything: DNS then silently lacks what it cannot
// read, which is worth a clear line.
func (r *Replicator) noteFiltered(meta Meta, what string) {
	if !meta.Filtered {
		return
	}
	if r.stats.filteredLogged.CompareAndSwap(false, true) {
		log.Warningf("the ACL token may not read all %s: DNS will not answer for what it cannot read; give it service:read and node:read on them", what)
	}
	if r.cfg.Observer != nil {
		r.cfg.Observer.Filtered()
	}
}
