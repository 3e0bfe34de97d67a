package tier

import "time"

// clock is the time the server reads and waits on; the tests make it a
// fake one they move by hand.
type clock interface {
	Now() time.Time
	NewTimer(d time.Duration) timer
	NewTicker(d time.Duration) timer
}

type timer interface {
	C() <-chan time.Time
	Stop()
}

type realClock struct{}

func (realClock) Now() time.Time                  { return time.Now() }
func (realClock) NewTimer(d time.Duration) timer  { return realTimer{time.NewTimer(d)} }
func (realClock) NewTicker(d time.Duration) timer { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop()               { t.t.Stop() }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }
