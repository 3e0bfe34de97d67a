package prepared

import "github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

// FailoverTargets returns where a query fails over to, in the order Consul
// tries them (queryFailover, agent/consul/prepared_query_endpoint.go:750-825).
//
// local is the datacenter that executes the query. byDistance is every
// datacenter its servers know, nearest first, as Consul's
// router.GetDatacentersByDistance orders them (what /v1/catalog/datacenters
// returns when asked of that datacenter); local may be in it and is left out
// (prepared_query_endpoint.go:731-746).
//
// The order: the NearestN nearest datacenters, then the explicit list,
// Datacenters if there are any, else Targets. An explicit datacenter that is
// not in byDistance (matched exactly: Consul lower-cases its datacenter names,
// not the query's) is skipped, and so is the local one, which never is.
// A peer target is kept: it is executed in the local datacenter against the
// services imported from the peer, which a snapshot does not hold, so the
// caller must pass the query on when it gets there.
//
// Consul only skips the explicit datacenters that NearestN already chose; a
// datacenter listed twice is tried twice. It is listed once here: a second
// try of the same snapshot finds the same nothing.
func FailoverTargets(local string, byDistance []string, f *snapshot.QueryFailover) []snapshot.QueryTarget {
	var nearest []string
	for _, dc := range byDistance {
		if dc != local {
			nearest = append(nearest, dc)
		}
	}
	known := make(map[string]bool, len(nearest))
	for _, dc := range nearest {
		known[dc] = true
	}

	var targets []snapshot.QueryTarget
	chosen := make(map[string]bool)
	for i, dc := range nearest {
		if i >= f.NearestN {
			break
		}
		targets = append(targets, snapshot.QueryTarget{Datacenter: dc})
		chosen[dc] = true
	}

	for _, t := range asTargets(f) {
		if dc := t.Datacenter; dc != "" {
			if !known[dc] {
				continue
			}
			if !chosen[dc] {
				targets = append(targets, t)
				chosen[dc] = true
				continue
			}
		}
		// Consul also keeps a target with a partition or namespace
		// (Enterprise); the snapshot's targets carry neither.
		if t.Peer != "" {
			targets = append(targets, t)
		}
	}
	return targets
}

// asTargets is QueryFailoverOptions.AsTargets
// (agent/structs/prepared_query.go:35-45): Datacenters win over Targets.
func asTargets(f *snapshot.QueryFailover) []snapshot.QueryTarget {
	if len(f.Datacenters) == 0 {
		return f.Targets
	}
	targets := make([]snapshot.QueryTarget, len(f.Datacenters))
	for i, dc := range f.Datacenters {
		targets[i] = snapshot.QueryTarget{Datacenter: dc}
	}
	return targets
}
