package replica

import (
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// buildService converts Consul's health entries for one service into the
// snapshot's form. Instances are sorted so that equal catalogs give equal
// snapshots whatever order Consul returned them in. An entry without its
// node or service, and a null check, are skipped and counted: the other
// instances stand.
func buildService(name string, entries []*api.ServiceEntry, index uint64) (svc *snapshot.Service, badEntries, badChecks int) {
	svc = &snapshot.Service{Name: name, Index: index, Instances: make([]snapshot.Instance, 0, len(entries))}
	for _, e := range entries {
		if e == nil || e.Service == nil || e.Node == nil {
			badEntries++
			continue
		}
		if slices.Contains(e.Checks, nil) {
			badChecks += len(e.Checks)
			e.Checks = slices.DeleteFunc(e.Checks, func(c *api.HealthCheck) bool { return c == nil })
			badChecks -= len(e.Checks)
		}
		svc.Instances = append(svc.Instances, snapshot.Instance{
			ID:                  e.Service.ID,
			Node:                e.Node.Node,
			NodeAddress:         e.Node.Address,
			NodeTaggedAddresses: e.Node.TaggedAddresses,
			Address:             e.Service.Address,
			TaggedAddresses:     serviceAddresses(e.Service.TaggedAddresses),
			Port:                uint16(e.Service.Port),
			Tags:                e.Service.Tags,
			Meta:                e.Service.Meta,
			WeightPassing:       e.Service.Weights.Passing,
			WeightWarning:       e.Service.Weights.Warning,
			Health:              aggregateHealth(e.Checks),
			Checks:              failingChecks(e.Checks),
			Mesh:                meshOf(e.Service),
		})
	}
	slices.SortFunc(svc.Instances, func(a, b snapshot.Instance) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return svc, badEntries, badChecks
}

// meshOf is what a service instance is in the mesh; nil for a plain service,
// so that most instances carry nothing more.
func meshOf(s *api.AgentService) *snapshot.Mesh {
	m := snapshot.Mesh{Kind: string(s.Kind), Native: s.Connect != nil && s.Connect.Native}
	if s.Proxy != nil {
		m.Destination = s.Proxy.DestinationServiceName
	}
	if m == (snapshot.Mesh{}) {
		return nil
	}
	return &m
}

func serviceAddresses(tagged map[string]api.ServiceAddress) map[string]string {
	if len(tagged) == 0 {
		return nil
	}
	out := make(map[string]string, len(tagged))
	for tag, addr := range tagged {
		out[tag] = addr.Address
	}
	return out
}

func buildNode(n *api.Node) *snapshot.Node {
	return &snapshot.Node{Name: n.Node, Address: n.Address, TaggedAddresses: n.TaggedAddresses, Meta: n.Meta}
}

// failingChecks are the checks that are not passing, sorted by ID: a
// prepared query may ignore some of them.
func failingChecks(checks api.HealthChecks) []snapshot.Check {
	var out []snapshot.Check
	for _, c := range checks {
		if h := snapshot.ParseHealth(c.Status); h != snapshot.Passing {
			out = append(out, snapshot.Check{ID: c.CheckID, Health: h})
		}
	}
	slices.SortFunc(out, func(a, b snapshot.Check) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// sameInstances reports whether two reads of a service hold the same
// instances; buildService makes equal catalogs give equal slices.
func sameInstances(a, b []snapshot.Instance) bool { return reflect.DeepEqual(a, b) }

// sameRegistrations reports whether two reads of a service differ at most in
// health: a change that does not move the service list's index.
func sameRegistrations(a, b []snapshot.Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.Health, y.Health = 0, 0
		x.Checks, y.Checks = nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func sameNode(a, b *snapshot.Node) bool {
	return a.Name == b.Name && a.Address == b.Address &&
		maps.Equal(a.TaggedAddresses, b.TaggedAddresses) && maps.Equal(a.Meta, b.Meta)
}

// aggregateHealth is the worst status among an instance's service and node
// checks, as Consul's own DNS interface judges it. Maintenance mode is a
// critical check, so it needs no special case.
func aggregateHealth(checks api.HealthChecks) snapshot.Health {
	h := snapshot.Passing
	for _, c := range checks {
		h = max(h, snapshot.ParseHealth(c.Status))
	}
	return h
}
