package replica

import (
	"sync"
	"time"
)

// outage turns failing requests into a few log lines per replica: one when
// requests begin to fail, one every outageRepeat while they go on, and one
// when they succeed again. Logged per loop and per retry, a Consul that is
// down cost a line per watcher per backoff: 1,403 lines a minute at 150
// watchers, about 77,000 at 8,192.
type outage struct {
	mu sync.Mutex
	// since is when the current run of failures began; zero while requests
	// succeed. failures counts them, lastErr is the latest.
	since    time.Time
	failures int
	lastErr  string
	// announced: the current run was logged. lastLine is when a line was
	// last logged.
	announced bool
	lastLine  time.Time
}

const (
	// outageRepeat is how often a run of failures that goes on is told again.
	outageRepeat = 5 * time.Minute
	// outageQuiet is the least time between the end of one run and the
	// start of the next being told: a read that fails on its own while the
	// others succeed (a token denied one service) starts and ends a run on
	// every retry, and must not log each.
	outageQuiet = time.Minute
)

// failed records a failed request; what names the read.
func (o *outage) failed(what string, err error) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		o.since, o.failures = now, 0
	}
	o.failures++
	o.lastErr = what + ": " + err.Error()
	switch {
	case !o.announced && (o.lastLine.IsZero() || now.Sub(o.lastLine) >= outageQuiet):
		log.Warningf("requests to Consul are failing (%s); retrying with backoff, further failures are summed up every %s", o.lastErr, outageRepeat)
	case o.announced && now.Sub(o.lastLine) >= outageRepeat:
		log.Warningf("requests to Consul still failing: %d failed since %s, the last: %s", o.failures, o.since.Format(time.RFC3339), o.lastErr)
	default:
		return
	}
	o.announced, o.lastLine = true, now
}

// succeeded records a request that succeeded: a run of failures ends.
func (o *outage) succeeded() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return
	}
	if o.announced {
		now := time.Now()
		log.Infof("requests to Consul succeed again after %s (%d failed, the last: %s)",
			now.Sub(o.since).Round(time.Millisecond), o.failures, o.lastErr)
		o.lastLine = now
	}
	o.since, o.announced = time.Time{}, false
}
