// Package wait is the one place tests and their helpers wait: for a
// condition to hold, polled on a ticker, or for the next beat of a paced
// loop. Tests wait on what they can observe (a DNS answer, a metric, a log
// line) rather than for a fixed time followed by an exact expectation, which
// fails on a slow machine and wastes time on a fast one.
package wait

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Tick is how often Until looks again: short beside anything the tests wait
// for, long beside the cost of looking (one DNS question or HTTP request).
const Tick = 10 * time.Millisecond

// Poll calls check at once and then every interval until it returns true,
// stop is closed or timeout passes (never, for timeout <= 0). It reports
// whether check returned true.
func Poll(timeout, interval time.Duration, stop <-chan struct{}, check func() bool) bool {
	if check() {
		return true
	}
	var expired <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		final := false
		select {
		case <-stop:
			return false
		case <-expired:
			final = true // one last look
		case <-ticker.C:
		}
		select {
		case <-stop: // closed while the tick or the timer was ready too
			return false
		default:
		}
		if check() {
			return true
		}
		if final {
			return false
		}
	}
}

// Until waits up to timeout for check to return nil, looking every Tick, and
// fails the test with the last error check returned when it never does:
// check says what is still missing, so that a failure shows what was seen.
func Until(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	if err := For(timeout, check); err != nil {
		t.Fatal(err)
	}
}

// For is Until without a test: it returns nil once check does, or check's
// last error, with how long it waited. An error check marks with Abort ends
// the wait at once: what it waits for can no longer happen.
func For(timeout time.Duration, check func() error) error {
	var last error
	began := time.Now()
	stop := make(chan struct{})
	if Poll(timeout, Tick, stop, func() bool {
		var a aborted
		if last = check(); errors.As(last, &a) {
			close(stop)
		}
		return last == nil
	}) {
		return nil
	}
	return fmt.Errorf("after %s: %w", time.Since(began).Round(time.Millisecond), last)
}

// Abort marks an error of a check as final: For and Until stop waiting.
func Abort(err error) error { return aborted{err} }

type aborted struct{ error }

func (a aborted) Unwrap() error { return a.error }

// Every calls fn every interval until stop is closed or fn returns false:
// the pace of a load generator or of a series of changes, where the rate is
// what the test sets.
func Every(interval time.Duration, stop <-chan struct{}, fn func() bool) {
	Poll(0, interval, stop, func() bool { return !fn() })
}
