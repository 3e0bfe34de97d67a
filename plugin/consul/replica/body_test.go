package replica

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coredns-consul/coredns-consul/test/faultproxy"

	"github.com/hashicorp/consul/api"
)

// TestRedirectNotFollowed: an answer that redirects, whatever its code, is
// an error, and the redirect's target never hears from the replica, so the
// ACL token goes nowhere else.
func TestRedirectNotFollowed(t *testing.T) {
	var reached, tokens atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if r.Header.Get("X-Consul-Token") != "" {
			tokens.Add(1)
		}
		io.WriteString(w, "{}")
	}))
	t.Cleanup(target.Close)
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+r.URL.RequestURI(), code)
			}))
			t.Cleanup(redirect.Close)
			base := api.DefaultConfig()
			base.Token = "s3cret-token-value"
			eps, err := newEndpoints(base, credentialsOf(t, base), []string{redirect.URL}, 4)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(eps.close)
			_, _, err = eps.clients[0].Catalog().Services(nil)
			if !errors.Is(err, ErrRedirect) {
				t.Errorf("error %v, want ErrRedirect", err)
			}
			if reached.Load() != 0 || tokens.Load() != 0 {
				t.Errorf("the redirect was followed: %d requests, %d with the token", reached.Load(), tokens.Load())
			}
		})
	}
}

// TestBodyTooLarge: a 300 KB gzip answer that decompresses to 300 MB fails
// once past MaxBody, with a bounded amount of memory allocated.
func TestBodyTooLarge(t *testing.T) {
	proxy := faultproxy.New(t, "127.0.0.1:1") // answers on its own
	proxy.Set(faultproxy.HugeBody)
	eps, err := newEndpoints(api.DefaultConfig(), credentialsOf(t, api.DefaultConfig()), []string{proxy.Addr}, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eps.close)
	eps.clients[0].Status().Leader() // the bomb is compressed once, outside the measure

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err = eps.clients[0].Catalog().Nodes(nil)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MB body: %d MB allocated, %d MB heap in use after", faultproxy.HugeBodySize>>20, allocated>>20, after.HeapInuse>>20)
	if !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("error %v, want ErrBodyTooLarge", err)
	}
	if allocated > 5*MaxBody {
		t.Errorf("%d MB allocated for a body cut at %d MB", allocated>>20, MaxBody>>20)
	}
}

// TestLimitedBody: a body of exactly the limit reads whole; one byte more
// is an error, not a body cut short.
func TestLimitedBody(t *testing.T) {
	for _, tc := range []struct {
		size    int
		wantErr bool
	}{{0, false}, {99, false}, {100, false}, {101, true}, {10000, true}} {
		b := &limitedBody{ReadCloser: io.NopCloser(strings.NewReader(strings.Repeat("x", tc.size))), left: 100}
		got, err := io.ReadAll(b)
		if tc.wantErr != errors.Is(err, ErrBodyTooLarge) {
			t.Errorf("%d bytes: error %v", tc.size, err)
		}
		if len(got) > 100 {
			t.Errorf("%d bytes: %d read past the limit", tc.size, len(got))
		}
	}
}
