// Package procfs reads what tests measure of the processes they run: memory,
// sockets and connections, from /proc.
package procfs

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Memory is a process's resident set (VmRSS) and its peak (VmHWM), in bytes.
func Memory(pid int) (rss, peak float64, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb * 1024
		case "VmHWM:":
			peak = kb * 1024
		}
	}
	if rss == 0 || peak == 0 {
		return 0, 0, fmt.Errorf("no VmRSS or VmHWM for pid %d", pid)
	}
	return rss, peak, nil
}

// ResetPeak sets a process's peak RSS (VmHWM) to its current RSS, so that
// the next Memory reports the peak since now (clear_refs value 5).
func ResetPeak(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("resetting the peak RSS of pid %d: %w", pid, err)
	}
	return nil
}

// Sockets counts a process's open sockets.
func Sockets(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("sockets of pid %d: %w", pid, err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n, nil
}

// Conns counts the established TCP connections whose local port is one of
// ports: given a server's ports, the connections open to it.
func Conns(ports ...int) int {
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "01" { // ESTABLISHED
				continue
			}
			_, portHex, ok := strings.Cut(f[1], ":")
			port, err := strconv.ParseInt(portHex, 16, 32)
			if ok && err == nil && slices.Contains(ports, int(port)) {
				n++
			}
		}
	}
	return n
}
