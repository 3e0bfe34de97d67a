package replica

import (
	"strings"
	"sync"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// invalids hears of the values in Consul's answers that the replica skipped:
// a null where an object belongs, which no Consul sends but a broken proxy,
// a man in the middle on plain HTTP or a buggy agent may. Each kind is
// logged once: the same bad answer comes back on every read.
type invalids struct {
	observer Observer
	logged   sync.Map // what → true once logged
}

// note reports n skipped values of one kind; nothing when n is 0.
func (v *invalids) note(what string, n int) {
	if v == nil || n == 0 {
		return
	}
	if _, seen := v.logged.LoadOrStore(what, true); !seen {
		log.Warningf("consul answered with %d null %s, skipped (later ones are only counted): something between CoreDNS and Consul is broken", n, what)
	}
	if v.observer != nil {
		v.observer.Invalid(what, n)
	}
}

// The kinds of value skipped, as the metric labels them.
const (
	invalidEntry      = "service_entry"
	invalidCheck      = "check"
	invalidNode       = "node"
	invalidQuery      = "query"
	invalidCoordinate = "coordinate"
	invalidSummary    = "summary"
	invalidDatacenter = "datacenter"
	invalidPeering    = "peering"
)

// convertAll converts every element of list but the nulls, and returns how
// many it skipped.
func convertAll[T, U any](list []*T, convert func(*T) U) ([]U, int) {
	out := make([]U, 0, len(list))
	for _, v := range list {
		if v != nil {
			out = append(out, convert(v))
		}
	}
	return out, len(list) - len(out)
}

func convertNodes(list []*api.Node) ([]*snapshot.Node, int) { return convertAll(list, buildNode) }

func convertQueries(list []*api.PreparedQueryDefinition) ([]*snapshot.Query, int) {
	return convertAll(list, convertQuery)
}

func convertChecks(list api.HealthChecks) ([]Check, int) {
	return convertAll(list, func(c *api.HealthCheck) Check {
		return Check{Node: c.Node, ID: c.CheckID, Status: c.Status, Service: c.ServiceName}
	})
}

// convertCoordinates converts the coordinates, skipping nulls. An entry
// without a coordinate is Consul's own (a node that has none yet), not
// counted.
func convertCoordinates(list []*api.CoordinateEntry) ([]*snapshot.Coordinate, int) {
	coords := make([]*snapshot.Coordinate, 0, len(list))
	bad := 0
	for _, e := range list {
		switch {
		case e == nil:
			bad++
		case e.Coord != nil:
			coords = append(coords, &snapshot.Coordinate{Node: e.Node, Segment: e.Segment, Coord: e.Coord})
		}
	}
	return coords, bad
}

// convertSummaries converts the services' summaries, skipping those without
// a name (a null decodes to an empty summary).
func convertSummaries(list []uiSummary) ([]Summary, int) {
	out := make([]Summary, 0, len(list))
	for _, u := range list {
		if u.Name != "" {
			out = append(out, Summary{Name: u.Name, Tags: u.Tags, Nodes: u.Nodes, Instances: u.InstanceCount,
				Passing: u.ChecksPassing, Warning: u.ChecksWarning, Critical: u.ChecksCritical, Peer: u.PeerName})
		}
	}
	return out, len(list) - len(out)
}

// cleanDatacenters lower-cases the datacenter names in place and drops the
// empty ones (a null decodes to ""); it returns how many it dropped.
func cleanDatacenters(dcs []string) ([]string, int) {
	out := dcs[:0]
	for _, dc := range dcs {
		if dc != "" {
			out = append(out, strings.ToLower(dc))
		}
	}
	return out, len(dcs) - len(out)
}
