package prepared

import (
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// Filter returns the instances of the query's service in s that the query
// selects, as Consul's PreparedQuery.execute does
// (agent/consul/prepared_query_endpoint.go:547-604): health (critical out,
// or anything not passing with OnlyPassing, minus the ignored checks), then
// NodeMeta, ServiceMeta and Tags. The service name matches
// case-insensitively, like Consul's service index. The result points into
// the snapshot, in the snapshot's order: Consul's filters reorder (they
// delete by swapping with the last element) but Execute shuffles afterwards,
// so no order is promised. Connect, Peer and SamenessGroup are not looked at
// here: see Execute.
func Filter(s *snapshot.Snapshot, q *snapshot.QueryService) []*snapshot.Instance {
	svc, ok := s.Services[snapshot.Key(q.Service)]
	if !ok {
		return nil
	}
	tags := newTagFilter(q.Tags)
	var out []*snapshot.Instance
	for i := range svc.Instances {
		inst := &svc.Instances[i]
		if excludedByHealth(inst, q.OnlyPassing, q.IgnoreCheckIDs) {
			continue
		}
		if len(q.NodeMeta) > 0 {
			var meta map[string]string
			if n, ok := s.Nodes[snapshot.Key(inst.Node)]; ok {
				meta = n.Meta
			}
			if !satisfiesMeta(meta, q.NodeMeta) {
				continue
			}
		}
		if len(q.ServiceMeta) > 0 && !satisfiesMeta(inst.Meta, q.ServiceMeta) {
			continue
		}
		if !tags.match(inst.Tags) {
			continue
		}
		out = append(out, inst)
	}
	return out
}

// excludedByHealth is CheckServiceNode.ExcludeBasedOnChecks
// (agent/structs/structs.go:2243-2254) with the filter type the query picks
// (prepared_query_endpoint.go:565-569). Without ignored checks the aggregate
// health decides alone. With some, the instance's non-passing checks decide,
// the ignored ones (matched exactly, case-sensitively) left out; but only
// when they account for the aggregate: a snapshot that does not carry its
// checks leaves the aggregate to decide, which can only exclude more.
func excludedByHealth(inst *snapshot.Instance, onlyPassing bool, ignore []string) bool {
	bad := func(h snapshot.Health) bool {
		if onlyPassing {
			return h != snapshot.Passing
		}
		return h == snapshot.Critical
	}
	if len(ignore) == 0 || !checksExplain(inst) {
		return bad(inst.Health)
	}
	for _, c := range inst.Checks {
		if slices.Contains(ignore, c.ID) {
			continue
		}
		if bad(c.Health) {
			return true
		}
	}
	return false
}

func checksExplain(inst *snapshot.Instance) bool {
	worst := snapshot.Passing
	for _, c := range inst.Checks {
		worst = max(worst, c.Health)
	}
	return worst == inst.Health
}

// satisfiesMeta is structs.SatisfiesMetaFilters (structs.go:1051-1058): every
// key present with exactly the value, case-sensitively.
func satisfiesMeta(meta, filters map[string]string) bool {
	for k, v := range filters {
		if got, ok := meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// tagFilter is Consul's tagFilter (prepared_query_endpoint.go:609-658): every
// tag required, every "!tag" forbidden, all compared case-insensitively. A
// required "" matches only an empty tag, and "!" forbids only that.
type tagFilter struct{ must, not []string }

func newTagFilter(tags []string) tagFilter {
	var f tagFilter
	for _, t := range tags {
		t = strings.ToLower(t)
		if rest, ok := strings.CutPrefix(t, "!"); ok {
			f.not = append(f.not, rest)
		} else {
			f.must = append(f.must, t)
		}
	}
	return f
}

func (f tagFilter) match(tags []string) bool {
	has := func(want string) bool {
		return slices.ContainsFunc(tags, func(t string) bool { return strings.ToLower(t) == want })
	}
	for _, t := range f.must {
		if !has(t) {
			return false
		}
	}
	for _, t := range f.not {
		if has(t) {
			return false
		}
	}
	return true
}
