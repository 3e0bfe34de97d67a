package consul

import (
	"errors"
	"io/fs"
	"strconv"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
)

// scalar is a property of one value, which arg reads and set stores.
func scalar[T any](arg func(c *caddy.Controller) (T, error), set func(cfg *config, v T)) property {
	return func(c *caddy.Controller, cfg *config) error {
		v, err := arg(c)
		if err != nil {
			return err
		}
		set(cfg, v)
		return nil
	}
}

// word is a property of one word.
func word(set func(cfg *config, v string)) property { return scalar(oneArg, set) }

// oneArg reads the one argument of the property c is at.
func oneArg(c *caddy.Controller) (string, error) {
	name := c.Val()
	args := c.RemainingArgs()
	if len(args) != 1 {
		return "", c.Errf("%s takes exactly one argument", name)
	}
	return args[0], nil
}

// either reads one argument that must be a or b.
func either(a, b string) func(c *caddy.Controller) (string, error) {
	return func(c *caddy.Controller) (string, error) {
		name := c.Val()
		arg, err := oneArg(c)
		if err == nil && arg != a && arg != b {
			err = c.Errf("%s: %q is not %s or %s", name, arg, a, b)
		}
		return arg, err
	}
}

// durationArg reads one positive duration.
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

// upTo reads one whole number from 0 to limit.
func upTo(limit uint64) func(c *caddy.Controller) (int, error) {
	return func(c *caddy.Controller) (int, error) {
		name := c.Val()
		arg, err := oneArg(c)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(arg, 10, 64)
		if err != nil || n > limit {
			return 0, c.Errf("%s: %q is not a number from 0 to %d", name, arg, limit)
		}
		return int(n), nil
	}
}

// ttlArg reads one TTL.
func ttlArg(c *caddy.Controller) (uint32, error) {
	name := c.Val()
	arg, err := oneArg(c)
	if err != nil {
		return 0, err
	}
	return parseTTL(c, name, arg)
}

// parseTTL reads a TTL given as a duration ("30s", "5m") or in seconds.
func parseTTL(c *caddy.Controller, name, arg string) (uint32, error) {
	if n, err := strconv.ParseUint(arg, 10, 31); err == nil {
		return uint32(n), nil
	}
	d, err := time.ParseDuration(arg)
	if err != nil || d < 0 || d > (1<<31-1)*time.Second {
		return 0, c.Errf("%s: %q is not a duration", name, arg)
	}
	return uint32(d / time.Second), nil
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

// zones are the block's arguments, or else the server block's zones. A root
// server block (". { consul }") serves the consul. zone, not every name:
// given is false then, and the agent's domain may take its place.
func zones(c *caddy.Controller) (zones []string, given bool) {
	args := c.RemainingArgs()
	given = true
	if len(args) == 0 {
		args = plugin.OriginsFromArgsOrServerBlock(nil, c.ServerBlockKeys)
		if len(args) == 1 && args[0] == "." {
			args, given = []string{"consul."}, false
		}
	}
	return plugin.OriginsFromArgsOrServerBlock(args, c.ServerBlockKeys), given
}

// readable checks that path is a file the replica can read its token or
// TLS material from, and returns the bare reason (the caller names the
// file) when it is not.
func readable(path string) error {
	_, err := replica.ReadCredentialFile(path)
	return err
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
