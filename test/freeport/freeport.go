// Package freeport picks loopback ports for the servers tests start.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// given are the ports handed out in this process: one drawn again before
// the first was bound (a Consul agent's LAN and WAN serf ports are picked
// one after the other, then bound together) would be handed out twice.
var given sync.Map

// Port returns a loopback port that is free for both TCP and UDP, since DNS
// servers and Consul's serf listen on both. It is drawn below the kernel's
// ephemeral range (32768 and up on Linux): a port the kernel handed out as
// free could be taken, between this call and the server's bind, as the
// source port of any outgoing connection, and the tests open thousands.
func Port(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := lowest + rand.N(ephemeral-lowest)
		if _, taken := given.LoadOrStore(port, true); taken {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
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

// The range ports are drawn from: above the well-known and common service
// ports, below the ephemeral ones.
const (
	lowest    = 10000
	ephemeral = 32768
)
