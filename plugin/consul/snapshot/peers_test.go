package snapshot

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestFilePeersRoundTrip: the services imported from peers are written and
// read back with the node meta their SRV answers carry.
func TestFilePeersRoundTrip(t *testing.T) {
	want := sample()
	imported := New("dc1", 9, map[string]*Service{"web": {Name: "web", Index: 9, Instances: []Instance{{
		ID: "web-1", Node: "exp-node", NodeAddress: "127.0.0.2", Port: 8080, Tags: []string{"v2"},
		NodeMeta: map[string]string{"rack": "r9"},
	}}}}, map[string]*Node{"exp-node": {Name: "exp-node", Address: "127.0.0.2"}}, time.Unix(1700000002, 0).UTC())
	imported.Peer = "a"
	want.Peers, want.KnownPeers = []*Snapshot{imported}, []string{"a", "b"}
	got := roundTrip(t, want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got.Peers[0], want.Peers[0])
	}
	if got.PeerSnapshot("A") == nil || got.PeerSnapshot("b") != nil {
		t.Errorf("PeerSnapshot: a %v, b %v", got.PeerSnapshot("a"), got.PeerSnapshot("b"))
	}
}

func TestFilePeersRefused(t *testing.T) {
	for name, peers := range map[string][]*Snapshot{
		"unnamed":  {{}},
		"null":     {nil},
		"repeated": {{Peer: "a"}, {Peer: "A"}},
		"too long": {{Peer: string(make([]byte, 64))}},
	} {
		t.Run(name, func(t *testing.T) {
			set := sample()
			set.Peers = peers
			var buf bytes.Buffer
			if err := Encode(&buf, set); err != nil {
				t.Fatal(err)
			}
			if _, err := Decode(buf.Bytes()); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Decode: %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestFileNoPeerings: a Consul with no peering at all is a list read, kept
// as such: NOERROR with nothing for <svc>.virtual.<label> after a restart,
// where a list never read passes those names on.
func TestFileNoPeerings(t *testing.T) {
	for name, known := range map[string][]string{"read, none": {}, "never read": nil} {
		t.Run(name, func(t *testing.T) {
			set := sample()
			set.KnownPeers = known
			got := roundTrip(t, set)
			if (got.KnownPeers == nil) != (known == nil) || len(got.KnownPeers) != 0 {
				t.Errorf("KnownPeers read back as %#v, want %#v", got.KnownPeers, known)
			}
		})
	}
}

// roundTrip encodes set and decodes it back.
func roundTrip(t *testing.T, set *Set) *Set {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, set); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return got
}
