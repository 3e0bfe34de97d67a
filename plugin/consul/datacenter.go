package consul

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// datacenter is one replicated datacenter: its replica, its removal guard and
// the view its names are answered from. Datacenters share nothing but the
// agent they are read through, so one that is cut off keeps its last data
// and holds up no other.
type datacenter struct {
	name  string // lower case; empty for the local one until its first snapshot names it
	label string // the datacenter label of metrics
	key   string // what it replicates: a reloaded block's datacenter of the same key takes its place
	zones []string
	opts  answer.Options

	// feed brings the replica's snapshots; nil in tests that publish by
	// hand. Set before the datacenter answers, never changed after.
	feed *feed
	// served hears of every snapshot served, for the snapshot file.
	served func()
	// lists hears of the datacenters Consul knows; the local one's only.
	lists func(known, byDistance []string)
	// cluster hears of the cluster's identity; the local one's only.
	cluster func(id string)
	// agentDNS hears of the agent's DNS settings; the local one's only.
	agentDNS func(replica.AgentDNS)
	// peerings hears of the cluster peerings Consul lists; the local one's
	// only, and only when peers are replicated.
	peerings func([]replica.Peering)
	// changed is woken by every snapshot served, for start-up's wait.
	changed *signal

	// publishMu is held by whatever decides what is served: publish, called
	// by the replica, and recheck, called by the guard's timer. The fields
	// below it are theirs.
	publishMu  sync.Mutex
	guard      *guard             // nil without the removal guard
	guardTimer timer              // asks the guard again while it holds
	received   *snapshot.Snapshot // the newest snapshot the replica published
	stopped    bool               // after stop: the timer must not serve again

	// view is the current snapshot, prepared for answering; nil until the
	// first complete sync. The request path only ever loads it, so it takes
	// no lock.
	view atomic.Pointer[answer.View]
}

// current is the snapshot answers are read from; nil before the first.
func (d *datacenter) current() *snapshot.Snapshot {
	if v := d.view.Load(); v != nil {
		return v.Snap
	}
	return nil
}

// serve prepares snap for answering and makes it the one answers are read
// from. Only publish and start-up call it, one at a time.
func (d *datacenter) serve(snap *snapshot.Snapshot) {
	view := answer.NewView(snap, d.view.Load(), d.zones, d.opts)
	countDropped(d.label, view)
	d.view.Store(view)
	if d.changed != nil {
		d.changed.notify()
	}
}

// reconfigure answers with zones and opts from now on, the snapshot served
// now included.
func (d *datacenter) reconfigure(zones []string, opts answer.Options) {
	d.publishMu.Lock()
	defer d.publishMu.Unlock()
	d.zones, d.opts = zones, opts
	if v := d.view.Load(); v != nil {
		d.serve(v.Snap)
	}
}

// start serves snap, kept from a reloaded block, until the replica has
// synced; the guard measures a Consul that comes back empty against it.
func (d *datacenter) start(snap *snapshot.Snapshot) {
	d.serve(snap)
	if d.guard != nil {
		_, instances := snap.Counts()
		d.guard.remember(d.guard.clock.Now(), instances, snap)
	}
}

// publish makes snap the snapshot answers are read from, unless the removal
// guard holds it back.
func (d *datacenter) publish(snap *snapshot.Snapshot) {
	d.publishMu.Lock()
	defer d.publishMu.Unlock()
	d.received = snap
	d.decideLocked()
}

// recheck asks the guard again about the newest snapshot received, once the
// time it holds a drop for may have passed.
func (d *datacenter) recheck() {
	d.publishMu.Lock()
	defer d.publishMu.Unlock()
	if d.received != nil && !d.stopped {
		d.decideLocked()
	}
}

// stop stops the replica, unless it was handed over, and the guard's timer
// for good.
func (d *datacenter) stop() {
	if d.feed != nil {
		d.feed.release(d)
	}
	d.publishMu.Lock()
	defer d.publishMu.Unlock()
	d.stopped = true
	if d.guardTimer != nil {
		d.guardTimer.Stop()
	}
}

func (d *datacenter) decideLocked() {
	snap := d.received
	if d.guard != nil {
		var recheck time.Duration
		snap, recheck = d.guard.decide(d.guard.clock.Now(), snap)
		holding := 0.0
		if d.guard.holding() {
			holding = 1
		}
		guardHolding.WithLabelValues(d.label).Set(holding)
		if recheck > 0 {
			if d.guardTimer == nil {
				d.guardTimer = d.guard.clock.AfterFunc(recheck, d.recheck)
			} else {
				d.guardTimer.Reset(recheck)
			}
		}
		if snap == d.current() {
			return
		}
	}
	d.serve(snap)
	if d.served != nil {
		d.served()
	}
	services, instances := snap.Counts()
	serviceCount.WithLabelValues(d.label).Set(float64(services))
	instanceCount.WithLabelValues(d.label).Set(float64(instances))
	consulIndex.WithLabelValues(d.label).Set(float64(snap.Index))
	snapshotTimestamp.WithLabelValues(d.label).Set(float64(snap.Built.UnixNano()) / 1e9)
}

// stale reports whether answers from view are stale (Consul cannot be
// reached), and expired when they are older than maxStale allows.
func (d *datacenter) stale(view *answer.View, maxStale time.Duration) (stale, expired bool) {
	if d.feed == nil {
		return false, false
	}
	last, failing := d.feed.replica.Contact()
	if failing.IsZero() {
		return false, false
	}
	// The data is as old as the last contact, or as the snapshot when it
	// came from the file.
	if last.Before(view.Snap.Built) {
		last = view.Snap.Built
	}
	return true, maxStale > 0 && time.Since(last) > maxStale
}

// newDatacenter makes the datacenter that serves dc for c ("" for the local
// one) and the replica that feeds it, not started: at setup (gen set) the
// running replica a reloaded block hands over when it reads Consul with the
// same settings, else a new one, lent the reloaded block's until it has
// published. The datacenter answers at once from the snapshot a running
// block serves for it, else from the snapshot file's.
func (c *Consul) newDatacenter(dc string, gen *generation, file *snapshot.Set) (*datacenter, error) {
	cfg := c.cfg
	now := c.answering()
	d := &datacenter{name: dc, label: dc, key: cfg.replicaKey(), zones: now.zones, opts: now.opts, served: c.remoteServed, changed: &c.changed}
	rc := cfg.replica
	rc.Share = cfg.share()
	inFile := dc
	if dc == "" {
		d.name, d.label = snapshot.Key(rc.Datacenter), cfg.dcLabel()
		// The peerings are read also without peers: Consul reads the lone
		// label of <svc>.virtual.<label> as a peer, and answers NOERROR
		// with nothing when no peering has that name.
		d.served, d.lists, d.cluster, d.agentDNS, d.peerings = c.localServed, c.datacentersRead, c.clusterRead, c.agentDNSRead, c.peeringsRead
		rc.Coordinates = true
		if file != nil {
			inFile = file.Local
		}
	} else {
		rc.Datacenter = dc
		d.key += "|" + dc
	}
	var inSet *snapshot.Snapshot
	if file != nil {
		inSet = file.Snapshot(inFile)
	}
	if err := c.attach(d, rc, gen, inSet); err != nil {
		return nil, err
	}
	return d, nil
}

// attach gives d its removal guard and the replica of rc that feeds it (the
// running one a reloaded block hands over when gen has it with the same
// settings), and serves at once what a running block serves for d, else
// inFile, d's snapshot from the snapshot file (nil for none).
func (c *Consul) attach(d *datacenter, rc replica.Config, gen *generation, inFile *snapshot.Snapshot) error {
	cfg := c.cfg
	if cfg.guardFraction > 0 {
		d.guard = newGuard(cfg.guardFraction, cfg.guardHold)
	}
	settings := settingsOf(cfg.client, rc, cfg.follow)
	running, same := gen.claim(d.key, &settings)
	if same {
		d.feed = running
	} else {
		var seed *snapshot.Set
		if c.persist != nil {
			seed = c.persist.file
		}
		f, err := newFeed(cfg.client, rc, settings, d, c.pool, seed)
		if err != nil {
			return err
		}
		f.predecessor = running
		d.feed = f
	}
	if snap := live.snapshot(d.key); snap != nil {
		d.start(snap)
	} else if inFile != nil {
		// Served, but no baseline for the guard: the file may come from
		// another cluster, or from before a deliberate shrink, and would
		// then hold Consul's true data back for the hold time.
		d.serve(inFile)
	}
	return nil
}
