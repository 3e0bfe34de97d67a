package tier

import (
	"sync"
	"time"
)

// fakeClock moves only when a test advances it; its timers fire then.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       chan time.Time
	when    time.Time
	period  time.Duration // 0: a timer
	stopped bool
	clk     *fakeClock
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1700000000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) timer  { return f.add(d, 0) }
func (f *fakeClock) NewTicker(d time.Duration) timer { return f.add(d, d) }

func (f *fakeClock) add(d, period time.Duration) *fakeTimer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), when: f.now.Add(d), period: period, clk: f}
	f.timers = append(f.timers, t)
	f.fireLocked()
	return t
}

// Advance moves the clock by d and fires what falls due.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	f.fireLocked()
}

func (f *fakeClock) fireLocked() {
	live := f.timers[:0]
	for _, t := range f.timers {
		if !t.stopped && !t.when.After(f.now) {
			select {
			case t.c <- f.now:
			default:
			}
			if t.period > 0 {
				t.when = f.now.Add(t.period)
			} else {
				t.stopped = true
			}
		}
		if !t.stopped {
			live = append(live, t)
		}
	}
	f.timers = live
}

// Waiting is how many timers and tickers are running.
func (f *fakeClock) Waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	t.stopped = true
	t.clk.fireLocked()
}
