package prepared

import (
	"fmt"
	"maps"
	"slices"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// fieldPath names a string of a ServiceQuery as Consul's walk does
// (".Tags[0]", ".NodeMeta[key]", ".Failover.Targets[1].Peer"). It is a value
// that is formatted only for an error, so that a render walks without
// allocating names it never shows.
type fieldPath struct {
	field string // up to the element: ".Service", ".Tags", ".Failover.Targets"
	key   string // for a mapValue
	index int    // for a sliceElem
	kind  pathKind
	rest  string // after the element: ".Peer"
}

type pathKind uint8

const (
	plainField pathKind = iota
	sliceElem
	mapValue
)

func (p fieldPath) String() string {
	switch p.kind {
	case sliceElem:
		return fmt.Sprintf("%s[%d]%s", p.field, p.index, p.rest)
	case mapValue:
		return fmt.Sprintf("%s[%s]%s", p.field, p.key, p.rest)
	}
	return p.field
}

// visitStrings calls fn on every string of a ServiceQuery that Consul's
// reflective walk interpolates (agent/consul/prepared_query/walk.go): every
// string field, slice element and map value, in the struct's field order;
// map keys are not interpolated. Consul visits a map in Go's random order;
// this walk sorts the keys, so that a template's fields always come in the
// same order and a compiled template can keep them in a slice.
func visitStrings(s *snapshot.QueryService, fn func(path fieldPath, v *string) error) error {
	visitSlice := func(field string, vs []string) error {
		for i := range vs {
			if err := fn(fieldPath{field: field, index: i, kind: sliceElem}, &vs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	visitMap := func(field string, m map[string]string) error {
		if len(m) == 0 {
			return nil
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			v := m[k]
			if err := fn(fieldPath{field: field, key: k, kind: mapValue}, &v); err != nil {
				return err
			}
			m[k] = v
		}
		return nil
	}
	if err := fn(fieldPath{field: ".Service"}, &s.Service); err != nil {
		return err
	}
	if err := fn(fieldPath{field: ".SamenessGroup"}, &s.SamenessGroup); err != nil {
		return err
	}
	if err := visitSlice(".Failover.Datacenters", s.Failover.Datacenters); err != nil {
		return err
	}
	for i := range s.Failover.Targets {
		t := &s.Failover.Targets[i]
		target := fieldPath{field: ".Failover.Targets", index: i, kind: sliceElem}
		target.rest = ".Peer"
		if err := fn(target, &t.Peer); err != nil {
			return err
		}
		target.rest = ".Datacenter"
		if err := fn(target, &t.Datacenter); err != nil {
			return err
		}
	}
	if err := visitSlice(".IgnoreCheckIDs", s.IgnoreCheckIDs); err != nil {
		return err
	}
	if err := fn(fieldPath{field: ".Near"}, &s.Near); err != nil {
		return err
	}
	if err := visitSlice(".Tags", s.Tags); err != nil {
		return err
	}
	if err := visitMap(".NodeMeta", s.NodeMeta); err != nil {
		return err
	}
	if err := visitMap(".ServiceMeta", s.ServiceMeta); err != nil {
		return err
	}
	return fn(fieldPath{field: ".Peer"}, &s.Peer)
}

// cloneService copies everything a render writes to, so that the definition
// shared by snapshots is never modified.
func cloneService(s *snapshot.QueryService) snapshot.QueryService {
	c := *s
	c.Failover.Datacenters = slices.Clone(s.Failover.Datacenters)
	c.Failover.Targets = slices.Clone(s.Failover.Targets)
	c.IgnoreCheckIDs = slices.Clone(s.IgnoreCheckIDs)
	c.Tags = slices.Clone(s.Tags)
	c.NodeMeta = maps.Clone(s.NodeMeta)
	c.ServiceMeta = maps.Clone(s.ServiceMeta)
	return c
}
