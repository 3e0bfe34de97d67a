package replica

import (
	"context"
	"reflect"
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// gatewaySource is a Source that reads the gateways' config entries: which
// services an ingress gateway exposes (<svc>.ingress) and a terminating
// gateway links to the mesh (<svc>.connect). Apart from Source so that
// another Source (a peer's) need not read them: Consul answers neither
// across peers.
type gatewaySource interface {
	// Gateways lists the config entries of kind (api.IngressGateway or
	// api.TerminatingGateway).
	Gateways(ctx context.Context, kind string, q Query) ([]*snapshot.Gateway, Meta, error)
}

// gatewayKinds are the config entries followed, one blocking query each.
var gatewayKinds = []string{api.IngressGateway, api.TerminatingGateway}

// gateways is what the replica holds of one kind of gateway entry.
type gateways struct {
	list []*snapshot.Gateway
	// read: the entries were read; denied: the token may not read them
	// all.
	read, denied bool
}

// watchGateways keeps the entries of one kind: one blocking query, which
// wakes only when one of them changes. Cheaper than Consul's own mapping
// (/v1/health/ingress/<svc>, /v1/health/connect/<svc>), which is one read
// per service.
func (r *Replicator) watchGateways(kind string) {
	src, ok := r.src.(gatewaySource)
	if !ok {
		return
	}
	watch(r, r.run.ctx, blocking[gateways]{
		what: kind + " entries",
		read: orDenied(func(ctx context.Context, q Query) (gateways, Meta, error) {
			list, meta, err := src.Gateways(ctx, kind, q)
			return gateways{list: list, read: true, denied: meta.Filtered}, meta, err
		}, gateways{denied: true}),
		apply: func(g gateways, _ Meta, _ bool) { r.applyGateways(kind, g) },
	})
}

// sameList reports whether a and b hold equal values; nil and empty are
// equal (one read may decode "[]" and the next "null" for the same nothing:
// not a change worth a snapshot).
func sameList[T any](a, b []T) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}

// applyGateways takes a new list of the entries of kind.
func (r *Replicator) applyGateways(kind string, g gateways) {
	slices.SortFunc(g.list, func(a, b *snapshot.Gateway) int { return strings.Compare(a.Name, b.Name) })
	g.read = g.read && !g.denied
	r.mu.Lock()
	defer r.mu.Unlock()
	held := &r.data.ingress
	if kind == api.TerminatingGateway {
		held = &r.data.terminating
	}
	if g.denied && !held.denied {
		log.Warningf("the ACL token may not read every %s config entry: names they would answer go to the next plugin", kind)
	}
	if held.read != g.read || !sameList(held.list, g.list) {
		r.markDirty()
	}
	*held = g
}

func (s *consulSource) Gateways(ctx context.Context, kind string, q Query) ([]*snapshot.Gateway, Meta, error) {
	entries, meta, err := read(s, ctx, q, "listing "+kind+" entries", func(c *api.Client, o *api.QueryOptions) ([]api.ConfigEntry, *api.QueryMeta, error) {
		return c.ConfigEntries().List(kind, o)
	})
	if err != nil {
		return nil, meta, err
	}
	out := make([]*snapshot.Gateway, 0, len(entries))
	for _, e := range entries {
		switch gw := e.(type) {
		case *api.IngressGatewayConfigEntry:
			if gw != nil {
				out = append(out, convertIngress(gw))
			}
		case *api.TerminatingGatewayConfigEntry:
			if gw != nil {
				out = append(out, convertTerminating(gw))
			}
		}
	}
	return out, meta, nil
}

// convertIngress keeps what DNS answers from an ingress gateway's entry:
// the names of the services its listeners expose.
func convertIngress(gw *api.IngressGatewayConfigEntry) *snapshot.Gateway {
	var names []string
	for _, l := range gw.Listeners {
		for _, svc := range l.Services {
			names = append(names, svc.Name)
		}
	}
	return gatewayOf(gw.Name, names)
}

// convertTerminating keeps the names of the services a terminating
// gateway links to the mesh.
func convertTerminating(gw *api.TerminatingGatewayConfigEntry) *snapshot.Gateway {
	names := make([]string, 0, len(gw.Services))
	for _, svc := range gw.Services {
		names = append(names, svc.Name)
	}
	return gatewayOf(gw.Name, names)
}

// gatewayOf is the gateway name with the services names, lower case, once
// each, sorted.
func gatewayOf(name string, names []string) *snapshot.Gateway {
	out := &snapshot.Gateway{Name: name}
	for _, n := range names {
		if n != "" {
			out.Services = append(out.Services, snapshot.Key(n))
		}
	}
	slices.Sort(out.Services)
	out.Services = slices.Compact(out.Services)
	return out
}
