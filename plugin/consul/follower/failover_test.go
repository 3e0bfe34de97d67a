package follower

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
	"github.com/coredns-consul/coredns-consul/test/faultproxy"
	"github.com/coredns-consul/coredns-consul/test/wait"
	"go.uber.org/goleak"
)

// TestFailoverToATierBehind: the tier followed is closed, killed or
// stopped; the follower answers from the other within 2 s (with the default
// Idle), and what it serves does not move back to the other's older state
// until that tier catches up.
func TestFailoverToATierBehind(t *testing.T) {
	for _, tt := range []struct {
		name string
		kind string // the failure counted
	}{
		{"closed", errUnreachable},
		{"killed (connections reset)", errUnreachable},
		{"stopped (SIGSTOP: connections open, silent)", errHang},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ahead := set(dc("dc1", "", 40, sv("a", 40), sv("b", 10)))
			behindDC := dc("dc1", "", 30, sv("a", 30), sv("b", 10), sv("gone", 20))
			a := startTier(t, "secret", ahead)
			first, fault := a.addr, a.stop
			switch tt.kind {
			case errHang:
				r := startRelay(t, a.addr)
				first, fault = r.addr, r.freeze
			case errUnreachable:
				if tt.name != "closed" {
					p := faultproxy.New(t, a.addr)
					first, fault = p.Addr, func() { p.Set(faultproxy.Reset) }
				}
			}
			b := startTier(t, "secret", set(behindDC))
			rec := newRecorder()
			f := start(t, Config{TokenFile: tokenFile(t, "secret"), Observer: rec, Idle: time.Second}, first, b.addr)
			servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 40, "b": 10})

			failed := time.Now()
			fault()
			wait.Until(t, 2*time.Second, func() error {
				if rec.answered(b.addr) == 0 {
					return fmt.Errorf("no answer from the other tier")
				}
				return nil
			})
			t.Logf("answered by the other tier %s after the first failed", time.Since(failed).Round(time.Millisecond))
			if rec.errors(first, tt.kind) == 0 {
				t.Errorf("no %s failure counted: %v", tt.kind, rec)
			}
			servedIndexes(t, f, time.Second, map[string]uint64{"a": 40, "b": 10})

			b.offer(set(with(behindDC, 41, map[string]*snapshot.Service{"b": sv("b", 41)})))
			// Past what the first tier had seen: the other's view of
			// "gone" is taken, its older "a" still is not.
			servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 40, "b": 41, "gone": 20})
		})
	}
}

// TestHungTier: a tier that accepts and never writes, or writes the
// headers and then nothing, is left for the other within Idle and a little.
func TestHungTier(t *testing.T) {
	good := set(dc("dc1", "", 10, sv("a", 10)))
	silent := func(t *testing.T) string {
		ln := listen(t)
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		return ln.Addr().String()
	}
	afterHeaders := func(t *testing.T) string {
		stop := make(chan struct{})
		addr, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-stop:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(func() { close(stop) })
		return addr
	}
	for _, tt := range []struct {
		name string
		hung func(t *testing.T) string
	}{
		{"accepts and never writes", silent},
		{"writes the headers and then nothing", afterHeaders},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const idle = 300 * time.Millisecond
			hung, other := tt.hung(t), startTier(t, "secret", good)
			rec := newRecorder()
			began := time.Now()
			f := start(t, Config{TokenFile: tokenFile(t, "secret"), Observer: rec, Idle: idle}, hung, other.addr)
			servedIndexes(t, f, idle+2*time.Second, map[string]uint64{"a": 10})
			t.Logf("served from the other tier after %s (idle %s)", time.Since(began).Round(time.Millisecond), idle)
			if rec.errors(hung, errHang) != 1 {
				t.Errorf("hangs counted %d, want 1", rec.errors(hung, errHang))
			}
		})
	}
}

// TestGarbageKeepsState: a tier that answers 200 with what is not a feed,
// or a truncated answer, is counted as garbage and left for the other; a
// follower with no other keeps serving what it had.
func TestGarbageKeepsState(t *testing.T) {
	seed := set(dc("dc1", "", 5, sv("a", 5)))
	random := make([]byte, 4096)
	rand.Read(random)
	for _, tt := range []struct {
		name    string
		handler http.Handler
		kind    string
	}{
		{"random bytes", garbage(random), errGarbage},
		{"an HTML page", garbage([]byte("<html><body>It works!</body></html>\n")), errGarbage},
		{"an empty body", garbage(nil), errGarbage},
		{"a truncated answer", garbage(truncated(t, set(dc("dc1", "", 50, sv("a", 50))))), errGarbage},
		{"a delta from a generation the follower does not hold", garbage(unheldDelta(t)), errGarbage},
		{"a 500", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusInternalServerError)
		}), errStatus},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad, _ := serve(t, tt.handler)
			rec := newRecorder()
			alone := start(t, Config{Observer: rec, Seed: seed}, bad)
			wait.Until(t, 5*time.Second, func() error {
				if n := rec.errors(bad, tt.kind); n < 2 {
					return fmt.Errorf("%d %s failures counted: %v", n, tt.kind, rec)
				}
				return nil
			})
			servedIndexes(t, alone, 0, map[string]uint64{"a": 5})

			other := startTier(t, "", set(dc("dc1", "", 10, sv("a", 10))))
			f := start(t, Config{Observer: newRecorder(), Seed: seed}, bad, other.addr)
			servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10})
		})
	}
}

// TestRefusedToken: a tier that refuses the token is logged once and
// counted, and the other tier followed; a token rotated in the file is
// read again when a tier refuses the one sent.
func TestRefusedToken(t *testing.T) {
	logs := captureLog(t)
	want := set(dc("dc1", "", 10, sv("a", 10)))
	strict, other := startTier(t, "rotated", want), startTier(t, "secret", want)
	rec := newRecorder()
	path := tokenFile(t, "secret")
	f := start(t, Config{TokenFile: path, Observer: rec}, strict.addr, other.addr)
	servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10})
	if rec.errors(strict.addr, errRefused) == 0 {
		t.Error("the refusal was not counted")
	}
	if n := logs.count(strict.addr, "403"); n != 1 {
		t.Errorf("%d log lines of the refusal, want 1", n)
	}
	if n := logs.count("secret"); n != 0 {
		t.Errorf("the token was logged")
	}

	// Only the strict tier: the follower reads the file again once refused.
	rec = newRecorder()
	g := start(t, Config{TokenFile: path, Observer: rec}, strict.addr)
	wait.Until(t, 3*time.Second, func() error {
		if n := rec.errors(strict.addr, errRefused); n < 3 {
			return fmt.Errorf("refused %d times", n)
		}
		return nil
	})
	if n := logs.count(strict.addr, "403"); n != 2 {
		t.Errorf("%d log lines of the refusals, want 1 per follower", n)
	}
	if err := os.WriteFile(path, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	servedIndexes(t, g, 5*time.Second, map[string]uint64{"a": 10})
}

// TestAnotherCluster: a tier of another Consul cluster, or of another
// local datacenter, is refused before its state is used.
func TestAnotherCluster(t *testing.T) {
	seed := set(dc("dc1", "", 5, sv("a", 5)))
	otherCluster := set(dc("dc1", "", 50, sv("a", 50)))
	otherCluster.Cluster = "c2.consul"
	otherDC := set(dc("dc2", "", 50, sv("a", 50)))
	otherDC.Local = "dc2"
	for _, tt := range []struct {
		name   string
		serves *snapshot.Set
	}{
		{"another cluster", otherCluster},
		{"another local datacenter", otherDC},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wrong, right := startTier(t, "", tt.serves), startTier(t, "", set(dc("dc1", "", 10, sv("a", 10))))
			rec := newRecorder()
			f := start(t, Config{Observer: rec, Seed: seed}, wrong.addr, right.addr)
			servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10})
			if rec.errors(wrong.addr, errCluster) == 0 {
				t.Error("the other cluster's tier was not refused")
			}
			if c, ok := f.Cluster(); c != "c1.consul" || !ok {
				t.Errorf("cluster %q, %v", c, ok)
			}
		})
	}
}

// TestStopLeavesNoGoroutine: Stop returns with every goroutine the
// follower started gone, its subscriptions' too, mid-poll and mid-backoff.
func TestStopLeavesNoGoroutine(t *testing.T) {
	live := startTier(t, "", set(dc("dc1", "", 10, sv("a", 10))))
	dead := listen(t).Addr().String() // closed at the test's end: refuses nothing, answers nothing
	before := goleak.IgnoreCurrent()
	for _, addrs := range [][]string{{live.addr}, {dead, live.addr}} {
		f, err := New(Config{Addresses: addrs, Wait: 5 * time.Second, Idle: 200 * time.Millisecond, Observer: newRecorder()})
		if err != nil {
			t.Fatal(err)
		}
		f.Start()
		cancel := f.Subscribe(tierKey("dc1"), func(*snapshot.Snapshot) {})
		f.OnSet(func(*snapshot.Set) {})
		servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10})
		f.Stop()
		// A goroutine that said it is done may take a moment to be gone.
		if err := wait.For(100*time.Millisecond, func() error {
			if left := ours(); len(left) > 0 {
				return fmt.Errorf("%d goroutines of the follower running:\n%s", len(left), strings.Join(left, "\n\n"))
			}
			return nil
		}); err != nil {
			t.Errorf("Stop returned: %v", err)
		}
		cancel()
	}
	// The transport's connection goroutines end once their connections
	// are closed, a little after.
	goleak.VerifyNone(t, before)
}

// ours are the running goroutines in the follower's code (not its tests').
func ours() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if ourFrame.MatchString(g) {
			found = append(found, g)
		}
	}
	return found
}

var ourFrame = regexp.MustCompile(`plugin/consul/follower/[a-z]+\.go:`)

// blocking is an Observer whose Answer blocks while gate is held.
type blocking struct {
	*recorder
	entered chan struct{}
	gate    chan struct{}
}

func (b blocking) Answer(addr, kind string, n int) {
	b.recorder.Answer(addr, kind, n)
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.gate
}

// TestStopWaits: Stop returns only once a subscription's publish, and the
// loop (here in its observer), have returned.
func TestStopWaits(t *testing.T) {
	for _, in := range []string{"publish", "loop"} {
		t.Run(in, func(t *testing.T) {
			tt := startTier(t, "", set(dc("dc1", "", 10, sv("a", 10))))
			entered, gate := make(chan struct{}, 1), make(chan struct{})
			obs := Observer(newRecorder())
			if in == "loop" {
				obs = blocking{newRecorder(), entered, gate}
			}
			f, err := New(Config{Addresses: []string{tt.addr}, Observer: obs})
			if err != nil {
				t.Fatal(err)
			}
			if in == "publish" {
				f.OnSet(func(*snapshot.Set) {
					entered <- struct{}{}
					<-gate
				})
			}
			f.Start()
			<-entered
			stopped := make(chan struct{})
			go func() {
				f.Stop()
				close(stopped)
			}()
			select {
			case <-stopped:
				t.Fatalf("Stop returned while the %s was running", in)
			case <-time.After(100 * time.Millisecond):
			}
			close(gate)
			<-stopped
		})
	}
}

// TestGarbageSetsNoCluster: without a snapshot file, the cluster expected
// is the first tier's whose state could be used, not what a tier that
// answers garbage claims.
func TestGarbageSetsNoCluster(t *testing.T) {
	var claim bytes.Buffer
	env := tier.Envelope{Kind: tier.KindWhole, Tier: "liar", Generation: 1, Cluster: "other.consul"}
	if err := tier.WriteAnswer(&claim, env, []byte("not a snapshot")); err != nil {
		t.Fatal(err)
	}
	liar, _ := serve(t, garbage(claim.Bytes()))
	good := startTier(t, "", set(dc("dc1", "", 10, sv("a", 10))))
	rec := newRecorder()
	f := start(t, Config{Observer: rec}, liar, good.addr)
	servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10})
	if c, _ := f.Cluster(); c != "c1.consul" {
		t.Errorf("cluster %q, want the good tier's", c)
	}
}

// unheldDelta is a delta answer from generation 7 of a tier no follower
// has heard of.
func unheldDelta(t *testing.T) []byte {
	payload, err := tier.EncodeDelta(&tier.Delta{From: 7, To: 8, Meta: snapshot.Set{Local: "dc1", Cluster: "c1.consul"}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	env := tier.Envelope{Kind: tier.KindDelta, Tier: "unknown", Generation: 8, From: 7, Cluster: "c1.consul"}
	if err := tier.WriteAnswer(&out, env, payload); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
