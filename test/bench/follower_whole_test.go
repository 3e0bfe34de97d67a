package bench

// What whole-state answers cost a tier: one at a time, as a new follower
// asks for one, and all at once, as a fleet-wide restart of the followers
// does.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/wait"
)

// wholeResult is what whole-state answers cost the tier.
type wholeResult struct {
	bytes        []float64
	took         []time.Duration
	cpu          time.Duration
	watched      int
	answersWhole float64
	restart      *restartResult
}

// restartResult is what a restart of every follower at once cost.
type restartResult struct {
	n           int
	took        time.Duration // until the tiers sent every follower its whole state
	wholes      float64       // whole answers the tiers sent meanwhile
	bytes       float64       // their bytes
	peakWaiting float64       // the most answers waiting for a transfer slot, both tiers
	cpu         time.Duration // both tiers
	readyAtOnce int           // followers ready from their file within a second
}

// measureWhole asks tier 0 for its whole state n times, as a new follower
// does (index 0), one at a time: the bytes, the time to the last byte and
// the tier's CPU per answer.
func (b *followerBench) measureWhole(t *testing.T, n int) *wholeResult {
	res := &wholeResult{watched: b.watched}
	tr := b.tiers[0]
	before := b.readTiers(t)
	for range n {
		began := time.Now()
		size, err := fetchWhole(tr.Listen)
		if err != nil {
			t.Errorf("whole state from %s: %v", tr.Listen, err)
			return res
		}
		res.took = append(res.took, time.Since(began))
		res.bytes = append(res.bytes, float64(size))
	}
	_, answers, cpu := b.readTiers(t).since(before)
	res.cpu, res.answersWhole = cpu, answers["whole"]
	return res
}

// fetchWhole is one follow request with no index: a whole answer, whose
// wire bytes (the envelope line and the payload) it counts.
func fetchWhole(listen string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+listen+"/v1/follow?index=0&wait=1s", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+benchTierToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("follow: %s", resp.Status)
	}
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadBytes('\n')
	for err == nil && len(line) == 1 { // heartbeats
		line, err = r.ReadBytes('\n')
	}
	if err != nil {
		return 0, fmt.Errorf("follow: the envelope: %w", err)
	}
	var env struct {
		Kind string
		Size int64
	}
	if err := json.Unmarshal(line, &env); err != nil || env.Kind != "whole" {
		return 0, fmt.Errorf("follow: envelope %.200q: kind %q, %v", line, env.Kind, err)
	}
	got, err := r.Discard(int(env.Size))
	if err != nil {
		return 0, fmt.Errorf("follow: %d of %d payload bytes: %w", got, env.Size, err)
	}
	return len(line) + got, nil
}

// restartAll restarts every follower at once, as a fleet-wide restart
// does: each answers from its snapshot file as soon as it is up, then asks
// a tier for its whole state, which the tiers send a few at a time
// (tier_transfers). It measures until the tiers sent every follower one.
func (b *followerBench) restartAll(t *testing.T) *restartResult {
	res := &restartResult{n: len(b.followers)}
	before := b.readTiers(t)
	watching := make(chan struct{})
	var peak sync.WaitGroup
	peak.Add(1)
	go func() {
		defer peak.Done()
		wait.Every(10*time.Millisecond, watching, func() bool {
			sum := 0.0
			for _, tr := range b.tiers {
				sum += tr.MetricWhere("coredns_consul_tier_transfers_waiting")
			}
			res.peakWaiting = max(res.peakWaiting, sum)
			return true
		})
	}()
	began := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, fl := range b.followers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if err := fl.Restart(t); err != nil {
				t.Errorf("%v", err)
				return
			}
			if time.Since(start) < time.Second {
				mu.Lock()
				res.readyAtOnce++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := wait.For(2*time.Minute, func() error {
		if _, answers, _ := b.readTiers(t).since(before); answers["whole"] < float64(res.n) {
			return fmt.Errorf("the tiers sent %.0f whole states to %d restarted followers", answers["whole"], res.n)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	res.took = time.Since(began)
	close(watching)
	peak.Wait()
	bytes, answers, cpu := b.readTiers(t).since(before)
	res.wholes, res.bytes, res.cpu = answers["whole"], bytes["whole"], cpu
	t.Logf("%d followers restarted at once: every whole state sent in %s, %d ready within 1 s, peak waiting %.0f",
		res.n, res.took.Round(time.Millisecond), res.readyAtOnce, res.peakWaiting)
	return res
}
