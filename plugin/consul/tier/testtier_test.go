package tier

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testTier is a tier on a loopback port, on a fake clock, serving the Set
// the test stores.
type testTier struct {
	t        *testing.T
	s        *Server
	clk      *fakeClock
	url      string
	set      atomic.Pointer[snapshot.Set]
	collects atomic.Int32
	src      *Source
	client   *http.Client
}

func startTier(t *testing.T, cfg Config) *testTier {
	t.Helper()
	clk := newFakeClock()
	s, err := newServer(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http://"
	if cfg.TLS != nil {
		scheme = "https://"
	}
	tt := &testTier{t: t, s: s, clk: clk, url: scheme + ln.Addr().String() + Path, client: http.DefaultClient}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	tt.src = &Source{
		Collect: func() *snapshot.Set { tt.collects.Add(1); return tt.set.Load() },
		Contact: func(Key) (time.Time, time.Time) { return clk.Now().Add(-time.Second), time.Time{} },
	}
	s.Attach(tt.src)
	return tt
}

// generation is the current generation's number, 0 before any.
func (tt *testTier) generation() uint64 {
	tt.s.mu.Lock()
	defer tt.s.mu.Unlock()
	if g := tt.s.gens.current(); g != nil {
		return g.n
	}
	return 0
}

// publish offers set and waits until it is served, as generation n.
func (tt *testTier) publish(set *snapshot.Set, n uint64) {
	tt.t.Helper()
	tt.set.Store(set)
	tt.s.Offer()
	wait.Until(tt.t, 5*time.Second, func() error {
		if g := tt.generation(); g != n {
			return fmt.Errorf("generation %d, want %d", g, n)
		}
		return nil
	})
}

// settle offers what is stored and waits until the server has collected
// it (and so decided whether to make a generation of it).
func (tt *testTier) settle() {
	tt.t.Helper()
	// The loop collects one offer at a time: once a second collect has
	// begun after this one, the first is decided.
	for range 2 {
		n := tt.collects.Load()
		tt.s.Offer()
		wait.Until(tt.t, 5*time.Second, func() error {
			if tt.collects.Load() == n {
				return errors.New("not collected yet")
			}
			return nil
		})
	}
}

func (tt *testTier) get(query, token string) *http.Response {
	tt.t.Helper()
	req, err := http.NewRequest(http.MethodGet, tt.url+"?"+query, nil)
	if err != nil {
		tt.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := tt.client.Do(req)
	if err != nil {
		tt.t.Fatal(err)
	}
	tt.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// follow asks from generation index of tier id and reads the answer.
func (tt *testTier) follow(index uint64, id, wait string) (Envelope, []byte) {
	tt.t.Helper()
	resp := tt.get(fmt.Sprintf("index=%d&tier=%s&wait=%s", index, id, wait), "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentType {
		tt.t.Fatalf("status %s, type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	env, payload, err := ReadAnswer(resp.Body, 1<<30)
	if err != nil {
		tt.t.Fatal(err)
	}
	return env, payload
}

// idleTimers waits until no answer is in progress (a follower may read
// its answer before the handler stopped its timers) and returns how many
// timers run then: the loop's.
func (tt *testTier) idleTimers() int {
	tt.t.Helper()
	wait.Until(tt.t, 5*time.Second, func() error {
		if n := value(tt.t, followers); n != 0 {
			return fmt.Errorf("%v answers in progress", n)
		}
		return nil
	})
	return tt.clk.Waiting()
}

// waitTimers waits until n timers and tickers run on the fake clock: the
// answers being tested wait on them.
func (tt *testTier) waitTimers(n int) {
	tt.t.Helper()
	wait.Until(tt.t, 5*time.Second, func() error {
		if got := tt.clk.Waiting(); got != n {
			return fmt.Errorf("%d timers, want %d", got, n)
		}
		return nil
	})
}

func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}
