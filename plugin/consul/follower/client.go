package follower

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// Backoff per tier after a failure: two dead tiers are not spun on, and a
// tier that fails once is tried again soon.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

// firstWait is the wait asked of a tier before it answered anything.
const firstWait = time.Second

// maxPayload bounds an answer's payload, compressed; snapshot.Decode and
// tier.DecodeDelta bound it decompressed.
const maxPayload = 256 << 20

// tierConn is one tier as the loop sees it.
type tierConn struct {
	addr    string // as configured: the metrics' and logs' name for it
	url     string // scheme://host:port
	id      string // the instance ID it last answered with
	backoff time.Duration
	retryAt time.Time
	logged  string // the kind of failure last logged; "" while it answers
	// cannotReadAt is when it last reported that it cannot read Consul
	// (skip.go).
	cannotReadAt time.Time
}

// failure is a request to a tier that failed, sorted for metrics and logs.
type failure struct {
	kind string
	err  error
}

func (f *failure) Error() string { return f.kind + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(kind string, format string, args ...any) *failure {
	return &failure{kind, fmt.Errorf(format, args...)}
}

// tierURL makes a tier's base URL from an address: "host:port", whose
// scheme follows whether TLS is configured, or a URL with its scheme.
func tierURL(addr string, tls bool) (string, error) {
	if !strings.Contains(addr, "://") {
		scheme := "http"
		if tls {
			scheme = "https"
		}
		addr = scheme + "://" + addr
	}
	u, err := url.Parse(addr)
	switch {
	case err != nil:
		return "", fmt.Errorf("tier address %q: %w", addr, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Path != "" && u.Path != "/":
		return "", fmt.Errorf("tier address %q: want host:port or http(s)://host:port", addr)
	}
	return u.Scheme + "://" + u.Host, nil
}

// run reads the tiers until ctx ends: it stays with a tier while it
// answers, and on any failure goes to the next one whose backoff is over.
func (f *Follower) run(ctx context.Context) {
	cur := f.cfg.First % len(f.tiers)
	for ctx.Err() == nil {
		t := f.tiers[cur]
		if wait := time.Until(t.retryAt); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		err := f.poll(ctx, t)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			f.answered(t)
			if !f.cannotRead(t) {
				continue
			}
		} else {
			f.failed(t, err)
		}
		if next := f.next(cur); next != cur {
			cur = next
			f.observer.Switch()
		}
	}
}

// next is the tier to try after cur failed: the first, from the one after
// cur round to cur itself, whose backoff ends soonest.
func (f *Follower) next(cur int) int {
	best := -1
	for i := 1; i <= len(f.tiers); i++ {
		j := (cur + i) % len(f.tiers)
		if best < 0 || f.tiers[j].retryAt.Before(f.tiers[best].retryAt) {
			best = j
		}
	}
	return best
}

func (f *Follower) answered(t *tierConn) {
	t.backoff, t.retryAt = 0, time.Time{}
	if t.logged != "" {
		log.Infof("follower: tier %s answers again", t.addr)
		t.logged = ""
	}
	f.state.succeeded(f.tiers)
}

// failed counts and logs a failure, once per tier and kind of failure in
// a row, and backs the tier off.
func (f *Follower) failed(t *tierConn, err error) {
	var fl *failure
	if !errors.As(err, &fl) {
		fl = &failure{errUnreachable, err}
	}
	f.observer.Error(t.addr, fl.kind)
	switch fl.kind {
	case errRefused:
		f.token.refused()
	case errGarbage:
		f.gen = 0 // the whole state next, rather than a delta that may fail alike
	}
	if t.logged != fl.kind {
		t.logged = fl.kind
		log.Warningf("follower: tier %s: %v; trying the next tier", t.addr, fl.err)
	}
	t.backoff = min(max(2*t.backoff, backoffMin), backoffMax)
	t.retryAt = time.Now().Add(t.backoff)
	f.state.tierFailed(t, f.tiers)
}

// poll makes one long-poll to t and applies its answer. No byte from the
// tier for Idle, from the request's start to the payload's end, ends it as
// a hang.
func (f *Follower) poll(ctx context.Context, t *tierConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := newWatchdog(f.cfg.Idle, cancel)
	defer idle.stop()
	wait := f.cfg.Wait
	switch {
	case f.gen == 0 || t.id != f.baseTier:
		// What is held is not this tier's: one that has a state answers
		// at once whatever the wait, and one that has none yet may not
		// wake its waiters when it gets one.
		wait = min(wait, firstWait)
	case len(f.merge.div) > 0:
		wait = min(wait, settle) // to look again when what differs may have settled
	}
	q := url.Values{"index": {strconv.FormatUint(f.gen, 10)}, "tier": {f.baseTier}, "wait": {wait.String()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url+"/v1/follow?"+q.Encode(), nil)
	if err != nil {
		return fail(errUnreachable, "%w", err)
	}
	if tok := f.token.get(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return idle.explain(fail(errUnreachable, "%w", err))
	}
	defer resp.Body.Close()
	body := &idleReader{r: resp.Body, w: idle, seen: &f.state.lastByte}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		msg, _ := io.ReadAll(io.LimitReader(body, 256))
		return fail(errRefused, "refused with %s: %s", resp.Status, snapshot.Quote(strings.TrimSpace(string(msg))))
	default:
		return fail(errStatus, "answered %s", resp.Status)
	}
	env, payload, err := tier.ReadAnswer(body, maxPayload)
	switch {
	case err == nil:
	case !body.began && body.err != nil && !errors.Is(body.err, io.EOF):
		// Cut before anything but heartbeats: the tier went away
		// (killed, restarted), it did not answer garbage.
		return idle.explain(fail(errUnreachable, "connection ended while waiting for an answer: %w", body.err))
	case errors.Is(err, tier.ErrGarbage) && !idle.fired():
		return fail(errGarbage, "%w", err)
	default:
		return idle.explain(fail(errUnreachable, "%w", err))
	}
	// What follows the payload is nothing; read to the end so that the
	// connection is used again.
	io.Copy(io.Discard, io.LimitReader(body, 4096))
	idle.stop()
	return f.apply(t, env, payload)
}

// watchdog cancels a request when no byte came for its time.
type watchdog struct {
	d     time.Duration
	timer *time.Timer
	hung  atomic.Bool
}

func newWatchdog(d time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{d: d}
	w.timer = time.AfterFunc(d, func() {
		w.hung.Store(true)
		cancel()
	})
	return w
}

func (w *watchdog) alive()      { w.timer.Reset(w.d) }
func (w *watchdog) stop()       { w.timer.Stop() }
func (w *watchdog) fired() bool { return w.hung.Load() }

// explain makes a failure the watchdog caused a hang.
func (w *watchdog) explain(f *failure) *failure {
	if w.fired() {
		return fail(errHang, "no byte for %s: the tier hangs", w.d)
	}
	return f
}

// idleReader tells the watchdog of every byte read, and when; it keeps
// whether an answer began (a byte that is not a heartbeat) and how reading
// ended.
type idleReader struct {
	r     io.Reader
	w     *watchdog
	seen  *atomic.Int64
	began bool
	err   error
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 && !r.w.fired() {
		r.w.alive()
		r.seen.Store(time.Now().UnixNano())
	}
	if !r.began && slices.ContainsFunc(p[:n], func(b byte) bool { return b != tier.Heartbeat }) {
		r.began = true
	}
	if err != nil {
		r.err = err
	}
	return n, err
}
