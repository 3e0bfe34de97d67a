package follower

import (
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
)

// tokenPoll is how often the token file is read again at most: a tier's
// operator rotates the token in the file, and the next request sends it.
var tokenPoll = 2 * time.Second

// token is the bearer token the follower sends, from a file followed for
// changes. A file that cannot be read or holds no token keeps the last good
// token in use. The token itself is never logged.
type token struct {
	path string

	mu      sync.Mutex
	current string
	sum     [sha256.Size]byte
	checked time.Time // zero: read at the next request
	failed  string    // the failure last logged; "" when none
}

func newToken(path string) *token { return &token{path: path} }

// get returns the token to send, "" for none, reading the file again when
// it was last read tokenPoll ago or a tier refused the token.
func (t *token) get() string {
	if t.path == "" {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); t.checked.IsZero() || now.Sub(t.checked) >= tokenPoll {
		t.checked = now
		t.read()
	}
	return t.current
}

// refused makes the next request read the file first: the tier may hold a
// rotated token the follower has not read yet.
func (t *token) refused() {
	t.mu.Lock()
	t.checked = time.Time{}
	t.mu.Unlock()
}

func (t *token) read() {
	data, err := replica.ReadCredentialFile(t.path)
	tok := strings.TrimSpace(string(data))
	switch {
	case err != nil:
	case tok == "":
		err = errors.New("empty")
	case strings.IndexFunc(tok, unicode.IsControl) >= 0:
		err = errors.New("not a token: it holds control characters")
	}
	if err != nil {
		if msg := err.Error(); msg != t.failed {
			t.failed = msg
			log.Errorf("follow_token_file %q: %v; the token last read stays in use", t.path, err)
		}
		return
	}
	t.failed = ""
	if sum := sha256.Sum256([]byte(tok)); sum != t.sum {
		if t.current != "" {
			log.Infof("follow_token_file %q changed: the new token is sent from now on (not logged)", t.path)
		}
		t.current, t.sum = tok, sum
	}
}
