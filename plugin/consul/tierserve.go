package consul

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// tierSettings are what a tier block serves its followers with
// (tier_listen, tier_token_file, tier_tls, tier_no_auth, tier_transfers).
type tierSettings struct {
	Listen       string
	TokenFile    string
	CertFile     string
	KeyFile      string
	ClientCAFile string
	NoAuth       bool
	Transfers    int
	at           string // "FILE:LINE" of tier_listen, for errors found at start-up
}

func (s *tierSettings) key() string {
	b, _ := json.Marshal(s) // plain values: cannot fail
	return string(b)
}

// tierListener is one tier server and the block it serves.
type tierListener struct {
	key string
	srv *tier.Server
}

// tiers are the process's tier servers by listen address. A reload that
// keeps a block's tier settings keeps its server, its listener and its
// generations: followers go on with deltas, none reconnects.
var tiers = struct {
	sync.Mutex
	by map[string]*tierListener
}{by: make(map[string]*tierListener)}

// serveTier makes c the block that tier s serves from, starting the server
// when no block serves on its address with the same settings yet.
func (c *Consul) serveTier(s *tierSettings) error {
	tiers.Lock()
	defer tiers.Unlock()
	t := tiers.by[s.Listen]
	if t != nil && t.key != s.key() {
		// Settings changed: the old server stops, followers reconnect to
		// the new one (and get the whole state once).
		t.srv.Close()
		delete(tiers.by, s.Listen)
		t = nil
	}
	if t == nil {
		srv, err := newTierServer(s)
		if err != nil {
			return fmt.Errorf("%s - tier_listen: %w", s.at, err)
		}
		t = &tierListener{key: s.key(), srv: srv}
		tiers.by[s.Listen] = t
	}
	c.tierSrc = &tier.Source{Collect: c.collect, Contact: c.tierContact}
	t.srv.Attach(c.tierSrc)
	c.tier.Store(t.srv)
	t.srv.Offer()
	return nil
}

// newTierServer makes and starts the server s describes.
func newTierServer(s *tierSettings) (*tier.Server, error) {
	cfg := tier.Config{TokenFile: s.TokenFile, NoAuth: s.NoAuth, MaxTransfers: s.Transfers}
	if s.CertFile != "" {
		tc, err := serverTLS(s.CertFile, s.KeyFile, s.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.TLS, cfg.ClientCAs = tc, s.ClientCAFile != ""
	}
	srv, err := tier.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return nil, err
	}
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Errorf("%v", err)
		}
	}()
	log.Infof("tier: serving followers on %s", ln.Addr())
	return srv, nil
}

// leaveTier is c's block shutting down: the server stops unless a reloaded
// block serves from it now.
func (c *Consul) leaveTier() {
	srv := c.tier.Swap(nil)
	if srv == nil {
		return
	}
	tiers.Lock()
	defer tiers.Unlock()
	if !srv.Detach(c.tierSrc) {
		return
	}
	for addr, t := range tiers.by {
		if t.srv == srv {
			delete(tiers.by, addr)
		}
	}
	srv.Close()
}

// offer says that what the block serves changed: for the snapshot file
// and the followers.
func (c *Consul) offer() {
	if c.persist != nil {
		c.persist.offer()
	}
	c.offerTier()
}

// offerTier tells the tier server, if any, that something new may be
// served.
func (c *Consul) offerTier() {
	if t := c.tier.Load(); t != nil {
		t.Offer()
	}
}

// tierContact is how current the replica of k is with Consul.
func (c *Consul) tierContact(k tier.Key) (last, failing time.Time) {
	var d *datacenter
	switch {
	case k.Peer != "":
		d = c.peers.get(k.Peer)
	case k.Datacenter == c.localName():
		d = c.local
	default:
		d = c.remoteNamed(k.Datacenter)
	}
	if d == nil || d.feed == nil {
		return time.Time{}, time.Time{}
	}
	return d.feed.replica.Contact()
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the CA: %w", bareErr(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("the CA file " + file + " holds no PEM certificate")
	}
	return pool, nil
}
