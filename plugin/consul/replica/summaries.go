package replica

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// summaryDetector names the services whose summaries (instance and check
// counts, nodes, tags) changed between two reads: registrations and
// deregistrations of services without a watcher, which move only the service
// list's index. Only the sweeper touches it.
type summaryDetector struct {
	last map[string]summary // by key; nil before the first read
	// peer is the cluster peer whose imported services the replica holds;
	// empty for a datacenter's, which leaves the imported ones out.
	peer string
}

// summary is what a read of the summaries says about one service.
type summary struct {
	instances, passing, warning, critical int
	tags, nodes                           string
}

// known reports whether a read was taken to compare the next with.
func (d *summaryDetector) known() bool { return d.last != nil }

// observe takes a new read of the summaries and returns the keys of the
// services whose summaries changed; nothing on the first read.
func (d *summaryDetector) observe(list []Summary) []string {
	current := make(map[string]summary, len(list))
	for _, s := range list {
		if s.Peer != d.peer {
			continue // another cluster's: imported, or not imported from this peer
		}
		tags, nodes := slices.Clone(s.Tags), slices.Clone(s.Nodes)
		slices.Sort(tags)
		slices.Sort(nodes)
		current[snapshot.Key(s.Name)] = summary{
			instances: s.Instances, passing: s.Passing, warning: s.Warning, critical: s.Critical,
			tags: strings.Join(tags, "\x00"), nodes: strings.Join(nodes, "\x00"),
		}
	}
	previous := d.last
	d.last = current
	if previous == nil {
		return nil
	}
	return diffSummaries(previous, current)
}

// diffSummaries returns the keys whose summaries differ, sorted.
func diffSummaries(previous, current map[string]summary) []string {
	var changed []string
	for k, s := range current {
		if old, ok := previous[k]; !ok || old != s {
			changed = append(changed, k)
		}
	}
	for k := range previous {
		if _, ok := current[k]; !ok {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	return changed
}

// readSummaries reads every service's summary; false when the read failed.
func (r *Replicator) readSummaries() ([]Summary, bool) {
	var list []Summary
	_, err := r.request(r.run.ctx, r.cfg.RequestSlack, func(ctx context.Context) (m Meta, err error) {
		list, m, err = r.src.Summaries(ctx)
		if err == nil {
			r.stats.summaries.Add(1) // before the observer hears of it
		}
		return m, err
	})
	return list, err == nil
}

// applySummaries compares a read of the summaries with the last and reads
// again the services whose summary changed. It returns how many it named.
func (r *Replicator) applySummaries(d *summaryDetector, list []Summary) int {
	changed := d.observe(list)
	r.mu.Lock()
	defer r.mu.Unlock()
	// Watched services too: Consul does not move a service's index (and
	// its streaming view may not hear) when an instance leaves it by being
	// registered again under another service's name; the counts show it.
	named := 0
	for _, key := range changed {
		if r.data.services[key] != nil {
			r.fetch.queue.push(key)
			named++
		}
	}
	return named
}

// summariesNeeded reports whether some services go without a watcher: past
// the budget, or waiting for theirs while the watchers first start.
func (r *Replicator) summariesNeeded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.data
	if !d.listed {
		return false
	}
	return len(d.services) > r.budget.limit() || r.watch.ramping(len(d.services), r.budget.limit())
}

// readPacer bounds the share of time spent on a kind of read: each read of
// duration d costs share*d of credit, which comes back in real time; a read
// may start while no more than burst is owed. A lone slow read does not
// hold back the next ones (waiting twice its duration after each read did:
// one 300 ms read under load held every registration after it for 600 ms),
// while a storm of reads settles at one share of the time.
type readPacer struct {
	share     int           // the time paid per unit of read time
	burst     time.Duration // the most owed before reads wait
	owedUntil time.Time     // when what is owed is paid back
	minGap    time.Duration // between two starts
	lastStart time.Time
}

// wait returns how long a read at now must wait.
func (p *readPacer) wait(now time.Time) time.Duration {
	if p.lastStart.IsZero() {
		return 0
	}
	return max(p.owedUntil.Sub(now)-p.burst, p.lastStart.Add(p.minGap).Sub(now), 0)
}

// began records a read starting at start.
func (p *readPacer) began(start time.Time) {
	if start.After(p.lastStart) {
		p.lastStart = start
	}
}

// took records a read that started at start and took d.
func (p *readPacer) took(start time.Time, d time.Duration) {
	p.began(start)
	if p.owedUntil.Before(start) {
		p.owedUntil = start
	}
	p.owedUntil = p.owedUntil.Add(time.Duration(p.share) * d)
}

// summaryBurst is how much time the summaries' reads may owe before they are
// paced, and summaryShare what each read's duration costs. Under a storm of
// registrations the reads may then run back to back, one at a time on
// average: with one registration every 100 ms to a service without a
// watcher, reads of 50-100 ms (1,000 x 5 here, on a quiet or a busy machine)
// keep up with every change, as the 250 ms at p99 aimed for needs. Paying
// twice the duration (reads at most half the time) let a busy machine's
// 100 ms reads fall behind after 20 changes: 0.8-1.8 s at p99 over 100.
const (
	summaryBurst = 2 * time.Second
	summaryShare = 1
)
