package follower

import (
	"bytes"
	"fmt"
	"io"
	golog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
	"github.com/coredns-consul/coredns-consul/test/freeport"
	"github.com/coredns-consul/coredns-consul/test/wait"

	clog "github.com/coredns/coredns/plugin/pkg/log"
)

func init() { clog.Discard() }

// recorder is an Observer the tests read.
type recorder struct {
	mu       sync.Mutex
	errs     map[string]int // "addr kind"
	answers  map[string]int // "addr kind"
	switches int
	held     int
}

func newRecorder() *recorder { return &recorder{errs: map[string]int{}, answers: map[string]int{}} }

func (r *recorder) Answer(addr, kind string, _ int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[addr+" "+kind]++
}

func (r *recorder) Error(addr, kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs[addr+" "+kind]++
}

func (r *recorder) Switch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.switches++
}

func (r *recorder) Held(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = n
}

func (r *recorder) errors(addr, kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[addr+" "+kind]
}

func (r *recorder) answer(addr, kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answers[addr+" "+kind]
}

func (r *recorder) answered(addr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, kind := range []string{tier.KindWhole, tier.KindDelta, tier.KindNone} {
		n += r.answers[addr+" "+kind]
	}
	return n
}

// String lists the failures counted.
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.errs)
}

// listen is a loopback listener on a free port.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(freeport.Port(t))))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serve serves h on loopback until the test ends or stop is called; it
// returns the address.
func serve(t *testing.T, h http.Handler) (addr string, stop func()) {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() { srv.Close() }
}

// start starts a follower of addrs and stops it when the test ends.
func start(t *testing.T, cfg Config, addrs ...string) *Follower {
	t.Helper()
	cfg.Addresses = addrs
	if cfg.Observer == nil {
		cfg.Observer = newRecorder()
	}
	if cfg.Wait == 0 {
		cfg.Wait = 5 * time.Second
	}
	if cfg.Idle == 0 {
		cfg.Idle = time.Second
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Start()
	t.Cleanup(f.Stop)
	return f
}

// servedIndexes waits until the follower serves want in dc1 (service:
// index), and fails with what it serves.
func servedIndexes(t *testing.T, f *Follower, timeout time.Duration, want map[string]uint64) {
	t.Helper()
	wait.Until(t, timeout, func() error {
		cur := f.current()
		if cur == nil {
			return fmt.Errorf("nothing served (failures: %v)", f.observer)
		}
		if got := indexes(cur.Snapshot("dc1")); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("serves %v, want %v (failures: %v)", got, want, f.observer)
		}
		return nil
	})
}

// garbage answers 200 with body, as a feed's content type.
func garbage(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.coredns-consul.follow")
		w.Write(body)
	})
}

// truncated is a whole answer cut in its payload.
func truncated(t *testing.T, set *snapshot.Set) []byte {
	var payload, out bytes.Buffer
	if err := snapshot.Encode(&payload, set); err != nil {
		t.Fatal(err)
	}
	env := tier.Envelope{Kind: tier.KindWhole, Tier: "cut", Generation: 1, Cluster: set.Cluster}
	if err := tier.WriteAnswer(&out, env, payload.Bytes()); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()[:out.Len()-payload.Len()/2]
}

// tokenFile writes token to a file of the test's; it returns the path.
func tokenFile(t *testing.T, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tier.token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func tierKey(dc string) tier.Key { return tier.Key{Datacenter: dc} }

// logLines keeps what the standard logger, which CoreDNS's log writes
// to, writes for the rest of the test.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func captureLog(t *testing.T) *logLines {
	l := &logLines{}
	golog.SetOutput(l)
	t.Cleanup(func() { golog.SetOutput(io.Discard) })
	return l
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, string(p))
	l.mu.Unlock()
	return len(p), nil
}

// count is how many lines hold all of parts.
func (l *logLines) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			n++
		}
	}
	return n
}

// testTier is a real tier.Server on loopback, fed by a Source the test
// sets: offer makes what it serves next, stop closes it.
type testTier struct {
	addr     string
	server   *tier.Server
	http     *http.Server
	requests atomic.Int64 // that arrived
	set      atomic.Pointer[snapshot.Set]
	failing  sync.Map // tier.Key: since when the tier's reads of it fail
}

// startTier starts a tier that takes token ("": no authentication) and
// serves sets in turn, ending with the last.
func startTier(t *testing.T, token string, sets ...*snapshot.Set) *testTier {
	t.Helper()
	return tierOn(t, listen(t), token, sets...)
}

// restart closes tt and starts another tier (another instance ID) on its
// address, serving sets.
func (tt *testTier) restart(t *testing.T, token string, sets ...*snapshot.Set) *testTier {
	t.Helper()
	tt.stop()
	ln, err := net.Listen("tcp", tt.addr)
	if err != nil {
		t.Fatal(err)
	}
	return tierOn(t, ln, token, sets...)
}

func tierOn(t *testing.T, ln net.Listener, token string, sets ...*snapshot.Set) *testTier {
	t.Helper()
	cfg := tier.Config{NoAuth: token == "", Heartbeat: 100 * time.Millisecond}
	if token != "" {
		cfg.TokenFile = tokenFile(t, token)
	}
	s, err := tier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tt := &testTier{server: s, addr: ln.Addr().String()}
	s.Attach(&tier.Source{
		Collect: tt.set.Load,
		Contact: func(k tier.Key) (time.Time, time.Time) {
			if since, ok := tt.failing.Load(k); ok {
				return since.(time.Time), since.(time.Time)
			}
			return time.Now(), time.Time{}
		},
	})
	h := s.Handler()
	tt.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tt.requests.Add(1)
		h.ServeHTTP(w, r)
	})}
	go tt.http.Serve(ln)
	t.Cleanup(tt.stop)
	for _, set := range sets {
		tt.offer(set)
	}
	return tt
}

func (tt *testTier) offer(s *snapshot.Set) {
	tt.set.Store(s)
	tt.server.Offer()
}

// stop closes the tier as tier.Server.Close does: waiting answers end
// with "none", then the connections.
func (tt *testTier) stop() {
	tt.server.Close()
	tt.http.Close()
}

// relay forwards TCP connections to target until frozen: from then on it
// moves no byte and closes nothing, as a tier stopped by SIGSTOP.
type relay struct {
	addr   string
	frozen chan struct{}
	once   sync.Once
}

func startRelay(t *testing.T, target string) *relay {
	ln := listen(t)
	r := &relay{addr: ln.Addr().String(), frozen: make(chan struct{})}
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() {
				<-done
				c.Close()
				up.Close()
			}()
			go r.copy(c, up)
			go r.copy(up, c)
		}
	}()
	return r
}

func (r *relay) freeze() { r.once.Do(func() { close(r.frozen) }) }

func (r *relay) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-r.frozen:
			return // what was read is dropped: stopped processes send nothing
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// waitErrors waits for a failure of kind from addr to be counted.
func waitErrors(t *testing.T, rec *recorder, addr, kind string) {
	t.Helper()
	wait.Until(t, 5*time.Second, func() error {
		if rec.errors(addr, kind) == 0 {
			return fmt.Errorf("no %s failure from %s counted: %s", kind, addr, rec)
		}
		return nil
	})
}

// asked waits for a request to reach the tier.
func (tt *testTier) asked(t *testing.T) {
	t.Helper()
	wait.Until(t, 5*time.Second, func() error {
		if tt.requests.Load() == 0 {
			return fmt.Errorf("no request yet")
		}
		return nil
	})
}
