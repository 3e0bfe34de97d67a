package tier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFollowAuth checks who may follow, and that a rotated token is taken
// at once.
func TestFollowAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("secret-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tt := startTier(t, Config{TokenFile: file})
	tt.publish(baseSet(), 1)
	check := func(token string, want int) {
		t.Helper()
		resp := tt.get("index=0", token)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Errorf("token %q: %s, want %d", token, resp.Status, want)
		}
		if token != "" && strings.Contains(string(body), token) {
			t.Errorf("the answer echoes the token: %q", body)
		}
	}
	refused := value(t, answers.WithLabelValues("refused"))
	check("", http.StatusUnauthorized)
	check("wrong", http.StatusForbidden)
	check("secret-one", http.StatusOK)
	if got := value(t, answers.WithLabelValues("refused")) - refused; got != 2 {
		t.Errorf("tier_answers_total{kind=refused} moved by %v, want 2", got)
	}
	if err := os.WriteFile(file, []byte("secret-two"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("secret-two", http.StatusOK) // before the 2 s poll: the refusal looks
	check("secret-one", http.StatusForbidden)
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tt.clk.Advance(tokenPoll)
	check("secret-two", http.StatusOK) // an emptied file keeps the last good token
}

func TestNewRefusesNoAuth(t *testing.T) {
	for name, cfg := range map[string]Config{
		"nothing":                        {},
		"client certificates, no TLS":    {ClientCAs: true},
		"token file that does not exist": {TokenFile: filepath.Join(t.TempDir(), "none")},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestFollowClientCertificate checks that a verified client certificate is
// enough to follow, and that without one nothing is served.
func TestFollowClientCertificate(t *testing.T) {
	ca, caKey := newCert(t, nil, nil, "ca")
	server, serverKey := newCert(t, ca, caKey, "server")
	client, clientKey := newCert(t, ca, caKey, "follower")
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{server.Raw}, PrivateKey: serverKey}},
		ClientCAs:    pool, ClientAuth: tls.VerifyClientCertIfGiven,
	}
	tt := startTier(t, Config{TLS: serverTLS, ClientCAs: true})
	tt.publish(baseSet(), 1)
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		want  int
	}{
		{"with a certificate", []tls.Certificate{{Certificate: [][]byte{client.Raw}, PrivateKey: clientKey}}, http.StatusOK},
		{"without one", nil, http.StatusUnauthorized},
	} {
		transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: tc.certs}}
		tt.client = &http.Client{Transport: transport}
		if resp := tt.get("index=0", ""); resp.StatusCode != tc.want {
			t.Errorf("%s: %s, want %d", tc.name, resp.Status, tc.want)
		}
		transport.CloseIdleConnections()
	}
}

// newCert makes a certificate for 127.0.0.1 signed by parent (self-signed,
// a CA, when parent is nil).
func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
