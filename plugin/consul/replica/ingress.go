package replica

import (
	"context"
	"reflect"
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// ingressSource is a Source that reads the ingress gateways' config
// entries, for <svc>.ingress names. Apart from Source so that another
// Source (a peer's) need not read them: Consul answers no ingress name
// across peers.
type ingressSource interface {
	// IngressGateways lists the ingress-gateway config entries.
	IngressGateways(ctx context.Context, q Query) ([]*snapshot.IngressGateway, Meta, error)
}

// watchIngress keeps which services each ingress gateway exposes: one
// blocking query on the ingress-gateway config entries, which wakes only
// when one of them changes. Cheaper than Consul's own mapping
// (/v1/health/ingress/<svc>), which is one read per service.
func (r *Replicator) watchIngress() {
	src, ok := r.src.(ingressSource)
	if !ok {
		return
	}
	watch(r, r.run.ctx, blocking[ingressList]{
		what: "ingress gateways",
		read: orDenied(func(ctx context.Context, q Query) (ingressList, Meta, error) {
			list, meta, err := src.IngressGateways(ctx, q)
			return ingressList{list: list, denied: meta.Filtered}, meta, err
		}, ingressList{denied: true}),
		apply: r.applyIngress,
	})
}

// ingressList is a read of the ingress gateways' entries; denied when the
// token may not read them all.
type ingressList struct {
	list   []*snapshot.IngressGateway
	denied bool
}

// applyIngress takes a new list of the ingress gateways' entries.
func (r *Replicator) applyIngress(l ingressList, _ Meta, _ bool) {
	slices.SortFunc(l.list, func(a, b *snapshot.IngressGateway) int { return strings.Compare(a.Name, b.Name) })
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.data
	if l.denied && !d.ingressDenied {
		log.Warningf("the ACL token may not read every ingress-gateway config entry: .ingress. names not known go to the next plugin")
	}
	d.ingressDenied = l.denied
	if read := !l.denied; d.ingressRead != read || !reflect.DeepEqual(l.list, d.ingress) {
		d.ingress, d.ingressRead = l.list, read
		r.markDirty()
	}
}

func (s *consulSource) IngressGateways(ctx context.Context, q Query) ([]*snapshot.IngressGateway, Meta, error) {
	entries, meta, err := read(s, ctx, q, "listing ingress gateways", func(c *api.Client, o *api.QueryOptions) ([]api.ConfigEntry, *api.QueryMeta, error) {
		return c.ConfigEntries().List(api.IngressGateway, o)
	})
	if err != nil {
		return nil, meta, err
	}
	out := make([]*snapshot.IngressGateway, 0, len(entries))
	for _, e := range entries {
		if gw, ok := e.(*api.IngressGatewayConfigEntry); ok && gw != nil {
			out = append(out, convertIngress(gw))
		}
	}
	return out, meta, nil
}

// convertIngress keeps what DNS answers from an ingress gateway's entry:
// the names of the services its listeners expose, lower case, once each.
func convertIngress(gw *api.IngressGatewayConfigEntry) *snapshot.IngressGateway {
	out := &snapshot.IngressGateway{Name: gw.Name}
	for _, l := range gw.Listeners {
		for _, svc := range l.Services {
			if svc.Name != "" {
				out.Services = append(out.Services, snapshot.Key(svc.Name))
			}
		}
	}
	slices.Sort(out.Services)
	out.Services = slices.Compact(out.Services)
	return out
}
