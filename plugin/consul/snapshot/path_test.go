package snapshot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/unsafepath"
)

// unsafePaths are the paths of unsafepath.Make, where a good file is put
// where one is, and a symbolic link to a good file.
func unsafePaths(t *testing.T) map[string]string {
	t.Helper()
	var good bytes.Buffer
	if err := Encode(&good, sample()); err != nil {
		t.Fatal(err)
	}
	paths := unsafepath.Make(t, good.Bytes())
	if err := os.WriteFile(paths["in a directory every user may write to"], good.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(writeSample(t, filepath.Join(dir, "good")), link); err != nil {
		t.Fatal(err)
	}
	paths["symlink to a good file"] = link
	return paths
}

// TestReadFileRefusesUnsafe checks that what another user could have put at
// the path is not read, and that reading returns at once: a named pipe
// hung start-up, /dev/zero grew memory without bound.
func TestReadFileRefusesUnsafe(t *testing.T) {
	for name, path := range unsafePaths(t) {
		t.Run(name, func(t *testing.T) {
			var before, after runtimeMem
			before.read()
			done := make(chan error, 1)
			go func() {
				_, err := ReadFile(path)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrUnsafe) {
					t.Errorf("ReadFile = %v, want ErrUnsafe", err)
				}
			case <-time.After(time.Second):
				t.Fatal("ReadFile still reading after 1s")
			}
			after.read()
			if alloc := after.total - before.total; alloc > 1<<20 {
				t.Errorf("ReadFile allocated %d bytes", alloc)
			}
		})
	}
}

// TestCheckPathRefusesUnsafe checks the same at the Corefile's parse,
// where nothing is opened.
func TestCheckPathRefusesUnsafe(t *testing.T) {
	for name, path := range unsafePaths(t) {
		t.Run(name, func(t *testing.T) {
			if err := CheckPath(path); !errors.Is(err, ErrUnsafe) {
				t.Errorf("CheckPath = %v, want ErrUnsafe", err)
			}
		})
	}
	dir := t.TempDir()
	for name, path := range map[string]string{
		"a missing file":                  filepath.Join(dir, "none"),
		"a file in a missing directory":   filepath.Join(dir, "a", "b", "snap"),
		"the running user's own file":     writeSample(t, filepath.Join(dir, "mine")),
		"a file in root's directory /var": "/var/coredns-consul-test-none",
	} {
		t.Run(name, func(t *testing.T) {
			if err := CheckPath(path); err != nil {
				t.Errorf("CheckPath = %v, want nil", err)
			}
		})
	}
}

func writeSample(t *testing.T, path string) string {
	t.Helper()
	if err := WriteFile(path, sample()); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReadFileTooLarge checks that a file larger than any snapshot is
// refused before it is read.
func TestReadFileTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "large")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxFile + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	var before, after runtimeMem
	before.read()
	_, err = ReadFile(path)
	after.read()
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadFile = %v, want ErrCorrupt", err)
	}
	if alloc := after.total - before.total; alloc > 1<<20 {
		t.Errorf("ReadFile allocated %d bytes", alloc)
	}
}

// TestWriteFileReplacesSymlink checks that a symbolic link planted at the
// path is replaced, not followed: the file it points to is left alone.
func TestWriteFileReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "snap")
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, sample()); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(victim); !bytes.Equal(data, []byte("keep")) {
		t.Errorf("the link's target was written: %q", data)
	}
	if _, err := ReadFile(path); err != nil {
		t.Errorf("ReadFile after the write: %v", err)
	}
}
