package replica

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// CoordinateInterval is the time between two reads of the nodes'
// coordinates: every node's coordinate moves a little every few seconds, and
// prepared queries only need an ordering that is roughly right.
const CoordinateInterval = 10 * time.Second

// deniedRetry is how often a list the token may not read is asked again.
const deniedRetry = time.Minute

// watchQueries keeps the datacenter's prepared queries: one blocking query,
// which wakes only when a definition changes.
func (r *Replicator) watchQueries() {
	watch(r, r.run.ctx, blocking[queryList]{
		what: "prepared queries",
		read: orDenied(func(ctx context.Context, q Query) (queryList, Meta, error) {
			list, meta, err := r.src.Queries(ctx, q)
			return queryList{list: list, hidden: meta.Filtered}, meta, err
		}, queryList{hidden: true}),
		apply: r.applyQueries,
	})
}

// orDenied is read, for a list the token may not read: not a failure of
// Consul's (no backoff, no endpoint change, no stale answers), so the read
// answers deniedValue, at the index held, and the names it covers are
// passed on, never NXDOMAIN. Asked again every deniedRetry, in case the
// token gains the right.
func orDenied[T any](read func(context.Context, Query) (T, Meta, error), deniedValue T) func(context.Context, Query) (T, Meta, error) {
	var refused bool
	return func(ctx context.Context, q Query) (T, Meta, error) {
		if refused && !sleep(ctx, deniedRetry) {
			var zero T
			return zero, Meta{}, ctx.Err()
		}
		data, meta, err := read(ctx, q)
		if refused = denied(err); refused {
			return deniedValue, Meta{Index: max(q.Index, 1), KnownLeader: true}, nil
		}
		return data, meta, err
	}
}

// queryList is a read of the prepared queries; hidden when the token may not
// read them all.
type queryList struct {
	list   []*snapshot.Query
	hidden bool
}

// applyQueries takes a new list of prepared queries.
func (r *Replicator) applyQueries(q queryList, _ Meta, _ bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.data
	if q.hidden && q.list == nil && !d.queriesListed {
		log.Warningf("the ACL token may not list prepared queries: .query. names go to the next plugin")
	}
	queries := reuseQueries(q.list, d.queries)
	if !d.queriesListed || d.queriesHidden != q.hidden || !slices.Equal(queries, d.queries) {
		d.queries, d.queriesHidden, d.queriesListed = queries, q.hidden, true
		r.markDirty()
	}
}

// reuseQueries sorts the definitions by ID, reusing the values of old that
// did not change: what answers derive from a query (its compiled template)
// is kept by the query's identity.
func reuseQueries(list, old []*snapshot.Query) []*snapshot.Query {
	if list == nil {
		return nil
	}
	byID := make(map[string]*snapshot.Query, len(old))
	for _, q := range old {
		byID[q.ID] = q
	}
	out := make([]*snapshot.Query, 0, len(list))
	for _, q := range list {
		if prev := byID[q.ID]; prev != nil && reflect.DeepEqual(prev, q) {
			q = prev
		}
		out = append(out, q)
	}
	slices.SortFunc(out, func(a, b *snapshot.Query) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// convertQuery copies a definition without its token, which the plugin must
// never keep (Consul shows it only to management tokens anyway).
func convertQuery(d *api.PreparedQueryDefinition) *snapshot.Query {
	s := d.Service
	q := &snapshot.Query{
		ID: d.ID, Name: d.Name, TTL: d.DNS.TTL,
		Template: snapshot.QueryTemplate{Type: d.Template.Type, Regexp: d.Template.Regexp, RemoveEmptyTags: d.Template.RemoveEmptyTags},
		Service: snapshot.QueryService{
			Service: s.Service, Near: s.Near, IgnoreCheckIDs: s.IgnoreCheckIDs, OnlyPassing: s.OnlyPassing,
			Tags: s.Tags, NodeMeta: s.NodeMeta, ServiceMeta: s.ServiceMeta, Connect: s.Connect,
			SamenessGroup: s.SamenessGroup,
			Failover:      snapshot.QueryFailover{NearestN: s.Failover.NearestN, Datacenters: s.Failover.Datacenters},
		},
	}
	for _, t := range s.Failover.Targets {
		q.Service.Failover.Targets = append(q.Service.Failover.Targets, snapshot.QueryTarget{Peer: t.Peer, Datacenter: t.Datacenter})
	}
	return q
}

// applyCoordinates takes a new read of the nodes' coordinates.
func (r *Replicator) applyCoordinates(coords []*snapshot.Coordinate) {
	slices.SortFunc(coords, func(a, b *snapshot.Coordinate) int {
		return cmpPair(a.Node, b.Node, a.Segment, b.Segment)
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if !reflect.DeepEqual(coords, r.data.coords) {
		r.data.coords = coords
		r.markDirty()
	}
}

func cmpPair(a1, b1, a2, b2 string) int {
	if c := strings.Compare(a1, b1); c != 0 {
		return c
	}
	return strings.Compare(a2, b2)
}
