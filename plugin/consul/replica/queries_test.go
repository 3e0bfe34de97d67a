package replica

import (
	"slices"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/serf/coordinate"
)

func TestByDistance(t *testing.T) {
	at := func(x float64) *coordinate.Coordinate {
		c := coordinate.NewCoordinate(coordinate.DefaultConfig())
		c.Vec[0] = x
		return c
	}
	entry := func(c *coordinate.Coordinate) api.CoordinateEntry { return api.CoordinateEntry{Coord: c} }
	maps := []*api.CoordinateDatacenterMap{
		{Datacenter: "far", Coordinates: []api.CoordinateEntry{entry(at(0.5))}},
		{Datacenter: "dc1", Coordinates: []api.CoordinateEntry{entry(at(0))}},
		// The median of three servers: 0.1.
		{Datacenter: "Near", Coordinates: []api.CoordinateEntry{entry(at(0.05)), entry(at(0.1)), entry(at(0.9))}},
		{Datacenter: "blind"},
	}
	got := byDistance("dc1", maps, []string{"dc1", "far", "near", "blind", "new"})
	want := []string{"dc1", "near", "far", "blind", "new"}
	if !slices.Equal(got, want) {
		t.Errorf("byDistance = %v, want %v", got, want)
	}
	if got := byDistance("dc1", nil, []string{"b", "dc1", "a"}); !slices.Equal(got, []string{"dc1", "a", "b"}) {
		t.Errorf("without coordinates: %v, want the local datacenter, then by name", got)
	}
}
