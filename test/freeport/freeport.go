// Package freeport picks loopback ports for the servers tests start.
package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Port returns a loopback port that is free for both TCP and UDP, since DNS
// servers and Consul's serf listen on both.
func Port(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}
