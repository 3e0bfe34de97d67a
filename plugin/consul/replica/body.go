package replica

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// MaxBody bounds a body read from Consul, counted after decompression: a
// small gzip body can hold gigabytes (300 KB with a 300 MB tag allocated
// 1.3 GB). The largest answer the replica reads at 5,000 services of 5
// instances is the non-passing checks when every check fails: 25,000
// checks of about 480 bytes, 12 MB; a single service of 10,000 instances
// with their checks is about 15 MB. 32 MiB leaves twice that; the JSON
// decoder allocates about four times the body (its buffer doubles), so a
// bomb costs some 130 MB, not gigabytes.
const MaxBody = 32 << 20

// ErrBodyTooLarge is an answer from Consul past MaxBody. The read fails as
// any other: the last good data stays.
var ErrBodyTooLarge = fmt.Errorf("answer larger than %d MiB once decompressed", MaxBody>>20)

// ErrRedirect is a redirect in answer to a request to Consul, which is not
// followed: Consul's HTTP API never redirects (an agent forwards to the
// servers itself), so a redirect comes from something in between, and Go's
// client would carry the X-Consul-Token header to wherever it points, even
// to another host or from https to plain http.
var ErrRedirect = errors.New("redirect not followed")

// refuseRedirect is the replica's http.Client's redirect policy.
func refuseRedirect(req *http.Request, _ []*http.Request) error {
	return fmt.Errorf("%w (to %s)", ErrRedirect, req.URL.Host)
}

// limitBodies caps the bodies of the answers next returns, after the
// transport decompressed them.
type limitBodies struct {
	next http.RoundTripper
	max  int64
}

func (l limitBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: l.max}
	return resp, nil
}

// limitedBody fails with ErrBodyTooLarge once more than left bytes were
// read, rather than ending early: a body cut at the limit could still be
// valid JSON, a silently partial answer.
type limitedBody struct {
	io.ReadCloser
	left int64 // bytes that may still be read; -1 past the limit
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, ErrBodyTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // one byte past the limit tells a body past it
	}
	n, err := b.ReadCloser.Read(p)
	if int64(n) > b.left {
		n, b.left = int(b.left), -1
		return n, ErrBodyTooLarge
	}
	b.left -= int64(n)
	return n, err
}
