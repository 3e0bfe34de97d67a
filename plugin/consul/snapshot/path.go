package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrUnsafe wraps every reason the snapshot path is refused: another user
// could have put there what the plugin would answer from.
var ErrUnsafe = errors.New("unsafe snapshot path")

// maxFile bounds what is read of the file: a payload within maxPayload
// compresses to less than itself, plus gzip's framing.
const maxFile = headerLen + maxPayload + maxPayload/16

// CheckPath checks, opening nothing and following no symbolic link at path,
// that path may hold the snapshot file: its directory, when it exists, is
// neither writable by every user nor owned by another user than the
// running one or root, and what is at path, when anything is, is a regular
// file of the running user. Only those errors match ErrUnsafe; others
// (a missing directory, which the plugin makes for the running user alone;
// a directory at path; a path that cannot be looked at) are left to the
// start-up, which says what is in the way.
func CheckPath(path string) error {
	if err := checkDir(filepath.Dir(path)); errors.Is(err, ErrUnsafe) {
		return err
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.IsDir() {
		return nil
	}
	return checkFile(path, fi)
}

// checkDir checks the directory the file is in.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%w: the directory %s is writable by every user (mode %v): use a directory of its own", ErrUnsafe, dir, fi.Mode().Perm())
	}
	if uid, ok := ownerOf(fi); ok && uid != os.Geteuid() && uid != 0 {
		return fmt.Errorf("%w: the directory %s belongs to user %d, not to the running user %d or root", ErrUnsafe, dir, uid, os.Geteuid())
	}
	return nil
}

// checkFile checks what is at path: fi describes it, not what a symbolic
// link there points to.
func checkFile(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is %s, not a regular file", ErrUnsafe, path, kindOf(fi.Mode()))
	}
	if uid, ok := ownerOf(fi); ok && uid != os.Geteuid() {
		return fmt.Errorf("%w: %s belongs to user %d, not to the running user %d", ErrUnsafe, path, uid, os.Geteuid())
	}
	return nil
}

// kindOf names a file mode's type for an error.
func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	default:
		return fmt.Sprintf("of type %v", m.Type())
	}
}

// readChecked reads the file at path after the checks CheckPath makes, on
// the file opened rather than on the path, so that nothing put there in
// between is read; a missing file gives an error that matches
// fs.ErrNotExist.
func readChecked(path string) ([]byte, error) {
	if err := checkDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := openNoFollow(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkFile(path, fi); err != nil {
		return nil, err
	}
	if fi.Size() > maxFile {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than a snapshot can be (%d MiB)", ErrCorrupt, path, fi.Size(), maxFile>>20)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%w: %s grew past %d MiB while read", ErrCorrupt, path, maxFile>>20)
	}
	return data, nil
}
