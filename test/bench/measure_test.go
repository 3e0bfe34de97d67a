package bench

// What every section measures with: changes timed in several DNS servers
// side by side, quantiles, and waits for a process to settle. The sections
// wait on what they observe; pause is the one wait for time itself, where
// the time is what is measured (an idle window, a delay after start).

import (
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/miekg/dns"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pause lets d pass: the length of a window being measured, or a delay that
// is part of the scenario. Nothing else in the benchmarks waits for time.
func pause(d time.Duration) { time.Sleep(d) }

// settle reads a value every interval until n reads in a row are each near
// the one before, for at most within; it returns the last value read and
// whether it settled.
func settle[T any](within, interval time.Duration, n int, read func() T, near func(prev, cur T) bool) (T, bool) {
	prev, run := read(), 0
	ok := wait.Poll(within, interval, nil, func() bool {
		cur := read()
		if near(prev, cur) {
			run++
		} else {
			run = 0
		}
		prev = cur
		return run >= n
	})
	return prev, ok
}

// within1pct says two goroutine counts are the same but for noise.
func within1pct(prev, cur float64) bool { return math.Abs(cur-prev) <= max(10, prev/100) }

func equal[T comparable](prev, cur T) bool { return prev == cur }

// change is one change a watcher waits to see in DNS.
type change struct {
	name  string
	qtype uint16
	done  func(*dns.Msg) bool
	at    time.Time
}

// timeChanges makes n changes, one every pace, and times each in the DNS
// servers at addrs side by side: how long from write(i) returning until the
// answer to describe(i) shows it, for each server. A change not shown within
// timeout of the last write is left out (missing).
func timeChanges(addrs []string, n int, pace, timeout time.Duration, write func(i int), describe func(i int) change) [][]time.Duration {
	feeds := make([]chan change, len(addrs))
	seen := make([][]time.Duration, len(addrs))
	var wg sync.WaitGroup
	for fi, addr := range addrs {
		feeds[fi] = make(chan change, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen[fi] = watchChanges(addr, feeds[fi], timeout)
		}()
	}
	i := 0
	wait.Every(pace, nil, func() bool {
		write(i)
		c := describe(i)
		c.at = time.Now()
		for _, f := range feeds {
			f <- c
		}
		i++
		return i < n
	})
	for _, f := range feeds {
		close(f)
	}
	wg.Wait()
	return seen
}

// watchChanges asks addr about every change fed to it, each pending one
// about every millisecond, and returns how long each took to show, from its
// write returning; a change not shown within timeout of the feed closing is
// left out (missing).
func watchChanges(addr string, feed <-chan change, timeout time.Duration) []time.Duration {
	var seen []time.Duration
	var left []change
	open := true
	var deadline time.Time
	wait.Poll(0, time.Millisecond, nil, func() bool {
		for more := open; more; {
			select {
			case c, ok := <-feed:
				if !ok {
					open, more = false, false
					deadline = time.Now().Add(timeout)
				} else {
					left = append(left, c)
				}
			default:
				more = false
			}
		}
		if !open && (len(left) == 0 || time.Now().After(deadline)) {
			return true
		}
		next := left[:0]
		for _, c := range left {
			resp, err := dnsq.Ask(addr, c.name, c.qtype, dnsq.EDNS(4096), dnsq.Timeout(time.Second))
			if err == nil && c.done(resp) {
				seen = append(seen, time.Since(c.at))
			} else {
				next = append(next, c)
			}
		}
		left = next
		return false
	})
	return seen
}

// quantile is the q-th percentile of d in ms (NaN for none): p50 the
// middle, p99 by rank rounded up (so below 100 values, the maximum), p100
// the maximum.
func quantile(d []time.Duration, q int) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if q == 50 {
		return ms(s[len(s)/2])
	}
	return ms(s[(len(s)*q+99)/100-1])
}
