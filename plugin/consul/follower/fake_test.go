package follower

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// fakeTier serves generations of Sets by the feed's rules, until the real
// tier.Server is merged.
type fakeTier struct {
	id, token string
	mu        sync.Mutex
	gens      []*snapshot.Set // generation i+1
	newer     chan struct{}   // closed by the next generation
}

func startFake(t *testing.T, id, token string, sets ...*snapshot.Set) (*fakeTier, string, func()) {
	ft := &fakeTier{id: id, token: token, newer: make(chan struct{})}
	for _, s := range sets {
		ft.offer(s)
	}
	addr, stop := serve(t, ft)
	return ft, addr, stop
}

func (ft *fakeTier) offer(s *snapshot.Set) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.gens = append(ft.gens, s)
	close(ft.newer)
	ft.newer = make(chan struct{})
}

func (ft *fakeTier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ft.token != "" && r.Header.Get("Authorization") != "Bearer "+ft.token {
		http.Error(w, "wrong token", http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	index, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	wait, _ := time.ParseDuration(q.Get("wait"))
	w.Header().Set("Content-Type", "application/vnd.coredns-consul.follow")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	deadline := time.After(wait)
	for {
		ft.mu.Lock()
		gen, newer := uint64(len(ft.gens)), ft.newer
		gens := ft.gens
		ft.mu.Unlock()
		if gen > 0 && (index != gen || q.Get("tier") != ft.id) {
			ft.answer(w, gens, index, q.Get("tier") == ft.id)
			return
		}
		select {
		case <-newer:
		case <-deadline:
			tier.WriteAnswer(w, tier.Envelope{Kind: tier.KindNone, Tier: ft.id, Generation: gen}, nil)
			return
		case <-time.After(100 * time.Millisecond):
			w.Write([]byte{tier.Heartbeat})
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

func (ft *fakeTier) answer(w http.ResponseWriter, gens []*snapshot.Set, index uint64, same bool) {
	gen := uint64(len(gens))
	cur := gens[gen-1]
	env := tier.Envelope{Kind: tier.KindWhole, Tier: ft.id, Generation: gen, Cluster: cur.Cluster}
	for _, s := range append(cur.Datacenters, cur.Peers...) {
		env.Contact = append(env.Contact, tier.Contact{Key: tier.KeyOf(s)})
	}
	var payload []byte
	if same && index > 0 && index < gen {
		d := tier.Diff(gens[index-1], cur)
		d.From, d.To = index, gen
		payload, _ = tier.EncodeDelta(d)
		env.Kind, env.From = tier.KindDelta, index
	} else {
		var buf bytes.Buffer
		snapshot.Encode(&buf, cur)
		payload = buf.Bytes()
	}
	tier.WriteAnswer(w, env, payload)
}

// testTier is a tier serving on loopback: offer makes a new generation of
// what it serves, stop closes it.
type testTier struct {
	addr  string
	offer func(*snapshot.Set)
	stop  func()
}

// startTier starts a tier that takes token and serves sets, the last
// first.
func startTier(t *testing.T, token string, sets ...*snapshot.Set) testTier {
	t.Helper()
	ft, addr, stop := startFake(t, "tier-"+strconv.Itoa(int(time.Now().UnixNano()%1e6)), token, sets...)
	return testTier{addr: addr, offer: ft.offer, stop: stop}
}
