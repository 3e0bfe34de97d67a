package replica

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"

	"github.com/hashicorp/consul/api"
)

// credentialsOf returns the credentials base names, failing the test when
// they cannot be read.
func credentialsOf(t *testing.T, base *api.Config) *credentials {
	t.Helper()
	c, err := newCredentials(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reloads counts what a CredentialObserver hears.
type reloads struct {
	Observer
	mu     sync.Mutex
	counts map[string]int // "kind ok" or "kind error"
}

func (r *reloads) CredentialReload(kind string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	result := "error"
	if ok {
		result = "ok"
	}
	r.counts[kind+" "+result]++
}

func (r *reloads) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts
	r.counts = map[string]int{}
	return c
}

// replaceFile writes data to a new file and renames it over path, as Vault
// Agent, consul-template and Kubernetes do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// followingSource returns a source of base that follows its credentials
// until the test ends, checking them only when a request fails.
func followingSource(t *testing.T, base *api.Config, cfg Config) (*consulSource, context.Context) {
	t.Helper()
	old := credentialPoll
	credentialPoll = time.Hour
	t.Cleanup(func() { credentialPoll = old })
	src, err := newConsulSource(base, cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.followCredentials(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return src, ctx
}

// TestTokenFileFollowed: a token file renamed over is used at the next
// check; one that becomes empty, unreadable or not a token keeps the last
// good token, with one log line and one error counted per change of state;
// the token itself is never logged.
func TestTokenFileFollowed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	replaceFile(t, path, "secret-first\n")
	obs := &reloads{counts: map[string]int{}}
	c, err := newCredentials(&api.Config{TokenFile: path, Token: "secret-from-env"}, obs)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.current(); got != "secret-first" {
		t.Fatalf("token %q at start, want the file's", got)
	}
	logs := captureLog(t)

	steps := []struct {
		name    string
		change  func()
		token   string
		counted map[string]int
		logged  string // in the one line logged; "" for none
	}{
		{"renamed over", func() { replaceFile(t, path, "secret-second") }, "secret-second", map[string]int{"token ok": 1}, "new token is in use"},
		{"unchanged", func() {}, "secret-second", map[string]int{}, ""},
		{"emptied", func() { replaceFile(t, path, " \n") }, "secret-second", map[string]int{"token error": 1}, "empty; the token last read stays in use"},
		{"still empty", func() { replaceFile(t, path, "\n") }, "secret-second", map[string]int{}, ""},
		{"removed", func() { os.Remove(path) }, "secret-second", map[string]int{"token error": 1}, "no such file or directory"},
		{"a directory", func() { os.Mkdir(path, 0o700) }, "secret-second", map[string]int{"token error": 1}, "not a regular file"},
		{"not a token", func() { os.Remove(path); replaceFile(t, path, "secret\x00third") }, "secret-second", map[string]int{"token error": 1}, "control characters"},
		{"back", func() { replaceFile(t, path, "secret-third") }, "secret-third", map[string]int{"token ok": 1}, "new token is in use"},
	}
	for _, s := range steps {
		s.change()
		c.checkToken()
		if got := c.current(); got != s.token {
			t.Errorf("%s: token %q, want %q", s.name, got, s.token)
		}
		if got := obs.take(); len(got) != len(s.counted) || got["token ok"] != s.counted["token ok"] || got["token error"] != s.counted["token error"] {
			t.Errorf("%s: counted %v, want %v", s.name, got, s.counted)
		}
		lines := logs.take()
		switch {
		case s.logged == "" && len(lines) != 0:
			t.Errorf("%s: logged %q, want nothing", s.name, lines)
		case s.logged != "" && (len(lines) != 1 || !strings.Contains(lines[0], s.logged)):
			t.Errorf("%s: logged %q, want one line with %q", s.name, lines, s.logged)
		}
		for _, l := range lines {
			if strings.Contains(l, "secret") && !strings.Contains(l, "(not logged)") || strings.Contains(l, "secret-") {
				t.Errorf("%s: a token in the log: %q", s.name, l)
			}
		}
	}
}

// TestTokenFileSymlinkSwap: a Kubernetes secret volume replaces its files by
// pointing ..data at a new directory; the token file, a symlink through
// ..data, is followed.
func TestTokenFileSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, token string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		replaceFile(t, filepath.Join(dir, name, "token"), token)
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", "secret-one")
	path := filepath.Join(dir, "token")
	if err := os.Symlink(filepath.Join("..data", "token"), path); err != nil {
		t.Fatal(err)
	}
	c := credentialsOf(t, &api.Config{TokenFile: path})
	if got := c.current(); got != "secret-one" {
		t.Fatalf("token %q at start", got)
	}
	version("..v2", "secret-two")
	c.checkToken()
	if got := c.current(); got != "secret-two" {
		t.Errorf("token %q after ..data was swapped, want the new one", got)
	}
}

// TestACLNotFoundRereadsToken: a 403 "ACL not found" makes the replica read
// the token file at once, not at its next poll: the requests after it carry
// the new token.
func TestACLNotFoundRereadsToken(t *testing.T) {
	const oldToken, newToken = "token-deleted", "token-new"
	consul := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Consul-Token") != newToken {
			http.Error(w, "ACL not found", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Consul-Index", "7")
		w.Write([]byte(`{"consul":[]}`))
	}))
	t.Cleanup(consul.Close)
	path := filepath.Join(t.TempDir(), "token")
	replaceFile(t, path, oldToken)

	base := api.DefaultConfig()
	base.Address, base.TokenFile = consul.URL, path
	src, ctx := followingSource(t, base, DefaultConfig())

	if _, _, err := src.Services(ctx, Query{}); err == nil || !strings.Contains(err.Error(), "ACL not found") {
		t.Fatalf("with the old token: %v, want ACL not found", err)
	}
	replaceFile(t, path, newToken)
	began := time.Now()
	for {
		_, _, err := src.Services(ctx, Query{})
		if err == nil {
			t.Logf("new token in use %s after the rename", time.Since(began).Round(time.Millisecond))
			return
		}
		if time.Since(began) > 5*time.Second {
			t.Fatalf("still %v 5 s after the token file was replaced", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLSFilesFollowed: a CA file replaced by a rename is used for the
// connections opened after it, read at once when the agent's certificate
// fails to verify; a CA file that is not PEM keeps the CA last read.
func TestTLSFilesFollowed(t *testing.T) {
	srv, agentCA := consulagent.StartTLS(t, nil)
	other := exec.Command(consulagent.Binary(), "tls", "ca", "create")
	other.Dir = t.TempDir()
	if out, err := other.CombinedOutput(); err != nil {
		t.Fatalf("consul tls ca create: %v\n%s", err, out)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	replaceFile(t, path, readFile(t, filepath.Join(other.Dir, "consul-agent-ca.pem")))
	obs := &reloads{counts: map[string]int{}}
	cfg := DefaultConfig()
	cfg.Observer = obs
	base := api.DefaultConfig()
	base.Address, base.TLSConfig.CAFile = "https://"+srv.HTTPSAddr, path
	src, ctx := followingSource(t, base, cfg)

	steps := []struct {
		name    string
		ca      string
		ok      bool
		counted string
	}{
		{"a CA file that is not PEM", "not a certificate", false, "tls error"},
		{"the agent's CA", readFile(t, agentCA), true, "tls ok"},
	}
	for _, s := range steps {
		replaceFile(t, path, s.ca)
		began := time.Now()
		for {
			_, _, err := src.Services(ctx, Query{})
			obs.mu.Lock()
			counted := obs.counts[s.counted]
			obs.mu.Unlock()
			if (err == nil) == s.ok && counted == 1 {
				t.Logf("%s: %v, %s after the rename", s.name, err, time.Since(began).Round(time.Millisecond))
				break
			}
			if time.Since(began) > 5*time.Second {
				t.Fatalf("%s: %v and %v counted 5 s after the rename, want ok %v", s.name, err, obs.take(), s.ok)
			}
			time.Sleep(10 * time.Millisecond)
		}
		obs.take()
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestClientCertificateFollowed: a client certificate and its key replaced
// one after the other switch together, with no failure reported between
// the two renames; a key left unmatched past tlsSettle is reported once and
// the pair last read stays in use.
func TestClientCertificateFollowed(t *testing.T) {
	made := t.TempDir()
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-client"}, {"tls", "cert", "create", "-client"}} {
		cmd := exec.Command(consulagent.Binary(), args...)
		cmd.Dir = made
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("consul %v: %v\n%s", args, err, out)
		}
	}
	pair := func(i int) (cert, key string) {
		return readFile(t, filepath.Join(made, fmt.Sprintf("dc1-client-consul-%d.pem", i))),
			readFile(t, filepath.Join(made, fmt.Sprintf("dc1-client-consul-%d-key.pem", i)))
	}
	dir := t.TempDir()
	files := api.TLSConfig{CAFile: filepath.Join(made, "consul-agent-ca.pem"), CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	cert0, key0 := pair(0)
	cert1, key1 := pair(1)
	replaceFile(t, files.CertFile, cert0)
	replaceFile(t, files.KeyFile, key0)
	obs := &reloads{counts: map[string]int{}}
	c, err := newCredentials(&api.Config{TLSConfig: files}, obs)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := 0
	c.onTLS = func() { rebuilt++ }
	logs := captureLog(t)
	inUse := func() string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.clientTLS().Certificates[0].Certificate[0]}))
	}

	steps := []struct {
		name    string
		change  func()
		settled bool // past tlsSettle
		cert    string
		counted map[string]int
		logged  string
	}{
		{"certificate renamed first", func() { replaceFile(t, files.CertFile, cert1) }, false, cert0, map[string]int{}, ""},
		{"then its key", func() { replaceFile(t, files.KeyFile, key1) }, false, cert1, map[string]int{"tls ok": 1}, "new connections to Consul use them"},
		{"a certificate without its key", func() { replaceFile(t, files.CertFile, cert0) }, false, cert1, map[string]int{}, ""},
		{"still without it", func() {}, true, cert1, map[string]int{"tls error": 1}, "private key does not match public key"},
		{"and on", func() {}, true, cert1, map[string]int{}, ""},
		{"its key at last", func() { replaceFile(t, files.KeyFile, key0) }, false, cert0, map[string]int{"tls ok": 1}, "new connections to Consul use them"},
	}
	for _, s := range steps {
		s.change()
		if s.settled && !c.tlsPending.IsZero() {
			c.tlsPending = c.tlsPending.Add(-tlsSettle)
		}
		c.checkTLS()
		if got := inUse(); strings.TrimSpace(got) != strings.TrimSpace(s.cert) {
			t.Errorf("%s: another certificate in use", s.name)
		}
		if got := obs.take(); len(got) != len(s.counted) || got["tls ok"] != s.counted["tls ok"] || got["tls error"] != s.counted["tls error"] {
			t.Errorf("%s: counted %v, want %v", s.name, got, s.counted)
		}
		lines := logs.take()
		if s.logged == "" && len(lines) != 0 || s.logged != "" && (len(lines) != 1 || !strings.Contains(lines[0], s.logged)) {
			t.Errorf("%s: logged %q, want %q", s.name, lines, s.logged)
		}
	}
	if rebuilt != 2 {
		t.Errorf("the endpoints were rebuilt %d times, want 2", rebuilt)
	}
}
