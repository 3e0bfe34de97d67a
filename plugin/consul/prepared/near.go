package prepared

import (
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/serf/coordinate"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// NearNode is the node a query sorts its results around, from its rendered
// Near, as PreparedQuery.Execute picks it for a DNS request
// (agent/consul/prepared_query_endpoint.go:415-451; DNS never sets a source
// node of its own, agent/dns.go:1579-1613): "_agent" is the agent that
// received the question; "_ip" is the first node, in name order, whose
// address is the client's IP (the EDNS client subnet address when the
// question has one), or none; anything else is taken as a node name. "" means
// no sorting.
func (s *Set) NearNode(near, agentNode, sourceIP string) string {
	switch near {
	case "_agent":
		return agentNode
	case "_ip":
		if sourceIP == "" {
			return ""
		}
		s.addrsOnce.Do(s.indexAddresses)
		return s.addrs[sourceIP]
	}
	return near
}

func (s *Set) indexAddresses() {
	s.addrs = make(map[string]string, len(s.snap.Nodes))
	// Consul scans its nodes table, ordered by lower-cased name, and keeps
	// the first match.
	for _, key := range slices.Sorted(maps.Keys(s.snap.Nodes)) {
		n := s.snap.Nodes[key]
		if n == nil {
			continue
		}
		if _, seen := s.addrs[n.Address]; !seen {
			s.addrs[n.Address] = n.Name
		}
	}
}

func (s *Set) indexCoordinates() {
	s.coords = make(map[string]coordinateSet)
	for _, c := range s.snap.Coordinates {
		// Consul's coordinate index is lower-cased
		// (agent/consul/state/coordinate.go:30-38, query.go:66-70).
		key := strings.ToLower(c.Node)
		cs := s.coords[key]
		if cs == nil {
			cs = make(coordinateSet)
			s.coords[key] = cs
		}
		cs[c.Segment] = c.Coord
	}
}

// SortNear orders instances (already shuffled) around node, in place, as
// Consul does after a local execution (prepared_query_endpoint.go:453-474):
// nothing happens unless node is set and the agent is in this set's
// datacenter (coordinates do not compare across datacenters,
// agent/consul/rtt.go:204-207). When the node has a coordinate, a stable sort
// by estimated RTT puts the nearest first, and instances on nodes without a
// coordinate keep their shuffled order at the end (rtt.go:196-224). Then,
// coordinates or not, an instance on node itself, if among the first ten, is
// swapped to the front.
func (s *Set) SortNear(instances []*snapshot.Instance, node, agentDatacenter string) {
	if node == "" || !strings.EqualFold(agentDatacenter, s.snap.Datacenter) {
		return
	}
	s.coordsOnce.Do(s.indexCoordinates)
	if source := s.coords[strings.ToLower(node)]; len(source) > 0 {
		dist := make([]float64, len(instances))
		for i, inst := range instances {
			a, b := source.intersect(s.coords[strings.ToLower(inst.Node)])
			dist[i] = computeDistance(a, b)
		}
		sort.Stable(byDistance{instances, dist})
	}
	for i, inst := range instances {
		if strings.EqualFold(inst.Node, node) {
			instances[0], instances[i] = instances[i], instances[0]
			break
		}
		if i == 9 {
			break
		}
	}
}

type byDistance struct {
	instances []*snapshot.Instance
	dist      []float64
}

func (b byDistance) Len() int           { return len(b.instances) }
func (b byDistance) Less(i, j int) bool { return b.dist[i] < b.dist[j] }
func (b byDistance) Swap(i, j int) {
	b.instances[i], b.instances[j] = b.instances[j], b.instances[i]
	b.dist[i], b.dist[j] = b.dist[j], b.dist[i]
}

// intersect is librtt.CoordinateSet.Intersect
// (internal/gossip/librtt/rtt.go): the default segment, unless either side
// is in a single segment (a client), which then wins, the other side's
// single segment last.
func (cs coordinateSet) intersect(other coordinateSet) (*coordinate.Coordinate, *coordinate.Coordinate) {
	segment := ""
	if len(cs) == 1 {
		for s := range cs {
			segment = s
		}
	}
	if len(other) == 1 {
		for s := range other {
			segment = s
		}
	}
	return cs[segment], other[segment]
}

// computeDistance is librtt.ComputeDistance: seconds, and +Inf when either
// coordinate is missing. Coordinates of different dimensions, which make
// serf panic, cannot reach Consul's store (it checks them on update), so
// they count as missing here rather than crash the server.
func computeDistance(a, b *coordinate.Coordinate) float64 {
	if a == nil || b == nil || !a.IsCompatibleWith(b) {
		return math.Inf(1)
	}
	return a.DistanceTo(b).Seconds()
}
