package replica

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestACLNotFoundRereadsToken: a 403 "ACL not found" makes the replica read
// the token file at once, not at its next poll: the requests after it carry
// the new token.
func TestACLNotFoundRereadsToken(t *testing.T) {
	old := credentialPoll
	credentialPoll = time.Hour
	t.Cleanup(func() { credentialPoll = old })

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
	src, err := newConsulSource(base, DefaultConfig(), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.followCredentials(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

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
