package consul

import (
	"slices"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// The snapshot file records the cluster it was written in: a file copied
// from another cluster, or left behind when the agent was moved to another
// one, must not answer for this one, even when its datacenter has the same
// name. The file is read before Consul is, so its data is served until the
// local replica has read the cluster's identity, and no longer once it
// differs.

// clusterID is the identity of the cluster the local replica reads; "" until
// read, or when the cluster has none (Connect off).
func (c *Consul) clusterID() string {
	if c.local == nil || c.local.feed == nil {
		return ""
	}
	id, _ := c.local.feed.replica.Cluster()
	return id
}

// clusterRead passes the cluster's identity the local replica read on.
func (f *feed) clusterRead(id string) {
	f.mu.Lock()
	to := f.to
	f.mu.Unlock()
	to.cluster(id)
}

// clusterRead hears the cluster's identity: what is served from a snapshot
// file written in another cluster stops being served at once, and the
// next file written records the identity.
func (c *Consul) clusterRead(id string) {
	c.offerTier()
	if c.persist == nil {
		return
	}
	c.persist.offer()
	file := c.persist.file
	if file == nil || file.Cluster == "" || id == "" || file.Cluster == id {
		return // an older file, or a cluster without Connect: nothing to compare
	}
	log.Warningf("the snapshot file %s was written in cluster %s, and Consul answers for %s: its data is no longer served",
		c.persist.path, snapshot.Quote(file.Cluster), id)
	snapshotLoads.WithLabelValues("mismatch").Inc()
	for _, d := range c.all() {
		d.dropFile(file)
	}
}

// dropFile stops serving what d serves from file, if anything: until its
// replica publishes, d answers as before any snapshot (SERVFAIL).
func (d *datacenter) dropFile(file *snapshot.Set) {
	d.publishMu.Lock()
	defer d.publishMu.Unlock()
	if cur := d.current(); cur != nil && (slices.Contains(file.Datacenters, cur) || slices.Contains(file.Peers, cur)) {
		d.view.Store(nil)
	}
}
