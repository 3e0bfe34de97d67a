package wait

import (
	"errors"
	"testing"
	"time"
)

func TestFor(t *testing.T) {
	errNotYet := errors.New("not yet")
	tests := []struct {
		name    string
		holdsAt int // the call from which check returns nil; 0: never
		abortAt int // the call at which check aborts; 0: never
		want    error
		calls   int // at most
	}{
		{"at once", 1, 0, nil, 1},
		{"on the third look", 3, 0, nil, 3},
		{"never", 0, 0, errNotYet, 1 << 30},
		{"aborted", 0, 2, errNotYet, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := For(200*time.Millisecond, func() error {
				calls++
				switch {
				case tc.holdsAt > 0 && calls >= tc.holdsAt:
					return nil
				case calls == tc.abortAt:
					return Abort(errNotYet)
				}
				return errNotYet
			})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("For returned %v, want %v", err, tc.want)
			}
			if calls > tc.calls {
				t.Errorf("check called %d times, want at most %d", calls, tc.calls)
			}
		})
	}
}

func TestEveryStops(t *testing.T) {
	stop := make(chan struct{})
	calls := 0
	Every(time.Millisecond, stop, func() bool {
		if calls++; calls == 3 {
			close(stop)
		}
		return true
	})
	if calls != 3 {
		t.Errorf("fn called %d times after stop closed at the third, want 3", calls)
	}
	Every(time.Millisecond, nil, func() bool { calls++; return calls < 5 })
	if calls != 5 {
		t.Errorf("fn called until %d, want it to stop when it returns false at 5", calls)
	}
}
