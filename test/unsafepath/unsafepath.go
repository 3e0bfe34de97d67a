// Package unsafepath makes, for tests, what must never be read as the
// snapshot file: what another user could have put at its path or around it.
package unsafepath

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Make returns, by what each is, paths in the test's temporary directories:
// a named pipe (reading it blocks), a symbolic link to /dev/zero (reading it
// never ends), a file path in a directory every user may write to, and,
// when the test runs as root, a file of user nobody's, made with content.
func Make(t testing.TB, content []byte) map[string]string {
	t.Helper()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{
		"named pipe":                             fifo,
		"symlink to /dev/zero":                   zero,
		"in a directory every user may write to": filepath.Join(open, "snap"),
	}
	if os.Geteuid() == 0 {
		theirs := filepath.Join(dir, "theirs")
		if err := os.WriteFile(theirs, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		paths["another user's file"] = theirs
	}
	return paths
}
