package tier

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// tokenPoll is how often the token file is looked at again while tokens
// are accepted; a refused token looks at once, so that a rotated token is
// taken by the first follower that sends it.
const tokenPoll = 2 * time.Second

// maxTokenFile bounds the token file.
const maxTokenFile = 1 << 20

// auth decides who may follow: a token (from a file, followed as it
// rotates), a verified client certificate, or anyone when the Corefile
// says so.
type auth struct {
	file      string
	noAuth    bool
	clientCAs bool
	clock     clock

	mu      sync.Mutex
	token   []byte // the last good one; nil when the file never gave one
	sum     [sha256.Size]byte
	checked time.Time
	failed  string // the failure last logged, "" when none
}

func newAuth(cfg Config, c clock) (*auth, error) {
	a := &auth{file: cfg.TokenFile, noAuth: cfg.NoAuth, clientCAs: cfg.ClientCAs, clock: c}
	switch {
	case a.clientCAs && cfg.TLS == nil:
		return nil, errors.New("tier: client certificates need TLS")
	case a.file == "" && !a.noAuth && !a.clientCAs:
		return nil, errors.New("tier: no token file and no client certificates: the tier is served without authentication only when the Corefile says so (tier_no_auth)")
	case a.file != "":
		token, err := readTokenFile(a.file)
		if err != nil {
			return nil, fmt.Errorf("tier: %w", err)
		}
		a.token, a.sum, a.checked = token, sha256.Sum256(token), c.Now()
	}
	return a, nil
}

// check returns 0 when r may follow, else the status and why, which never
// holds a token.
func (a *auth) check(r *http.Request) (int, string) {
	if a.noAuth || (a.clientCAs && r.TLS != nil && len(r.TLS.VerifiedChains) > 0) {
		return 0, ""
	}
	if a.file == "" {
		return http.StatusUnauthorized, "a client certificate is required"
	}
	sent, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || sent == "" {
		return http.StatusUnauthorized, "no token: send Authorization: Bearer <token>"
	}
	if a.matches([]byte(sent), false) || a.matches([]byte(sent), true) {
		return 0, ""
	}
	return http.StatusForbidden, "the token is refused"
}

// matches compares sent with the token, looking at the file first when it
// is due or when now says so.
func (a *auth) matches(sent []byte, now bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t := a.clock.Now(); now || t.Sub(a.checked) >= tokenPoll {
		a.checked = t
		a.reread()
	}
	return a.token != nil && subtle.ConstantTimeCompare(sent, a.token) == 1
}

// reread takes the file's token when it changed and can be used; a file
// that cannot be read or is empty keeps the last good token, said once.
func (a *auth) reread() {
	token, err := readTokenFile(a.file)
	if err != nil {
		if msg := err.Error(); msg != a.failed {
			a.failed = msg
			log.Errorf("tier: %v; the last good token stays in use", err)
		}
		return
	}
	if a.failed != "" {
		log.Infof("tier: token file %s can be read again", a.file)
		a.failed = ""
	}
	if sum := sha256.Sum256(token); sum != a.sum {
		a.token, a.sum = token, sum
		log.Infof("tier: token file %s changed: the new token is in use", a.file)
	}
}

func readTokenFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	switch token := strings.TrimSpace(string(data)); {
	case err != nil:
		return nil, fmt.Errorf("token file %s: %w", path, err)
	case len(data) > maxTokenFile:
		return nil, fmt.Errorf("token file %s is larger than %d KiB", path, maxTokenFile>>10)
	case token == "":
		return nil, fmt.Errorf("token file %s is empty", path)
	default:
		return []byte(token), nil
	}
}
