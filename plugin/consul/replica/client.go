package replica

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-cleanhttp"
)

// Consistency is the read consistency asked of Consul.
type Consistency int

// Consistency modes, as Consul names them (api-docs/features/consistency).
const (
	// Stale reads are answered by any server, with or without a leader: the
	// default, since DNS must not fail while Consul elects a leader.
	Stale Consistency = iota
	Default
	Consistent
)

// ParseConsistency maps a Corefile word to a Consistency.
func ParseConsistency(s string) (Consistency, error) {
	switch s {
	case "stale":
		return Stale, nil
	case "default":
		return Default, nil
	case "consistent":
		return Consistent, nil
	}
	return 0, fmt.Errorf("consistency %q is not stale, default or consistent", s)
}

// endpoints are the Consul agents or servers the replica reads from, in
// order of preference. All requests go to the active one; a request that
// fails in a way another endpoint might not moves the replica to the next.
type endpoints struct {
	addrs     []string
	clients   []*api.Client
	transport *http.Transport
	active    atomic.Int32
	// movedLogged is when a move was last logged (UnixNano), moves how
	// many happened since: with every endpoint down, each failure moves on.
	movedLogged, moves atomic.Int64
}

// newEndpoints builds one client per address, all sharing one transport whose
// connections per host are capped at maxConns, so the replica can never open
// more connections than a Consul agent accepts from one client
// (limits.http_max_conns_per_client, 200 by default). Its TLS settings are
// those creds hold now: new ones make new endpoints.
func newEndpoints(base *api.Config, creds *credentials, addrs []string, maxConns int) (*endpoints, error) {
	if len(addrs) == 0 {
		addrs = []string{base.Address}
	}
	// A transport of its own: the replica may replace its endpoints once it
	// knows the agent's connection limit, and a transport shared with the
	// old ones could still be in use by their closing connections.
	transport := cleanhttp.DefaultPooledTransport()
	if base.Transport != nil {
		transport = base.Transport.Clone()
	}
	// Set here, not left to api.NewClient: it configures TLS only on a
	// transport without a TLS config, and Clone gives one (an empty config
	// that only offers HTTP/2) to every transport that attempts HTTP/2.
	// A clone: the transport adds its protocols to the one it is given.
	transport.TLSClientConfig = creds.clientTLS().Clone()
	transport.MaxConnsPerHost = maxConns
	// Blocking queries return and are sent again all the time: keep their
	// connections for reuse rather than opening new ones.
	transport.MaxIdleConnsPerHost = maxConns
	transport.MaxIdleConns = 0
	transport.IdleConnTimeout = 90 * time.Second

	e := &endpoints{addrs: addrs, transport: transport}
	// One client for every address: the api package would build one that
	// follows redirects and reads bodies of any size. (A unix socket's
	// address gets the api package's own client: a local socket has no one
	// in between to redirect or to send a bomb.)
	httpClient := &http.Client{Transport: limitBodies{transport, MaxBody}, CheckRedirect: refuseRedirect}
	for _, addr := range addrs {
		cfg := *base
		cfg.Address = addr
		cfg.Transport = transport
		cfg.HttpClient = httpClient
		// Requests carry the token creds hold when they are sent (call):
		// the client must not read the file itself, once and for good.
		cfg.TokenFile, cfg.Token = "", creds.current()
		client, err := api.NewClient(&cfg)
		if err != nil {
			return nil, fmt.Errorf("consul client for %s: %w", addr, err)
		}
		e.clients = append(e.clients, client)
	}
	return e, nil
}

// client returns the active client and its position, to hand back to failed.
func (e *endpoints) client() (int32, *api.Client) {
	i := e.active.Load()
	return i, e.clients[i]
}

// named returns err, from a request to endpoint i, with the endpoint's
// address in front, nil for nil: Consul's own errors ("Unexpected response
// code: 404 ()") do not say which of several addresses answered. The
// address is the configured one, which never holds the ACL token (Consul's
// api package sends the token in a header). errors.As still finds the
// api.StatusError that retryElsewhere and the metrics sort errors by.
func (e *endpoints) named(i int32, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("consul at %s: %w", e.addrs[i], err)
}

// failed records that a request to endpoint i failed with err, and moves to
// the next endpoint when another one could do better. It reports whether it
// moved. Several loops may see the same failure: only the first moves on.
func (e *endpoints) failed(i int32, err error) bool {
	if len(e.clients) < 2 || !retryElsewhere(err) {
		return false
	}
	next := (i + 1) % int32(len(e.clients))
	if !e.active.CompareAndSwap(i, next) {
		return false
	}
	e.logMove(i, next, time.Now())
	return true
}

// logMove logs a move, at most one line per outageQuiet: with every
// endpoint down each failure moves on, a line per request.
func (e *endpoints) logMove(from, to int32, now time.Time) {
	n := e.moves.Add(1)
	last := e.movedLogged.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < outageQuiet || !e.movedLogged.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	e.moves.Add(-n)
	more := ""
	if n > 1 {
		more = fmt.Sprintf(" (%d moves between endpoints since the last such line)", n)
	}
	log.Warningf("consul endpoint %s failed, moving to %s%s", e.addrs[from], e.addrs[to], more)
}

// retryElsewhere tells errors that another endpoint might not have (no
// connection, time-outs, rate limits, server errors) from those every
// endpoint would give (a denied token, a bad request).
func retryElsewhere(err error) bool {
	var status api.StatusError
	if errors.As(err, &status) {
		return status.Code == http.StatusTooManyRequests || status.Code >= 500
	}
	return true
}

// allHTTPS reports whether every address will be reached over HTTPS, where
// HTTP/2 multiplexes blocking queries over few connections.
func allHTTPS(base *api.Config, addrs []string) bool {
	if len(addrs) == 0 {
		addrs = []string{base.Address}
	}
	for _, a := range addrs {
		scheme, _, found := strings.Cut(a, "://")
		if !found {
			scheme = base.Scheme
		}
		if scheme != "https" {
			return false
		}
	}
	return true
}

func (e *endpoints) close() { e.transport.CloseIdleConnections() }
