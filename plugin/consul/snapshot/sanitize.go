package snapshot

import (
	"maps"
	"slices"
)

// sanitize leaves out what a decoded snapshot must not hold: null entries,
// which Consul never sends and the JSON decoder makes from a crafted file.
// (A template nested deep enough to overflow HIL's parser is refused when
// it is compiled, whether it came from here or from Consul.) It returns how
// many it left out.
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
		return skip(q == nil)
	})
	snap.Ingress = slices.DeleteFunc(snap.Ingress, func(g *Gateway) bool { return skip(g == nil) })
	snap.Terminating = slices.DeleteFunc(snap.Terminating, func(g *Gateway) bool { return skip(g == nil) })
	return skipped
}

// Sanitize and Rebuild do for a snapshot decoded from elsewhere (a tier's
// answer to a follower) what Decode does for a file's: Sanitize leaves out
// its null entries and says how many; Rebuild makes it whole (counts, maps
// that are never nil), as a new snapshot.
func Sanitize(snap *Snapshot) int { return sanitize(snap) }

// Rebuild: see Sanitize.
func Rebuild(snap *Snapshot) *Snapshot { return rebuild(snap) }
