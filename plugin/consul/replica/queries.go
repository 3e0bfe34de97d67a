package replica

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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

// fetchQueries keeps the datacenter's prepared queries: one blocking query
// on /v1/query, which wakes only when a definition changes.
func (r *Replicator) fetchQueries(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
	list, meta, err := client.PreparedQuery().List(opts)
	var status api.StatusError
	if errors.As(err, &status) && (status.Code == http.StatusForbidden || status.Code == http.StatusUnauthorized) {
		// A token without query read: the names are passed on, never
		// NXDOMAIN. The loop retries after its backoff, in case the token
		// gains it.
		r.mu.Lock()
		first := !r.queriesListed
		r.queriesListed, r.queriesHidden, r.queries = true, true, nil
		r.mu.Unlock()
		if first {
			log.Warningf("the ACL token may not list prepared queries: .query. names go to the next plugin")
			r.markDirty()
		}
		// Not a failure of Consul's: no backoff, no endpoint change, no
		// stale answers. Asked again now and then, in case the token
		// gains the right.
		sleep(r.ctx, deniedRetry)
		return &api.QueryMeta{LastIndex: max(opts.WaitIndex, 1), KnownLeader: true}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing prepared queries: %w", err)
	}
	if meta.LastIndex == opts.WaitIndex {
		return meta, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	queries := convertQueries(list, r.queries)
	if !r.queriesListed || r.queriesHidden != meta.ResultsFilteredByACLs || !slices.Equal(queries, r.queries) {
		r.queries, r.queriesHidden, r.queriesListed = queries, meta.ResultsFilteredByACLs, true
		r.markDirty()
	}
	return meta, nil
}

// convertQueries turns Consul's definitions into the snapshot's, sorted by ID,
// reusing the values of old that did not change: what answers derive from a
// query (its compiled template) is kept by the query's identity.
func convertQueries(list []*api.PreparedQueryDefinition, old []*snapshot.Query) []*snapshot.Query {
	byID := make(map[string]*snapshot.Query, len(old))
	for _, q := range old {
		byID[q.ID] = q
	}
	out := make([]*snapshot.Query, 0, len(list))
	for _, d := range list {
		q := convertQuery(d)
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

// coordinatesLoop keeps the nodes' network coordinates, read every
// CoordinateInterval without blocking: a blocking query would hold a
// connection to wake for every small move of every node's coordinate.
func (r *Replicator) coordinatesLoop() {
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	for {
		var list []*api.CoordinateEntry
		_, err := r.query(r.ctx, 0, 0, r.cfg.LivenessTimeout, func(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
			var meta *api.QueryMeta
			var err error
			list, meta, err = client.Coordinate().Nodes(opts)
			return meta, err
		})
		delay := CoordinateInterval
		if err == nil {
			backoff.reset()
			r.storeCoordinates(list)
		} else {
			delay = min(delay, backoff.next())
		}
		if !sleep(r.ctx, delay) {
			return
		}
	}
}

func (r *Replicator) storeCoordinates(list []*api.CoordinateEntry) {
	coords := make([]*snapshot.Coordinate, 0, len(list))
	for _, e := range list {
		if e.Coord != nil {
			coords = append(coords, &snapshot.Coordinate{Node: e.Node, Segment: e.Segment, Coord: e.Coord})
		}
	}
	slices.SortFunc(coords, func(a, b *snapshot.Coordinate) int {
		return cmpPair(a.Node, b.Node, a.Segment, b.Segment)
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if !reflect.DeepEqual(coords, r.coords) {
		r.coords = coords
		r.markDirty()
	}
}

func cmpPair(a1, b1, a2, b2 string) int {
	if c := strings.Compare(a1, b1); c != 0 {
		return c
	}
	return strings.Compare(a2, b2)
}
