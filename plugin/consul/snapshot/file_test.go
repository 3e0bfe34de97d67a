package snapshot

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// sample is a set of two datacenters, with every kind of value a snapshot
// holds.
func sample() *Set {
	dc2 := New("dc2", 3, map[string]*Service{"db": {Name: "db", Index: 3, Instances: []Instance{{
		ID: "db-1", Node: "m1", NodeAddress: "10.2.0.1", Port: 5432, Health: Critical,
		Checks: []Check{{ID: "serfHealth", Health: Critical}},
	}}}}, map[string]*Node{"m1": {Name: "m1", Address: "10.2.0.1"}}, time.Unix(1700000001, 0).UTC())
	dc2.Queries = []*Query{{ID: "q1", Name: "db", Service: QueryService{Service: "db", Tags: []string{"!old"}}, TTL: "10s"}}
	return &Set{Local: "dc1", Datacenters: []*Snapshot{sampleDC1(), dc2}, Known: []string{"dc1", "dc2", "dc3"}}
}

func sampleDC1() *Snapshot {
	s := New("dc1", 0, map[string]*Service{
		"web-sidecar-proxy": {Name: "web-sidecar-proxy", Index: 8, Instances: []Instance{{
			ID: "web-1-sidecar", Node: "n1", NodeAddress: "10.0.0.1", Port: 21000,
			TaggedAddresses: map[string]string{VirtualIPTag: "240.0.0.1"},
			Mesh:            &Mesh{Kind: KindConnectProxy, Destination: "web"},
		}}},
		"web": {Name: "web", Index: 7, Instances: []Instance{{
			ID: "web-1", Node: "n1", NodeAddress: "10.0.0.1", Address: "10.1.0.1", Port: 80,
			Tags: []string{"v1"}, Meta: map[string]string{"k": "v"}, TaggedAddresses: map[string]string{"lan_ipv6": "2001:db8::1"},
			WeightPassing: 3, WeightWarning: 1, Health: Warning,
		}}},
	}, map[string]*Node{"n1": {Name: "n1", Address: "10.0.0.1", Meta: map[string]string{"rack": "r1"}}}, time.Unix(1700000000, 0).UTC())
	s.Ingress, s.IngressRead = []*Gateway{{Name: "ig", Services: []string{"*", "web"}}}, true
	s.Terminating, s.TerminatingRead = []*Gateway{{Name: "tg", Services: []string{"legacy"}}}, true
	return s
}

func TestFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	want := sample()
	if err := WriteFile(path, want); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode %o, want 600", perm)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestFileRejectsDamage(t *testing.T) {
	var good bytes.Buffer
	if err := Encode(&good, sample()); err != nil {
		t.Fatal(err)
	}
	data := good.Bytes()
	flip := func(i int) []byte {
		b := bytes.Clone(data)
		b[i] ^= 0x40
		return b
	}
	otherVersion := bytes.Clone(data)
	binary.BigEndian.PutUint32(otherVersion[16:20], FileVersion+1)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"truncated header", data[:10]},
		{"truncated payload", data[:len(data)-5]},
		{"trailing bytes", append(bytes.Clone(data), 0)},
		{"flipped payload byte", flip(len(data) - 3)},
		{"flipped checksum byte", flip(40)},
		{"other magic", flip(0)},
		{"other version", otherVersion},
		{"not a snapshot", []byte("# hosts file\n127.0.0.1 localhost\n" + string(make([]byte, 64)))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := Decode(tc.data)
			if !errors.Is(err, ErrCorrupt) || snap != nil {
				t.Errorf("Decode = %v, %v; want ErrCorrupt and no snapshot", snap, err)
			}
		})
	}
}

// TestFileVersion1 checks that a file written before other datacenters were
// replicated is still read, as the set of its one datacenter.
func TestFileVersion1(t *testing.T) {
	want := sampleDC1()
	var payload bytes.Buffer
	zw := gzip.NewWriter(&payload)
	if err := json.NewEncoder(zw).Encode(want); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	data := append(magic[:], binary.BigEndian.AppendUint32(nil, 1)...)
	data = binary.BigEndian.AppendUint64(data, uint64(payload.Len()))
	sum := sha256.Sum256(payload.Bytes())
	data = append(append(data, sum[:]...), payload.Bytes()...)
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	want.QueriesHidden = true // the file cannot say which queries exist
	if got.Local != "dc1" || len(got.Datacenters) != 1 || !reflect.DeepEqual(got.Snapshot("DC1"), want) {
		t.Errorf("read %+v, want the set of %+v", got, want)
	}
}

func TestFileRejectsIncompleteSets(t *testing.T) {
	tests := []struct {
		name string
		set  *Set
	}{
		{"no local snapshot", &Set{Local: "dc9", Datacenters: []*Snapshot{sampleDC1()}}},
		{"repeated datacenter", &Set{Local: "dc1", Datacenters: []*Snapshot{sampleDC1(), sampleDC1()}}},
		{"nil datacenter", &Set{Local: "dc1", Datacenters: []*Snapshot{sampleDC1(), nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Encode(&buf, tc.set); err != nil {
				t.Fatal(err)
			}
			if set, err := Decode(buf.Bytes()); !errors.Is(err, ErrCorrupt) || set != nil {
				t.Errorf("Decode = %v, %v; want ErrCorrupt", set, err)
			}
		})
	}
}

func TestReadFileMissing(t *testing.T) {
	if _, err := ReadFile(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want os.ErrNotExist", err)
	}
}
