package consul

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/coredns/caddy"
)

// The properties of tiers and followers (docs/follower.md):
//
//	tier_listen ADDRESS           serve what the block replicates to followers
//	tier_token_file PATH          the token followers must send
//	tier_tls CERT KEY [CLIENT_CA] HTTPS, and client certificates signed by CLIENT_CA
//	tier_no_auth                  serve followers without a token or client certificate
//	tier_transfers N              whole-state answers at a time (default 4)
//	follow ADDRESS...             read the tiers at ADDRESS... instead of Consul
//	follow_token_file PATH        the token sent to the tiers
//	follow_tls CA [CERT KEY]      HTTPS to the tiers, verified with CA; CERT KEY a client certificate
//	node_name NAME                the follower's node, for prepared queries' Near _agent
//
// They are in parse.go's properties, read by the functions below.

// tierSettings are the block's tier settings, made at the first tier_ line.
func (cfg *config) tierSettings() *tierSettings {
	if cfg.tier == nil {
		cfg.tier = &tierSettings{}
	}
	return cfg.tier
}

// followSettings are the block's follower settings, made at the first
// follow_ line.
func (cfg *config) followSettings() *followSettings {
	if cfg.follow == nil {
		cfg.follow = &followSettings{}
	}
	return cfg.follow
}

func readTierListen(c *caddy.Controller, cfg *config) error {
	addr, err := oneArg(c)
	if err != nil {
		return err
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return c.Errf("tier_listen %q: not HOST:PORT", addr)
	}
	s := cfg.tierSettings()
	s.Listen, s.at = addr, fmt.Sprintf("%s:%d", c.File(), c.Line())
	return nil
}

func readTierNoAuth(c *caddy.Controller, cfg *config) error {
	if len(c.RemainingArgs()) != 0 {
		return c.Errf("tier_no_auth takes no arguments")
	}
	cfg.tierSettings().NoAuth = true
	return nil
}

// readTierTLS reads tier_tls CERT KEY [CLIENT_CA].
func readTierTLS(c *caddy.Controller, cfg *config) error {
	args := c.RemainingArgs()
	if len(args) != 2 && len(args) != 3 {
		return c.Errf("tier_tls takes CERT KEY, or CERT KEY CLIENT_CA")
	}
	s := cfg.tierSettings()
	s.CertFile, s.KeyFile = args[0], args[1]
	if len(args) == 3 {
		s.ClientCAFile = args[2]
	}
	if _, err := serverTLS(s.CertFile, s.KeyFile, s.ClientCAFile); err != nil {
		return c.Errf("%v", err)
	}
	return nil
}

// readFollowTLS reads follow_tls CA [CERT KEY], as tls.
func readFollowTLS(c *caddy.Controller, cfg *config) error {
	args := c.RemainingArgs()
	if len(args) != 1 && len(args) != 3 {
		return c.Errf("follow_tls takes CA, or CA CERT KEY")
	}
	s := cfg.followSettings()
	s.CAFile = args[0]
	if len(args) == 3 {
		s.CertFile, s.KeyFile = args[1], args[2]
	}
	if _, err := clientTLS(s.CAFile, s.CertFile, s.KeyFile); err != nil {
		return c.Errf("%v", err)
	}
	return nil
}

func readFollow(c *caddy.Controller, cfg *config) error {
	addrs := c.RemainingArgs()
	if len(addrs) == 0 {
		return c.Errf("follow takes the addresses of two or more tiers")
	}
	for _, a := range addrs {
		hostport := a
		if scheme, rest, ok := strings.Cut(a, "://"); ok {
			if scheme != "http" && scheme != "https" {
				return c.Errf("follow %q: the scheme is not http or https", a)
			}
			hostport = rest
		}
		if _, port, err := net.SplitHostPort(hostport); err != nil || port == "" {
			return c.Errf("follow %q: not HOST:PORT", a)
		}
	}
	cfg.followSettings().Addresses = addrs
	cfg.followAt = fmt.Sprintf("%s:%d", c.File(), c.Line())
	return nil
}

// fileProperty reads a property naming a file that must be readable now
// (its contents are never shown).
func fileProperty(set func(cfg *config, path string)) property {
	return func(c *caddy.Controller, cfg *config) error {
		path, err := checkedFile(c)
		if err == nil {
			set(cfg, path)
		}
		return err
	}
}

func checkedFile(c *caddy.Controller) (string, error) {
	name := c.Val()
	path, err := oneArg(c)
	if err != nil {
		return "", err
	}
	if err := readable(path); err != nil {
		return "", c.Errf("%s %q: %v", name, path, err)
	}
	return path, nil
}

// consulOnly are the properties about reading Consul, which a follower
// does not do.
var consulOnly = []string{"address", "token", "token_file", "tls", "tls_server_name", "namespace", "partition",
	"consistency", "wait", "max_watchers"}

// checkTierAndFollow checks what only the whole block tells: a follower
// reads no Consul, a tier serves no one without authentication unless told
// to, and follow_ lines need a follow line.
func checkTierAndFollow(cfg *config) error {
	if s := cfg.tier; s != nil {
		switch {
		case s.Listen == "":
			return fmt.Errorf("tier_ properties without tier_listen")
		case !s.NoAuth && s.TokenFile == "" && s.ClientCAFile == "":
			return fmt.Errorf("%s - tier_listen %s: followers would read the catalog without authentication: "+
				"give tier_token_file, or tier_tls with a CLIENT_CA, or say tier_no_auth", s.at, s.Listen)
		}
	}
	f := cfg.follow
	if f == nil {
		return nil
	}
	if len(f.Addresses) == 0 {
		return fmt.Errorf("follow_ properties or node_name without follow")
	}
	for _, name := range consulOnly {
		if cfg.given[name] {
			return fmt.Errorf("%s - follow: a follower reads its tiers, not Consul; %s does not apply", cfg.followAt, name)
		}
	}
	if len(f.Addresses) == 1 {
		cfg.warnings = append(cfg.warnings, fmt.Sprintf("follow %s: one tier; with it down, changes stop until it is back (give two or more)", f.Addresses[0]))
	}
	if f.NodeName == "" {
		// What Consul's agent calls itself by default: prepared queries'
		// Near _agent then mean this host.
		f.NodeName, _ = os.Hostname()
	}
	return nil
}
