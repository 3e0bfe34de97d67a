package tier

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	clog "github.com/coredns/coredns/plugin/pkg/log"
)

var log = clog.NewWithPlugin("consul")

// Config is how a tier serves followers.
type Config struct {
	// TokenFile holds the token followers send as "Authorization: Bearer
	// <token>"; read again when it changes (looked at every 2 s, and at
	// once on a refused token).
	TokenFile string
	// NoAuth serves without a token: the Corefile says so explicitly.
	NoAuth bool
	// ClientCAs: TLS client certificates are checked by the listener
	// (TLS.ClientAuth); a verified one is enough to follow.
	ClientCAs bool
	// TLS serves HTTPS; nil serves plain HTTP.
	TLS *tls.Config
	// MaxTransfers bounds the whole-state answers in flight, so that a
	// fleet-wide restart does not flatten the tier; others wait,
	// heartbeating, for a slot. Default 4.
	MaxTransfers int
	// History is the generations kept to answer deltas from; a follower
	// further behind gets the whole state. Default 64.
	History int
	// Heartbeat is how often a waiting answer writes a heartbeat. Default
	// 500ms.
	Heartbeat time.Duration
	// MaxWait caps the wait a follower asks for. Default 60s.
	MaxWait time.Duration
	// CoordinatesEvery: a Set whose only change is the nodes' coordinates
	// (which move every few seconds on every node) makes a generation at
	// most this often. Default 10s.
	CoordinatesEvery time.Duration
}

func (c *Config) defaults() {
	c.MaxTransfers = cmpOr(c.MaxTransfers, 4)
	c.History = cmpOr(c.History, 64)
	c.Heartbeat = cmpOr(c.Heartbeat, 500*time.Millisecond)
	c.MaxWait = cmpOr(c.MaxWait, 60*time.Second)
	c.CoordinatesEvery = cmpOr(c.CoordinatesEvery, 10*time.Second)
}

// cmpOr is v, or def when v is not positive.
func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Source is what a tier serves: the block that replicates Consul.
type Source struct {
	// Collect is the Set served now; nil before the local datacenter has a
	// snapshot.
	Collect func() *snapshot.Set
	// Contact is the tier's contact with Consul for a snapshot, as
	// replica.Replicator.Contact says it.
	Contact func(k Key) (last, failing time.Time)
}

// Server serves a tier's Set to followers.
type Server struct {
	cfg   Config
	id    string
	auth  *auth
	clock clock
	slots chan struct{}

	offers chan struct{}
	closed chan struct{}
	done   chan struct{}
	once   sync.Once

	mu   sync.Mutex
	src  *Source
	gens *generations
	// pulse is closed, and replaced, when waiting followers must look
	// again without a new generation: the first one arrived, or the
	// tier's contact with Consul started or stopped failing (followers
	// learn of their staleness then, not at their wait's end).
	pulse    chan struct{}
	failing  string // the snapshots whose reads failed at the last look
	servers  []*http.Server
	coordsAt time.Time // when a generation last changed coordinates

	// beforeWhole, when set by a test, runs holding a transfer slot.
	beforeWhole func()
}

// New makes a server with a new, random instance ID.
func New(cfg Config) (*Server, error) { return newServer(cfg, realClock{}) }

func newServer(cfg Config, c clock) (*Server, error) {
	cfg.defaults()
	a, err := newAuth(cfg, c)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("tier: instance ID: %w", err)
	}
	s := &Server{cfg: cfg, id: hex.EncodeToString(id), auth: a, clock: c,
		slots: make(chan struct{}, cfg.MaxTransfers), gens: newGenerations(cfg.History),
		offers: make(chan struct{}, 1), closed: make(chan struct{}), done: make(chan struct{}), pulse: make(chan struct{})}
	// Made here, not in loop, so that a test counting the fake clock's
	// timers finds it there from the start.
	contact := c.NewTicker(contactEvery)
	go s.loop(contact)
	return s, nil
}

// ID is the server's instance ID.
func (s *Server) ID() string { return s.id }

// Attach makes src the block that is served: a reload attaches the new
// block's.
func (s *Server) Attach(src *Source) {
	s.mu.Lock()
	s.src = src
	s.mu.Unlock()
	s.Offer()
}

// Detach stops serving src; true when src was the attached one (the caller
// then closes the server). Followers keep the last generation until another
// source is attached.
func (s *Server) Detach(src *Source) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.src != src || src == nil {
		return false
	}
	s.src = nil
	return true
}

func (s *Server) source() *Source {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src
}

// Offer says something new may be served; it never blocks. The server's
// goroutine collects the Set and makes a generation when it changed.
func (s *Server) Offer() {
	select {
	case s.offers <- struct{}{}:
	default:
	}
}

// contactEvery is how often the tier looks whether its reads of Consul
// started or stopped failing.
const contactEvery = time.Second

// loop collects what is offered, one Set at a time, and looks at the
// contact with Consul on every tick of contact.
func (s *Server) loop(contact timer) {
	defer close(s.done)
	defer contact.Stop()
	var due timer
	for {
		var dueC <-chan time.Time
		if due != nil {
			dueC = due.C()
		}
		select {
		case <-s.closed:
			if due != nil {
				due.Stop()
			}
			return
		case <-s.offers:
		case <-dueC:
			due = nil
		case <-contact.C():
			s.lookAtContact()
			continue
		}
		if wait := s.collect(); wait > 0 && due == nil {
			due = s.clock.NewTimer(wait)
		}
	}
}

// collect makes a generation of the source's Set when it changed. A change
// of coordinates alone waits until CoordinatesEvery has passed since the
// last generation that changed them: collect then returns how long.
func (s *Server) collect() (wait time.Duration) {
	src := s.source()
	if src == nil {
		return 0
	}
	set := safeCollect(src)
	if set == nil {
		return 0
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.gens.current()
	coords := true
	if cur != nil {
		if sameSet(set, cur.set) {
			return 0
		}
		var other bool
		coords, other = classify(cur.set, set)
		switch {
		case !coords && !other:
			return 0 // rebuilt, not changed: a new Built time alone
		case !other && now.Sub(s.coordsAt) < s.cfg.CoordinatesEvery:
			return s.cfg.CoordinatesEvery - now.Sub(s.coordsAt)
		}
	}
	if coords {
		s.coordsAt = now
	}
	if cur == nil {
		s.pulseLocked() // followers waiting for the first
	}
	g := s.gens.add(set)
	generationGauge.Set(float64(g.n))
	return 0
}

// lookAtContact wakes the waiting followers when a snapshot's reads of
// Consul started or stopped failing since the last look: their answer
// ("none") says so, and they count as stale as the tier does, at once.
func (s *Server) lookAtContact() {
	s.mu.Lock()
	cur := s.gens.current()
	s.mu.Unlock()
	if cur == nil {
		return
	}
	var failing strings.Builder
	for _, c := range s.contacts(cur.set) {
		if c.FailingFor > 0 {
			failing.WriteString(c.Key.String() + " ")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := failing.String(); f != s.failing {
		s.failing = f
		s.pulseLocked()
	}
}

// pulseLocked wakes every waiting follower to look again.
func (s *Server) pulseLocked() {
	close(s.pulse)
	s.pulse = make(chan struct{})
}

// safeCollect is src's Set; a panic in collecting it is logged and
// leaves the tier serving what it served.
func safeCollect(src *Source) (set *snapshot.Set) {
	defer func() {
		if p := recover(); p != nil {
			log.Errorf("tier: collecting the state to serve panicked: %.200v\n%s", p, debug.Stack())
			set = nil
		}
	}()
	return src.Collect()
}

// Serve answers followers on ln (over TLS when the Config says so) until
// Close.
func (s *Server) Serve(ln net.Listener) error {
	// No write timeout: an answer is a long-poll. A connection idle for
	// longer than a follower ever waits between polls is a follower gone.
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 2 * s.cfg.MaxWait, TLSConfig: s.cfg.TLS}
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	default:
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("tier: serving followers: %w", err)
	}
	return nil
}

// Close ends every waiting answer (with "none", so that a follower moves
// on at once), then the listeners and the connections.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closed)
		<-s.done
		s.mu.Lock()
		servers := s.servers
		s.mu.Unlock()
		for _, srv := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if srv.Shutdown(ctx) != nil {
				srv.Close()
			}
			cancel()
		}
	})
}
