package snapshot

import "fmt"

// PeerSnapshot returns the set's snapshot of the services imported from
// peer, or nil.
func (s *Set) PeerSnapshot(peer string) *Snapshot {
	for _, snap := range s.Peers {
		if snap.Peer == Key(peer) {
			return snap
		}
	}
	return nil
}

// decodePeers checks and completes the peers' snapshots of a decoded set, as
// Decode does the datacenters'.
func decodePeers(set *Set) error {
	seen := make(map[string]bool, len(set.Peers))
	for i, snap := range set.Peers {
		if snap == nil || snap.Peer == "" || seen[Key(snap.Peer)] {
			return fmt.Errorf("%w: peer %d is missing, unnamed or repeated", ErrCorrupt, i)
		}
		if len(snap.Peer) > maxLabel {
			return fmt.Errorf("%w: peer %d is named %s, longer than a DNS label", ErrCorrupt, i, Quote(snap.Peer))
		}
		snap.Peer = Key(snap.Peer)
		seen[snap.Peer] = true
		set.Skipped += sanitize(snap)
		set.Peers[i] = rebuild(snap)
	}
	for i, p := range set.KnownPeers {
		set.KnownPeers[i] = Key(p)
	}
	return nil
}
