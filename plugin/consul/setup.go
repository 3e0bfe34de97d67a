package consul

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/hashicorp/consul/api"
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
	h := &Consul{Zones: cfg.zones, Fall: cfg.fall, opts: cfg.answer, maxStale: cfg.maxStale, staleTTL: cfg.staleTTL}
	// One pool per agent and replicated set, kept across reloads: while a
	// reloaded block's replicas sync, its predecessor's still hold their
	// watchers, and both must fit the agent's limit together.
	pool, _ := pools.LoadOrStore(cfg.replicaKey(), replica.NewPool())
	h.pool = pool.(*replica.Pool)
	if cfg.snapshotPath != "" {
		// Here and not in parse: parse must not touch the file system
		// (the fuzzer runs it), and a directory that cannot be written
		// would otherwise fail every write after start-up.
		if err := prepareSnapshotDir(cfg.snapshotPath); err != nil {
			return plugin.Error(pluginName, fmt.Errorf("%s - snapshot: %w", cfg.snapshotAt, err))
		}
		h.persist = newPersister(cfg.snapshotPath, cfg.snapshotInterval, h.collect)
	}
	h.local, err = cfg.newDatacenter(h, "")
	if err != nil {
		// What the Corefile says was checked at its lines: this comes from
		// the CONSUL_* environment, which has no line to point to.
		return plugin.Error(pluginName, err)
	}
	h.want, h.every = cfg.datacenters, cfg.everyDatacenter
	h.newRemote = func(name string) (*datacenter, error) {
		d, err := cfg.newDatacenter(h, name)
		if err == nil {
			// A datacenter "*" found again after a reload answers from
			// the previous block's snapshot until it has synced.
			if snap := cfg.lastSnapshot(d.key, nil, name); snap != nil {
				d.start(snap)
			}
		}
		return d, err
	}

	// On reload the new instance starts serving before the old one stops:
	// it answers from the old instance's snapshots until its own replicas
	// have synced, instead of SERVFAIL. On a start, the snapshot file does
	// that.
	var file *snapshot.Set
	if h.persist != nil {
		if file = loadSnapshot(cfg.snapshotPath, cfg.replica.Datacenter); file != nil {
			h.persist.loaded(file)
		}
	}
	localName := snapshot.Key(cfg.replica.Datacenter)
	if file != nil {
		localName = file.Local
	}
	if snap := cfg.lastSnapshot(h.local.key, file, localName); snap != nil {
		h.local.start(snap)
		localName = snap.Datacenter
	}
	if last, ok := lastDatacenters.Load(h.local.key); ok {
		lists := last.(datacenterLists)
		h.known.Store(&lists.known)
		if lists.byDistance != nil {
			h.byDistance.Store(&lists.byDistance)
		}
	} else if file != nil && file.Known != nil {
		known := make(map[string]bool, len(file.Known))
		for _, dc := range file.Known {
			known[dc] = true
		}
		h.known.Store(&known)
		if file.ByDistance != nil {
			h.byDistance.Store(&file.ByDistance)
		}
	}
	// The other datacenters the file holds or the Corefile names answer
	// from the file at once too, before the local replica has said which
	// datacenters Consul knows. Unless the local datacenter's name is not
	// known yet (no file, no datacenter): one of the names may be it, and
	// they are made once the local replica has read the agent.
	var remotes []string
	if localName != "" {
		remotes = slices.Clone(cfg.datacenters)
	}
	if cfg.everyDatacenter && file != nil {
		for _, snap := range file.Datacenters {
			remotes = append(remotes, snap.Datacenter)
		}
	}
	for _, dc := range remotes {
		if dc == localName || h.remote.Load() != nil && (*h.remote.Load())[dc] != nil {
			continue
		}
		d, err := cfg.newDatacenter(h, dc)
		if err != nil {
			return plugin.Error(pluginName, err)
		}
		if snap := cfg.lastSnapshot(d.key, file, dc); snap != nil {
			d.start(snap)
		}
		h.addRemoteLocked(d)
	}

	c.OnStartup(func() error {
		log.Infof("version %s replicating from %v for zones %v", Version, cfg.replica.Addresses, cfg.zones)
		if h.persist != nil {
			h.persist.start()
		}
		h.local.replica.Start()
		h.startRemotes()
		h.waitReady(cfg.startupTimeout)
		return nil
	})
	// OnShutdown also runs on reload, after the new instance started: the
	// old replicas' goroutines and connections must go with them.
	c.OnShutdown(func() error {
		h.stopRemotes()
		h.local.stop()
		if h.persist != nil {
			h.persist.close()
		}
		return nil
	})

	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		h.Next = next
		return h
	})
	return nil
}

// newDatacenter makes the datacenter that replicates dc for h, with a replica
// not yet started; "" is the local one.
func (cfg *config) newDatacenter(h *Consul, dc string) (*datacenter, error) {
	d := &datacenter{name: dc, label: dc, key: cfg.replicaKey(), zones: cfg.zones, opts: cfg.answer}
	rc := cfg.replica
	rc.Share = cfg.share()
	if rc.Share > 1 {
		rc.Pool = h.pool
	}
	if dc == "" {
		d.name = snapshot.Key(rc.Datacenter)
		d.label = cfg.dcLabel()
		d.served = h.localServed
		rc.OnDatacenters = h.datacentersRead
		rc.Coordinates = true
	} else {
		rc.Datacenter = dc
		d.key += "|" + dc
		d.served = h.remoteServed
	}
	if cfg.guardFraction > 0 {
		d.guard = &guard{fraction: cfg.guardFraction, hold: cfg.guardHold}
	}
	rc.Observer = observer{dc: d.label}
	r, err := replica.New(cfg.client, rc, d.publish)
	if err != nil {
		return nil, err
	}
	d.replica = r
	return d, nil
}

// lastSnapshot is what a datacenter starts from: its snapshot in the block
// this one reloads, else in the snapshot file; nil for none.
func (cfg *config) lastSnapshot(key string, file *snapshot.Set, dc string) *snapshot.Snapshot {
	if snap, ok := lastSnapshots.Load(key); ok {
		return snap.(*snapshot.Snapshot)
	}
	if file == nil {
		return nil
	}
	return file.Snapshot(dc)
}

// share is how many replicas read through the agent: one per datacenter.
// With every, the count is not known before Consul is read: the budget is
// sized for everyShare.
func (cfg *config) share() int {
	if cfg.everyDatacenter {
		return everyShare
	}
	return 1 + len(cfg.datacenters)
}

// everyShare is the number of datacenters the watcher budget is split
// between with "datacenters *" (max_watchers sizes it by hand).
const everyShare = 4

// localServed hears of every snapshot the local datacenter serves.
func (c *Consul) localServed() {
	if c.persist != nil {
		c.persist.offer()
	}
	// The first snapshot names the local datacenter: one of those the
	// Corefile lists may be it. Not under the local publishMu.
	c.namedOnce.Do(func() { go c.localNamed() })
}

// remoteServed hears of every snapshot another datacenter serves.
func (c *Consul) remoteServed() {
	if c.persist != nil {
		c.persist.offer()
	}
}

// waitReady holds start-up until a snapshot can answer or timeout passes,
// as CoreDNS's kubernetes plugin does, so that the first queries after a
// start are not SERVFAIL when Consul answers quickly. The other replicated
// datacenters get the same time: they do not make the plugin ready, but
// their names answer SERVFAIL until they have synced.
func (c *Consul) waitReady(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for !c.Ready() {
		if time.Now().After(deadline) {
			log.Warningf("no complete snapshot after %s; answering SERVFAIL until Consul has been read", timeout)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, dc := range c.want {
		for {
			d := c.remoteNamed(dc) // made once the local datacenter was named
			if dc == c.localName() || d != nil && d.view.Load() != nil || c.known.Load() != nil && !c.knows(dc, false) {
				break
			}
			if time.Now().After(deadline) {
				log.Warningf("datacenter %s: no complete snapshot after %s; its names answer SERVFAIL until it has been read", dc, timeout)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// lastSnapshots holds the latest snapshot of each replicated datacenter, by
// replicaKey, so that a reloaded server block starts with it.
var lastSnapshots sync.Map

// pools holds the watcher budget pool of each replicaKey.
var pools sync.Map

// config is everything the Corefile says about one consul block.
type config struct {
	zones   []string
	client  *api.Config
	replica replica.Config
	answer  answer.Options
	fall    fall.F

	// datacenters are the other datacenters to replicate, lower case;
	// everyDatacenter replicates every one Consul knows.
	datacenters     []string
	everyDatacenter bool

	snapshotPath     string
	snapshotAt       string // "FILE:LINE" of the snapshot option, for errors found at start-up
	snapshotInterval time.Duration
	startupTimeout   time.Duration
	maxStale         time.Duration
	staleTTL         time.Duration
	guardFraction    float64
	guardHold        time.Duration
}

// dcLabel is the datacenter label of the block's metrics.
func (cfg *config) dcLabel() string {
	if cfg.replica.Datacenter != "" {
		return cfg.replica.Datacenter
	}
	return "local"
}

// parse reads one consul block:
//
//	consul [ZONES...] {
//	    address ADDRESS...
//	    token TOKEN
//	    token_file PATH
//	    tls CA [CERT KEY]
//	    tls_server_name NAME
//	    datacenter NAME
//	    datacenters NAME...|*
//	    namespace NAME
//	    partition NAME
//	    consistency stale|default|consistent
//	    wait DURATION
//	    max_watchers N
//	    service_ttl NAME|PREFIX*|* DURATION
//	    node_ttl DURATION
//	    soa_min_ttl DURATION
//	    only_passing
//	    a_record_limit N
//	    node_meta_txt on|off
//	    srv_weights consul|haproxy
//	    fallthrough [ZONES...]
//	    snapshot PATH [INTERVAL]
//	    startup_timeout DURATION
//	    max_stale DURATION
//	    stale_ttl DURATION
//	    guard FRACTION DURATION
//	}
func parse(c *caddy.Controller) (*config, error) {
	cfg := &config{
		// DefaultConfig reads CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_CACERT
		// and the other variables Consul's own tools read.
		client:  api.DefaultConfig(),
		replica: replica.DefaultConfig(),
		answer:  answer.DefaultOptions(),

		snapshotInterval: 10 * time.Second,
		startupTimeout:   5 * time.Second,
	}
	blocks := 0
	for c.Next() {
		blocks++
		if blocks > 1 {
			return nil, plugin.ErrOnce
		}
		cfg.zones = zones(c)
		for c.NextBlock() {
			if err := parseProperty(c, cfg); err != nil {
				return nil, err
			}
		}
	}
	if len(cfg.replica.Addresses) == 0 {
		cfg.replica.Addresses = []string{cfg.client.Address}
	}
	return cfg, nil
}

// replicaKey names what a replica replicates: blocks with equal keys hold
// the same data.
func (cfg *config) replicaKey() string {
	r := cfg.replica
	return strings.Join([]string{strings.Join(r.Addresses, ","), r.Datacenter, r.Namespace, r.Partition}, "|")
}

// stringProperties are the properties that take one word.
var stringProperties = map[string]func(*config, string){
	"token":           func(cfg *config, v string) { cfg.client.Token = v },
	"tls_server_name": func(cfg *config, v string) { cfg.client.TLSConfig.Address = v },
	"namespace":       func(cfg *config, v string) { cfg.replica.Namespace = v },
	"partition":       func(cfg *config, v string) { cfg.replica.Partition = v },
	"datacenter": func(cfg *config, v string) {
		cfg.client.Datacenter = v
		cfg.replica.Datacenter = v
	},
}

func parseProperty(c *caddy.Controller, cfg *config) error {
	if set, ok := stringProperties[c.Val()]; ok {
		v, err := oneArg(c)
		if err != nil {
			return err
		}
		set(cfg, v)
		return nil
	}
	switch c.Val() {
	case "token_file":
		path, err := oneArg(c)
		if err != nil {
			return err
		}
		// The Consul client reads the file when setup builds it, after the
		// whole block is parsed: check it here so the error points to this
		// line. Never the token itself in a message.
		if err := readable(path); err != nil {
			return c.Errf("token_file %q: %v", path, err)
		}
		cfg.client.TokenFile = path
	case "address":
		addrs := c.RemainingArgs()
		if len(addrs) == 0 {
			return c.Errf("address takes one or more addresses")
		}
		for _, a := range addrs {
			if scheme, _, ok := strings.Cut(a, "://"); ok && scheme != "http" && scheme != "https" && scheme != "unix" {
				return c.Errf("address %q: the scheme is not http, https or unix", a)
			}
		}
		cfg.replica.Addresses = addrs
	case "consistency":
		arg, err := oneArg(c)
		if err != nil {
			return err
		}
		mode, err := replica.ParseConsistency(arg)
		if err != nil {
			return c.Err(err.Error())
		}
		cfg.replica.Consistency = mode
	case "tls":
		// tls CA [CERT KEY]: verify Consul with CA, and present a client
		// certificate when CERT and KEY are given.
		args := c.RemainingArgs()
		if len(args) != 1 && len(args) != 3 {
			return c.Errf("tls takes CA, or CA CERT KEY")
		}
		// From the client's settings, so that a client certificate given in
		// CONSUL_CLIENT_CERT/CONSUL_CLIENT_KEY is kept (and checked) when
		// the Corefile names only the CA.
		files := cfg.client.TLSConfig
		files.CAFile = args[0]
		if len(args) == 3 {
			files.CertFile, files.KeyFile = args[1], args[2]
		}
		// The Consul client reads these files only when setup builds it,
		// after the whole block is parsed: check them here so the error
		// points to this line.
		for _, f := range []struct{ what, path string }{{"CA", files.CAFile}, {"certificate", files.CertFile}, {"key", files.KeyFile}} {
			if f.path == "" {
				continue
			}
			if err := readable(f.path); err != nil {
				return c.Errf("tls: %s file %q: %v", f.what, f.path, err)
			}
		}
		// Readable is not enough: a file that is not PEM, or a key that
		// does not match its certificate, must fail here too.
		if _, err := api.SetupTLSConfig(&files); err != nil {
			// crypto/tls's own errors start with "tls: " already.
			return c.Errf("tls: %s", strings.TrimPrefix(err.Error(), "tls: "))
		}
		cfg.client.TLSConfig = files
	case "datacenters":
		// datacenters NAME... | *: the datacenters answered from replicas
		// of their own, besides the local one.
		args := c.RemainingArgs()
		if len(args) == 0 {
			return c.Errf("datacenters takes one or more datacenter names, or *")
		}
		if len(cfg.datacenters) > 0 || cfg.everyDatacenter {
			return c.Errf("datacenters is given twice")
		}
		for _, dc := range args {
			switch {
			case dc == "*" && len(args) > 1:
				return c.Errf("datacenters: * stands for every datacenter and takes no names besides")
			case dc == "*":
				cfg.everyDatacenter = true
			case !validLabel(dc):
				return c.Errf("datacenters: %q is not a datacenter name (a DNS label)", dc)
			case !slices.Contains(cfg.datacenters, snapshot.Key(dc)):
				cfg.datacenters = append(cfg.datacenters, snapshot.Key(dc))
			}
		}
	case "max_watchers":
		// 0 is valid: no service gets a blocking query of its own, the
		// detectors and sweeps keep every service current.
		n, err := numberArg(c, maxWatchersLimit)
		if err != nil {
			return err
		}
		cfg.replica.MaxWatchers = int(n)
	case "wait":
		d, err := durationArg(c)
		if err != nil {
			return err
		}
		cfg.replica.Wait = d
	case "service_ttl":
		// service_ttl NAME|PREFIX*|* DURATION, as Consul's dns_config.service_ttl.
		args := c.RemainingArgs()
		if len(args) != 2 {
			return c.Errf("service_ttl takes a service name, PREFIX* or *, and a duration")
		}
		ttl, err := ttlArg(c, "service_ttl", args[1])
		if err != nil {
			return err
		}
		if err := cfg.answer.TTL.SetService(args[0], ttl); err != nil {
			return c.Err(err.Error())
		}
	case "node_ttl", "soa_min_ttl":
		name := c.Val()
		arg, err := oneArg(c)
		if err != nil {
			return err
		}
		ttl, err := ttlArg(c, name, arg)
		if err != nil {
			return err
		}
		if name == "node_ttl" {
			cfg.answer.TTL.Node = ttl
		} else {
			cfg.answer.SOAMinTTL = ttl
		}
	case "only_passing":
		if len(c.RemainingArgs()) != 0 {
			return c.Errf("only_passing takes no arguments")
		}
		cfg.answer.OnlyPassing = true
	case "node_meta_txt":
		arg, err := oneArg(c)
		if err != nil {
			return err
		}
		if arg != "on" && arg != "off" {
			return c.Errf("node_meta_txt: %q is not on or off", arg)
		}
		cfg.answer.NodeMetaTXT = arg == "on"
	case "srv_weights":
		arg, err := oneArg(c)
		if err != nil {
			return err
		}
		if arg != "consul" && arg != "haproxy" {
			return c.Errf("srv_weights: %q is not consul or haproxy", arg)
		}
		cfg.answer.HAProxyWeights = arg == "haproxy"
	case "a_record_limit":
		n, err := numberArg(c, 1<<16)
		if err != nil {
			return err
		}
		cfg.answer.ARecordLimit = int(n)
	case "fallthrough":
		cfg.fall.SetZonesFromArgs(c.RemainingArgs())
	case "snapshot":
		// snapshot PATH [INTERVAL]
		args := c.RemainingArgs()
		if len(args) < 1 || len(args) > 2 {
			return c.Errf("snapshot takes a file path and optionally the least interval between writes")
		}
		cfg.snapshotPath = args[0]
		cfg.snapshotAt = fmt.Sprintf("%s:%d", c.File(), c.Line())
		if len(args) == 2 {
			d, err := time.ParseDuration(args[1])
			if err != nil || d <= 0 {
				return c.Errf("snapshot: %q is not a positive duration", args[1])
			}
			cfg.snapshotInterval = d
		}
	case "startup_timeout":
		d, err := durationArg(c)
		if err != nil {
			return err
		}
		cfg.startupTimeout = d
	case "max_stale":
		d, err := durationArg(c)
		if err != nil {
			return err
		}
		cfg.maxStale = d
	case "stale_ttl":
		d, err := durationArg(c)
		if err != nil {
			return err
		}
		cfg.staleTTL = d
	case "guard":
		// guard FRACTION DURATION: hold back a snapshot that would remove
		// more than FRACTION of the instances until the drop lasts DURATION.
		args := c.RemainingArgs()
		if len(args) != 2 {
			return c.Errf("guard takes a fraction of instances (0 to 1) and a duration")
		}
		f, err := strconv.ParseFloat(args[0], 64)
		if err != nil || f <= 0 || f >= 1 {
			return c.Errf("guard: %q is not a fraction between 0 and 1", args[0])
		}
		d, err := time.ParseDuration(args[1])
		if err != nil || d <= 0 {
			return c.Errf("guard: %q is not a positive duration", args[1])
		}
		cfg.guardFraction, cfg.guardHold = f, d
	default:
		return c.Errf("unknown property %q", c.Val())
	}
	return nil
}

// validLabel reports whether s can be a datacenter's label in a DNS name.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// ttlArg reads a TTL given as a duration ("30s", "5m") or in seconds.
func ttlArg(c *caddy.Controller, name, arg string) (uint32, error) {
	if n, err := strconv.ParseUint(arg, 10, 31); err == nil {
		return uint32(n), nil
	}
	d, err := time.ParseDuration(arg)
	if err != nil || d < 0 || d > (1<<31-1)*time.Second {
		return 0, c.Errf("%s: %q is not a duration", name, arg)
	}
	return uint32(d / time.Second), nil
}

// maxWatchersLimit bounds max_watchers: each watcher costs a goroutine and a
// view in the Consul agent, and HTTPSWatchers is already 4096.
const maxWatchersLimit = 100000

// numberArg reads one whole number from 0 to limit.
func numberArg(c *caddy.Controller, limit uint64) (uint64, error) {
	name := c.Val()
	arg, err := oneArg(c)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(arg, 10, 64)
	if err != nil || n > limit {
		return 0, c.Errf("%s: %q is not a number from 0 to %d", name, arg, limit)
	}
	return n, nil
}

// zones are the block's arguments, or else the server block's zones. A root
// server block (". { consul }") serves the consul. zone, not every name.
func zones(c *caddy.Controller) []string {
	args := c.RemainingArgs()
	if len(args) == 0 {
		args = plugin.OriginsFromArgsOrServerBlock(nil, c.ServerBlockKeys)
		if len(args) == 1 && args[0] == "." {
			args = []string{"consul."}
		}
	}
	return plugin.OriginsFromArgsOrServerBlock(args, c.ServerBlockKeys)
}

func oneArg(c *caddy.Controller) (string, error) {
	name := c.Val()
	args := c.RemainingArgs()
	if len(args) != 1 {
		return "", c.Errf("%s takes exactly one argument", name)
	}
	return args[0], nil
}

func durationArg(c *caddy.Controller) (time.Duration, error) {
	name := c.Val()
	arg, err := oneArg(c)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(arg)
	if err != nil || d <= 0 {
		return 0, c.Errf("%s: %q is not a positive duration", name, arg)
	}
	return d, nil
}

// maxCredentialFile bounds the size of a CA, certificate, key or token file.
const maxCredentialFile = 1 << 20

// readable checks that path is a regular file this process may open, and
// returns the bare reason (the caller names the file) when it is not.
// It stats before opening, so that a FIFO or a device is never opened.
func readable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return bareErr(err)
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if fi.Size() > maxCredentialFile {
		// Certificates, keys and tokens are small; a huge file is a typo
		// (/proc/kcore reports terabytes) that must not be read whole.
		return fmt.Errorf("%d bytes, more than a certificate, key or token file holds", fi.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return bareErr(err)
	}
	return f.Close()
}

// bareErr strips the operation and path from a *fs.PathError, so a message
// that already names the file does not name it twice.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
