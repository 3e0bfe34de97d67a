package tier

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// Key names one snapshot of a Set: a datacenter's (Peer "") or a cluster
// peer's. A peer's snapshot is named by the peer alone (Datacenter ""): a
// Set holds one per peer, as Set.PeerSnapshot finds it.
type Key struct{ Datacenter, Peer string }

// KeyOf names s within its Set.
func KeyOf(s *snapshot.Snapshot) Key {
	if s.Peer != "" {
		return Key{Peer: snapshot.Key(s.Peer)}
	}
	return Key{Datacenter: snapshot.Key(s.Datacenter)}
}

func (k Key) String() string {
	if k.Peer != "" {
		return "peer:" + k.Peer
	}
	return k.Datacenter
}

// Delta is what changed from one generation of a tier's Set to a later one.
type Delta struct {
	From, To uint64 // the tier's generations
	// Meta holds the Set's fields but Datacenters and Peers (Local, Known,
	// ByDistance, Cluster, AgentDNS, KnownPeers), whole: they are small.
	Meta snapshot.Set
	// Parts has one part per snapshot that changed: unchanged snapshots are
	// the same pointer in both Sets.
	Parts []Part `json:",omitempty"`
	// Gone are the snapshots the newer Set no longer holds.
	Gone []Key `json:",omitempty"`
}

// Part is what changed in one snapshot.
type Part struct {
	Key
	// Whole: Snapshot replaces the base's whole (a snapshot new to the Set).
	Whole bool `json:",omitempty"`
	// Snapshot is, when Whole, the snapshot. Otherwise it holds every field
	// of the new snapshot but Services and Nodes, which hold only the
	// services and nodes added or changed (whose pointer differs from the
	// base's).
	Snapshot *snapshot.Snapshot
	// RemovedServices and RemovedNodes are the keys (lower case) gone since
	// the base.
	RemovedServices []string `json:",omitempty"`
	RemovedNodes    []string `json:",omitempty"`
	// Kept names the lists the snapshot shares with the base's (KeptQueries
	// and the others), left out of Snapshot: the nodes' coordinates alone
	// are a few hundred bytes per node, and would otherwise travel with
	// every change of any service.
	Kept []string `json:",omitempty"`
}

// The lists a Part may keep from its base.
const (
	KeptQueries     = "queries"
	KeptCoordinates = "coordinates"
	KeptIngress     = "ingress"
	KeptTerminating = "terminating"
)

// maxDelta bounds a delta once decompressed, as snapshot.Decode bounds a
// file's payload: a small answer that decompresses to gigabytes (a gzip
// bomb) is refused before it is held in memory. A variable for the tests.
var maxDelta int64 = 256 << 20

// gzipWriters are reused: a writer's state is a megabyte, against a few
// hundred bytes of a one-service delta. The fastest level: a tier encodes
// a delta once per (From, To) and a one-service change is small at any
// level, while a storm's delta is written while followers wait.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
	return zw
}}

// EncodeDelta is the payload of a delta answer: gzip of JSON.
func EncodeDelta(d *Delta) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	if err := json.NewEncoder(zw).Encode(d); err != nil {
		return nil, fmt.Errorf("encoding delta: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing delta: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeDelta reads a delta answer's payload. Whatever is wrong with it is
// an error wrapping ErrGarbage; the delta is checked further by Apply.
func DecodeDelta(payload []byte) (*Delta, error) {
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("%w: delta: %v", ErrGarbage, err)
	}
	lr := &io.LimitedReader{R: zr, N: maxDelta + 1}
	var d Delta
	if err := json.NewDecoder(lr).Decode(&d); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("%w: delta decompresses to more than %d MiB", ErrGarbage, maxDelta>>20)
		}
		return nil, fmt.Errorf("%w: delta: %v", ErrGarbage, err)
	}
	return &d, nil
}
