package replica

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// The detectors name the services without a watcher that changed; the
// fetchers read them. Each owns its state and only reports names.

// checkKey identifies a health check.
type checkKey struct{ node, id string }

type nonPassingCheck struct {
	status  string
	service string // empty for a node check
}

// healthDetector follows the non-passing checks. Their index moves on every
// check change, and a check entering, leaving or moving within the set names
// the service (or node) whose health changed.
type healthDetector struct {
	checks map[checkKey]nonPassingCheck
}

// observe takes a new read of the non-passing checks and returns the keys of
// the services whose checks changed, and the nodes whose node checks did.
func (h *healthDetector) observe(checks api.HealthChecks) (services, nodes map[string]bool) {
	current := make(map[checkKey]nonPassingCheck, len(checks))
	for _, c := range checks {
		current[checkKey{c.Node, c.CheckID}] = nonPassingCheck{status: c.Status, service: c.ServiceName}
	}
	services, nodes = diffChecks(h.checks, current)
	h.checks = current
	return services, nodes
}

// diffChecks names the services (by key) and the nodes whose checks differ
// between two reads: checks that appeared, disappeared or changed. A check
// without a service is a node check.
func diffChecks(previous, current map[checkKey]nonPassingCheck) (services, nodes map[string]bool) {
	services, nodes = make(map[string]bool), make(map[string]bool)
	note := func(k checkKey, c nonPassingCheck) {
		if c.service != "" {
			services[snapshot.Key(c.service)] = true
		} else {
			nodes[k.node] = true
		}
	}
	for k, c := range current {
		if old, ok := previous[k]; !ok || old != c {
			note(k, c)
		}
	}
	for k, c := range previous {
		if _, ok := current[k]; !ok {
			note(k, c)
		}
	}
	return services, nodes
}

// nonPassingFilter keeps the health detector's answers small: only checks
// that are warning or critical, usually few.
const nonPassingFilter = `Status != "passing"`

// fetchNonPassing reads the non-passing checks and queues the services
// without a watcher whose health changed.
func (r *Replicator) fetchNonPassing(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
	opts.Filter = nonPassingFilter
	checks, meta, err := client.Health().State(api.HealthAny, opts)
	if err != nil {
		return nil, fmt.Errorf("reading non-passing checks: %w", err)
	}
	if meta.LastIndex == opts.WaitIndex {
		return meta, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	services, nodes := r.health.observe(checks)
	for key := range r.servicesOnNodesLocked(nodes) {
		services[key] = true
	}
	r.queueUnwatchedLocked(services)
	return meta, nil
}

// idleDetectorPoll is how often a paused detector looks again.
const idleDetectorPoll = 100 * time.Millisecond

// allWatched reports whether every service has a watcher of its own.
func (r *Replicator) allWatched() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listed && r.watchers >= len(r.services)
}

// servicesOnNodesLocked returns the services with an instance on any of nodes.
func (r *Replicator) servicesOnNodesLocked(nodes map[string]bool) map[string]bool {
	out := make(map[string]bool)
	if len(nodes) == 0 {
		return out
	}
	for key, e := range r.services {
		if e.svc == nil {
			continue
		}
		for i := range e.svc.Instances {
			if nodes[e.svc.Instances[i].Node] {
				out[key] = true
				break
			}
		}
	}
	return out
}

// queueUnwatchedLocked queues the services among keys that have no watcher;
// watchers see their own changes.
func (r *Replicator) queueUnwatchedLocked(keys map[string]bool) {
	for key := range keys {
		if e := r.services[key]; e != nil && e.watcher == nil {
			r.fetches.push(key)
		}
	}
}

// fetchNodes reads every node of the catalog. A node whose address changed
// changes the instances on it: those without a watcher are queued.
func (r *Replicator) fetchNodes(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
	list, meta, err := client.Catalog().Nodes(opts)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	r.noteFiltered(meta, "nodes")
	if meta.LastIndex == opts.WaitIndex {
		return meta, nil
	}
	nodes := make(map[string]*snapshot.Node, len(list))
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := make(map[string]bool)
	dirty := len(list) != len(r.nodes) || !r.nodesListed
	for _, n := range list {
		key := snapshot.Key(n.Node)
		node := buildNode(n)
		switch old := r.nodes[key]; {
		case old != nil && sameNode(old, node):
			node = old // share the unchanged node with the previous snapshot
		case old != nil:
			changed[n.Node] = true
			dirty = true
		default:
			dirty = true
		}
		nodes[key] = node
	}
	r.nodes = nodes
	r.nodesListed = true
	r.queueUnwatchedLocked(r.servicesOnNodesLocked(changed))
	if dirty {
		// No noteIndexLocked: a node is registered in the same write as the
		// instance on it, and a move of the service list's index at that
		// write is explained only by reading the service.
		r.markDirty()
	}
	return meta, nil
}

// summary is what /v1/internal/ui/services says about one service: enough
// to tell that an instance or a check was added or removed, or moved node.
type summary struct {
	instances, passing, warning, critical int
	tags, nodes                           string
}

// uiSummary is one service of /v1/internal/ui/services (internal: the UI's;
// absent or different in other Consul versions, which only cost sweeps).
type uiSummary struct {
	Name                                         string
	Tags, Nodes                                  []string
	InstanceCount                                int
	ChecksPassing, ChecksWarning, ChecksCritical int
	Kind                                         string
	PeerName                                     string
}

// summaryDetector follows the services' summaries.
type summaryDetector struct {
	last map[string]summary // by key; nil before the first read
}

// known reports whether a read was taken to compare the next with.
func (d *summaryDetector) known() bool { return d.last != nil }

// observe takes a new read of the summaries and returns the keys of the
// services whose summaries changed; nothing on the first read.
func (d *summaryDetector) observe(list []uiSummary) []string {
	current := make(map[string]summary, len(list))
	for _, s := range list {
		if s.PeerName != "" {
			continue // imported from a cluster peer: not this datacenter's
		}
		tags, nodes := slices.Clone(s.Tags), slices.Clone(s.Nodes)
		slices.Sort(tags)
		slices.Sort(nodes)
		current[snapshot.Key(s.Name)] = summary{
			instances: s.InstanceCount, passing: s.ChecksPassing, warning: s.ChecksWarning, critical: s.ChecksCritical,
			tags: strings.Join(tags, "\x00"), nodes: strings.Join(nodes, "\x00"),
		}
	}
	previous := d.last
	d.last = current
	if previous == nil {
		return nil
	}
	return diffSummaries(previous, current)
}

// diffSummaries returns the keys whose summaries differ, sorted.
func diffSummaries(previous, current map[string]summary) []string {
	var changed []string
	for k, s := range current {
		if old, ok := previous[k]; !ok || old != s {
			changed = append(changed, k)
		}
	}
	for k := range previous {
		if _, ok := current[k]; !ok {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	return changed
}

// readSummaries reads every service's summary and queues those whose
// summary changed. It reports how many it named, and false when the read
// failed.
func (r *Replicator) readSummaries(d *summaryDetector) (int, bool) {
	list, ok := r.fetchSummaries()
	if !ok {
		return 0, false
	}
	return r.applySummaries(d, list), true
}

// fetchSummaries reads every service's summary; false when the read failed.
func (r *Replicator) fetchSummaries() ([]uiSummary, bool) {
	var list []uiSummary
	_, err := r.query(r.ctx, 0, 0, r.cfg.RequestSlack, func(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
		return client.Raw().Query("/v1/internal/ui/services", &list, opts)
	})
	if err != nil {
		return nil, false
	}
	r.stats.summaries.Add(1)
	return list, true
}

// applySummaries compares a read of the summaries with the last and queues
// the services whose summary changed. It returns how many it named.
func (r *Replicator) applySummaries(d *summaryDetector, list []uiSummary) int {
	changed := d.observe(list)
	r.mu.Lock()
	defer r.mu.Unlock()
	// Watched services too: Consul does not move a service's index (and
	// its streaming view may not hear) when an instance leaves it by being
	// registered again under another service's name; the counts show it.
	named := 0
	for _, key := range changed {
		if e := r.services[key]; e != nil {
			r.fetches.push(key)
			named++
		}
	}
	return named
}

// explainWait is how long a move of the service list's index may take to be
// explained by a change the replica sees before it costs a sweep.
const explainWait = time.Second

// pendingMove is a move of the service list's index waiting to be explained
// until deadline.
type pendingMove struct {
	index    uint64
	deadline time.Time
}

// readPacer bounds the share of time spent on a kind of read: each read of
// duration d costs share*d of credit, which comes back in real time; a read
// may start while no more than burst is owed. A lone slow read does not
// hold back the next ones (waiting twice its duration after each read did:
// one 300 ms read under load held every registration after it for 600 ms),
// while a storm of reads settles at one share of the time.
type readPacer struct {
	share     int           // the time paid per unit of read time
	burst     time.Duration // the most owed before reads wait
	owedUntil time.Time     // when what is owed is paid back
	minGap    time.Duration // between two starts
	lastStart time.Time
}

// wait returns how long a read at now must wait.
func (p *readPacer) wait(now time.Time) time.Duration {
	if p.lastStart.IsZero() {
		return 0
	}
	return max(p.owedUntil.Sub(now)-p.burst, p.lastStart.Add(p.minGap).Sub(now), 0)
}

// began records a read starting at start.
func (p *readPacer) began(start time.Time) {
	if start.After(p.lastStart) {
		p.lastStart = start
	}
}

// took records a read that started at start and took d.
func (p *readPacer) took(start time.Time, d time.Duration) {
	p.began(start)
	if p.owedUntil.Before(start) {
		p.owedUntil = start
	}
	p.owedUntil = p.owedUntil.Add(time.Duration(p.share) * d)
}

// summaryBurst is how much time the summaries' reads may owe before they are
// paced, and summaryShare what each read's duration costs. Under a storm of
// registrations the reads may then run back to back, one at a time on
// average: with one registration every 100 ms to a service without a
// watcher, reads of 50-100 ms (1,000 x 5 here, on a quiet or a busy machine)
// keep up with every change, as the 250 ms at p99 aimed for needs. Paying
// twice the duration (reads at most half the time) let a busy machine's
// 100 ms reads fall behind after 20 changes: 0.8-1.8 s at p99 over 100.
const (
	summaryBurst = 2 * time.Second
	summaryShare = 1
)

// sweepLoop finds out what each move of the service list's index was, when
// not every service is watched, in steps that each cost more than the last:
//  1. it reads the services' summaries (one request) and fetches those whose
//     instance or check counts, nodes or tags changed: registrations and
//     deregistrations; each move then has a deadline to be explained by a
//     change the replica sees (a watcher's, or a fetch's);
//  2. a move still not explained at its deadline (an address or port
//     changed, or two changes that cancel out in the counts) costs a probe
//     sweep.
//
// The loop never waits for an explanation or for a read: reads of the
// summaries run beside it (up to maxSummaryReads at once, applied in the
// order they began), a move is read as soon as it lands, and deadlines are
// checked when they fall.
//
// A move is explained by a registration change seen at exactly its index
// (fetches read the servers, whose index for a service is its last change's).
//
// Reads of the summaries are paced by readPacer: on average no more than one
// at a time under a long storm of registrations, at once otherwise; sweeps at
// most one per SweepInterval or per four times the last sweep's duration.
//
// The summaries (one Internal.ServiceDump of every instance and check on
// the servers, summarized by the agent) are read only while the catalog
// holds more services than the budget: when every service will be watched,
// the moves during the start-up ramp are left to sweeps.
func (r *Replicator) sweepLoop() {
	var summaries summaryDetector
	pacer := readPacer{share: summaryShare, burst: summaryBurst, minGap: r.cfg.SummaryInterval}
	// unread are moves no summary read covers yet; pending, those waiting
	// to be explained, each checked on its own: a move explained by a later
	// one's change could hide a port change.
	var unread []uint64
	var pending []pendingMove
	var lastSweep time.Time
	var sweepTook time.Duration
	// Reads run beside the loop, which applies them in the order they began.
	results := make(chan summaryRead, maxSummaryReads)
	inflight, started, applied := 0, 0, 0
	wait := func(moves []uint64, d time.Duration) {
		deadline := time.Now().Add(d)
		for _, m := range moves {
			pending = append(pending, pendingMove{m, deadline})
		}
	}
	for {
		next := time.Duration(-1) // when to look again; -1: on a move
		soonest := func(d time.Duration) {
			if next < 0 || d < next {
				next = d
			}
		}
		// The baseline later reads are compared with, as soon as there are
		// services no watcher will follow: a baseline read after a change
		// would hide it from the next diff.
		if !summaries.known() {
			if r.summariesNeeded() {
				// A change before the baseline is in it, so no diff will
				// show it: a watcher's change or a sweep explains it.
				wait(append(unread, r.takeMoves()...), quickWait)
				unread = nil
				start := time.Now()
				_, ok := r.readSummaries(&summaries)
				pacer.took(start, time.Since(start))
				if ok {
					continue
				}
				// Failed: tried again on the next move, as Consul fails.
			} else {
				soonest(idleDetectorPoll)
			}
		}
		unread = append(unread, r.takeMoves()...)
		now := time.Now()
		switch {
		case len(unread) == 0:
		case summaries.known():
			if d := pacer.wait(now); d > 0 {
				soonest(d)
				break
			}
			if inflight == maxSummaryReads {
				break // read when one returns
			}
			// Read even when a watcher's change already explains the move:
			// one write can change two services (an instance registered
			// again under another service's name leaves the first), and
			// only the counts show the other one.
			started++
			inflight++
			pacer.began(now)
			read := summaryRead{seq: started, covered: unread, start: now}
			unread = nil
			r.spawn(func() {
				read.list, read.ok = r.fetchSummaries()
				read.took = time.Since(read.start)
				results <- read // never blocks: one slot per read in flight
			})
			continue
		case r.summariesNeeded() || r.allWatched():
			// Summaries needed but not read yet, or every service watched
			// by now: a watcher's change explains a move.
			wait(unread, quickWait)
			unread = nil
		default:
			// The start-up ramp of a catalog that will be watched whole: a
			// move is explained only by a sweep, as nothing would show a
			// second service changed by the same write.
			wait(unread, 0)
			unread = nil
		}
		r.mu.Lock()
		pending = slices.DeleteFunc(pending, func(m pendingMove) bool { return r.changedAt.has(m.index) })
		r.mu.Unlock()
		due := false
		for _, m := range pending {
			if !m.deadline.After(now) {
				due = true
			} else {
				soonest(m.deadline.Sub(now))
			}
		}
		if due {
			if d := max(r.cfg.SweepInterval, 4*sweepTook) - now.Sub(lastSweep); d > 0 {
				soonest(d)
			} else {
				moves := make([]uint64, 0, len(pending)+len(unread))
				for _, m := range pending {
					moves = append(moves, m.index)
				}
				moves = append(moves, unread...)
				why := fmt.Sprintf("no change seen explains the service list's moves to %v", moves)
				pending, unread = pending[:0], unread[:0] // the sweep covers them
				lastSweep = now
				n := r.sweep()
				sweepTook = time.Since(lastSweep)
				r.noteSweep(n, sweepTook, why)
				continue
			}
		}
		var timer <-chan time.Time
		if next >= 0 {
			timer = time.After(next)
		}
		select {
		case <-r.ctx.Done():
			return
		case <-timer:
		case <-r.moved:
		case read := <-results:
			inflight--
			pacer.took(read.start, read.took)
			overtaken := read.seq < applied
			named := 0
			if read.ok && !overtaken {
				applied = read.seq
				named = r.applySummaries(&summaries, read.list)
			}
			wait(read.covered, explainAfter(read.ok, overtaken, named))
		}
	}
}

// explainAfter is how long the moves a read of the summaries covered may
// wait for an explanation before they cost a sweep.
func explainAfter(ok, overtaken bool, named int) time.Duration {
	switch {
	case !ok:
		return 0
	case overtaken, named > 0:
		// A named service is fetched, which takes a read. A read overtaken
		// by one that began later was not applied: that one's diff, against
		// an older read than this, named what this would have.
		return explainWait
	default:
		// A watcher slower than the summary shows its change soon.
		return 10 * quickWait
	}
}

// summaryRead is one read of the summaries, made while the sweeper goes on.
type summaryRead struct {
	seq     int      // in the order the reads began
	covered []uint64 // the moves made before it began
	list    []uiSummary
	ok      bool
	start   time.Time
	took    time.Duration
}

// maxSummaryReads is how many reads of the summaries may run at once: a move
// that lands while one runs is read at once rather than after it (which
// doubled the time to find it), and no more than two ServiceDumps of this
// replica load the servers at a time.
const maxSummaryReads = 2

// takeMoves returns the indexes the service list moved to since the last
// call. Past maxMoves the oldest are dropped: a sweep follows anyway.
func (r *Replicator) takeMoves() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.moves
	r.moves = nil
	return m
}

// noteSweep counts a sweep of n probes.
func (r *Replicator) noteSweep(n int, took time.Duration, why string) {
	r.stats.sweeps.Add(1)
	if r.cfg.Observer != nil {
		r.cfg.Observer.Swept(n)
	}
	log.Debugf("swept %d services in %s: %s", n, took, why)
}

// maxMoves bounds the moves of the service list waiting to be explained.
const maxMoves = 256

// quickWait is how long a move of the service list's index is given to be
// explained by a watcher's read before the summaries are read: the agent's
// streaming view usually delivers the change within a few milliseconds of
// the service list.
const quickWait = 5 * time.Millisecond

// summariesNeeded reports whether some services will stay without a watcher.
func (r *Replicator) summariesNeeded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listed && len(r.services) > r.budgetLocked()
}

// sweep asks every service without a watcher for its current index, with a
// filter that matches nothing so the answer carries no body, and queues those
// whose index moved. It returns the number of services probed.
func (r *Replicator) sweep() int {
	type probe struct {
		key, name string
		index     uint64
	}
	var probes []probe
	r.mu.Lock()
	for key, e := range r.services {
		if e.watcher != nil {
			continue
		}
		probes = append(probes, probe{key, e.name, e.index})
	}
	r.mu.Unlock()

	work := make(chan probe)
	var wg sync.WaitGroup
	for range r.cfg.Fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				if r.limiter.Wait(r.ctx) != nil {
					continue
				}
				// Index 0: not the agent's streaming view, which may lag the
				// catalog change that asked for this sweep, but the servers'.
				meta, err := r.query(r.ctx, 0, 0, r.cfg.RequestSlack, func(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
					opts.Filter = matchNothing
					_, meta, err := client.Health().Service(p.name, "", false, opts)
					return meta, err
				})
				if err != nil || meta.LastIndex != p.index {
					// A failed probe proves nothing: fetch, which retries.
					r.fetches.push(p.key)
				}
			}
		}()
	}
	for _, p := range probes {
		select {
		case work <- p:
		case <-r.ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return len(probes)
}

// matchNothing is a filter no service instance matches.
const matchNothing = `Service.ID == "" and Service.ID != ""`
