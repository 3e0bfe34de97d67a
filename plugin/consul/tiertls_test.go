package consul

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"testing"
	"time"
)

// handshake connects a client of clientCfg to a server of serverCfg and
// returns the serial of the certificate the server presented.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (string, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			// "ok" once the server took the client's certificate: in TLS
			// 1.3 the client's handshake ends before the server checks it.
			if c.(*tls.Conn).Handshake() == nil {
				c.Write([]byte("ok"))
			}
			c.Close()
		}
	}()
	cfg := clientCfg.Clone()
	cfg.ServerName = "127.0.0.1" // as net/http sets it from the address
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		return "", err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// TestTLSFilesRotate: tier_tls and follow_tls follow their certificate
// files: after a new certificate and key (from the same CA) are written over
// the old, the next handshake uses them on both sides, the tier requiring
// the client's to be signed by its CA file as it is then; files that do
// not load keep the last good ones.
func TestTLSFilesRotate(t *testing.T) {
	defer func(d time.Duration) { tlsRecheck = d }(tlsRecheck)
	tlsRecheck = 0
	ca, caKey := testCA(t)
	cert, key := issue(t, ca, caKey, 1)
	caFile := writeFile(t, "ca.pem", ca.pem)
	server, err := serverTLS(cert, key, caFile)
	if err != nil {
		t.Fatal(err)
	}
	client, err := clientTLS(caFile, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if serial, err := handshake(t, server, client); err != nil || serial != "1" {
		t.Fatalf("first handshake: certificate %s, %v; want 1", serial, err)
	}

	cert2, key2 := issue(t, ca, caKey, 2)
	replace(t, cert, cert2, 1)
	replace(t, key, key2, 1)
	if serial, err := handshake(t, server, client); err != nil || serial != "2" {
		t.Fatalf("after the files were replaced: certificate %s, %v; want 2", serial, err)
	}

	if err := os.WriteFile(cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	touch(t, cert, 2)
	if serial, err := handshake(t, server, client); err != nil || serial != "2" {
		t.Errorf("with a broken certificate file: certificate %s, %v; want the last good one (2)", serial, err)
	}

	// The tier takes client certificates of the CA its file names now.
	other, _ := testCA(t)
	replace(t, cert, cert2, 3)
	replace(t, caFile, writeFile(t, "other-ca.pem", other.pem), 3)
	if _, err := handshake(t, server, client); err == nil {
		t.Error("the tier took a client certificate of the CA its file no longer names")
	}
}

// replace writes from's content over path, dated later by seconds: a new
// file, as stat sees it.
func replace(t *testing.T, path, from string, seconds int) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	touch(t, path, seconds)
}

func touch(t *testing.T, path string, seconds int) {
	t.Helper()
	later := time.Now().Add(time.Duration(seconds) * time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

// testAuthority is a CA for the tests, as parsed and as PEM.
type testAuthority struct {
	cert *x509.Certificate
	pem  string
}

func testCA(t *testing.T) (*testAuthority, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(100), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testAuthority{cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}, key
}

// issue writes a certificate of serial for 127.0.0.1, server and client,
// signed by ca, and its key.
func issue(t *testing.T, ca *testAuthority, caKey *ecdsa.PrivateKey, serial int64) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "tier"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &priv.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("tier-%d", serial)
	return writeFile(t, name+".pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
		writeFile(t, name+"-key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
}
