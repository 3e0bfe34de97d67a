package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func sample() *Snapshot {
	return New("dc1", 0, map[string]*Service{
		"web": {Name: "web", Index: 7, Instances: []Instance{{
			ID: "web-1", Node: "n1", NodeAddress: "10.0.0.1", Address: "10.1.0.1", Port: 80,
			Tags: []string{"v1"}, Meta: map[string]string{"k": "v"}, TaggedAddresses: map[string]string{"lan_ipv6": "2001:db8::1"},
			WeightPassing: 3, WeightWarning: 1, Health: Warning,
		}}},
	}, map[string]*Node{"n1": {Name: "n1", Address: "10.0.0.1", Meta: map[string]string{"rack": "r1"}}}, time.Unix(1700000000, 0).UTC())
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

func TestReadFileMissing(t *testing.T) {
	if _, err := ReadFile(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want os.ErrNotExist", err)
	}
}

func FuzzDecode(f *testing.F) {
	var good bytes.Buffer
	if err := Encode(&good, sample()); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte{})
	f.Add(good.Bytes()[:headerLen])
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := Decode(data)
		if (snap == nil) == (err == nil) {
			t.Fatalf("Decode gave snapshot %v and error %v", snap, err)
		}
	})
}
