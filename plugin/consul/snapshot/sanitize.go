package snapshot

import (
	"maps"
	"reflect"
	"slices"
)

// maxNesting bounds the brackets nested in a prepared query's strings. Every
// string of a template query is parsed by HIL, whose parser recurses with
// no limit of its own: a few kilobytes of nested parentheses overflow the
// stack, which no recover catches. Real templates nest a handful deep.
const maxNesting = 64

// sanitize leaves out what a decoded snapshot must not hold: null entries,
// which Consul never sends and the JSON decoder makes from a crafted file,
// and queries nested deeper than maxNesting. It returns how many it left
// out.
func sanitize(snap *Snapshot) int {
	skipped := 0
	skip := func(out bool) bool {
		if out {
			skipped++
		}
		return out
	}
	maps.DeleteFunc(snap.Services, func(_ string, svc *Service) bool { return skip(svc == nil) })
	maps.DeleteFunc(snap.Nodes, func(_ string, n *Node) bool { return skip(n == nil) })
	snap.Coordinates = slices.DeleteFunc(snap.Coordinates, func(c *Coordinate) bool { return skip(c == nil) })
	snap.Queries = slices.DeleteFunc(snap.Queries, func(q *Query) bool {
		return skip(q == nil || nesting(reflect.ValueOf(*q)) > maxNesting)
	})
	return skipped
}

// nesting is the deepest nesting of brackets in any string v holds.
func nesting(v reflect.Value) int {
	deepest := 0
	switch v.Kind() {
	case reflect.String:
		depth := 0
		for _, c := range []byte(v.String()) {
			switch c {
			case '(', '[', '{':
				depth++
				deepest = max(deepest, depth)
			case ')', ']', '}':
				depth = max(depth-1, 0)
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			deepest = max(deepest, nesting(v.Field(i)))
		}
	case reflect.Slice:
		for i := range v.Len() {
			deepest = max(deepest, nesting(v.Index(i)))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			deepest = max(deepest, nesting(it.Key()), nesting(it.Value()))
		}
	}
	return deepest
}
