package snapshot

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// fileOf wraps a JSON payload in the file format, with a valid checksum, the
// way a crafted file would be made.
func fileOf(t testing.TB, version uint32, payload []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return framed(version, z.Bytes())
}

// framed puts the header in front of an already compressed payload.
func framed(version uint32, compressed []byte) []byte {
	data := append([]byte(nil), magic[:]...)
	data = binary.BigEndian.AppendUint32(data, version)
	data = binary.BigEndian.AppendUint64(data, uint64(len(compressed)))
	sum := sha256.Sum256(compressed)
	return append(append(data, sum[:]...), compressed...)
}

// TestDecodeSkipsNil checks that a null where a value belongs is left out
// and counted, and the rest of the file kept: each of these panicked in
// Decode or in building the view.
func TestDecodeSkipsNil(t *testing.T) {
	const web = `{"Name":"web","Index":3,"Instances":[{"ID":"w1","Node":"n1","NodeAddress":"10.0.0.1","Port":80}]}`
	const n1 = `{"Name":"n1","Address":"10.0.0.1"}`
	tests := []struct {
		name, dc string
		nils     int
	}{
		{"service", `{"Datacenter":"dc1","Services":{"web":` + web + `,"db":null}}`, 1},
		{"node", `{"Datacenter":"dc1","Services":{"web":` + web + `},"Nodes":{"n1":` + n1 + `,"n2":null}}`, 1},
		{"query", `{"Datacenter":"dc1","Services":{"web":` + web + `},"Queries":[null,{"ID":"q1","Name":"q"},null]}`, 2},
		{"coordinate", `{"Datacenter":"dc1","Services":{"web":` + web + `},"Coordinates":[null,{"Node":"n1"}]}`, 1},
		{"several", `{"Datacenter":"dc1","Services":{"web":` + web + `,"a":null,"b":null},"Nodes":{"x":null},"Queries":[null]}`, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Decode(fileOf(t, FileVersion, []byte(`{"Local":"dc1","Datacenters":[`+tc.dc+`]}`)))
			if err != nil {
				t.Fatal(err)
			}
			if set.Skipped != tc.nils {
				t.Errorf("Skipped = %d, want %d", set.Skipped, tc.nils)
			}
			snap := set.Snapshot("dc1")
			if svc, ok := snap.Service("web"); !ok || len(svc.Instances) != 1 {
				t.Errorf("web = %+v, want its one instance", svc)
			}
			if left := sanitize(snap); left != 0 {
				t.Errorf("%d null entries kept", left)
			}
		})
	}
}

// TestDecodeErrorsAreShort checks that an error quotes a short prefix of
// what the file holds, not the whole of it: it goes to the log.
func TestDecodeErrorsAreShort(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	tests := []struct{ name, payload string }{
		{"local", `{"Local":"` + long + `","Datacenters":[{"Datacenter":"dc1"}]}`},
		{"datacenter", `{"Local":"dc1","Datacenters":[{"Datacenter":"` + long + `"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Decode(fileOf(t, FileVersion, []byte(tc.payload)))
			if !errors.Is(err, ErrCorrupt) || set != nil {
				t.Fatalf("Decode = %v, %v; want ErrCorrupt", set, err)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error of %d bytes: %.300s", len(err.Error()), err)
			}
		})
	}
}

// TestDecodeVersion1Nil: a version 1 file is one snapshot, with the same
// nulls possible.
func TestDecodeVersion1Nil(t *testing.T) {
	set, err := Decode(fileOf(t, 1, []byte(`{"Datacenter":"dc1","Services":{"web":null}}`)))
	if err != nil {
		t.Fatal(err)
	}
	if set.Skipped != 1 || len(set.Snapshot("dc1").Services) != 0 {
		t.Errorf("got %+v, want the null service skipped", set)
	}
}

// TestDecodeBomb checks that a small file that decompresses to much more than
// any real catalog is refused before it is held in memory.
func TestDecodeBomb(t *testing.T) {
	data := bomb(t, maxPayload+1<<20)
	var before, after runtimeMem
	before.read()
	set, err := Decode(data)
	after.read()
	if !errors.Is(err, ErrCorrupt) || set != nil {
		t.Fatalf("Decode = %v, %v; want ErrCorrupt", set, err)
	}
	if alloc := after.total - before.total; alloc > maxPayload/2 {
		t.Errorf("Decode of a %d-byte bomb allocated %d bytes", len(data), alloc)
	} else {
		t.Logf("Decode of a %d-byte bomb allocated %d bytes", len(data), alloc)
	}
}

// runtimeMem is what the runtime allocated so far.
type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

// bomb is a valid snapshot file whose payload decompresses to about size
// bytes: one service name that long.
func bomb(t testing.TB, size int) []byte {
	t.Helper()
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	zw.Write([]byte(`{"Local":"dc1","Datacenters":[{"Datacenter":"dc1","Services":{"web":{"Name":"`))
	chunk := bytes.Repeat([]byte("A"), 1<<20)
	for n := 0; n < size; n += len(chunk) {
		zw.Write(chunk)
	}
	zw.Write([]byte(`"}}}]}`))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return framed(FileVersion, z.Bytes())
}
