package consul

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/follower"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// followSettings are what a follower block reads its tiers with (follow,
// follow_token_file, follow_tls, node_name): blocks with equal settings
// share one follower, one long-poll to one tier for the whole process.
type followSettings struct {
	Addresses []string
	TokenFile string
	CAFile    string
	CertFile  string
	KeyFile   string
	NodeName  string
}

// key names the follower settings s describe.
func (s *followSettings) key() string {
	b, _ := json.Marshal(s) // plain strings: cannot fail
	return string(b)
}

// sharedFollower is one follower and the datacenters that take from it.
type sharedFollower struct {
	f    *follower.Follower
	refs int
}

// followers are the process's followers by settings: a reload that keeps a
// block's follow settings keeps its follower, its connection to the tier
// and what it holds.
var followers = struct {
	sync.Mutex
	by map[string]*sharedFollower
}{by: make(map[string]*sharedFollower)}

// acquireFollower returns the follower of s, started, made (and seeded
// with seed, the snapshot file, so that nothing served moves back from
// it) when no datacenter uses it yet.
func acquireFollower(s *followSettings, seed *snapshot.Set) (*follower.Follower, error) {
	followers.Lock()
	defer followers.Unlock()
	k := s.key()
	if sf := followers.by[k]; sf != nil {
		sf.refs++
		return sf.f, nil
	}
	cfg := follower.Config{Addresses: s.Addresses, TokenFile: s.TokenFile, NodeName: s.NodeName, Seed: seed,
		First: firstTier(s.NodeName)}
	tc, err := clientTLS(s.CAFile, s.CertFile, s.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg.TLS = tc
	f, err := follower.New(cfg)
	if err != nil {
		return nil, err
	}
	f.Start()
	followers.by[k] = &sharedFollower{f: f, refs: 1}
	return f, nil
}

// firstTier spreads a fleet over its tiers: each node starts at the tier
// its name hashes to, the same on every restart.
func firstTier(node string) int {
	h := fnv.New32a()
	h.Write([]byte(node))
	return int(h.Sum32() & 0x7fffffff)
}

// releaseFollower is a datacenter no longer taking from the follower of s:
// the last one stops it.
func releaseFollower(s *followSettings) {
	followers.Lock()
	sf := followers.by[s.key()]
	if sf == nil {
		followers.Unlock()
		return
	}
	sf.refs--
	if sf.refs > 0 {
		followers.Unlock()
		return
	}
	delete(followers.by, s.key())
	followers.Unlock()
	sf.f.Stop()
}

// followSource feeds one datacenter (or peer) of a follower block from the
// tier's Sets, as a replica feeds it from Consul: the glue cannot tell them
// apart. What the follower hands over is taken on a goroutine of the
// source's own, so that what a publication starts (a datacenter added by
// the lists it brings, whose source subscribes in turn) never runs under
// the follower's locks.
type followSource struct {
	settings *followSettings
	seed     *snapshot.Set
	key      tier.Key // Datacenter "" for the local datacenter, named by each Set
	label    string   // the datacenter label of metrics
	rc       replica.Config
	publish  func(*snapshot.Snapshot)

	f      atomic.Pointer[follower.Follower] // set by Start; Contact reads it
	cancel func()
	latest chan *snapshot.Set // capacity 1: only the newest Set matters
	stop   chan struct{}
	done   chan struct{}

	mu               sync.Mutex
	started, stopped bool

	last     atomic.Pointer[snapshot.Snapshot] // the newest published
	lastMeta *snapshot.Set                     // run's alone
	// contact and failing are Contact's answer (Unix nanoseconds, 0 for
	// none), as run last asked the follower: Contact is asked on every
	// question, and the follower's answer takes a lock.
	contact, failing atomic.Int64
}

func newFollowSource(s *followSettings, seed *snapshot.Set, rc replica.Config, label string, publish func(*snapshot.Snapshot)) *followSource {
	k := tier.Key{Peer: rc.Peer}
	if rc.Peer == "" {
		k.Datacenter = snapshot.Key(rc.Datacenter)
	}
	return &followSource{settings: s, seed: seed, key: k, label: label, rc: rc, publish: publish,
		latest: make(chan *snapshot.Set, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// local reports whether the source feeds the follower's own datacenter,
// which also hears of the lists, the cluster and the agent's settings.
func (s *followSource) local() bool { return s.key == tier.Key{} }

func (s *followSource) Start() {
	s.mu.Lock()
	if s.started || s.stopped {
		s.mu.Unlock()
		return
	}
	s.started = true
	s.mu.Unlock()
	f, err := acquireFollower(s.settings, s.seed)
	if err != nil {
		// Checked when the Corefile was read; only the files changing
		// since can fail it.
		log.Errorf("following %v: %v", s.settings.Addresses, err)
		close(s.done)
		return
	}
	s.f.Store(f)
	s.cancel = f.OnSet(s.offer)
	go s.run()
}

// offer takes the newest Set, dropping one not yet taken.
func (s *followSource) offer(set *snapshot.Set) {
	for {
		select {
		case s.latest <- set:
			return
		default:
		}
		select {
		case <-s.latest:
		default:
		}
	}
}

func (s *followSource) run() {
	defer close(s.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case set := <-s.latest:
			s.take(set)
		case <-tick.C:
		}
		s.observe()
	}
}

// take publishes the source's snapshot of set when it is new, and for the
// local datacenter what else the Set says.
func (s *followSource) take(set *snapshot.Set) {
	if snap := s.pick(set); snap != nil && snap != s.last.Load() {
		s.last.Store(snap)
		s.publish(snap)
	}
	if s.local() {
		s.takeMeta(set)
		s.lastMeta = set
	}
}

// pick is the source's snapshot in set; nil when the tier holds none.
func (s *followSource) pick(set *snapshot.Set) *snapshot.Snapshot {
	switch {
	case s.key.Peer != "":
		for _, snap := range set.Peers {
			if snap.Peer == s.key.Peer {
				return snap
			}
		}
		return nil
	case s.local():
		return set.Snapshot(set.Local)
	default:
		return set.Snapshot(s.key.Datacenter)
	}
}

// takeMeta passes on what set says besides snapshots, as the local
// replica passes on what it reads from Consul: each when it changed.
func (s *followSource) takeMeta(set *snapshot.Set) {
	prev := s.lastMeta
	if prev == nil {
		prev = &snapshot.Set{}
	}
	if s.rc.OnDatacenters != nil && set.Known != nil &&
		(!slices.Equal(set.Known, prev.Known) || !slices.Equal(set.ByDistance, prev.ByDistance)) {
		s.rc.OnDatacenters(set.Known, set.ByDistance)
	}
	if s.rc.OnCluster != nil && set.Cluster != prev.Cluster {
		s.rc.OnCluster(set.Cluster)
	}
	if s.rc.OnAgentDNS != nil && len(set.AgentDNS) > 0 && !bytes.Equal(set.AgentDNS, prev.AgentDNS) {
		if a := agentDNSOfFile(set); a != nil {
			s.rc.OnAgentDNS(*a)
		}
	}
	if s.rc.OnPeerings != nil && set.KnownPeers != nil &&
		(prev.KnownPeers == nil || !slices.Equal(set.KnownPeers, prev.KnownPeers)) {
		list := make([]replica.Peering, 0, len(set.KnownPeers))
		for _, name := range set.KnownPeers {
			list = append(list, replica.Peering{Name: name, State: "ACTIVE"})
		}
		s.rc.OnPeerings(list)
	}
}

// observe takes the follower's contact with Consul for Contact, and sets
// the contact metrics as a replica's requests do.
func (s *followSource) observe() {
	f := s.f.Load()
	if f == nil {
		return
	}
	k := s.key
	if last := s.last.Load(); s.local() && last != nil {
		k.Datacenter = last.Datacenter
	}
	last, failing := f.Contact(k)
	s.contact.Store(unixNano(last))
	s.failing.Store(unixNano(failing))
	if !last.IsZero() {
		syncTimestamp.WithLabelValues(s.label).Set(float64(last.UnixNano()) / 1e9)
	}
	stale := 0.0
	if !failing.IsZero() {
		stale = 1
	}
	staleGauge.WithLabelValues(s.label).Set(stale)
}

func (s *followSource) Stop() {
	s.mu.Lock()
	started, stopped := s.started, s.stopped
	s.stopped = true
	s.mu.Unlock()
	if stopped || !started {
		return
	}
	close(s.stop)
	<-s.done
	if s.f.Load() == nil {
		return
	}
	s.cancel()
	releaseFollower(s.settings)
}

// Contact is the follower's contact with Consul through its tiers, for
// the snapshot this source feeds, as run last took it: at most a second
// old, and read without a lock.
func (s *followSource) Contact() (last, failing time.Time) {
	return fromUnixNano(s.contact.Load()), fromUnixNano(s.failing.Load())
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (s *followSource) Cluster() (string, bool) {
	f := s.f.Load()
	if f == nil {
		return "", false
	}
	return f.Cluster()
}
