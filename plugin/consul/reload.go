package consul

import (
	"slices"
	"sync"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/caddy"
)

// How a reload passes on what runs (caddy's order): the new Corefile's setup
// functions run, then its OnStartup hooks, then the old instance's
// OnShutdown hooks; when the new Corefile fails, the old instance runs on.
// So a block being set up only finds what it may take over from the running
// blocks (a replica with the same settings, its snapshots, the datacenter
// lists, the watcher pool) and takes the replicas over when it starts; the
// old block's shutdown stops only what it did not hand over.

// running are the blocks that serve now, in the order they started. A block
// joins when it starts and leaves when it shuts down: what only it used (its
// replicas, snapshots, datacenter lists and watcher pool) is gone with it.
type running struct {
	mu     sync.Mutex
	blocks []*Consul
}

// live are the running blocks of this process.
var live running

func (r *running) join(c *Consul) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blocks = append(r.blocks, c)
}

func (r *running) leave(c *Consul) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blocks = slices.DeleteFunc(r.blocks, func(b *Consul) bool { return b == c })
}

// find returns the first running block, and its datacenter, for which
// match holds; nil for none.
func (r *running) find(match func(b *Consul, d *datacenter) bool) (*Consul, *datacenter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.blocks {
		for _, d := range b.all() {
			if match(b, d) {
				return b, d
			}
		}
	}
	return nil, nil
}

// snapshot is the snapshot a running block serves for the datacenter key;
// nil for none.
func (r *running) snapshot(key string) *snapshot.Snapshot {
	_, d := r.find(func(_ *Consul, d *datacenter) bool { return d.key == key && d.current() != nil })
	if d == nil {
		return nil
	}
	return d.current()
}

// localOf is the running block whose local datacenter is key; nil for none.
func (r *running) localOf(key string) *Consul {
	b, _ := r.find(func(b *Consul, d *datacenter) bool { return d == b.local && d.key == key })
	return b
}

// claim returns the replica of a running block's datacenter key whose
// settings match and that is not in claimed; nil for none.
func (r *running) claim(key string, match func(*readSettings) bool, claimed map[*feed]bool) *feed {
	_, d := r.find(func(_ *Consul, d *datacenter) bool {
		return d.key == key && d.feed != nil && !claimed[d.feed] && d.feed.feeds(d) && match(&d.feed.settings)
	})
	if d == nil {
		return nil
	}
	return d.feed
}

// rollback undoes a reload that failed once its blocks had started (caddy
// then keeps the old instance, whose blocks are gen's): gen's blocks take
// back the replicas they handed over, and the others, the failed Corefile's,
// stop what they made.
func (r *running) rollback(gen *generation) {
	r.mu.Lock()
	var kept, failed []*Consul
	for _, b := range r.blocks {
		if b.gen == gen {
			kept = append(kept, b)
		} else {
			failed = append(failed, b)
		}
	}
	r.blocks = kept
	r.mu.Unlock()
	for _, b := range kept {
		if b.local.feed != nil {
			b.local.feed.serve(b.local)
		}
		b.startRemotes()
	}
	for _, b := range failed {
		b.stop(false)
	}
}

// generation is one load of the Corefile: the blocks it sets up, one after
// the other, take over what the running blocks hand over (each running
// replica to one block at most, so that two blocks with the same settings
// keep one replica each) and share the watcher pools they make.
type generation struct {
	mu      sync.Mutex
	claimed map[*feed]bool
	pools   map[string]*replica.Pool
}

// started is a block of gen starting: every block of its Corefile has
// been set up, and what they claimed is theirs.
func (gen *generation) started() {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	// Claims would keep the replicas they name, stopped or not, as long as
	// the instance runs.
	clear(gen.claimed)
	clear(gen.pools)
}

type generationKey struct{}

// generationOf is the generation of the Corefile c is loading.
func generationOf(c *caddy.Controller) *generation {
	if gen, ok := c.Get(generationKey{}).(*generation); ok {
		return gen
	}
	gen := &generation{claimed: make(map[*feed]bool), pools: make(map[string]*replica.Pool)}
	c.Set(generationKey{}, gen)
	return gen
}

// claim returns the running replica of the datacenter key for a block of gen:
// one that reads Consul as settings say, to take over (same), else any, to
// lend until the block's own has published; nil for none.
func (gen *generation) claim(key string, settings *readSettings) (f *feed, same bool) {
	if gen == nil {
		return nil, false
	}
	gen.mu.Lock()
	defer gen.mu.Unlock()
	f = live.claim(key, settings.equal, gen.claimed)
	same = f != nil
	if f == nil {
		f = live.claim(key, func(*readSettings) bool { return true }, gen.claimed)
	}
	if f != nil {
		gen.claimed[f] = true
	}
	return f, same
}

// pool is the watcher pool of the replicas of the blocks whose local
// datacenter is key (they read through the same agents): the running
// blocks', else a new one that gen's blocks share.
func (gen *generation) pool(key string) *replica.Pool {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	if p := gen.pools[key]; p != nil {
		return p
	}
	p := replica.NewPool()
	if b := live.localOf(key); b != nil {
		p = b.pool
	}
	gen.pools[key] = p
	return p
}
