package replica

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/hashicorp/consul/api"
)

// credentialPoll is how often the token and TLS files are checked. A stat
// would miss a rewrite within the same second on some file systems, and a
// symlink swap (Kubernetes' ..data) changes no stat of the old target:
// the files are small, so their contents are digested instead.
var credentialPoll = 2 * time.Second

// tlsSettle is how long TLS files that do not load are given to become a
// matching set before the failure is reported.
const tlsSettle = time.Second

// maxCredentialFile bounds the size of a CA, certificate, key or token file.
const maxCredentialFile = 1 << 20

// Credential kinds, as the CredentialObserver hears of them.
const (
	TokenCredential = "token"
	TLSCredential   = "tls"
)

// CredentialObserver, when the Config's Observer implements it, hears of
// every change seen in the token or TLS files: ok false when the new
// contents could not be used and the last good ones are kept.
type CredentialObserver interface {
	CredentialReload(kind string, ok bool)
}

// credentials are the token and TLS material the replica sends, re-read
// when their files change so that rotated credentials apply without a
// reload. The token is read per request; new TLS material calls onTLS,
// which rebuilds the connections' transport.
type credentials struct {
	tokenFile string
	tlsFiles  api.TLSConfig // files, names and verification, as configured
	observer  Observer

	token atomic.Pointer[string]
	tls   atomic.Pointer[tls.Config]
	onTLS func()
	poke  chan struct{}

	// mu serializes checks; what follows is theirs.
	mu                   sync.Mutex
	tokenSum, tlsSum     [sha256.Size]byte
	tokenFailed, tlsFail string // the failure last logged, "" when none
	// tlsPending is when files that do not load yet changed; zero when
	// none are waiting to settle.
	tlsPending time.Time
}

// newCredentials reads the token and TLS files base names. TLS material that
// cannot be used fails, as it did before the files were watched; a token
// file that cannot be read falls back to base's token until it can.
func newCredentials(base *api.Config, observer Observer) (*credentials, error) {
	c := &credentials{tokenFile: base.TokenFile, tlsFiles: base.TLSConfig,
		observer: observer, poke: make(chan struct{}, 1)}
	tlsConf, err := api.SetupTLSConfig(&c.tlsFiles)
	if err != nil {
		return nil, fmt.Errorf("consul TLS settings: %w", err)
	}
	c.tls.Store(tlsConf)
	c.tlsSum = c.tlsDigest()
	token := base.Token
	if c.tokenFile != "" {
		// Read here rather than by the first check, which would log the
		// file's token as a change.
		t, err := readToken(c.tokenFile)
		if err == nil {
			token = t
		}
		c.tokenSum = tokenDigest(t, err)
		if err != nil {
			c.tokenFailed = err.Error()
			log.Errorf("token_file %q: %v; no token from it until it can be read", c.tokenFile, err)
		}
	}
	c.token.Store(&token)
	return c, nil
}

func tokenDigest(token string, err error) [sha256.Size]byte {
	return sha256.Sum256(fmt.Appendf(nil, "%s\x00%v", token, err))
}

// current returns the token to send, "" for none.
func (c *credentials) current() string { return *c.token.Load() }

// clientTLS returns the TLS settings new connections use.
func (c *credentials) clientTLS() *tls.Config { return c.tls.Load() }

// watched reports whether any file is to be followed.
func (c *credentials) watched() bool {
	f := c.tlsFiles
	return c.tokenFile != "" || f.CAFile != "" || f.CAPath != "" || f.CertFile != "" || f.KeyFile != ""
}

// follow checks the files every credentialPoll, and at once when poked,
// until done is closed.
func (c *credentials) follow(done <-chan struct{}) {
	if !c.watched() {
		return
	}
	t := time.NewTicker(credentialPoll)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		case <-c.poke:
		}
		c.checkToken()
		c.checkTLS()
	}
}

// failed asks for a check at once when err says the credentials may be
// stale: Consul no longer knows the token, or the server's certificate is
// not signed by the CA held. It never blocks.
func (c *credentials) failed(err error) {
	var status api.StatusError
	var verify *tls.CertificateVerificationError
	stale := errors.As(err, &status) && status.Code == http.StatusForbidden && strings.Contains(status.Body, "ACL not found") ||
		errors.As(err, &verify)
	if !stale {
		return
	}
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// checkToken reads the token file again; a changed, usable token is used
// by every request from then on. One log line per change of state, never
// the token.
func (c *credentials) checkToken() {
	if c.tokenFile == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	token, err := readToken(c.tokenFile)
	sum := tokenDigest(token, err)
	if sum == c.tokenSum {
		return
	}
	c.tokenSum = sum
	if err != nil {
		c.reported(TokenCredential, false)
		if msg := err.Error(); msg != c.tokenFailed {
			c.tokenFailed = msg
			log.Errorf("token_file %q: %v; the token last read stays in use", c.tokenFile, err)
		}
		return
	}
	recovered := c.tokenFailed != ""
	c.tokenFailed = ""
	if token == c.current() {
		if recovered {
			log.Infof("token_file %q is readable again, with the token in use", c.tokenFile)
		}
		return
	}
	c.token.Store(&token)
	c.reported(TokenCredential, true)
	log.Infof("token_file %q changed: the new token is in use for every request from now on (not logged)", c.tokenFile)
}

// readToken reads a token file as Consul's tools do (surrounding space
// trimmed), refusing what cannot be a token.
func readToken(path string) (string, error) {
	data, err := readSmall(path)
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(data))
	switch {
	case token == "":
		return "", errors.New("empty")
	case strings.IndexFunc(token, unicode.IsControl) >= 0:
		// A header cannot carry it: every request would fail.
		return "", errors.New("not a token: it holds control characters")
	}
	return token, nil
}

// checkTLS reads the CA, certificate and key files again; usable new
// material is handed to onTLS for the connections opened from then on. A
// certificate and its key are replaced one after the other: a pair that
// does not match is given tlsSettle for the other file to follow before it
// is reported.
func (c *credentials) checkTLS() {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := c.tlsDigest()
	if sum == c.tlsSum && c.tlsPending.IsZero() {
		return
	}
	if sum != c.tlsSum {
		c.tlsSum, c.tlsPending = sum, time.Now()
	}
	conf, err := api.SetupTLSConfig(&c.tlsFiles)
	if err != nil {
		if time.Since(c.tlsPending) < tlsSettle {
			return
		}
		c.tlsPending = time.Time{}
		c.reported(TLSCredential, false)
		if msg := err.Error(); msg != c.tlsFail {
			c.tlsFail = msg
			log.Errorf("tls files (%s): %v; the CA and certificate last read stay in use", c.tlsNames(), err)
		}
		return
	}
	c.tlsPending, c.tlsFail = time.Time{}, ""
	c.tls.Store(conf)
	if c.onTLS != nil {
		c.onTLS()
	}
	c.reported(TLSCredential, true)
	log.Infof("tls files (%s) changed: new connections to Consul use them", c.tlsNames())
}

// tlsNames names the TLS files followed, for a log line.
func (c *credentials) tlsNames() string {
	f := c.tlsFiles
	var names []string
	for _, n := range []struct{ what, path string }{{"CA", f.CAFile}, {"CA directory", f.CAPath}, {"certificate", f.CertFile}, {"key", f.KeyFile}} {
		if n.path != "" {
			names = append(names, fmt.Sprintf("%s %q", n.what, n.path))
		}
	}
	return strings.Join(names, ", ")
}

func (c *credentials) reported(kind string, ok bool) {
	if o, is := c.observer.(CredentialObserver); is {
		o.CredentialReload(kind, ok)
	}
}

// tlsDigest digests the CA, certificate and key files, and every file
// under the CA directory, as SetupTLSConfig loads them.
func (c *credentials) tlsDigest() [sha256.Size]byte {
	h := sha256.New()
	f := c.tlsFiles
	for _, path := range []string{f.CAFile, f.CertFile, f.KeyFile} {
		if path != "" {
			digestFile(h, path)
		}
	}
	if f.CAPath != "" {
		err := filepath.WalkDir(f.CAPath, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				digestFile(h, path)
			}
			return err
		})
		fmt.Fprintf(h, "%v\x00", err)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// digestFile adds path and its contents to h, or why it cannot be read: a
// file that becomes readable is a change too.
func digestFile(h hash.Hash, path string) {
	data, err := readSmall(path)
	fmt.Fprintf(h, "%s\x00%d\x00%v\x00", path, len(data), err)
	h.Write(data)
}

// readSmall reads a regular file of at most maxCredentialFile bytes. It
// stats before opening, so that a FIFO or a device is never opened.
func readSmall(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, bareErr(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > maxCredentialFile {
		// Certificates, keys and tokens are small; a huge file is a typo
		// (/proc/kcore reports terabytes) that must not be read whole.
		return nil, fmt.Errorf("%d bytes, more than a certificate, key or token file holds", fi.Size())
	}
	data, err := os.ReadFile(path)
	return data, bareErr(err)
}

// ReadCredentialFile reads a token, CA, certificate or key file as the
// replica does, so that the Corefile's parser refuses what the replica
// would. Errors do not repeat the path: the caller names the file.
func ReadCredentialFile(path string) ([]byte, error) { return readSmall(path) }

// bareErr strips the operation and path from an *fs.PathError.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
