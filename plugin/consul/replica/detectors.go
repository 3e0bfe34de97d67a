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

// readSummaries reads every service's summary and queues those without a
// watcher whose summary changed. It reports how many it named, and false
// when the read failed.
func (r *Replicator) readSummaries(d *summaryDetector) (int, bool) {
	var list []uiSummary
	_, err := r.query(r.ctx, 0, 0, r.cfg.RequestSlack, func(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
		return client.Raw().Query("/v1/internal/ui/services", &list, opts)
	})
	if err != nil {
		return 0, false
	}
	r.stats.summaries.Add(1)
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
	return named, true
}

// explainWait is how long a move of the service list's index may take to be
// explained by a change the replica sees before it costs a sweep.
const explainWait = time.Second

// sweepLoop finds out what each move of the service list's index was, when
// not every service is watched, in steps that each cost more than the last:
//  1. it reads the services' summaries (one request) and fetches those whose
//     instance or check counts, nodes or tags changed: registrations and
//     deregistrations, and waits for a change to show (a watcher's, or a
//     fetch's);
//  2. a move still not explained (an address or port changed, or two
//     changes that cancel out in the counts) costs a probe sweep.
//
// A move is explained by a registration change seen at exactly its index
// (fetches read the servers, whose index for a service is its last change's).
// When several writes land between two reads of the service list, only the
// last is checked that way: an unnamed change (a port) in an earlier one
// could hide behind it, so such a coalesced move schedules a safety sweep,
// at most one per safetyInterval.
//
// Reads of the summaries come at most one per SummaryInterval or per twice
// the last read's duration (30 to 70 ms at 1,000 x 5 here: under a storm of
// registrations a third of one request's worth of Consul's time), and
// sweeps at most one per SweepInterval or per four times the last sweep's
// duration.
//
// The summaries (one Internal.ServiceDump of every instance and check on
// the servers, summarized by the agent) are read only while the catalog
// holds more services than the budget: when every service will be watched,
// the moves during the start-up ramp are left to sweeps.
func (r *Replicator) sweepLoop() {
	var summaries summaryDetector
	// moves are the indexes the service list moved to that are not
	// explained yet, each checked on its own: a move explained by a later
	// one's change could hide a port change.
	var moves []uint64
	explainedAll := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		moves = slices.DeleteFunc(moves, r.changedAt.has)
		return len(moves) == 0
	}
	await := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for !explainedAll() {
			if time.Now().After(deadline) || !sleep(r.ctx, 2*time.Millisecond) {
				return false
			}
		}
		return true
	}
	var lastSummary, lastSweep time.Time
	var summaryTook, sweepTook time.Duration
	// readSummaries reads the summaries and takes the moves made before the
	// read, which it covers; those made during it wait for the next round.
	readSummaries := func() (named int, ok bool) {
		if wait := max(r.cfg.SummaryInterval, 2*summaryTook) - time.Since(lastSummary); wait > 0 && !sleep(r.ctx, wait) {
			return 0, false
		}
		moves = append(moves, r.takeMoves()...)
		lastSummary = time.Now()
		named, ok = r.readSummaries(&summaries)
		summaryTook = time.Since(lastSummary)
		return named, ok
	}
	for {
		// The baseline later reads are compared with, as soon as there are
		// services no watcher will follow: a baseline read after a change
		// would hide it from the next diff.
		var poll <-chan time.Time
		if !summaries.known() {
			if r.summariesNeeded() {
				readSummaries()
				moves = moves[:0] // the baseline covers them
			} else {
				poll = time.After(idleDetectorPoll)
			}
		}
		select {
		case <-r.ctx.Done():
			return
		case <-poll:
			continue
		case <-r.moved:
		}
		moves = append(moves, r.takeMoves()...)
		if summaries.known() {
			// Read even when a watcher's change already explains the move:
			// one write can change two services (an instance registered
			// again under another service's name leaves the first), and
			// only the counts show the other one.
			named, ok := readSummaries()
			// A named service is fetched, which takes a read; a watcher
			// slower than the summary shows its change soon.
			wait := 10 * quickWait
			if named > 0 {
				wait = explainWait
			}
			if ok && await(wait) {
				continue
			}
		} else if r.summariesNeeded() || r.allWatched() {
			// Summaries needed but not read yet, or every service watched
			// by now: a watcher's change explains a move.
			if await(quickWait) {
				continue
			}
		}
		// Otherwise (the start-up ramp of a catalog that will be watched
		// whole) a move is explained only by a sweep: nothing would show a
		// second service changed by the same write.
		if wait := max(r.cfg.SweepInterval, 4*sweepTook) - time.Since(lastSweep); wait > 0 && !sleep(r.ctx, wait) {
			return
		}
		if explainedAll() {
			continue
		}
		why := fmt.Sprintf("no change seen explains the service list's moves to %v", moves)
		moves = moves[:0] // the sweep covers them
		lastSweep = time.Now()
		n := r.sweep()
		sweepTook = time.Since(lastSweep)
		r.noteSweep(n, sweepTook, why)
	}
}

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
	return r.listed && len(r.services) > r.cfg.MaxWatchers
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
