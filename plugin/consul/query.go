package consul

import (
	"context"
	"errors"
	"net"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/prepared"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin/metrics"
	"github.com/miekg/dns"
)

// runQuery runs the prepared query name asks for in the datacenter whose view
// is view, as Consul's DNS runs it for a question that came to its agent:
// sorted near the agent or the client, failing over to the datacenters the
// plugin replicates, into res. passOn: Consul must answer it (the next
// plugin).
func (c *Consul) runQuery(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, q *answer.Question, name *answer.Name, view *answer.View, res *answer.Result) (passOn bool) {
	req := prepared.Request{Name: name.Query, SourceIP: sourceIP(w, r)}
	if local := c.local.current(); local != nil {
		req.Agent = prepared.Agent{Datacenter: local.Datacenter, Node: local.AgentNode}
		// The distances are the local datacenter's: a query run in another
		// one that fails over is passed on (nil).
		if near := c.byDistance.Load(); near != nil && view.Snap.Datacenter == local.Datacenter {
			req.DatacentersByDistance = *near
		}
	}
	views := map[string]*answer.View{view.Snap.Datacenter: view}
	out := view.Queries.Execute(req, func(dc string) *snapshot.Snapshot {
		d, route := c.route(answer.Name{Kind: answer.KindService, Datacenter: dc})
		if route != routeAnswer {
			return nil
		}
		v := d.view.Load()
		if v == nil {
			return nil
		}
		views[v.Snap.Datacenter] = v
		return v.Snap
	})
	switch out.Outcome {
	case prepared.NotFound:
		if view.Snap.QueriesHidden {
			// It may be a query the token may not list.
			queriesPassedOn.WithLabelValues(metrics.WithServer(ctx), "hidden").Inc()
			return true
		}
		answer.NameError(view, q, res)
		return false
	case prepared.PassOn:
		if errors.Is(out.Reason, prepared.ErrTemplate) {
			// A template that fails to render for this name: Consul answers
			// SERVFAIL (and some such renders crash its agent, so passing
			// the question on is no kinder).
			log.Debugf("%s: %v", q.Name, out.Reason)
			res.Rcode = dns.RcodeServerFailure
			return false
		}
		queriesPassedOn.WithLabelValues(metrics.WithServer(ctx), passOnReason(out.Reason)).Inc()
		log.Debugf("%s: passed on: %v", q.Name, out.Reason)
		return true
	}
	from := views[out.Datacenter]
	if from == nil {
		from = view
	}
	if len(out.Instances) == 0 && from.Snap.ServicesHidden {
		if _, ok := from.Snap.Service(snapshot.Key(out.Service)); !ok {
			// A service the token may not read may exist: Consul, which
			// runs the query with the token stored in it, may see it.
			queriesPassedOn.WithLabelValues(metrics.WithServer(ctx), "hidden").Inc()
			return true
		}
	}
	ttl := from.TTLOf(out.Service)
	if out.TTLSet {
		ttl = uint32(out.TTL.Seconds())
	}
	*res = answer.QueryAnswer(from, q, out.Service, out.Instances, ttl)
	return false
}

// passOnReason is the metric label of a prepared query Consul must answer.
func passOnReason(err error) string {
	switch {
	case errors.Is(err, prepared.ErrConnect):
		return "connect"
	case errors.Is(err, prepared.ErrPeer):
		return "peer"
	case errors.Is(err, prepared.ErrSamenessGroup):
		return "sameness_group"
	case errors.Is(err, prepared.ErrNotReplicated):
		return "not_replicated"
	case errors.Is(err, prepared.ErrDatacentersUnknown):
		return "unknown_distances"
	}
	return "unsupported"
}

// sourceIP is the client's address as a prepared query's Near "_ip" sees it:
// the EDNS client subnet's address when the question carries one, as
// Consul's DNS does.
func sourceIP(w dns.ResponseWriter, r *dns.Msg) string {
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if subnet, ok := o.(*dns.EDNS0_SUBNET); ok {
				return subnet.Address.String()
			}
		}
	}
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.IP.String()
	case *net.TCPAddr:
		return a.IP.String()
	}
	return ""
}
