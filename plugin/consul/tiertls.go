package consul

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// tlsRecheck is how often the files of tier_tls and follow_tls are looked
// at, when a connection is made: certificates issued for days (cert-manager,
// Vault PKI) are renewed under a running CoreDNS.
var tlsRecheck = 2 * time.Second

// tlsFiles follows a certificate, its key and a CA file as they are
// replaced: a handshake uses what they hold now. A set that does not load
// (a key renamed in before its certificate, a file cut short) keeps the last
// good one, said once in the log.
type tlsFiles struct {
	what, cert, key, ca string

	mu      sync.Mutex
	checked time.Time
	stamp   string // the files' sizes and times at the last load
	now     *tlsMaterial
	failed  bool
}

// tlsMaterial is what the files held at one load.
type tlsMaterial struct {
	cert *tls.Certificate // nil without a certificate
	pool *x509.CertPool   // nil without a CA
}

// newTLSFiles loads the files at once: the Corefile line fails on them.
func newTLSFiles(what, cert, key, ca string) (*tlsFiles, error) {
	f := &tlsFiles{what: what, cert: cert, key: key, ca: ca}
	m, err := f.load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	f.now, f.stamp, f.checked = m, f.stampNow(), time.Now()
	return f, nil
}

// current is what the files hold, loaded again when they changed.
func (f *tlsFiles) current() *tlsMaterial {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) < tlsRecheck {
		return f.now
	}
	f.checked = time.Now()
	stamp := f.stampNow()
	if stamp == f.stamp {
		return f.now
	}
	m, err := f.load()
	switch {
	case err != nil && !f.failed:
		f.failed = true
		log.Errorf("%s: the files changed and do not load, the last good ones stay in use: %v", f.what, err)
	case err == nil:
		f.now, f.stamp, f.failed = m, stamp, false
		log.Infof("%s: the files changed: in use for new connections", f.what)
	}
	return f.now
}

func (f *tlsFiles) load() (*tlsMaterial, error) {
	m := &tlsMaterial{}
	if f.cert != "" {
		cert, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, err
		}
		m.cert = &cert
	}
	if f.ca != "" {
		pool, err := certPool(f.ca)
		if err != nil {
			return nil, err
		}
		m.pool = pool
	}
	return m, nil
}

// stampNow says when the files last changed, as far as stat tells.
func (f *tlsFiles) stampNow() string {
	var b strings.Builder
	for _, p := range []string{f.cert, f.key, f.ca} {
		if fi, err := os.Stat(p); err == nil && p != "" {
			fmt.Fprintf(&b, "%d/%d ", fi.Size(), fi.ModTime().UnixNano())
		} else {
			b.WriteString("- ")
		}
	}
	return b.String()
}

// serverTLS is the tier listener's TLS: its certificate, and with clientCA
// the client certificates it requires, each handshake with the files as
// they are then.
func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	files, err := newTLSFiles("tier_tls", certFile, keyFile, clientCA)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := files.current()
		tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*m.cert}}
		if m.pool != nil {
			tc.ClientCAs, tc.ClientAuth = m.pool, tls.RequireAndVerifyClientCert
		}
		return tc, nil
	}}, nil
}

// clientTLS is a follower's TLS to its tiers; nil without a CA (plain
// HTTP). Its client certificate is taken from the files at each handshake.
// The CA is the one read when the follower was made: crypto/tls verifies
// against RootCAs, fixed for the transport's life, and a check of its own
// against the file as it is now would not know the name dialed (an IP
// address is not sent as SNI): a new CA needs a restart, or a reload that
// changes the follow settings.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	files, err := newTLSFiles("follow_tls", certFile, keyFile, caFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: files.now.pool}
	if certFile != "" {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return files.current().cert, nil
		}
	}
	return tc, nil
}
