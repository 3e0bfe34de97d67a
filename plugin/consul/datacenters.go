package consul

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// datacenters are the datacenters other than the local one: those replicated,
// and those Consul knows. The request path reads both through atomic
// pointers to maps that are replaced whole, never changed.
type datacenters struct {
	// remote are the replicated datacenters other than the local one, by
	// lower-case name.
	remote atomic.Pointer[map[string]*datacenter]
	// known are the datacenters Consul knows, by lower-case name; nil until
	// Consul or the snapshot file said.
	known atomic.Pointer[map[string]bool]
	// byDistance are the datacenters nearest first, for prepared queries
	// that fail over; nil until read.
	byDistance atomic.Pointer[[]string]

	// mu serializes changes to remote and known, and guards what follows.
	mu sync.Mutex
	// want are the datacenters to replicate besides the local one; all
	// those Consul knows when every is set.
	want  []string
	every bool
	// newRemote makes (without starting it) the datacenter that replicates
	// name; nil in tests, which replicate nothing else.
	newRemote func(name string) (*datacenter, error)
	started   bool // remotes made from now on start at once
	namedOnce sync.Once
	stopped   bool
	// refused and bound log, once, names Consul listed that were left out.
	refused, bound sync.Once
	// absent counts the lists in a row that lacked a replicated datacenter:
	// with every, one that stays away is dropped.
	absent map[string]int
}

// route is where a question goes.
type route uint8

const (
	routeAnswer  route = iota // answered from the datacenter's view
	routeUnknown              // a datacenter Consul does not know: NXDOMAIN
	routeNext                 // a datacenter Consul knows but the plugin does not replicate
)

// dropAfter is how many lists in a row must lack a datacenter before every
// drops it: a datacenter cut off stays listed (its servers are failed, not
// gone), but a list read during a WAN flap is not trusted alone.
const dropAfter = 3

// route returns the datacenter that answers name, and how.
func (c *Consul) route(name answer.Name) (*datacenter, route) {
	if name.Peer != "" && name.Kind != answer.KindAddr && name.Kind != answer.KindPassOn {
		return c.routePeer(name)
	}
	dc := name.Datacenter
	if dc == "" || name.Kind == answer.KindAddr || name.Kind == answer.KindPassOn {
		return c.local, routeAnswer
	}
	local := c.localName()
	if local == "" || local == dc {
		// Before the agent was read, whatever the name: SERVFAIL until
		// then.
		return c.local, routeAnswer
	}
	if remote := c.remote.Load(); remote != nil {
		if d, ok := (*remote)[dc]; ok {
			if d.view.Load() == nil && !c.knows(dc, true) {
				return c.local, routeUnknown
			}
			return d, routeAnswer
		}
	}
	// Before any list was read, a name that may be in a datacenter Consul
	// knows goes on: NXDOMAIN would be cached as a lie.
	if c.knows(dc, true) {
		return nil, routeNext
	}
	return c.local, routeUnknown
}

// localName is the local datacenter's name: its snapshot's (the live one's
// once the replica has synced, which wins over a snapshot file written
// against another agent), else the configured one; empty when unknown.
func (c *Consul) localName() string {
	if v := c.local.view.Load(); v != nil {
		return v.Snap.Datacenter
	}
	return c.local.name
}

// knows reports whether Consul knows datacenter dc; ifUnsure when no list
// was read yet.
func (c *Consul) knows(dc string, ifUnsure bool) bool {
	known := c.known.Load()
	if known == nil {
		return ifUnsure
	}
	return (*known)[dc]
}

// remoteNamed returns the replicated datacenter dc; nil for none.
func (c *Consul) remoteNamed(dc string) *datacenter {
	if remote := c.remote.Load(); remote != nil {
		return (*remote)[dc]
	}
	return nil
}

// all returns every replicated datacenter, the local one first.
func (c *Consul) all() []*datacenter {
	return append(append([]*datacenter{c.local}, c.remotes()...), c.peers.list()...)
}

// remotes returns the replicated datacenters other than the local one.
func (c *Consul) remotes() []*datacenter {
	remote := c.remote.Load()
	if remote == nil {
		return nil
	}
	return slices.Collect(maps.Values(*remote))
}

// addRemoteLocked makes d one of the replicated datacenters.
func (c *Consul) addRemoteLocked(d *datacenter) {
	next := make(map[string]*datacenter)
	if remote := c.remote.Load(); remote != nil {
		maps.Copy(next, *remote)
	}
	next[d.name] = d
	c.remote.Store(&next)
	c.changed.notify()
}

// dropRemoteLocked stops replicating dc.
func (c *Consul) dropRemoteLocked(dc string) *datacenter {
	remote := c.remote.Load()
	if remote == nil || (*remote)[dc] == nil {
		return nil
	}
	d := (*remote)[dc]
	next := maps.Clone(*remote)
	delete(next, dc)
	c.remote.Store(&next)
	return d
}

// datacentersRead takes the datacenters Consul knows, read by the local
// replica: they tell names to pass on from names to refuse, and with every,
// which datacenters to replicate.
func (c *Consul) datacentersRead(dcs, byDistance []string) {
	dcs, byDistance = c.admit(dcs), c.admit(byDistance)
	known := make(map[string]bool, len(dcs))
	for _, dc := range dcs {
		known[dc] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	if old := c.known.Load(); old == nil || !maps.Equal(*old, known) {
		c.known.Store(&known)
		changed = true
	}
	if old := c.byDistance.Load(); byDistance != nil && (old == nil || !slices.Equal(*old, byDistance)) {
		c.byDistance.Store(&byDistance)
		changed = true
	}
	if changed {
		c.changed.notify()
		c.offer()
	}
	c.syncRemotesLocked(true)
}

// localNamed is called once the local datacenter's name is known: a
// datacenter listed in the Corefile may be the local one.
func (c *Consul) localNamed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.syncRemotesLocked(false)
}

// syncRemotesLocked starts replicating the datacenters wanted and not yet
// replicated, and stops those no longer wanted; listed: Consul's list was
// just read (only then does a missing datacenter count as absent once more).
func (c *Consul) syncRemotesLocked(listed bool) {
	if c.stopped || c.newRemote == nil {
		return
	}
	local := c.localName()
	want := make(map[string]bool)
	for _, dc := range c.want {
		want[dc] = true
	}
	known := c.known.Load()
	if c.every && known != nil {
		for dc := range *known {
			want[dc] = true
		}
	}
	delete(want, local)
	if len(want) > maxReplicated {
		// Only through *: every name the Corefile lists counts, the rest
		// by name, so that the same ones are replicated every time.
		c.bound.Do(func() {
			log.Warningf("datacenters *: Consul lists %d other datacenters; replicating the first %d by name (name the others in the Corefile to replicate them)",
				len(want), maxReplicated)
		})
		names := slices.Sorted(maps.Keys(want))
		slices.SortStableFunc(names, func(a, b string) int {
			return boolOrder(slices.Contains(c.want, b), slices.Contains(c.want, a))
		})
		for _, dc := range names[max(maxReplicated, len(c.want)):] {
			delete(want, dc)
		}
	}
	for dc := range want {
		if remote := c.remote.Load(); remote != nil && (*remote)[dc] != nil {
			continue
		}
		if local == "" {
			// Which of the names is the local datacenter is not known yet:
			// a replica made now might replicate it twice.
			break
		}
		d, err := c.newRemote(dc)
		if err != nil {
			log.Errorf("replicating datacenter %s: %v", dc, err)
			continue
		}
		log.Infof("replicating datacenter %s", dc)
		c.addRemoteLocked(d)
		if c.started && d.feed != nil {
			d.feed.serve(d)
		}
	}
	for _, d := range c.remotes() {
		dc := d.name
		switch {
		case dc == local:
			// Listed in the Corefile, and turned out to be the local one.
		case want[dc]:
			delete(c.absent, dc)
			continue
		case c.every && known != nil && !(*known)[dc] && !slices.Contains(c.want, dc):
			if !listed {
				continue
			}
			if c.absent == nil {
				c.absent = make(map[string]int)
			}
			if c.absent[dc]++; c.absent[dc] < dropAfter {
				continue
			}
			delete(c.absent, dc)
			log.Infof("datacenter %s left: no longer replicated", dc)
		default:
			continue
		}
		c.dropRemoteLocked(dc).stop()
		forgetMetrics(dc)
		c.offer()
	}
}

// startRemotes makes the replicas of the other datacenters feed them: those
// made for them start, those a reloaded block hands over pass to them. One
// stopped since setup found it (its datacenter left meanwhile) is made
// again if still wanted.
func (c *Consul) startRemotes() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = true
	for _, d := range c.remotes() {
		if d.feed != nil && !d.feed.serve(d) {
			c.dropRemoteLocked(d.name)
		}
	}
	c.syncRemotesLocked(false)
}

// stopRemotes stops every other datacenter's replica for good.
func (c *Consul) stopRemotes() {
	c.mu.Lock()
	c.stopped = true
	remotes := c.remotes()
	c.mu.Unlock()
	for _, d := range remotes {
		d.stop()
	}
}

// collect is what the snapshot file holds: every datacenter's snapshot, and
// the datacenters Consul knows; nil before the local datacenter has one.
func (c *Consul) collect() *snapshot.Set {
	local := c.local.current()
	if local == nil {
		return nil
	}
	set := &snapshot.Set{Local: local.Datacenter, Datacenters: []*snapshot.Snapshot{local}, Cluster: c.clusterID(), AgentDNS: c.agentDNSForFile()}
	for _, d := range c.remotes() {
		if snap := d.current(); snap != nil {
			set.Datacenters = append(set.Datacenters, snap)
		}
	}
	slices.SortFunc(set.Datacenters[1:], func(a, b *snapshot.Snapshot) int {
		return strings.Compare(a.Datacenter, b.Datacenter)
	})
	if known := c.known.Load(); known != nil {
		set.Known = slices.Sorted(maps.Keys(*known))
	}
	if near := c.byDistance.Load(); near != nil {
		set.ByDistance = *near
	}
	c.collectPeers(set)
	return set
}
