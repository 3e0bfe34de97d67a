package consul

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
)

var log = clog.NewWithPlugin(pluginName)

// Version is the plugin's version, stamped at build time with
// -ldflags "-X github.com/coredns-consul/coredns-consul/plugin/consul.Version=...".
var Version = "dev"

func init() { plugin.Register(pluginName, setup) }

func setup(c *caddy.Controller) error {
	cfg, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	for _, w := range cfg.warnings {
		log.Warning(w)
	}
	h, err := newConsul(cfg, generationOf(c))
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	c.OnStartup(h.startup)
	c.OnShutdown(h.shutdown)
	c.OnRestartFailed(h.restartFailed)

	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		h.Next = next
		return h
	})
	return nil
}

// newConsul builds the handler of one block and its datacenters, each with
// its replica made, or found running in the block this one reloads; nothing
// starts before startup.
func newConsul(cfg *config, gen *generation) (*Consul, error) {
	c := &Consul{Zones: cfg.zones, Fall: cfg.fall, opts: cfg.answer, maxStale: cfg.maxStale, staleTTL: cfg.staleTTL, cfg: cfg, gen: gen}
	// One pool per agent and replicated set, kept across reloads: while a
	// reloaded block's new replicas sync, its predecessor's still hold
	// their watchers, and both must fit the agent's limit together.
	c.pool = gen.pool(cfg.replicaKey())
	file, err := c.openSnapshotFile()
	if err != nil {
		return nil, fmt.Errorf("%s - snapshot: %w", cfg.snapshotAt, err)
	}
	// An error from here on comes from the CONSUL_* environment: what the
	// Corefile says was checked at its lines.
	if c.local, err = c.newDatacenter("", gen, file); err != nil {
		return nil, err
	}
	c.want, c.every = cfg.datacenters, cfg.everyDatacenter
	c.newRemote = func(dc string) (*datacenter, error) { return c.newDatacenter(dc, nil, nil) }
	c.loadLists(file)
	c.fileAgentDNS = agentDNSOfFile(file)
	for _, dc := range c.firstRemotes(file) {
		d, err := c.newDatacenter(dc, gen, file)
		if err != nil {
			return nil, err
		}
		c.addRemoteLocked(d)
	}
	if err := c.setupPeers(gen, file); err != nil {
		return nil, err
	}
	return c, nil
}

// openSnapshotFile makes the block's persister and reads the snapshot file
// the plugin answers from until Consul has been read; nil without one.
func (c *Consul) openSnapshotFile() (*snapshot.Set, error) {
	cfg := c.cfg
	if cfg.snapshotPath == "" {
		return nil, nil
	}
	// Here and not in parse: parse must not touch the file system (the
	// fuzzer runs it), and a directory that cannot be written would
	// otherwise fail every write after start-up.
	if err := prepareSnapshotDir(cfg.snapshotPath); err != nil {
		return nil, err
	}
	c.persist = newPersister(cfg.snapshotPath, cfg.snapshotInterval, c.collect)
	file := loadSnapshot(cfg.snapshotPath, cfg.replica.Datacenter)
	if file != nil {
		c.persist.loaded(file)
	}
	return file, nil
}

// loadLists starts c with the datacenter lists of the block it reloads,
// else those of the snapshot file.
func (c *Consul) loadLists(file *snapshot.Set) {
	if b := live.localOf(c.local.key); b != nil && b.known.Load() != nil {
		c.known.Store(b.known.Load())
		c.byDistance.Store(b.byDistance.Load())
		return
	}
	if file == nil || file.Known == nil {
		return
	}
	// The file is checked as Consul's answers are: it may have been
	// written by a Consul that listed anything.
	known := make(map[string]bool, len(file.Known))
	for _, dc := range c.admit(file.Known) {
		known[dc] = true
	}
	c.known.Store(&known)
	if near := c.admit(file.ByDistance); near != nil {
		c.byDistance.Store(&near)
	}
}

// firstRemotes are the other datacenters replicated from the start, which
// answer at once from the snapshot file or the reloaded block: those the
// Corefile lists and, with every, those the file holds and those the
// reloaded block replicates (whose replicas it hands over). Unless the local
// datacenter's name is not known yet (no file, no datacenter, no reloaded
// block): one of the names may be it, and they are made once the local
// replica has read the agent.
func (c *Consul) firstRemotes(file *snapshot.Set) []string {
	local := c.localName()
	if file != nil && c.local.view.Load() == nil {
		local = file.Local
	}
	var names []string
	if local != "" {
		names = slices.Clone(c.want)
	}
	if c.every {
		if file != nil {
			var held []string
			for _, snap := range file.Datacenters {
				held = append(held, snap.Datacenter)
			}
			held = c.admit(held)
			names = append(names, held[:min(len(held), maxReplicated)]...)
		}
		if b := live.localOf(c.local.key); b != nil {
			for _, d := range b.remotes() {
				names = append(names, d.name)
			}
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return slices.DeleteFunc(names, func(dc string) bool { return dc == local })
}

// startup starts the block: the replicas it made start, those it takes over
// feed it from now on, and it waits up to startup_timeout for a snapshot to
// answer from.
func (c *Consul) startup() error {
	kept := ""
	if c.local.feed.handedOver(c.local) {
		kept = ", with the running replica"
	}
	if f := c.cfg.follow; f != nil {
		log.Infof("version %s following the tiers %v for zones %v%s", Version, f.Addresses, c.cfg.zones, kept)
	} else {
		log.Infof("version %s replicating from %v for zones %v%s", Version, c.cfg.replica.Addresses, c.cfg.zones, kept)
	}
	c.gen.started()
	if c.persist != nil {
		c.persist.start()
		// What the reloaded block served is this block's to write now.
		c.persist.offer()
	}
	if !c.local.feed.serve(c.local) {
		// Only its owner stops a replica, and the block that owns the one
		// taken over shuts down after this one has started. Failing here
		// fails the reload, and the old block runs on.
		return plugin.Error(pluginName, errors.New("the local replica to take over was stopped"))
	}
	// A replica taken over read the agent before this block was made;
	// else the snapshot file says what the agent said last.
	if a := c.local.feed.agentDNSOf(); a != nil {
		c.agentDNSRead(*a)
	} else if c.fileAgentDNS != nil {
		c.agentDNSRead(*c.fileAgentDNS)
	}
	c.startRemotes()
	c.startPeers()
	if c.cfg.tier != nil {
		// Fails only when the address cannot be listened on: the reload
		// fails, and the old block serves on.
		if err := c.serveTier(c.cfg.tier); err != nil {
			return plugin.Error(pluginName, err)
		}
	}
	live.join(c)
	c.waitReady(c.cfg.startupTimeout)
	return nil
}

// shutdown stops the block, also on a reload once the new blocks have
// started: what it handed over to them runs on.
func (c *Consul) shutdown() error {
	live.leave(c)
	c.leaveTier()
	// A block that handed its replica over has no newer snapshot to write
	// than the block it handed it to: its last write would only race the
	// new block's.
	c.stop(!c.local.feed.handedOver(c.local))
	return nil
}

// stop stops the replicas c did not hand over, and its snapshot file;
// writeLast writes what it serves first.
func (c *Consul) stop(writeLast bool) {
	c.stopRemotes()
	c.stopPeers()
	c.local.stop()
	if c.persist != nil {
		c.persist.close(writeLast)
	}
}

// restartFailed runs when a reload fails: this block's instance runs on.
func (c *Consul) restartFailed() error {
	live.rollback(c.gen)
	if c.cfg != nil && c.cfg.tier != nil {
		if err := c.serveTier(c.cfg.tier); err != nil {
			log.Errorf("serving followers again after the failed reload: %v", err)
		}
	}
	return nil
}

// replicaKey names what a replica replicates: blocks with equal keys hold
// the same data.
func (cfg *config) replicaKey() string {
	if cfg.follow != nil {
		return "follow|" + cfg.follow.key()
	}
	r := cfg.replica
	return strings.Join([]string{strings.Join(r.Addresses, ","), r.Datacenter, r.Namespace, r.Partition}, "|")
}

// dcLabel is the datacenter label of the block's metrics.
func (cfg *config) dcLabel() string {
	if cfg.replica.Datacenter != "" {
		return cfg.replica.Datacenter
	}
	return "local"
}

// share is how many replicas read through the agent: one per datacenter.
// With every, the count is not known before Consul is read: the budget is
// sized for everyShare.
func (cfg *config) share() int {
	if cfg.everyDatacenter {
		return everyShare
	}
	return 1 + len(cfg.datacenters) + cfg.peerShare()
}

// everyShare is the number of datacenters the watcher budget is split
// between with "datacenters *" (max_watchers sizes it by hand).
const everyShare = 4

// localServed hears of every snapshot the local datacenter serves.
func (c *Consul) localServed() {
	c.offer()
	// The first snapshot names the local datacenter: one of those the
	// Corefile lists may be it. Not under the local publishMu.
	c.namedOnce.Do(func() { go c.localNamed() })
}

// remoteServed hears of every snapshot another datacenter serves.
func (c *Consul) remoteServed() {
	c.offer()
}
