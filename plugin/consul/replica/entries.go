package replica

import (
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// ServiceFromEntries converts Consul's health entries for one service into
// the snapshot's form, exactly as the replica does, so that a tool comparing
// a snapshot with a live Consul (cmd/coredns-consul) sees the differences the
// plugin would, not those of a second conversion. Entries without their node
// or service, and null checks, are left out and counted in skipped.
func ServiceFromEntries(name string, entries []*api.ServiceEntry, index uint64) (svc *snapshot.Service, skipped int) {
	svc, badEntries, badChecks := buildService(name, entries, index)
	return svc, badEntries + badChecks
}
