package snapshot

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// The snapshot file format (docs/operations.md describes it for operators):
//
//	magic    16 bytes  "coredns-consul\x00\x00"
//	version  uint32    big endian, FileVersion
//	length   uint64    big endian, length of the payload
//	checksum 32 bytes  SHA-256 of the payload
//	payload            gzip-compressed JSON of the Set (version 1: of one Snapshot)
//
// A file that is short, has another magic or version, or whose checksum does
// not match is rejected whole: a snapshot is never served in part. Version 1
// files, written before other datacenters were replicated, are still read.
const FileVersion = 2

// Set is what the snapshot file holds: the snapshot of every replicated
// datacenter, and the datacenters Consul knows, so that a CoreDNS restarted
// while Consul is down answers every datacenter it answered before.
type Set struct {
	// Local is the name of the agent's own datacenter, lower case.
	Local       string
	Datacenters []*Snapshot
	// Known are the datacenters Consul knows, lower case; nil when never
	// read.
	Known []string `json:",omitempty"`
	// ByDistance are the datacenters nearest first, for prepared queries
	// that fail over to the nearest; nil when never read.
	ByDistance []string `json:",omitempty"`
	// Cluster is the Consul cluster the snapshots were read from (its CA's
	// trust domain, "<cluster-id>.consul"); empty when it was not known.
	Cluster string `json:",omitempty"`
	// AgentDNS are the agent's DNS settings as the replica last read them
	// (agent_dns), so that a CoreDNS restarted while Consul is down answers
	// as the agent would, under its domain and alt_domain; opaque here, and
	// checked where they are used as any read from the agent.
	AgentDNS json.RawMessage `json:",omitempty"`
	// Peers are the snapshots of the services imported from each
	// replicated cluster peer; KnownPeers the peerings Consul lists, nil
	// when never read. Files written before peers were replicated have
	// neither.
	Peers      []*Snapshot `json:",omitempty"`
	KnownPeers []string    // no omitempty: [] (read, none) is not null (never read)
	// Skipped counts the entries Decode left out: nulls and queries nested
	// too deep, which only a damaged or crafted file holds.
	Skipped int `json:"-"`
}

// Snapshot returns the set's snapshot of datacenter dc, or nil.
func (s *Set) Snapshot(dc string) *Snapshot {
	for _, snap := range s.Datacenters {
		if snap.Datacenter == Key(dc) {
			return snap
		}
	}
	return nil
}

var magic = [16]byte{'c', 'o', 'r', 'e', 'd', 'n', 's', '-', 'c', 'o', 'n', 's', 'u', 'l'}

const headerLen = 16 + 4 + 8 + sha256.Size

// maxPayload bounds a file's payload once decompressed. A catalog of 5,000
// services of 5 instances each, with tags, meta and tagged addresses, is
// 11 MB of JSON (226 KB compressed): the bound leaves over 20 times that,
// and keeps a small file that decompresses to gigabytes (a gzip bomb) from
// being held in memory.
const maxPayload = 256 << 20

// ErrCorrupt wraps every reason a snapshot file is refused.
var ErrCorrupt = errors.New("corrupt snapshot file")

// Encode writes set in the file format.
func Encode(w io.Writer, set *Set) error {
	var payload bytes.Buffer
	zw := gzip.NewWriter(&payload)
	if err := json.NewEncoder(zw).Encode(set); err != nil {
		return fmt.Errorf("encoding snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compressing snapshot: %w", err)
	}
	header := make([]byte, 0, headerLen)
	header = append(header, magic[:]...)
	header = binary.BigEndian.AppendUint32(header, FileVersion)
	header = binary.BigEndian.AppendUint64(header, uint64(payload.Len()))
	sum := sha256.Sum256(payload.Bytes())
	header = append(header, sum[:]...)
	if _, err := w.Write(header); err != nil {
		return err
	}
	_, err := w.Write(payload.Bytes())
	return err
}

// Decode reads a set in the file format.
func Decode(data []byte) (*Set, error) {
	if len(data) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrCorrupt, len(data))
	}
	if !bytes.Equal(data[:16], magic[:]) {
		return nil, fmt.Errorf("%w: not a coredns-consul snapshot", ErrCorrupt)
	}
	version := binary.BigEndian.Uint32(data[16:20])
	if version != FileVersion && version != 1 {
		return nil, fmt.Errorf("%w: format version %d, this build reads 1 and %d", ErrCorrupt, version, FileVersion)
	}
	length := binary.BigEndian.Uint64(data[20:28])
	payload := data[headerLen:]
	if uint64(len(payload)) != length {
		return nil, fmt.Errorf("%w: payload of %d bytes, header says %d", ErrCorrupt, len(payload), length)
	}
	if sum := sha256.Sum256(payload); !bytes.Equal(sum[:], data[28:headerLen]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if err := checkSize(payload); err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	var set Set
	if version == 1 {
		var snap Snapshot
		err = json.NewDecoder(zr).Decode(&snap)
		// Written before prepared queries were replicated: a query name
		// must go on to Consul, not be NXDOMAIN, until the replica syncs.
		snap.QueriesHidden = true
		set = Set{Local: snap.Datacenter, Datacenters: []*Snapshot{&snap}}
	} else {
		err = json.NewDecoder(zr).Decode(&set)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	seen := make(map[string]bool, len(set.Datacenters))
	for i, snap := range set.Datacenters {
		if snap == nil || snap.Datacenter == "" || seen[Key(snap.Datacenter)] {
			return nil, fmt.Errorf("%w: datacenter %d is missing, unnamed or repeated", ErrCorrupt, i)
		}
		if len(snap.Datacenter) > maxLabel {
			return nil, fmt.Errorf("%w: datacenter %d is named %s, longer than a DNS label", ErrCorrupt, i, Quote(snap.Datacenter))
		}
		seen[Key(snap.Datacenter)] = true
		set.Skipped += sanitize(snap)
		set.Datacenters[i] = rebuild(snap)
	}
	if set.Local = Key(set.Local); !seen[set.Local] {
		return nil, fmt.Errorf("%w: no snapshot of the local datacenter %s", ErrCorrupt, Quote(set.Local))
	}
	for i, dc := range set.Known {
		set.Known[i] = Key(dc)
	}
	if err := decodePeers(&set); err != nil {
		return nil, err
	}
	return &set, nil
}

// maxLabel is the longest DNS label: a datacenter's name is one in every
// name it answers.
const maxLabel = 63

// Quote quotes s for a log line or an error, cut to its first bytes: what a
// file holds may be as long as the file.
func Quote(s string) string {
	const keep = 64
	if len(s) <= keep {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:keep], len(s))
}

// checkSize refuses a payload that decompresses to more than maxPayload,
// before any of it is kept: the bytes are counted and dropped.
func checkSize(payload []byte) error {
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(zr, maxPayload+1))
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	case n > maxPayload:
		return fmt.Errorf("%w: the payload decompresses to more than %d MiB", ErrCorrupt, maxPayload>>20)
	}
	return nil
}

// rebuild makes a decoded snapshot whole: its counts, and maps that are
// never nil.
func rebuild(snap *Snapshot) *Snapshot {
	if snap.Services == nil {
		snap.Services = map[string]*Service{}
	}
	if snap.Nodes == nil {
		snap.Nodes = map[string]*Node{}
	}
	s := New(snap.Datacenter, snap.Index, snap.Services, snap.Nodes, snap.Built)
	s.Queries, s.QueriesHidden, s.Coordinates, s.AgentNode = snap.Queries, snap.QueriesHidden, snap.Coordinates, snap.AgentNode
	s.ServicesHidden, s.Peer, s.ListIndex = snap.ServicesHidden, snap.Peer, snap.ListIndex
	s.Ingress, s.IngressRead = snap.Ingress, snap.IngressRead
	s.Terminating, s.TerminatingRead = snap.Terminating, snap.TerminatingRead
	return s
}

// WriteFile writes set to path atomically: to a temporary file in the same
// directory, synced, then renamed over path, so a crash leaves either the old
// file or the new one. The file is readable by its owner only: it lists the
// whole catalog.
func WriteFile(path string, set *Set) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing snapshot: %w", err)
	}
	if err := Encode(tmp, set); err != nil {
		tmp.Close()
		return fmt.Errorf("writing snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing snapshot %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing snapshot %s: %w", path, err)
	}
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ReadFile reads the snapshot file at path. A missing file gives an error
// that matches os.ErrNotExist, a damaged one an error that matches
// ErrCorrupt, and one that is not a regular file of the running user's, or
// in a directory others may write to, an error that matches ErrUnsafe.
func ReadFile(path string) (*Set, error) {
	data, err := readChecked(path)
	if err != nil {
		return nil, err
	}
	set, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return set, nil
}
