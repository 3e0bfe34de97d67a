package consul

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/hashicorp/consul/api"
)

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
	// peers are the cluster peers whose imported services are replicated,
	// lower case; everyPeer replicates every peering Consul lists.
	peers     []string
	everyPeer bool

	snapshotPath     string
	snapshotAt       string // "FILE:LINE" of the snapshot option, for errors found at start-up
	snapshotInterval time.Duration
	startupTimeout   time.Duration
	maxStale         time.Duration
	staleTTL         time.Duration
	guardFraction    float64
	guardHold        time.Duration

	// warnings are logged when the block is set up: what is insecure in
	// how Consul is reached.
	warnings []string

	// agentDNS follows the agent's dns_config, domain and alt_domain
	// (agent_dns on|off) where the Corefile says nothing: given names the
	// properties the Corefile sets, zonesGiven whether it names the zones.
	agentDNS   bool
	given      map[string]bool
	zonesGiven bool

	// tier serves the block's replica to followers (tier_listen); follow
	// makes the block a follower of tiers instead of a replica of Consul
	// (followAt is its line). Nil when not set.
	tier     *tierSettings
	follow   *followSettings
	followAt string
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
//	    peers NAME...|*
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
//	    agent_dns on|off
//	    fallthrough [ZONES...]
//	    snapshot PATH [INTERVAL]
//	    startup_timeout DURATION
//	    max_stale DURATION
//	    stale_ttl DURATION
//	    guard FRACTION DURATION
//	    inspect ADDRESS
//	    tier_listen ADDRESS
//	    tier_token_file PATH
//	    tier_tls CERT KEY [CLIENT_CA]
//	    tier_no_auth
//	    tier_transfers N
//	    follow ADDRESS...
//	    follow_token_file PATH
//	    follow_tls CA [CERT KEY]
//	    node_name NAME
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
		agentDNS:         true,
		given:            make(map[string]bool),
	}
	envWarning := verifyFromEnvironment(cfg.client)
	blocks := 0
	for c.Next() {
		blocks++
		if blocks > 1 {
			return nil, plugin.ErrOnce
		}
		cfg.zones, cfg.zonesGiven = zones(c)
		for c.NextBlock() {
			if err := parseProperty(c, cfg); err != nil {
				return nil, err
			}
		}
	}
	if len(cfg.replica.Addresses) == 0 {
		cfg.replica.Addresses = []string{cfg.client.Address}
	}
	if err := checkTierAndFollow(cfg); err != nil {
		return nil, err
	}
	if cfg.follow != nil {
		return cfg, nil // Consul is not read: nothing in how it is reached to warn about
	}
	if envWarning != "" {
		cfg.warnings = append(cfg.warnings, envWarning)
	}
	cfg.warnings = append(cfg.warnings, insecureWarnings(cfg)...)
	return cfg, nil
}

// parseProperty reads the property c is at into cfg.
func parseProperty(c *caddy.Controller, cfg *config) error {
	name := c.Val()
	read, ok := properties[name]
	if !ok {
		return c.Errf("unknown property %q", name)
	}
	cfg.given[name] = true
	return read(c, cfg)
}

// property reads one property's arguments into cfg; c is at its name, so
// that errors name the property's line.
type property func(c *caddy.Controller, cfg *config) error

// properties are the block's properties by name, grouped by what they set.
var properties = map[string]property{
	// How Consul is reached.
	"address":         readAddress,
	"token":           word(func(cfg *config, v string) { cfg.client.Token = v }),
	"token_file":      readTokenFile,
	"tls":             readTLS,
	"tls_server_name": word(func(cfg *config, v string) { cfg.client.TLSConfig.Address = v }),

	// What the replica reads, and how.
	"datacenter": word(func(cfg *config, v string) {
		cfg.client.Datacenter = v
		cfg.replica.Datacenter = v
	}),
	"datacenters":  readDatacenters,
	"peers":        readPeers,
	"namespace":    word(func(cfg *config, v string) { cfg.replica.Namespace = v }),
	"partition":    word(func(cfg *config, v string) { cfg.replica.Partition = v }),
	"consistency":  readConsistency,
	"wait":         scalar(durationArg, func(cfg *config, d time.Duration) { cfg.replica.Wait = d }),
	"max_watchers": scalar(upTo(maxWatchersLimit), func(cfg *config, n int) { cfg.replica.MaxWatchers = n }),

	// What answers say.
	"service_ttl":    readServiceTTL,
	"node_ttl":       scalar(ttlArg, func(cfg *config, ttl uint32) { cfg.answer.TTL.Node = ttl }),
	"soa_min_ttl":    scalar(ttlArg, func(cfg *config, ttl uint32) { cfg.answer.SOAMinTTL = ttl }),
	"only_passing":   readOnlyPassing,
	"a_record_limit": scalar(upTo(1<<16), func(cfg *config, n int) { cfg.answer.ARecordLimit = n }),
	"node_meta_txt":  scalar(either("on", "off"), func(cfg *config, v string) { cfg.answer.NodeMetaTXT = v == "on" }),
	"srv_weights":    scalar(either("consul", "haproxy"), func(cfg *config, v string) { cfg.answer.HAProxyWeights = v == "haproxy" }),
	"agent_dns":      scalar(either("on", "off"), func(cfg *config, v string) { cfg.agentDNS = v == "on" }),
	"fallthrough": func(c *caddy.Controller, cfg *config) error {
		cfg.fall.SetZonesFromArgs(c.RemainingArgs())
		return nil
	},

	// The snapshot file, start-up and Consul outages.
	"snapshot":        readSnapshot,
	"startup_timeout": scalar(durationArg, func(cfg *config, d time.Duration) { cfg.startupTimeout = d }),
	"max_stale":       scalar(durationArg, func(cfg *config, d time.Duration) { cfg.maxStale = d }),
	"stale_ttl":       scalar(durationArg, func(cfg *config, d time.Duration) { cfg.staleTTL = d }),
	"guard":           readGuard,
	"inspect":         readInspect, // inspect.go

	// Tiers and followers (tierparse.go).
	"tier_listen":       readTierListen,
	"tier_token_file":   fileProperty(func(cfg *config, p string) { cfg.tierSettings().TokenFile = p }),
	"tier_tls":          readTierTLS,
	"tier_no_auth":      readTierNoAuth,
	"tier_transfers":    scalar(upTo(1024), func(cfg *config, n int) { cfg.tierSettings().Transfers = n }),
	"follow":            readFollow,
	"follow_token_file": fileProperty(func(cfg *config, p string) { cfg.followSettings().TokenFile = p }),
	"follow_tls":        readFollowTLS,
	"node_name":         word(func(cfg *config, v string) { cfg.followSettings().NodeName = v }),
}

func readAddress(c *caddy.Controller, cfg *config) error {
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
	return nil
}

func readTokenFile(c *caddy.Controller, cfg *config) error {
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
	return nil
}

// readTLS reads tls CA [CERT KEY]: verify Consul with CA, and present a
// client certificate when CERT and KEY are given.
func readTLS(c *caddy.Controller, cfg *config) error {
	args := c.RemainingArgs()
	if len(args) != 1 && len(args) != 3 {
		return c.Errf("tls takes CA, or CA CERT KEY")
	}
	// From the client's settings, so that a client certificate given in
	// CONSUL_CLIENT_CERT/CONSUL_CLIENT_KEY is kept (and checked) when the
	// Corefile names only the CA.
	files := cfg.client.TLSConfig
	files.CAFile = args[0]
	// A CA named in the Corefile is there to be verified against, whatever
	// CONSUL_HTTP_SSL_VERIFY says.
	files.InsecureSkipVerify = false
	if len(args) == 3 {
		files.CertFile, files.KeyFile = args[1], args[2]
	}
	// The Consul client reads these files only when setup builds it, after
	// the whole block is parsed: check them here so the error points to
	// this line.
	for _, f := range []struct{ what, path string }{{"CA", files.CAFile}, {"certificate", files.CertFile}, {"key", files.KeyFile}} {
		if f.path == "" {
			continue
		}
		if err := readable(f.path); err != nil {
			return c.Errf("tls: %s file %q: %v", f.what, f.path, err)
		}
	}
	// Readable is not enough: a file that is not PEM, or a key that does
	// not match its certificate, must fail here too.
	if _, err := api.SetupTLSConfig(&files); err != nil {
		// crypto/tls's own errors start with "tls: " already.
		return c.Errf("tls: %s", strings.TrimPrefix(err.Error(), "tls: "))
	}
	cfg.client.TLSConfig = files
	return nil
}

// readDatacenters reads datacenters NAME... | *: the datacenters answered
// from replicas of their own, besides the local one.
func readDatacenters(c *caddy.Controller, cfg *config) error {
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
	return nil
}

func readConsistency(c *caddy.Controller, cfg *config) error {
	arg, err := oneArg(c)
	if err != nil {
		return err
	}
	mode, err := replica.ParseConsistency(arg)
	if err != nil {
		return c.Err(err.Error())
	}
	cfg.replica.Consistency = mode
	return nil
}

// readServiceTTL reads service_ttl NAME|PREFIX*|* DURATION, as Consul's
// dns_config.service_ttl.
func readServiceTTL(c *caddy.Controller, cfg *config) error {
	args := c.RemainingArgs()
	if len(args) != 2 {
		return c.Errf("service_ttl takes a service name, PREFIX* or *, and a duration")
	}
	ttl, err := parseTTL(c, "service_ttl", args[1])
	if err != nil {
		return err
	}
	if err := cfg.answer.TTL.SetService(args[0], ttl); err != nil {
		return c.Err(err.Error())
	}
	return nil
}

func readOnlyPassing(c *caddy.Controller, cfg *config) error {
	if len(c.RemainingArgs()) != 0 {
		return c.Errf("only_passing takes no arguments")
	}
	cfg.answer.OnlyPassing = true
	return nil
}

// readSnapshot reads snapshot PATH [INTERVAL].
func readSnapshot(c *caddy.Controller, cfg *config) error {
	args := c.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return c.Errf("snapshot takes a file path and optionally the least interval between writes")
	}
	cfg.snapshotPath = args[0]
	cfg.snapshotAt = fmt.Sprintf("%s:%d", c.File(), c.Line())
	// Only looked at, nothing opened or made: a path another user could
	// fill is refused here, at its line, rather than at every start.
	if err := snapshot.CheckPath(cfg.snapshotPath); err != nil {
		return c.Errf("snapshot: %v", err)
	}
	if len(args) == 2 {
		d, err := time.ParseDuration(args[1])
		if err != nil || d <= 0 {
			return c.Errf("snapshot: %q is not a positive duration", args[1])
		}
		cfg.snapshotInterval = d
	}
	return nil
}

// readGuard reads guard FRACTION DURATION: hold back a snapshot that would
// remove more than FRACTION of the instances until the drop lasts DURATION.
func readGuard(c *caddy.Controller, cfg *config) error {
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
	return nil
}

// maxWatchersLimit bounds max_watchers: each watcher costs a goroutine and a
// view in the Consul agent, and HTTPSWatchers is already 8192. 0 is valid:
// no service gets a blocking query of its own, the detectors and sweeps keep
// every service current.
const maxWatchersLimit = 100000
