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

func (r *recorder) answered(addr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, kind := range []string{tier.KindWhole, tier.KindDelta, tier.KindNone} {
		n += r.answers[addr+" "+kind]
	}
	return n
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
		cfg.Idle = 500 * time.Millisecond
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
			return fmt.Errorf("nothing served")
		}
		if got := indexes(cur.Snapshot("dc1")); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("serves %v, want %v", got, want)
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

// logLines captures the standard logger, which CoreDNS's log writes to, for
// the rest of the test.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func captureLog(t *testing.T) *logLines {
	l := &logLines{}
	golog.SetOutput(l)
	t.Cleanup(func() { golog.SetOutput(io.Discard) })
	return l
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count is how many lines hold all of parts.
func (l *logLines) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			n++
		}
	}
	return n
}
