package replica

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// A replica of a cluster peer (Config.Peer) reads the services imported
// from it through the same loops as a datacenter's, with ?peer= on every
// request. Consul ignores ?peer= on /v1/catalog/services, /v1/catalog/nodes,
// /v1/health/state/any and /v1/query (they answer the datacenter's own), so:
//   - the service list is /v1/internal/ui/services?peer=, which blocks and
//     lists what the peer exports to this cluster;
//   - nodes are those of the instances (Consul lists no nodes of a peer);
//   - there is no health detector, and the list's index does not move on a
//     check: while some imported service has no watcher, peerHealthLoop
//     reads the peer's summaries (their check counts) every second instead;
//   - there are no prepared queries.

// importedServices lists the services imported from the peer, with their
// tags.
func (s *consulSource) importedServices(ctx context.Context, q Query) (map[string][]string, Meta, error) {
	var list []uiSummary
	meta, err := s.call(ctx, q, func(c *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
		return c.Raw().Query("/v1/internal/ui/services", &list, opts)
	})
	if err != nil {
		return nil, meta, fmt.Errorf("listing the services imported from peer %s: %w", s.peer, err)
	}
	sums, bad := convertSummaries(list)
	s.invalid.note(invalidSummary, bad)
	out := make(map[string][]string, len(sums))
	for _, sum := range sums {
		out[sum.Name] = sum.Tags
	}
	return out, meta, nil
}

// keepNodeMeta copies each node's meta onto its instances of svc: a peer's
// node is known only from its instances.
func keepNodeMeta(svc *snapshot.Service, entries []*api.ServiceEntry) {
	meta := make(map[string]map[string]string)
	for _, e := range entries {
		if e != nil && e.Node != nil && len(e.Node.Meta) > 0 {
			meta[e.Node.Node] = e.Node.Meta
		}
	}
	for i := range svc.Instances {
		svc.Instances[i].NodeMeta = meta[svc.Instances[i].Node]
	}
}

// peerNodesLocked are the nodes of a peer's instances; a node unchanged
// since the last snapshot is shared with it, with what was built for it.
func (r *Replicator) peerNodesLocked(services map[string]*snapshot.Service) map[string]*snapshot.Node {
	nodes := make(map[string]*snapshot.Node)
	for _, svc := range services {
		for i := range svc.Instances {
			in := &svc.Instances[i]
			key := snapshot.Key(in.Node)
			if nodes[key] != nil {
				continue
			}
			n := &snapshot.Node{Name: in.Node, Address: in.NodeAddress, TaggedAddresses: in.NodeTaggedAddresses, Meta: in.NodeMeta}
			if old := r.data.nodes[key]; old != nil && sameNode(old, n) {
				n = old
			}
			nodes[key] = n
		}
	}
	r.data.nodes = nodes
	return nodes
}

// Peering is one of the cluster peerings Consul lists.
type Peering struct {
	Name  string // lower case
	State string // Consul's: PENDING, ESTABLISHING, ACTIVE, FAILING, DELETING, TERMINATED
}

// peeringLister is a Source that lists the cluster peerings.
type peeringLister interface {
	Peerings(ctx context.Context) ([]Peering, Meta, error)
}

func (s *consulSource) Peerings(ctx context.Context) ([]Peering, Meta, error) {
	list, meta, err := read(s, ctx, Query{}, "listing peerings", func(c *api.Client, o *api.QueryOptions) ([]*api.Peering, *api.QueryMeta, error) {
		o.Peer = ""
		return c.Peerings().List(o.Context(), o)
	})
	if err != nil {
		return nil, meta, err
	}
	out := make([]Peering, 0, len(list))
	bad := 0
	for _, p := range list {
		if p == nil || p.Name == "" {
			bad++
			continue
		}
		out = append(out, Peering{Name: snapshot.Key(p.Name), State: string(p.State)})
	}
	s.invalid.note(invalidPeering, bad)
	return out, meta, nil
}

// peeringsLoop reads the peerings Consul lists: at once, then every
// PeeringsInterval, retrying sooner while it fails. A token without
// peering:read is not a failure of Consul's (no backoff, no stale answers):
// the list stays unknown, so peer names not replicated are passed on, and
// it is asked again every deniedRetry, in case the token gains the right.
func (r *Replicator) peeringsLoop() {
	lister, ok := r.src.(peeringLister)
	if !ok {
		return
	}
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	warned := false
	for {
		var list []Peering
		refused := false
		_, err := r.request(r.run.ctx, r.cfg.LivenessTimeout, func(ctx context.Context) (Meta, error) {
			l, meta, err := lister.Peerings(ctx)
			if denied(err) || peeringOff(err) {
				refused = true
				return Meta{KnownLeader: true}, nil
			}
			list = l
			return meta, err
		})
		delay := r.cfg.PeeringsInterval
		switch {
		case refused:
			if !warned {
				// Info: a token made for DNS alone need not read them.
				log.Infof("the peerings cannot be listed (the ACL token lacks peering:read, or peering is off): names of peers the plugin does not replicate are passed on, a deleted peering's names and <svc>.virtual.<label> names too")
				warned = true
			}
			delay = deniedRetry
		case err == nil:
			backoff.reset()
			r.cfg.OnPeerings(list)
		default:
			delay = min(delay, backoff.next())
		}
		if !sleep(r.run.ctx, delay) {
			return
		}
	}
}

// peeringOff reports an agent that does not serve peerings: a client error
// other than a refused token (peering disabled answers 400), which is no
// failure of Consul's.
func peeringOff(err error) bool {
	var status api.StatusError
	return errors.As(err, &status) && status.Code >= 400 && status.Code < 500 && !tooMany(err)
}

// peerHealthInterval is how often a peer's summaries are read while some
// imported service has no watcher: how late a health change of such a
// service may be seen.
const peerHealthInterval = time.Second

// peerHealthLoop stands in for the health detector in a peer's replica:
// while some imported service has no watcher, it reads the peer's summaries
// every peerHealthInterval and reads again the unwatched services whose
// counts changed. The first read after every service was watched reads
// every unwatched service again: a change between the watcher's end and
// that read shows in no diff.
func (r *Replicator) peerHealthLoop() {
	d := summaryDetector{peer: r.cfg.Peer}
	for sleep(r.run.ctx, peerHealthInterval) {
		r.mu.Lock()
		unwatched := r.data.listed && r.watch.count() < len(r.data.services)
		r.mu.Unlock()
		if !unwatched {
			d.last = nil
			continue
		}
		baseline := !d.known()
		list, ok := r.readSummaries()
		if !ok {
			continue
		}
		keys := make(map[string]bool)
		for _, key := range d.observe(list) {
			keys[key] = true
		}
		r.mu.Lock()
		if baseline {
			for key := range r.data.services {
				keys[key] = true
			}
		}
		r.fetchUnwatchedLocked(keys)
		r.mu.Unlock()
	}
}
