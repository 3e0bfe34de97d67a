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
	members map[*budget]*member
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
func NewPool() *Pool { return &Pool{members: make(map[*budget]*member)} }

// update records b's base budget and how many services it would watch, and
// hands every member its allowance. It returns the members whose allowance
// changed. It takes no replica's lock: a replica may call it holding its own.
func (p *Pool) update(b *budget, m member) []*budget {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.members[b] = &m
	return p.allocateLocked()
}

// leave removes b from the pool: what it held goes to the others.
func (p *Pool) leave(b *budget) []*budget {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.members, b)
	return p.allocateLocked()
}

func (p *Pool) allocateLocked() []*budget {
	rs := make([]*budget, 0, len(p.members))
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
	var changed []*budget
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

// joinPoolLocked tells the pool what r would watch: every listed service,
// or its base budget before the list is read (so that a replica still
// starting is not starved). Members whose allowance changed rebalance.
func (r *Replicator) joinPoolLocked() {
	b := r.budget
	if b.pool == nil {
		return
	}
	want := b.base
	if r.data.listed {
		want = len(r.data.services)
	}
	m := member{base: b.base, want: want, sized: b.base * b.share, capacity: b.capacity, overhead: b.overhead}
	for _, c := range b.pool.update(b, m) {
		if c == b {
			r.rebalanceLocked()
		} else {
			// Not under this replica's lock: c's may be waiting for the pool.
			go c.rebalance()
		}
	}
}

// leave takes b out of its pool, if any: what it held goes to the others.
func (b *budget) leave() {
	if b.pool == nil {
		return
	}
	for _, c := range b.pool.leave(b) {
		c.rebalance()
	}
}
