package follower

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/plugin/consul/tier"
)

// selfSigned is a certificate for 127.0.0.1, both a CA and usable by a
// server and a client, and a pool holding it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tier"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// TestTLS: a tier served over TLS that takes client certificates is
// followed by its address alone (https from the TLS settings) or by URL;
// a follower without a certificate is refused.
func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	s, err := tier.New(tier.Config{TLS: serverTLS, ClientCAs: true, Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want := set(dc("dc1", "", 10, sv("a", 10)))
	s.Attach(&tier.Source{Collect: func() *snapshot.Set { return want },
		Contact: func(tier.Key) (time.Time, time.Time) { return time.Now(), time.Time{} }})
	ln := listen(t)
	go s.Serve(ln)
	t.Cleanup(s.Close)
	s.Offer()
	addr := ln.Addr().String()

	for _, a := range []string{addr, "https://" + addr} {
		f := start(t, Config{TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}, a)
		servedIndexes(t, f, 5*time.Second, map[string]uint64{"a": 10})
	}
	rec := newRecorder()
	start(t, Config{TLS: &tls.Config{RootCAs: pool}, Observer: rec}, addr)
	waitErrors(t, rec, addr, errRefused)
}
