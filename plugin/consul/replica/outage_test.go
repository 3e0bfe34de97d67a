package replica

import (
	"bytes"
	"errors"
	golog "log"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// logLines captures the standard logger, which CoreDNS's log writes to, for
// the rest of the test.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func captureLog(t *testing.T) *logLines {
	l := &logLines{}
	golog.SetOutput(l)
	t.Cleanup(func() { golog.SetOutput(os.Stderr) })
	return l
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// take returns the lines written since the last take.
func (l *logLines) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.buf.String())
	l.buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestOutageLogsOnce: with Consul down, 1,000 watchers and every other loop
// retrying for outageFor log one line, not one per watcher per retry; and
// one more when Consul answers again. LOG_OUTAGE_FOR (a duration) with the
// default backoff measures the lines of a longer outage.
func TestOutageLogsOnce(t *testing.T) {
	var outageFor time.Duration
	cfg := testConfig()
	d, err := time.ParseDuration(os.Getenv("LOG_OUTAGE_FOR"))
	measuring := err == nil
	if measuring {
		outageFor = d
		def := DefaultConfig()
		cfg.BackoffMin, cfg.BackoffMax = def.BackoffMin, def.BackoffMax
	}
	const services = 1000
	cat := newMemCatalog()
	cat.populate(services, 1)
	cfg.MaxWatchers = services
	_, ev := startMem(t, cat, cfg)
	ev.waitFor(t, "every service watched", func() bool { return ev.watched.Load() == services })
	logs := captureLog(t)

	cat.setFail(errors.New("connect: connection refused"))
	began := time.Now()
	if measuring {
		time.Sleep(outageFor) // lines per minute of a real outage
	} else {
		// Every watcher has failed several times: each retry that used to
		// log has run.
		from := ev.failures.Load()
		ev.waitFor(t, "every watcher retried", func() bool { return ev.failures.Load() >= from+5*services })
	}
	down := logs.take()
	t.Logf("%d failed requests in %s: %d log lines", ev.failures.Load(), time.Since(began).Round(time.Millisecond), len(down))
	if len(down) != 1 || !strings.Contains(down[0], "connection refused") {
		t.Errorf("while Consul was down, %d lines, want 1 naming the error: %q", len(down), first(down, 5))
	}
	if measuring {
		return // a watcher may back off 30 s: the recovery is for the short run
	}

	cat.setFail(nil)
	cat.register("service-0", "node-9", instance("after", "10.0.9.1", 9000))
	ev.waitSnap(t, "a change after the outage", func(s *snapshot.Snapshot) bool { return len(ids(s, "service-0")) == 2 })
	if up := logs.take(); len(up) != 1 || !strings.Contains(up[0], "succeed again") {
		t.Errorf("once Consul answered again, %d lines, want 1: %q", len(up), first(up, 5))
	}
}

// first returns at most n of lines.
func first(lines []string, n int) []string { return lines[:min(n, len(lines))] }

// TestEndpointMovesLogOnce: with every endpoint down, each failed request
// moves to the next endpoint; the moves are logged once, not per request.
func TestEndpointMovesLogOnce(t *testing.T) {
	eps, err := newEndpoints(api.DefaultConfig(), credentialsOf(t, api.DefaultConfig()), []string{"127.0.0.1:1", "127.0.0.1:2"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eps.close)
	logs := captureLog(t)
	down := errors.New("connect: connection refused")
	moved := 0
	for range 1000 {
		i, _ := eps.client()
		if eps.failed(i, down) {
			moved++
		}
	}
	if lines := logs.take(); moved != 1000 || len(lines) != 1 {
		t.Errorf("%d moves logged in %d lines, want 1000 in 1: %q", moved, len(lines), first(lines, 3))
	}
}
