// Package faultproxy is a reverse proxy in front of a real Consul agent that
// injects faults on demand, for tests of how the replica copes with them.
package faultproxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
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
	NoIndex       // forwards without the X-Consul-Index header
	LowIndex      // forwards with X-Consul-Index 3: the index went backwards
	TruncatedJSON // forwards half of the body
	InvalidJSON   // answers 200 with a body that is not JSON
	Reset         // closes the connection without an answer
	SlowBody      // answers 200 and sends the body a byte every 100ms
	// NullElements forwards with a null added at the start and the end of
	// every JSON array in the body, as a broken proxy or a man in the
	// middle could.
	NullElements
	// HugeBody answers 200 with a gzip body of HugeBodySize bytes once
	// decompressed (a 300 KB gzip bomb): a JSON array holding one string.
	HugeBody
	// Redirect answers 307 to the same path on another listener, which
	// records whether the ACL token arrived (TokensLeaked).
	Redirect
)

func (m Mode) String() string {
	names := []string{"pass", "500", "429", "hang", "index 0", "no index", "index backwards",
		"truncated JSON", "invalid JSON", "connection reset", "slow body", "null elements", "huge body", "redirect"}
	if int(m) < len(names) {
		return names[m]
	}
	return "mode " + strconv.Itoa(int(m))
}

// forwarding reports whether m forwards to the agent and then edits the answer.
func (m Mode) forwarding() bool {
	switch m {
	case Pass, ZeroIndex, NoIndex, LowIndex, TruncatedJSON, SlowBody, NullElements:
		return true
	}
	return false
}

// Proxy forwards to a Consul agent, or fails as its mode says.
type Proxy struct {
	// Addr is the proxy's host:port.
	Addr     string
	mode     atomic.Int32
	requests atomic.Int64
	server   *httptest.Server
	// elsewhere is where Redirect sends requests; leaked counts the
	// requests that arrived there with a token.
	elsewhere *httptest.Server
	leaked    atomic.Int64
}

// New starts a proxy to the agent at target (host:port) on a free loopback
// port and closes it when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.FlushInterval = -1
	direct := rp.Director
	rp.Director = func(r *http.Request) {
		direct(r)
		if Mode(p.mode.Load()) == NullElements {
			// The body is edited: the agent must send it uncompressed.
			r.Header.Del("Accept-Encoding")
		}
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		switch Mode(p.mode.Load()) {
		case ZeroIndex:
			if resp.Header.Get("X-Consul-Index") != "" {
				resp.Header.Set("X-Consul-Index", "0")
			}
		case LowIndex:
			if resp.Header.Get("X-Consul-Index") != "" {
				resp.Header.Set("X-Consul-Index", "3")
			}
		case NoIndex:
			resp.Header.Del("X-Consul-Index")
		case SlowBody:
			resp.Body = &slowReader{r: resp.Body}
		case TruncatedJSON:
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			body = body[:len(body)/2]
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.TransferEncoding = nil
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		case NullElements:
			return addNulls(resp)
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
		case InvalidJSON:
			w.Header().Set("X-Consul-Index", "999999")
			io.WriteString(w, "{this is not json")
		case HugeBody:
			writeHugeBody(w)
		case Redirect:
			http.Redirect(w, r, p.elsewhere.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		case Reset:
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				if tcp, ok := conn.(*net.TCPConn); ok {
					tcp.SetLinger(0) // RST rather than FIN
				}
				conn.Close()
			}
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	p.elsewhere = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Consul-Token") != "" || r.URL.Query().Get("token") != "" ||
			r.Header.Get("Authorization") != "" {
			p.leaked.Add(1)
		}
		w.Header().Set("X-Consul-Index", "999999")
		io.WriteString(w, "[]")
	}))
	t.Cleanup(func() {
		p.elsewhere.Close()
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
	if !m.forwarding() {
		p.server.CloseClientConnections()
	}
}

// TokensLeaked is how many requests arrived at the redirect target with an
// ACL token.
func (p *Proxy) TokensLeaked() int64 { return p.leaked.Load() }

// Requests is how many requests reached the proxy.
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// slowReader hands out one byte per 100ms.
type slowReader struct{ r io.ReadCloser }

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(100 * time.Millisecond)
	if len(p) > 1 {
		p = p[:1]
	}
	return s.r.Read(p)
}

func (s *slowReader) Close() error { return s.r.Close() }
