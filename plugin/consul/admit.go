package consul

import (
	"regexp"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// Consul's list of datacenters is trusted no more than any other answer:
// with `datacenters *` each name becomes a replica with its goroutines and
// connections, and a name becomes a DNS label. A list of 504 names (one of
// 300 bytes, one with a space) made 503 replicas.
const (
	// maxKnown bounds the datacenters remembered as known; past it the
	// rest are ignored. Federations run to tens of datacenters.
	maxKnown = 1024
	// maxReplicated bounds the other datacenters `datacenters *`
	// replicates: each costs a replica, its share of the agent's
	// connections and a snapshot in memory and on disk.
	maxReplicated = 64
)

// datacenterName is what Consul accepts as a datacenter's name
// (agent/config/builder.go, validateBasicName), and a DNS label's length.
var datacenterName = regexp.MustCompile(`^[a-z0-9_-]{1,63}$`)

// admit returns the datacenters of a list read from Consul that can be
// names: lower case, valid, at most maxKnown, in order. What it leaves out
// is logged once per block.
func (c *Consul) admit(dcs []string) []string {
	if dcs == nil {
		return nil
	}
	kept := make([]string, 0, len(dcs))
	var bad string
	for _, dc := range dcs {
		key := snapshot.Key(dc)
		if !datacenterName.MatchString(key) {
			bad = dc
			continue
		}
		if len(kept) == maxKnown {
			bad = dc
			break
		}
		kept = append(kept, key)
	}
	if bad != "" {
		c.refused.Do(func() {
			if len(bad) > 64 {
				bad = bad[:64] + "..."
			}
			log.Warningf("Consul's list of datacenters has names that cannot be DNS labels or more than %d names: ignoring them (such as %q)", maxKnown, bad)
		})
	}
	return kept
}

// boolOrder orders false before true.
func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
