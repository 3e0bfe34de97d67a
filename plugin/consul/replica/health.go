package replica

import (
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// healthDetector follows the non-passing checks, to name the services
// without a watcher whose health changed. Their index moves on every check
// change, and a check entering, leaving or moving within the set names the
// service (or node) whose health changed. Only the health loop touches it.
type healthDetector struct {
	checks map[checkKey]nonPassingCheck
}

// checkKey identifies a health check.
type checkKey struct{ node, id string }

type nonPassingCheck struct {
	status  string
	service string // empty for a node check
}

// observe takes a new read of the non-passing checks and returns the keys of
// the services whose checks changed, and the nodes whose node checks did.
func (h *healthDetector) observe(checks []Check) (services, nodes map[string]bool) {
	current := make(map[checkKey]nonPassingCheck, len(checks))
	for _, c := range checks {
		current[checkKey{c.Node, c.ID}] = nonPassingCheck{status: c.Status, service: c.Service}
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

// watchHealth runs the health detector. It has nothing to name while every
// service has a watcher, and each of its wake-ups costs the servers a filter
// over every check of the datacenter: it pauses meanwhile.
func (r *Replicator) watchHealth() {
	watch(r, r.run.ctx, blocking[[]Check]{
		what: "health changes", read: r.src.NonPassing, apply: r.applyNonPassing, paused: r.allWatched,
	})
}

// applyNonPassing reads again the services without a watcher whose health
// changed.
func (r *Replicator) applyNonPassing(checks []Check, _ Meta, _ bool) {
	services, nodes := r.health.observe(checks)
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.servicesOnNodesLocked(nodes) {
		services[key] = true
	}
	r.fetchUnwatchedLocked(services)
}
