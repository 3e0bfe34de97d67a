package replica

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// checkKey identifies a health check.
type checkKey struct{ node, id string }

type nonPassingCheck struct {
	status  string
	service string // empty for a node check
}

// nonPassingFilter keeps the health detector's answers small: only checks
// that are warning or critical, usually few. Its index still moves on every
// check change, and a check entering, leaving or moving within that set
// names the service (or node) whose health changed.
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
	current := make(map[checkKey]nonPassingCheck, len(checks))
	for _, c := range checks {
		current[checkKey{c.Node, c.CheckID}] = nonPassingCheck{status: c.Status, service: c.ServiceName}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changedServices := changedServicesLocked(r, r.nonPassing, current)
	r.nonPassing = current
	r.queueUnwatchedLocked(changedServices)
	return meta, nil
}

// checkState is what a detector remembers of a check.
type checkState interface {
	comparable
	serviceName() string // empty for a node check
}

func (c nonPassingCheck) serviceName() string { return c.service }
func (c checkSeen) serviceName() string       { return c.service }

// changedServicesLocked names the services whose checks differ between two
// reads: checks that appeared, disappeared or changed. A node check names
// every service with an instance on its node.
func changedServicesLocked[V checkState](r *Replicator, previous, current map[checkKey]V) map[string]bool {
	services, nodes := make(map[string]bool), make(map[string]bool)
	note := func(k checkKey, v V) {
		if name := v.serviceName(); name != "" {
			services[snapshot.Key(name)] = true
		} else {
			nodes[k.node] = true
		}
	}
	for k, v := range current {
		if old, ok := previous[k]; !ok || old != v {
			note(k, v)
		}
	}
	for k, v := range previous {
		if _, ok := current[k]; !ok {
			note(k, v)
		}
	}
	if len(nodes) > 0 {
		for key := range r.servicesOnNodesLocked(nodes) {
			services[key] = true
		}
	}
	return services
}

// servicesOnNodesLocked returns the services with an instance on any of nodes.
func (r *Replicator) servicesOnNodesLocked(nodes map[string]bool) map[string]bool {
	out := make(map[string]bool)
	for key, svc := range r.services {
		for i := range svc.Instances {
			if nodes[svc.Instances[i].Node] {
				out[key] = true
				break
			}
		}
	}
	return out
}

// queueUnwatchedLocked queues the listed services among keys that have no
// watcher; watchers see their own changes.
func (r *Replicator) queueUnwatchedLocked(keys map[string]bool) {
	for key := range keys {
		if _, listed := r.names[key]; listed && r.watchers[key] == nil {
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
	if len(changed) > 0 {
		r.queueUnwatchedLocked(r.servicesOnNodesLocked(changed))
	}
	if dirty {
		r.markDirty()
	}
	return meta, nil
}

// requestSweep asks the sweeper for a sweep; requests made while one is
// pending are covered by it.
func (r *Replicator) requestSweep() {
	select {
	case r.sweeps <- struct{}{}:
	default:
	}
}

// maxDiffChecks bounds the catalog for which diffChecks reads every check
// (about 480 bytes each): past it, sweeps probe services one by one.
const maxDiffChecks = 20000

// checkSeen is what diffChecks remembers of a check.
type checkSeen struct {
	modifyIndex uint64
	service     string // empty for a node check
}

// diffChecks reads every check in one request and queues the services
// without a watcher whose checks appeared, disappeared or changed since the
// last read: most registrations and deregistrations carry checks, so one
// request usually names what a move of the service list's index was. It
// reports how many services it queued, and false when it cannot tell (the
// first read, a failed read, a catalog past maxDiffChecks).
func (r *Replicator) diffChecks() (int, bool) {
	r.mu.Lock()
	tooMany := len(r.allChecks) > maxDiffChecks
	r.mu.Unlock()
	if tooMany {
		return 0, false
	}
	var checks api.HealthChecks
	_, err := r.query(r.ctx, 0, 0, r.cfg.RequestSlack, func(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
		c, meta, err := client.Health().State(api.HealthAny, opts)
		checks = c
		return meta, err
	})
	if err != nil {
		return 0, false
	}
	current := make(map[checkKey]checkSeen, len(checks))
	for _, c := range checks {
		current[checkKey{c.Node, c.CheckID}] = checkSeen{c.ModifyIndex, c.ServiceName}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	previous, known := r.allChecks, r.allChecksRead
	r.allChecks, r.allChecksRead = current, true
	if !known {
		return 0, false
	}
	services := changedServicesLocked(r, previous, current)
	// Changes to watched services explain the move too, but need no fetch.
	r.queueUnwatchedLocked(services)
	return len(services), true
}

// sweepLoop runs requested sweeps, at most one per SweepInterval, or per
// twice the last sweep's duration when that is longer: under a storm of
// registrations Consul spends at most a third of its time on sweeps. A sweep
// is one read of every check (diffChecks) when that names what changed, else
// a probe of every service without a watcher.
func (r *Replicator) sweepLoop() {
	var last time.Time
	var took time.Duration
	r.diffChecks() // the baseline later reads are compared with
	// A change without checks (a service registered without any, a port
	// changed) that coincides with one diffChecks names would go unseen;
	// a probe sweep safetyDelay after a diff catches it.
	var safety <-chan time.Time
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.sweeps:
		case <-safety:
			// In the background, so that it does not hold up the diffs of
			// the registrations that keep coming meanwhile.
			safety = nil
			if r.safetyRunning.CompareAndSwap(false, true) {
				r.spawn(func() {
					defer r.safetyRunning.Store(false)
					n := r.sweep()
					log.Debugf("safety sweep of %d services", n)
				})
			}
			continue
		}
		if wait := max(r.cfg.SweepInterval, 2*took) - time.Since(last); wait > 0 {
			if !sleep(r.ctx, wait) {
				return
			}
		}
		last = time.Now()
		if found, ok := r.diffChecks(); ok && found > 0 {
			took = time.Since(last)
			log.Debugf("read every check in %s: %d services changed", took, found)
			if safety == nil {
				safety = time.After(safetyDelay)
			}
			continue
		}
		n := r.sweep()
		took = time.Since(last)
		log.Debugf("swept %d services in %s", n, took)
	}
}

// safetyDelay is how long after a check diff a probe sweep follows.
const safetyDelay = 5 * time.Second

// sweep asks every service without a watcher for its current index, with a
// filter that matches nothing so the answer carries no body, and queues those
// whose index moved. It returns the number of services probed.
func (r *Replicator) sweep() int {
	r.mu.Lock()
	type probe struct {
		key, name string
		index     uint64
	}
	var probes []probe
	for key, name := range r.names {
		if r.watchers[key] != nil {
			continue
		}
		var index uint64
		if svc := r.services[key]; svc != nil {
			index = svc.Index
		}
		probes = append(probes, probe{key, name, index})
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
