package replica

import (
	"testing"
	"time"
)

// TestReadPacer plays sequences of reads through the summaries' pacer: a lone
// slow read must not hold back the next move, while a long storm of reads
// settles at the share of the time the pacer allows.
func TestReadPacer(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	t0 := time.Unix(1000, 0)
	type read struct{ at, took int } // ms after t0
	for _, tc := range []struct {
		name  string
		reads []read
		at    int // when the next read is asked for
		want  time.Duration
	}{
		{"first read", nil, 0, 0},
		{"the least gap between two starts", []read{{0, 2}}, 5, ms(5)},
		{"a lone slow read does not hold the next", []read{{0, 300}}, 300, 0},
		{"reads after each change of a storm, within the burst", []read{{0, 80}, {100, 80}, {200, 80}, {300, 80}, {400, 80}}, 500, 0},
		// Each 600 ms read owes 1.2 s: 4.8 s owed at 2.4 s, 2 s of it
		// allowed, so the next read waits 400 ms.
		{"past the burst, reads wait", []read{{0, 600}, {600, 600}, {1200, 600}, {1800, 600}}, 2400, ms(400)},
		{"what is owed is paid back in time", []read{{0, 600}, {600, 600}, {1200, 600}}, 5000, 0},
	} {
		p := readPacer{share: 2, burst: 2 * time.Second, minGap: ms(10)}
		for _, r := range tc.reads {
			p.took(t0.Add(ms(r.at)), ms(r.took))
		}
		if got := p.wait(t0.Add(ms(tc.at))); got != tc.want {
			t.Errorf("%s: wait = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSummaryPacingKeepsUp plays the storm the propagation target is set
// for through the summaries' own pacing: a registration every 100 ms to a
// service without a watcher, each read taking as long on a busy machine.
// Reads must follow every change; paying twice their time, they waited
// from the 21st on.
func TestSummaryPacingKeepsUp(t *testing.T) {
	p := readPacer{share: summaryShare, burst: summaryBurst, minGap: 10 * time.Millisecond}
	now := time.Unix(1000, 0)
	for i := range 200 {
		if d := p.wait(now); d > 0 {
			t.Fatalf("read %d waits %v", i, d)
		}
		p.took(now, 100*time.Millisecond)
		now = now.Add(100 * time.Millisecond)
	}
}

func TestExplainAfter(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ok, overtaken bool
		named         int
		want          time.Duration
	}{
		{"failed read: a sweep at once", false, false, 0, 0},
		{"failed and overtaken: still a sweep", false, true, 0, 0},
		{"named services: time for their fetch", true, false, 2, explainWait},
		{"overtaken: the later read named them", true, true, 0, explainWait},
		{"nothing named: only a watcher can explain it", true, false, 0, 10 * quickWait},
	} {
		if got := explainAfter(tc.ok, tc.overtaken, tc.named); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
