package replica

import (
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// catalog is the replicated data, guarded by the replica's mu.
type catalog struct {
	datacenter string
	agentNode  string // the agent's node name, which prepared queries sort near
	services   map[string]*entry
	nodes      map[string]*snapshot.Node
	// listed, nodesListed and queriesListed: each list was read at least
	// once; synced: a complete snapshot was published.
	listed, nodesListed, queriesListed, synced bool
	// listIndex is the service list's last index; completeIndex the last
	// one every listed service had been read at (Snapshot.ListIndex).
	listIndex, completeIndex uint64
	// servicesHidden and queriesHidden: the token may not read them all.
	servicesHidden, queriesHidden bool
	queries                       []*snapshot.Query
	coords                        []*snapshot.Coordinate
	// ingress and terminating are the gateways' config entries.
	ingress, terminating gateways
	// seq orders reads of services by how recent their data is.
	seq atomic.Uint64
}

// entry is everything the replica holds about one service.
type entry struct {
	name  string            // as Consul spells it
	tags  []string          // from the service list
	svc   *snapshot.Service // the latest data; nil before the first read
	index uint64            // the index of the latest read, which may be past svc's
	seq   uint64            // how recent the stored read is (catalog.seq)
}

func newCatalog() catalog {
	return catalog{services: make(map[string]*entry), nodes: make(map[string]*snapshot.Node)}
}

// build assembles a snapshot, or returns nil before the replica first holds
// every listed service: a snapshot missing services that exist in Consul
// would answer NXDOMAIN for them, which resolvers cache. Afterwards a service
// that is new and not read yet is simply not in the snapshot yet: no
// snapshot ever had it.
func (r *Replicator) build() *snapshot.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.data
	services := make(map[string]*snapshot.Service, len(d.services))
	for key, e := range d.services {
		if e.svc != nil {
			services[key] = e.svc
		}
	}
	if !d.synced {
		// Prepared queries too: a query missing from the first snapshot
		// would be answered NXDOMAIN. Not the coordinates: without them
		// queries that sort by distance shuffle, as Consul does.
		if !d.listed || !d.nodesListed || !d.queriesListed || len(services) < len(d.services) {
			return nil
		}
		d.synced = true
	}
	if len(services) == len(d.services) {
		// Every listed service read: the list's index holds for them.
		d.completeIndex = d.listIndex
	}
	nodes := maps.Clone(d.nodes)
	if r.cfg.Peer != "" {
		nodes = r.peerNodesLocked(services)
	}
	snap := snapshot.New(d.datacenter, 0, services, nodes, time.Now())
	snap.Peer = r.cfg.Peer
	snap.Queries, snap.QueriesHidden, snap.Coordinates, snap.AgentNode = d.queries, d.queriesHidden, d.coords, d.agentNode
	snap.ServicesHidden, snap.ListIndex = d.servicesHidden, d.completeIndex
	snap.Ingress, snap.IngressRead = d.ingress.list, d.ingress.read
	snap.Terminating, snap.TerminatingRead = d.terminating.list, d.terminating.read
	return snap
}

// watchServiceList keeps the names and tags of all services.
func (r *Replicator) watchServiceList() {
	watch(r, r.run.ctx, blocking[map[string][]string]{
		what: "service list", read: r.src.Services, apply: r.applyServiceList, filtered: "services",
	})
}

// applyServiceList reconciles the replica with the service list: new
// services are read, removed ones dropped, and a move of the index no
// change explains is handed to the move tracker while not every service is
// watched.
func (r *Replicator) applyServiceList(list map[string][]string, meta Meta, reset bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.data
	if d.servicesHidden != meta.Filtered {
		d.servicesHidden = meta.Filtered
		r.markDirty()
	}
	if reset {
		// Another cluster, or one restored from a snapshot: indexes start
		// over, and reads with lower indexes than those held are current.
		// What changed cannot be told by indexes, nor by the summaries (the
		// last read may be the new cluster's): every service without a
		// watcher is read again; watchers see theirs reset too.
		for key, e := range d.services {
			e.index = 0
			if !r.watch.has(key) {
				r.fetch.queue.push(key)
			}
		}
	}
	diff := diffList(d.services, list)
	for _, key := range diff.removed {
		r.stopWatcherLocked(key)
		delete(d.services, key)
	}
	added := make([]string, 0, len(diff.added))
	for key, name := range diff.added {
		d.services[key] = &entry{name: name, tags: list[name]}
		added = append(added, key)
	}
	// Read in name order, so that restarts tend to watch the same set.
	slices.Sort(added)
	r.fetch.queue.push(added...)
	for _, key := range diff.retagged {
		e := d.services[key]
		e.tags = list[e.name]
		if !r.watch.has(key) {
			r.fetch.queue.push(key)
		}
	}
	if !diff.empty() {
		r.moves.explain(meta.Index)
	}
	// Registrations that change neither names nor tags move only the index:
	// unless every service is watched, the sweeper must find out which.
	if d.listed && r.watch.count() < len(d.services) {
		r.moves.add(meta.Index)
	}
	if !d.listed || len(diff.removed) > 0 {
		r.markDirty()
	}
	d.listIndex = meta.Index
	d.listed = true
	r.joinPoolLocked()
	r.budget.warnLocked(len(d.services))
	r.reportWatchersLocked()
}

// listDiff is how the service list differs from the services held, by key.
type listDiff struct {
	added    map[string]string // key → name
	removed  []string
	retagged []string
}

func (d listDiff) empty() bool { return len(d.added)+len(d.removed)+len(d.retagged) == 0 }

// diffList compares the service list Consul gave with the services held. A
// name whose spelling changed is removed and added again: its watcher asks
// for the old spelling.
func diffList(held map[string]*entry, list map[string][]string) listDiff {
	d := listDiff{added: make(map[string]string)}
	seen := make(map[string]bool, len(list))
	for name, tags := range list {
		key := snapshot.Key(name)
		seen[key] = true
		switch e := held[key]; {
		case e == nil:
			d.added[key] = name
		case e.name != name:
			d.removed = append(d.removed, key)
			d.added[key] = name
		case !sameSet(e.tags, tags):
			d.retagged = append(d.retagged, key)
		}
	}
	for key := range held {
		if !seen[key] {
			d.removed = append(d.removed, key)
		}
	}
	slices.Sort(d.removed)
	slices.Sort(d.retagged)
	return d
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// watchNodes keeps every node of the catalog.
func (r *Replicator) watchNodes() {
	watch(r, r.run.ctx, blocking[[]*snapshot.Node]{
		what: "node list", read: r.src.Nodes, apply: r.applyNodes, filtered: "nodes",
	})
}

// applyNodes takes a new node list. A node whose address changed changes the
// instances on it: those without a watcher are read again.
func (r *Replicator) applyNodes(list []*snapshot.Node, _ Meta, _ bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.data
	nodes := make(map[string]*snapshot.Node, len(list))
	changed := make(map[string]bool)
	dirty := len(list) != len(d.nodes) || !d.nodesListed
	for _, node := range list {
		key := snapshot.Key(node.Name)
		switch old := d.nodes[key]; {
		case old != nil && sameNode(old, node):
			node = old // share the unchanged node with the previous snapshot
		case old != nil:
			changed[node.Name] = true
			dirty = true
		default:
			dirty = true
		}
		nodes[key] = node
	}
	d.nodes = nodes
	d.nodesListed = true
	r.fetchUnwatchedLocked(r.servicesOnNodesLocked(changed))
	if dirty {
		// Not a change the move tracker is told of: a node is registered in
		// the same write as the instance on it, and a move of the service
		// list's index at that write is explained only by reading the
		// service.
		r.markDirty()
	}
}

// servicesOnNodesLocked returns the services with an instance on any of nodes.
func (r *Replicator) servicesOnNodesLocked(nodes map[string]bool) map[string]bool {
	out := make(map[string]bool)
	if len(nodes) == 0 {
		return out
	}
	for key, e := range r.data.services {
		if e.svc == nil {
			continue
		}
		for i := range e.svc.Instances {
			if nodes[e.svc.Instances[i].Node] {
				out[key] = true
				break
			}
		}
	}
	return out
}

// fetchUnwatchedLocked reads again the services among keys that have no
// watcher; watchers see their own changes.
func (r *Replicator) fetchUnwatchedLocked(keys map[string]bool) {
	for key := range keys {
		if r.data.services[key] != nil && !r.watch.has(key) {
			r.fetch.queue.push(key)
		}
	}
}

// coordinatesLoop keeps the nodes' network coordinates, read every
// CoordinateInterval without blocking: a blocking query would hold a
// connection to wake for every small move of every node's coordinate.
func (r *Replicator) coordinatesLoop() {
	every(r, CoordinateInterval, r.cfg.LivenessTimeout, r.src.Coordinates, r.applyCoordinates)
}
