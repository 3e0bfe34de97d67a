package consul

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// persister keeps a copy of the latest snapshots on disk, so that a CoreDNS
// restarted while Consul is down answers at once. It writes at most once per
// interval: under churn the file lags by at most that much.
type persister struct {
	path     string
	interval time.Duration
	// collect returns what is served now, every datacenter's snapshot; nil
	// before the local one has any.
	collect func() *snapshot.Set
	written *snapshot.Set
	// file is the set read from the file at start-up; nil for none.
	file *snapshot.Set
	wake chan struct{} // capacity 1
	stop chan struct{}
	done chan struct{}
	// writeLast: the latest snapshots go to disk when it stops too.
	writeLast bool
}

func newPersister(path string, interval time.Duration, collect func() *snapshot.Set) *persister {
	return &persister{path: path, interval: interval, collect: collect, wake: make(chan struct{}, 1)}
}

// offer says that a new snapshot is served. It never blocks.
func (p *persister) offer() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// loaded records the set read from the file, so it is not written back.
func (p *persister) loaded(s *snapshot.Set) { p.written, p.file = s, s }

func (p *persister) start() {
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go p.run()
}

func (p *persister) run() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			p.stopped()
			return
		case <-p.wake:
		}
		p.write()
		select {
		case <-p.stop:
			p.stopped()
			return
		case <-time.After(p.interval):
		}
	}
}

func (p *persister) stopped() {
	if p.writeLast {
		p.write()
	}
}

func (p *persister) write() {
	s := p.collect()
	if s == nil || sameSet(s, p.written) {
		return
	}
	if err := snapshot.WriteFile(p.path, s); err != nil {
		log.Errorf("%v", err)
		snapshotWrites.WithLabelValues("error").Inc()
		return
	}
	p.written = s
	snapshotWrites.WithLabelValues("ok").Inc()
}

// close stops the writes; writeLast writes what is served first, unless it
// is on disk already.
func (p *persister) close(writeLast bool) {
	if p.stop == nil {
		return
	}
	p.writeLast = writeLast
	close(p.stop)
	<-p.done
	p.stop = nil
}

// sameSet reports whether a and b hold the same snapshots (by identity: a
// snapshot is never modified), the same known datacenters and come from
// the same cluster.
func sameSet(a, b *snapshot.Set) bool {
	if b == nil || a.Local != b.Local || a.Cluster != b.Cluster || !bytes.Equal(a.AgentDNS, b.AgentDNS) ||
		!slices.Equal(a.Known, b.Known) || !slices.Equal(a.ByDistance, b.ByDistance) ||
		(a.KnownPeers == nil) != (b.KnownPeers == nil) || !slices.Equal(a.KnownPeers, b.KnownPeers) {
		return false
	}
	// Snapshots are values: an unchanged one is the same pointer.
	return slices.Equal(a.Datacenters, b.Datacenters) && slices.Equal(a.Peers, b.Peers)
}

// readSnapshotFile reads the snapshot file; a test makes it panic.
var readSnapshotFile = snapshot.ReadFile

// loadSnapshot reads the snapshot file at start-up. Whatever is wrong with it
// is logged and the file ignored: the plugin then starts as if it had none.
// Not even a panic reading it stops start-up, which would otherwise fail on
// every restart until the file is removed by hand.
func loadSnapshot(path, datacenter string) (set *snapshot.Set) {
	defer func() {
		if p := recover(); p != nil {
			log.Errorf("ignoring the snapshot file %s: reading it panicked: %.200v\n%s", path, p, debug.Stack())
			snapshotLoads.WithLabelValues("corrupt").Inc()
			set = nil
		}
	}()
	set, err := readSnapshotFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		log.Infof("no snapshot file at %s yet", path)
		snapshotLoads.WithLabelValues("missing").Inc()
		return nil
	case errors.Is(err, snapshot.ErrUnsafe):
		log.Warningf("ignoring the snapshot file: %v", err)
		snapshotLoads.WithLabelValues("refused").Inc()
		return nil
	case err != nil:
		log.Warningf("ignoring the snapshot file: %v", err)
		snapshotLoads.WithLabelValues("corrupt").Inc()
		return nil
	case datacenter != "" && set.Local != snapshot.Key(datacenter):
		log.Warningf("ignoring the snapshot file %s: it holds datacenter %q, not %q", path, set.Local, datacenter)
		snapshotLoads.WithLabelValues("mismatch").Inc()
		return nil
	}
	if set.Skipped > 0 {
		log.Warningf("the snapshot file %s holds %d null or unusable entries, left out: it was damaged or made by hand", path, set.Skipped)
	}
	for _, snap := range set.Datacenters {
		services, instances := snap.Counts()
		log.Infof("loaded %d services, %d instances of datacenter %s from %s, built %s ago", services, instances,
			snap.Datacenter, path, time.Since(snap.Built).Round(time.Second))
	}
	snapshotLoads.WithLabelValues("ok").Inc()
	return set
}

// prepareSnapshotDir creates the snapshot file's directory (0700: the file
// holds the catalog) when it is missing, and checks that a file can be
// created in it, the way snapshot.WriteFile will: a snapshot that can never
// be written must stop start-up, not log an error on every write.
func prepareSnapshotDir(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%q is a directory, not a file", path)
	}
	if strings.HasSuffix(path, string(filepath.Separator)) {
		// MkdirAll would make it a directory, which no write can replace.
		return fmt.Errorf("%q names a directory, not a file", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		// The whole error: it names the part of the path that is in the way.
		return fmt.Errorf("creating the directory %q: %w", dir, err)
	}
	probe, err := os.CreateTemp(dir, filepath.Base(path)+".probe-*")
	if err != nil {
		return fmt.Errorf("the directory %q is not writable: %w", dir, bareErr(err))
	}
	probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return fmt.Errorf("removing the probe file: %w", err)
	}
	return nil
}
