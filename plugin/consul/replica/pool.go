package replica

import (
	"slices"
	"sync"
)

// Pool shares the watcher budgets of the replicas that read through the
// same agent, one per replicated datacenter, by need: each brings its equal
// share of the agent's connection limit (its base budget), and the pool
// hands out the sum so that a datacenter with few services lends what it
// does not use to one with many. Without it, a local datacenter of 10
// services would keep half the budget while a remote one of 500 watched a
// third of its own.
type Pool struct {
	mu      sync.Mutex
	members map[*Replicator]*member
}

type member struct {
	base, want int
	// sized is what the shares were sized for in all: base x share.
	sized int
	// capacity is the connections the agent allows all the members
	// together, overhead what this one needs besides its watchers; a
	// capacity of 0 is unknown or unbounded.
	capacity, overhead int
}

// NewPool returns an empty pool; replicas join it with Config.Pool.
func NewPool() *Pool { return &Pool{members: make(map[*Replicator]*member)} }

// update records r's base budget and how many services it would watch, and
// hands every member its allowance. It returns the members whose allowance
// changed. It takes no replica's lock: a replica may call it holding its own.
func (p *Pool) update(r *Replicator, m member) []*Replicator {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.members[r] = &m
	return p.allocateLocked()
}

// leave removes r from the pool: what it held goes to the others.
func (p *Pool) leave(r *Replicator) []*Replicator {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.members, r)
	return p.allocateLocked()
}

func (p *Pool) allocateLocked() []*Replicator {
	rs := make([]*Replicator, 0, len(p.members))
	bases, wants := make([]int, 0, len(p.members)), make([]int, 0, len(p.members))
	capacity, overhead, sum, sized := 0, 0, 0, 0
	for r, m := range p.members {
		rs = append(rs, r)
		bases, wants = append(bases, m.base), append(wants, m.want)
		if m.capacity > 0 && (capacity == 0 || m.capacity < capacity) {
			capacity = m.capacity
		}
		overhead += m.overhead
		sum += m.base
		sized = max(sized, m.sized)
	}
	// The agent's limit unknown (or unbounded, over HTTPS): what the shares
	// were sized for, which more datacenters than that ("datacenters *"
	// sizes for four) must not exceed.
	total := min(sum, sized)
	if capacity > 0 {
		// Known: the members share all of it, not only the shares they
		// were sized for.
		total = max(0, capacity-overhead)
	}
	var changed []*Replicator
	for i, a := range allocate(total, bases, wants) {
		// Never past what one replica's connections can carry.
		a = min(a, p.members[rs[i]].ownLimit())
		if int(rs[i].allowance.Swap(int64(a))) != a {
			changed = append(changed, rs[i])
		}
	}
	return changed
}

// ownLimit is the most watchers the member's own connections can carry:
// its transport is capped at max(capacity, sized + overhead) connections
// (Config.connections).
func (m *member) ownLimit() int { return max(m.capacity-m.overhead, m.sized) }

// allocate splits total (the sum of bases when negative) between members
// wanting wants: none gets more than it wants or than HTTPSWatchers, and
// what is left over is shared equally among those that want more
// (water-filling), so the result does not depend on the order of the
// members.
func allocate(total int, bases, wants []int) []int {
	if total < 0 {
		total = 0
		for _, b := range bases {
			total += b
		}
	}
	order := make([]int, len(wants))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return wants[a] - wants[b] })
	out := make([]int, len(wants))
	for n, i := range order {
		fair := total / (len(order) - n)
		out[i] = max(0, min(wants[i], fair, HTTPSWatchers))
		total -= out[i]
	}
	return out
}

// budgetLocked is how many services may have a watcher now.
func (r *Replicator) budgetLocked() int {
	if r.cfg.Pool != nil {
		return int(r.allowance.Load())
	}
	return r.cfg.MaxWatchers
}

// joinPoolLocked tells the pool what r would watch: every listed service,
// or its base budget before the list is read (so that a replica still
// starting is not starved). Members whose allowance changed rebalance.
func (r *Replicator) joinPoolLocked() {
	if r.cfg.Pool == nil {
		return
	}
	want := r.cfg.MaxWatchers
	if r.listed {
		want = len(r.services)
	}
	m := member{base: r.cfg.MaxWatchers, want: want, sized: r.cfg.MaxWatchers * max(1, r.cfg.Share),
		capacity: r.capacity, overhead: r.cfg.overhead()}
	for _, m := range r.cfg.Pool.update(r, m) {
		if m == r {
			r.rebalanceLocked()
		} else {
			// Not under this replica's lock: m may be waiting for the pool.
			go m.rebalance()
		}
	}
}

func (r *Replicator) rebalance() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rebalanceLocked()
}

// rebalanceLocked fits the watchers to the allowance: the services that
// changed least recently lose theirs when it shrank (the detectors cover
// them), services read once without one are queued for one when it grew.
func (r *Replicator) rebalanceLocked() {
	if r.ctx == nil || r.ctx.Err() != nil {
		return
	}
	budget := r.budgetLocked()
	for r.watchers > budget {
		var coldest *entry
		for _, e := range r.services {
			if e.watcher != nil && (coldest == nil || e.watcher.lastChange.Before(coldest.watcher.lastChange)) {
				coldest = e
			}
		}
		r.stopWatcherLocked(coldest)
	}
	room := budget - r.watchers
	for key, e := range r.services {
		if room <= 0 {
			break
		}
		if e.svc != nil && e.watcher == nil {
			r.ramp.push(key)
			room--
		}
	}
	r.reportWatchersLocked()
}
