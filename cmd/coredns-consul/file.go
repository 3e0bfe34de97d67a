package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// maxFileSize bounds what is read of a snapshot file. The plugin's own
// bound on a payload is 256 MiB decompressed, which compresses to far less:
// a file larger than this is not one the plugin wrote.
const maxFileSize = 512 << 20

// readSnapshot reads and decodes the snapshot file at path, and returns its
// format version too. Unlike snapshot.ReadFile it does not insist that the
// file belongs to the running user: an operator inspects the file of the
// user CoreDNS runs as, and nothing read here is ever served.
func readSnapshot(path string) (*snapshot.Set, uint32, error) {
	// Looked at before it is opened: opening a named pipe blocks until
	// something writes to it.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("reading snapshot: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("reading snapshot %s: not a regular file (%s)", path, snapshot.Kind(fi.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("reading snapshot: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading snapshot %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, 0, fmt.Errorf("reading snapshot %s: %w: larger than %d MiB", path, snapshot.ErrCorrupt, maxFileSize>>20)
	}
	set, err := snapshot.Decode(data)
	if err != nil {
		return nil, 0, fmt.Errorf("reading snapshot %s: %w", path, err)
	}
	// Decode accepted the header, so the version is there.
	return set, binary.BigEndian.Uint32(data[16:20]), nil
}

// parseArgs parses flags placed anywhere among the positional arguments
// ("show FILE -json" as well as "show -json FILE"), which the flag package
// alone does not: it stops at the first positional one.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// errUsage is a command line that names the wrong number of arguments.
var errUsage = errors.New("wrong arguments (run without arguments for the usage)")
