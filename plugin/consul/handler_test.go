package consul

// withLocal gives c a local datacenter that nothing replicates: tests publish
// its snapshots by hand.
func withLocal(c *Consul) *Consul {
	c.local = &datacenter{label: "local", zones: c.Zones, opts: c.opts}
	return c
}
