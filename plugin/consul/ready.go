package consul

import (
	"sync"
	"time"
)

// Ready implements the ready.Readiness interface: ready once a complete
// snapshot of the local datacenter can answer. Other datacenters answer
// SERVFAIL until they have synced.
func (c *Consul) Ready() bool { return c.local.view.Load() != nil }

// waitReady holds start-up until a snapshot can answer or timeout passes,
// as CoreDNS's kubernetes plugin does, so that the first queries after a
// start are not SERVFAIL when Consul answers quickly. The other replicated
// datacenters get the same time: they do not make the plugin ready, but
// their names answer SERVFAIL until they have synced.
func (c *Consul) waitReady(timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	if !c.changed.await(c.Ready, deadline.C) {
		log.Warningf("no complete snapshot after %s; answering SERVFAIL until Consul has been read", timeout)
		return
	}
	for _, dc := range c.want {
		if !c.changed.await(func() bool { return c.remoteReady(dc) }, deadline.C) {
			log.Warningf("datacenter %s: no complete snapshot after %s; its names answer SERVFAIL until it has been read", dc, timeout)
			return
		}
	}
}

// remoteReady reports whether the listed datacenter dc needs no more
// waiting for: it answers, or turned out to be the local one, or Consul
// does not know it.
func (c *Consul) remoteReady(dc string) bool {
	d := c.remoteNamed(dc) // made once the local datacenter was named
	return dc == c.localName() || d != nil && d.view.Load() != nil || c.known.Load() != nil && !c.knows(dc, false)
}

// signal wakes those waiting for a condition whenever it may have changed.
type signal struct {
	mu sync.Mutex
	ch chan struct{} // closed by the next notify; nil while no one waits
}

// notify wakes every waiter. It never blocks, and costs a lock when no one
// waits.
func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// await waits until cond holds, true, or until stop, false.
func (s *signal) await(cond func() bool, stop <-chan time.Time) bool {
	for {
		// The channel before the condition: a notify in between closes it.
		s.mu.Lock()
		if s.ch == nil {
			s.ch = make(chan struct{})
		}
		ch := s.ch
		s.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-stop:
			return cond()
		}
	}
}
