package consul

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/caddy"
)

// peerSet are the cluster peers whose imported services are replicated:
// each a datacenter value of its own (its replica reads with ?peer=), so a
// peer shares with the datacenters the agent, the watcher pool, the
// snapshot file and the metrics (labelled peer:<name>). The request path
// reads the maps through atomic pointers; they are replaced, never changed.
type peerSet struct {
	replicated atomic.Pointer[map[string]*datacenter]
	// known are the peerings Consul lists; nil until read.
	known atomic.Pointer[map[string]bool]

	// mu serializes changes and guards what follows.
	mu               sync.Mutex
	want             []string
	every            bool
	started, stopped bool
	// newPeer makes (without starting it) the replica of a peer.
	newPeer func(name string) (*datacenter, error)
}

// peerName is what Consul accepts as a peering's name
// (agent/rpc/peering/validate.go).
var peerName = regexp.MustCompile(`^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$`)

// readPeers reads peers NAME... | *: the cluster peers whose imported
// services are answered from replicas of their own.
func readPeers(c *caddy.Controller, cfg *config) error {
	args := c.RemainingArgs()
	if len(args) == 0 {
		return c.Errf("peers takes one or more peer names, or *")
	}
	if cfg.replicatesPeers() {
		return c.Errf("peers is given twice")
	}
	for _, p := range args {
		switch {
		case p == "*" && len(args) > 1:
			return c.Errf("peers: * stands for every peering and takes no names besides")
		case p == "*":
			cfg.everyPeer = true
		case !peerName.MatchString(p):
			return c.Errf("peers: %q is not a peer name (lower case letters, digits and '-', starting and ending with a letter or digit, at most 63)", p)
		case !slices.Contains(cfg.peers, p):
			cfg.peers = append(cfg.peers, p)
		}
	}
	return nil
}

func (cfg *config) replicatesPeers() bool { return cfg.everyPeer || len(cfg.peers) > 0 }

// peerShare is how many replicas the peers add to those reading through the
// agent; with every, a guess the pool corrects.
func (cfg *config) peerShare() int {
	if cfg.everyPeer {
		return everyShare - 1
	}
	return len(cfg.peers)
}

// setupPeers makes the replicas of the peers the Corefile names and, with
// every, of those the snapshot file holds, each answering at once from the
// file or the reloaded block.
func (c *Consul) setupPeers(gen *generation, file *snapshot.Set) error {
	cfg := c.cfg
	p := &c.peers
	// The peerings known count without peers too (<svc>.virtual.<label>).
	if file != nil && file.KnownPeers != nil {
		known := make(map[string]bool, len(file.KnownPeers))
		for _, name := range file.KnownPeers {
			known[name] = true
		}
		p.known.Store(&known)
	}
	if !cfg.replicatesPeers() {
		return nil
	}
	p.want, p.every = cfg.peers, cfg.everyPeer
	p.newPeer = func(name string) (*datacenter, error) { return c.newPeerReplica(name, nil, nil) }
	names := slices.Clone(p.want)
	if p.every && file != nil {
		for _, snap := range file.Peers {
			names = append(names, snap.Peer)
		}
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		if !peerName.MatchString(name) {
			continue // from a crafted file
		}
		d, err := c.newPeerReplica(name, gen, file)
		if err != nil {
			return err
		}
		p.add(d)
	}
	return nil
}

// newPeerReplica makes the datacenter value that serves peer's imported
// services, and its replica.
func (c *Consul) newPeerReplica(peer string, gen *generation, file *snapshot.Set) (*datacenter, error) {
	cfg := c.cfg
	now := c.answering()
	d := &datacenter{name: peer, label: "peer:" + peer, key: cfg.replicaKey() + "|peer:" + peer,
		zones: now.zones, opts: now.opts, served: c.remoteServed, changed: &c.changed}
	rc := cfg.replica
	rc.Share, rc.Peer = cfg.share(), peer
	var inFile *snapshot.Snapshot
	if file != nil {
		inFile = file.PeerSnapshot(peer)
	}
	if err := c.attach(d, rc, gen, inFile); err != nil {
		return nil, err
	}
	return d, nil
}

// routePeer returns the view that answers a name of a cluster peer. A peer
// replicated: its view (SERVFAIL until it has synced), for as long as the
// peering exists, also while its stream is broken or Consul is down. One
// Consul lists but the plugin does not replicate, or any before the list
// was read: the next plugin. One Consul does not list (never was, or was
// deleted, even one the Corefile names): what Consul answers, NXDOMAIN
// (NOERROR and nothing for a virtual IP).
func (c *Consul) routePeer(name answer.Name) (*datacenter, route) {
	p := &c.peers
	known := p.known.Load()
	listed := known == nil || (*known)[name.Peer]
	if d := p.get(name.Peer); d != nil && listed {
		return d, routeAnswer
	}
	if listed {
		return nil, routeNext
	}
	if name.Kind == answer.KindPeerVirtual || name.Kind == answer.KindNode {
		// Not always NXDOMAIN: the local view answers what Consul does
		// (answer.peerMismatch).
		return c.local, routeAnswer
	}
	return c.local, routeUnknown
}

// peeringsRead takes the peerings Consul lists, read by the local replica:
// they tell names to pass on from names to refuse, and with every, which
// peers to replicate. A peering deleted leaves the list; its replica is
// then stopped and its names answered NXDOMAIN, as Consul answers them.
func (c *Consul) peeringsRead(list []replica.Peering) {
	known := make(map[string]bool, len(list))
	for _, peering := range list {
		if peerName.MatchString(peering.Name) {
			known[peering.Name] = true
		}
	}
	p := &c.peers
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.known.Load(); old == nil || !maps.Equal(*old, known) {
		p.known.Store(&known)
		c.offer()
	}
	if !p.every || p.stopped {
		return
	}
	for name := range known {
		if p.get(name) != nil {
			continue
		}
		d, err := p.newPeer(name)
		if err != nil {
			log.Errorf("replicating peer %s: %v", name, err)
			continue
		}
		log.Infof("replicating peer %s", name)
		p.add(d)
		if p.started && d.feed != nil {
			d.feed.serve(d)
		}
	}
	for _, d := range p.list() {
		if !known[d.name] && !slices.Contains(p.want, d.name) {
			log.Infof("peering %s deleted: no longer replicated", d.name)
			p.drop(d.name)
			d.stop()
			forgetMetrics(d.label)
		}
	}
}

// startPeers makes the peers' replicas feed them.
func (c *Consul) startPeers() {
	p := &c.peers
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started = true
	for _, d := range p.list() {
		if d.feed != nil && !d.feed.serve(d) {
			p.drop(d.name)
		}
	}
}

// stopPeers stops every peer's replica for good.
func (c *Consul) stopPeers() {
	p := &c.peers
	p.mu.Lock()
	p.stopped = true
	peers := p.list()
	p.mu.Unlock()
	for _, d := range peers {
		d.stop()
	}
}

// collectPeers adds the peers' snapshots and the peerings known to set.
func (c *Consul) collectPeers(set *snapshot.Set) {
	for _, d := range c.peers.list() {
		if snap := d.current(); snap != nil {
			set.Peers = append(set.Peers, snap)
		}
	}
	slices.SortFunc(set.Peers, func(a, b *snapshot.Snapshot) int { return strings.Compare(a.Peer, b.Peer) })
	if known := c.peers.known.Load(); known != nil {
		// Never nil once read: no peering at all is an answer (a
		// <svc>.virtual.<label> name is then NOERROR with nothing).
		set.KnownPeers = append([]string{}, slices.Sorted(maps.Keys(*known))...)
	}
}

func (p *peerSet) get(name string) *datacenter {
	if m := p.replicated.Load(); m != nil {
		return (*m)[name]
	}
	return nil
}

// list returns the replicated peers.
func (p *peerSet) list() []*datacenter {
	m := p.replicated.Load()
	if m == nil {
		return nil
	}
	return slices.Collect(maps.Values(*m))
}

func (p *peerSet) add(d *datacenter) {
	next := make(map[string]*datacenter)
	if m := p.replicated.Load(); m != nil {
		maps.Copy(next, *m)
	}
	next[d.name] = d
	p.replicated.Store(&next)
}

func (p *peerSet) drop(name string) {
	if m := p.replicated.Load(); m != nil {
		next := maps.Clone(*m)
		delete(next, name)
		p.replicated.Store(&next)
	}
}
