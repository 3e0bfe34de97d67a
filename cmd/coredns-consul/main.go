// Command coredns-consul inspects the consul plugin's snapshot file: what it
// holds (snapshot show) and how it differs from a live Consul (snapshot
// diff). Exit status: 0 when all is well (diff: no difference), 1 when diff
// finds differences, 2 on any error, as diff(1) does.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Exit statuses.
const (
	exitOK    = 0
	exitDiff  = 1
	exitError = 2
)

const usage = `usage:
  coredns-consul snapshot show FILE|URL [-json] [-services] [-service NAME] [-dc DC]
  coredns-consul snapshot diff FILE [CONSUL_ADDRESS] [-json] [-dc DC] [-token-file FILE] [-ca FILE]

show prints what the snapshot file holds or, given the URL of a running
CoreDNS's inspect endpoint (http://127.0.0.1:PORT), what its replica holds.
diff compares a snapshot file with a live Consul (CONSUL_ADDRESS, else
$CONSUL_HTTP_ADDR, else 127.0.0.1:8500; the token and TLS settings come
from the usual CONSUL_* variables).
Exit status: 0 ok (diff: equal), 1 diff found differences, 2 error.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the command with its arguments and outputs, for the tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "snapshot" {
		fmt.Fprint(stderr, usage)
		return exitError
	}
	var (
		status int
		err    error
	)
	switch args[1] {
	case "show":
		status, err = runShow(args[2:], stdout)
	case "diff":
		status, err = runDiff(args[2:], stdout)
	default:
		fmt.Fprint(stderr, usage)
		return exitError
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "coredns-consul: %v\n", err)
		return exitError
	}
	return status
}
