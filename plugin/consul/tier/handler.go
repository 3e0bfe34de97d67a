package tier

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// ContentType is the type of a follow answer.
const ContentType = "application/vnd.coredns-consul.follow"

// Path is where followers ask.
const Path = "/v1/follow"

// Handler answers GET /v1/follow?index=G&tier=ID&wait=DUR.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, s.follow)
	return mux
}

// request is one follower's long-poll.
type request struct {
	s        *Server
	w        http.ResponseWriter
	rc       *http.ResponseController
	ctx      context.Context
	index    uint64
	tier     string
	deadline timer
	beat     timer
}

func (s *Server) follow(w http.ResponseWriter, r *http.Request) {
	if status, why := s.auth.check(r); status != 0 {
		answers.WithLabelValues("refused").Inc()
		http.Error(w, why, status)
		return
	}
	q := &request{s: s, w: w, rc: http.NewResponseController(w), ctx: r.Context(), tier: r.URL.Query().Get("tier")}
	wait, err := q.parse(r)
	if err != nil {
		answers.WithLabelValues("refused").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	followers.Inc()
	defer followers.Dec()
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(http.StatusOK)
	if q.rc.Flush() != nil {
		return
	}
	q.deadline, q.beat = s.clock.NewTimer(wait), s.clock.NewTicker(s.cfg.Heartbeat)
	defer q.deadline.Stop()
	defer q.beat.Stop()
	q.answer()
}

// parse reads the request's index and wait, the wait capped at MaxWait.
func (q *request) parse(r *http.Request) (time.Duration, error) {
	v := r.URL.Query()
	if i := v.Get("index"); i != "" {
		n, err := strconv.ParseUint(i, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("index %.40q is not a generation", i)
		}
		q.index = n
	}
	wait := q.s.cfg.MaxWait
	if w := v.Get("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("wait %.40q is not a duration", w)
		}
		wait = min(d, wait)
	}
	return wait, nil
}

// answer brings the follower to the current generation, or waits for a
// newer one until the wait's end.
func (q *request) answer() {
	for {
		s := q.s
		s.mu.Lock()
		cur := s.gens.current()
		var base *generation
		if cur != nil && q.tier == s.id && q.index != 0 {
			base = s.gens.get(q.index)
		}
		pulse := s.pulse
		s.mu.Unlock()
		switch {
		case cur != nil && base == nil:
			q.whole()
			return
		case cur != nil && base != cur:
			q.delta(base, cur)
			return
		}
		var changed <-chan struct{}
		if cur != nil {
			changed = cur.changed
		}
		switch q.waitFor(changed, pulse, nil) {
		case woken:
			continue
		case pulsed:
			if cur == nil {
				continue // the first generation
			}
			// The contact with Consul changed: said now, in a "none".
			q.write(KindNone, cur, 0, nil)
		case expired, closing:
			q.write(KindNone, cur, 0, nil)
		}
		return
	}
}

type waited int

const (
	woken waited = iota
	pulsed
	expired
	closing
	gone
)

// waitFor waits for changed or pulse to close or slots to take a value,
// writing heartbeats until then.
func (q *request) waitFor(changed, pulse <-chan struct{}, slots chan<- struct{}) waited {
	deadline := q.deadline.C()
	if slots != nil {
		deadline = nil // a follower waits for a slot however long it takes
	}
	for {
		select {
		case <-changed:
			return woken
		case <-pulse:
			return pulsed
		case slots <- struct{}{}:
			return woken
		case <-deadline:
			return expired
		case <-q.s.closed:
			return closing
		case <-q.ctx.Done():
			return gone
		case <-q.beat.C():
			if _, err := q.w.Write([]byte{Heartbeat}); err != nil || q.rc.Flush() != nil {
				return gone
			}
		}
	}
}

// whole sends the current generation's whole state once a transfer slot is
// free.
func (q *request) whole() {
	s := q.s
	transfersWaiting.Inc()
	got := q.waitFor(nil, nil, s.slots)
	transfersWaiting.Dec()
	switch got {
	case closing:
		q.write(KindNone, nil, 0, nil)
		return
	case gone:
		return
	}
	defer func() { <-s.slots }()
	if s.beforeWhole != nil {
		s.beforeWhole()
	}
	s.mu.Lock()
	cur := s.gens.current() // newer than when the follower started to wait, maybe
	e := cur.whole
	s.mu.Unlock()
	if e == nil {
		e = &encoded{}
	}
	payload, err := e.get(func() ([]byte, error) {
		var buf bytes.Buffer
		err := snapshot.Encode(&buf, cur.set)
		return buf.Bytes(), err
	})
	if err != nil {
		log.Errorf("tier: encoding generation %d: %v", cur.n, err)
		return
	}
	q.write(KindWhole, cur, 0, payload)
}

// delta sends what changed from base to cur.
func (q *request) delta(base, cur *generation) {
	s := q.s
	s.mu.Lock()
	e := cur.delta(base.n)
	s.mu.Unlock()
	payload, err := e.get(func() ([]byte, error) {
		d := Diff(base.set, cur.set)
		d.From, d.To = base.n, cur.n
		return EncodeDelta(d)
	})
	if err != nil {
		log.Errorf("tier: encoding the delta from generation %d to %d: %v", base.n, cur.n, err)
		return
	}
	q.write(KindDelta, cur, base.n, payload)
}

// write writes an answer of kind bringing the follower to g (nil: before
// any Set).
func (q *request) write(kind string, g *generation, from uint64, payload []byte) {
	env := Envelope{Kind: kind, Tier: q.s.id, From: from}
	if g != nil {
		env.Generation, env.Cluster, env.Contact = g.n, g.set.Cluster, q.s.contacts(g.set)
	}
	answers.WithLabelValues(kind).Inc()
	cw := &countingWriter{w: q.w}
	if err := WriteAnswer(cw, env, payload); err == nil {
		q.rc.Flush()
	}
	answerBytes.WithLabelValues(kind).Add(float64(cw.n))
}

// contacts is how current the tier is with Consul for each snapshot of set.
func (s *Server) contacts(set *snapshot.Set) []Contact {
	src := s.source()
	if src == nil || src.Contact == nil {
		return nil
	}
	now := s.clock.Now()
	out := make([]Contact, 0, len(set.Datacenters)+len(set.Peers))
	for _, snap := range all(set) {
		k := KeyOf(snap)
		last, failing := src.Contact(k)
		if last.IsZero() {
			last = snap.Built // read from the tier's file, never from Consul since
		}
		c := Contact{Key: k, LastAgo: max(0, now.Sub(last))}
		if !failing.IsZero() {
			c.FailingFor = max(0, now.Sub(failing))
		}
		out = append(out, c)
	}
	return out
}

type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
