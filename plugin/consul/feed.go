package consul

import (
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// feed carries what one replica reads to the datacenter that serves it. A
// replica's callbacks are fixed when it is made: the feed lets a reload point
// them at the new block's datacenter. A reload that keeps the replica's
// settings hands it over as it runs, with its watchers and connections: no
// new request to Consul, no new sync. One that changes them makes a new
// replica, and lends the old one to the new datacenter until the new one
// has published, so that changes keep flowing meanwhile.
type feed struct {
	replica  source
	settings readSettings // what the replica was made with

	// mu orders publications and handovers: a snapshot published while a
	// reload hands the replica over reaches the new datacenter.
	mu sync.Mutex
	// to serves what the replica publishes.
	to *datacenter
	// owner's block stops the replica: the datacenter it was made for or
	// handed over to. A block that shuts down while its replica is lent
	// passes it to the borrower.
	owner  *datacenter
	latest *snapshot.Snapshot // the newest snapshot the replica published
	// agentDNS is the newest DNS settings the replica read from the agent,
	// for a block the replica is handed over to.
	agentDNS *replica.AgentDNS
	started  bool
	stopped  bool
	// predecessor is the replica of the reloaded block, lent to this one's
	// datacenter until this one publishes; nil after.
	predecessor *feed
}

// source is what feeds a datacenter: a replica of Consul, or a follower's
// share of the tiers it follows.
type source interface {
	Start()
	Stop()
	// Contact is when the source last heard from Consul, and since when it
	// fails to (zero when it does not).
	Contact() (last, failing time.Time)
	// Cluster is the Consul cluster read; known false before it was.
	Cluster() (string, bool)
}

// newFeed makes the replica of rc, read through client, that feeds to; a
// follower block's (settings.follow set) takes from the tiers instead, and
// never moves back from seed, the snapshot file.
func newFeed(client *api.Config, rc replica.Config, settings readSettings, to *datacenter, pool *replica.Pool, seed *snapshot.Set) (*feed, error) {
	f := &feed{settings: settings, to: to, owner: to}
	if rc.Share > 1 {
		rc.Pool = pool
	}
	rc.Observer = observer{dc: to.label}
	if to.lists != nil {
		rc.OnDatacenters = f.datacentersRead
	}
	if to.cluster != nil {
		rc.OnCluster = f.clusterRead
	}
	if to.agentDNS != nil {
		rc.OnAgentDNS = f.agentDNSRead
	}
	if to.peerings != nil {
		rc.OnPeerings = f.peeringsRead
	}
	if settings.follow != nil {
		f.replica = newFollowSource(settings.follow, seed, rc, to.label, f.publish)
		return f, nil
	}
	r, err := replica.New(client, rc, f.publish)
	if err != nil {
		return nil, fmt.Errorf("datacenter %s: %w", to.label, err)
	}
	f.replica = r
	return f, nil
}

func (f *feed) publish(snap *snapshot.Snapshot) {
	f.mu.Lock()
	f.latest = snap
	if f.stopped {
		f.mu.Unlock()
		return
	}
	pred := f.predecessor
	f.predecessor = nil
	// Before this snapshot is served: none of the predecessor's may follow.
	stopPred := pred != nil && pred.yield(f.to)
	f.to.publish(snap)
	f.mu.Unlock()
	if stopPred {
		pred.replica.Stop()
	}
}

// datacentersRead passes the datacenter lists the local replica read on.
// Not under mu: what they start or stop may wait for a publication.
func (f *feed) datacentersRead(known, byDistance []string) {
	f.mu.Lock()
	to := f.to
	f.mu.Unlock()
	to.lists(known, byDistance)
}

// agentDNSRead passes the agent's DNS settings on. Not under mu, as
// datacentersRead.
func (f *feed) agentDNSRead(a replica.AgentDNS) {
	f.mu.Lock()
	f.agentDNS = &a
	to := f.to
	f.mu.Unlock()
	if to.agentDNS != nil {
		to.agentDNS(a)
	}
}

// peeringsRead passes the peerings the local replica read on. Not under
// mu, as datacentersRead.
func (f *feed) peeringsRead(list []replica.Peering) {
	f.mu.Lock()
	to := f.to
	f.mu.Unlock()
	if to.peerings != nil {
		to.peerings(list)
	}
}

// agentDNSOf is the newest DNS settings the replica read; nil before.
func (f *feed) agentDNSOf() *replica.AgentDNS {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.agentDNS
}

// serve makes the replica feed d, and d's block the one that stops it: one
// made for d starts, and one that feeds a running block's datacenter passes
// to d. False when the replica was stopped meanwhile.
func (f *feed) serve(d *datacenter) bool {
	var retired *feed
	defer func() {
		// Not under mu: its last publication may be waiting for it.
		if retired != nil {
			retired.retire()
		}
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	from := f.to
	f.feedLocked(d)
	f.owner = d
	if f.predecessor != nil {
		retired = f.predecessor.lend(d, from)
	}
	if !f.started {
		// Under mu, so that no release stops it before it starts: Start
		// returns at once, and publishes from goroutines of its own.
		f.started = true
		f.replica.Start()
	}
	return true
}

// lend makes the replica feed d until d's own replica has published; from
// is the datacenter that borrowed it so far, which passes it on with what
// it was passed. One replica at most is lent: the one it still borrows
// itself (reloads faster than a replica syncs) is returned, to be retired.
func (f *feed) lend(d, from *datacenter) (retired *feed) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil
	}
	if f.owner == from {
		f.owner = d
	}
	f.feedLocked(d)
	retired, f.predecessor = f.predecessor, nil
	return retired
}

// retire stops the replica for good, and what it still borrowed: no block
// is left that it feeds.
func (f *feed) retire() {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	pred := f.stopLocked()
	f.mu.Unlock()
	f.replica.Stop()
	if pred != nil {
		pred.retire()
	}
}

// stopLocked marks the feed stopped and detaches the replica it still
// borrows; the caller stops both once mu is released (the replica's last
// publication may be waiting for it).
func (f *feed) stopLocked() (pred *feed) {
	f.stopped = true
	pred, f.predecessor = f.predecessor, nil
	return pred
}

// feedLocked points the replica at d, which serves its latest snapshot at
// once, with its own answer options.
func (f *feed) feedLocked(d *datacenter) {
	prev := f.to
	f.to = d
	if prev == d {
		return
	}
	// What prev served first, so that a removal guard measures the newest
	// snapshot against it as prev's did.
	if cur := prev.current(); cur != nil && cur != d.current() {
		d.start(cur)
	}
	if f.latest != nil && f.latest != d.current() {
		d.publish(f.latest)
	}
}

// yield stops feeding d, whose own replica publishes or stops: the replica
// goes back to the block that lent it, which stops it when it shuts down.
// True when the replica is to stop now: d's block was passed it.
func (f *feed) yield(d *datacenter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.to != d || f.stopped:
		return false // taken back already
	case f.owner != d:
		f.feedLocked(f.owner)
		return false
	}
	f.stopped = true
	return true
}

// feeds reports whether the replica, running or to start, feeds d, d's
// block being the one to stop it.
func (f *feed) feeds(d *datacenter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.to == d && f.owner == d && !f.stopped
}

// handedOver reports whether d's replica feeds another datacenter now.
func (f *feed) handedOver(d *datacenter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.to != d
}

// release is d's block stopping: the replica stops unless d handed it over.
// One lent to a reloaded block is passed to it.
func (f *feed) release(d *datacenter) {
	f.mu.Lock()
	if f.owner != d || f.stopped {
		f.mu.Unlock()
		return
	}
	if f.to != d {
		f.owner = f.to
		f.mu.Unlock()
		return
	}
	pred := f.stopLocked()
	f.mu.Unlock()
	f.replica.Stop()
	// A predecessor still lent to d no longer feeds it; its block stops
	// it, or d's when it was passed on.
	if pred != nil && pred.yield(d) {
		pred.replica.Stop()
	}
}

// readSettings decide how a replica reads Consul: all it is made with but
// the callbacks that say where what it reads goes. The token and TLS files
// count by their names, not their contents: a running replica follows the
// files itself, so a reload after a credential was renewed in place hands
// it over with its watchers rather than syncing anew. A field added to
// either config is compared without anyone listing it.
type readSettings struct {
	client  api.Config
	replica replica.Config
	follow  *followSettings // a follower's: the rest is then unused
}

func settingsOf(client *api.Config, rc replica.Config, follow *followSettings) readSettings {
	s := readSettings{client: *client, replica: rc, follow: follow}
	// Each parse makes a transport of its own; what it carries comes from
	// the fields compared.
	s.client.Transport, s.client.HttpClient = nil, nil
	s.replica.Observer, s.replica.OnDatacenters, s.replica.OnCluster, s.replica.Pool = nil, nil, nil, nil
	s.replica.OnAgentDNS, s.replica.OnPeerings = nil, nil
	return s
}

func (s *readSettings) equal(o *readSettings) bool { return reflect.DeepEqual(s, o) }
