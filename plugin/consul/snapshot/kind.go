package snapshot

import "io/fs"

// Kind names a file mode's type ("a directory", "a named pipe"...) for an
// error that says why a path is not a snapshot file.
func Kind(m fs.FileMode) string { return kindOf(m) }
