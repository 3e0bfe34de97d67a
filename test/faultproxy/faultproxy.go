// Package faultproxy is a reverse proxy in front of a real Consul agent that
// injects faults on demand, for tests of how the replica copes with them.
package faultproxy

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// Mode is the fault the proxy injects.
type Mode int32

// Faults.
const (
	Pass        Mode = iota // forward every request
	ServerError             // answer 500
	TooMany                 // answer 429, as an agent past http_max_conns_per_client
	Hang                    // hold the request until the client gives up
	// ZeroIndex forwards but answers X-Consul-Index 0, the Consul bug that
	// turns a blocking loop without the index rules into a busy loop.
	ZeroIndex
)

// Proxy forwards to a Consul agent, or fails as its mode says.
type Proxy struct {
	// Addr is the proxy's host:port.
	Addr     string
	mode     atomic.Int32
	requests atomic.Int64
	server   *httptest.Server
}

// New starts a proxy to the agent at target (host:port) on a free loopback
// port and closes it when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		if Mode(p.mode.Load()) == ZeroIndex && resp.Header.Get("X-Consul-Index") != "" {
			resp.Header.Set("X-Consul-Index", "0")
		}
		return nil
	}
	p.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		switch Mode(p.mode.Load()) {
		case ServerError:
			http.Error(w, "injected fault", http.StatusInternalServerError)
		case TooMany:
			http.Error(w, "injected: too many connections", http.StatusTooManyRequests)
		case Hang:
			<-r.Context().Done()
		default: // Pass, ZeroIndex
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(func() {
		p.mode.Store(int32(Pass))
		p.server.CloseClientConnections()
		p.server.Close()
	})
	p.Addr = p.server.Listener.Addr().String()
	return p
}

// Set switches the proxy to mode. A fault also cuts the connections open at
// the time, so no request that arrived before it can still succeed.
func (p *Proxy) Set(m Mode) {
	p.mode.Store(int32(m))
	if m != Pass && m != ZeroIndex {
		p.server.CloseClientConnections()
	}
}

// Requests is how many requests reached the proxy.
func (p *Proxy) Requests() int64 { return p.requests.Load() }
