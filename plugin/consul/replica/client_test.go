package replica

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestEndpointErrorsNameTheAddress checks that an error from a request to
// one of several endpoints says which one answered, keeps Consul's status
// for errors.As, and never carries the ACL token.
func TestEndpointErrorsNameTheAddress(t *testing.T) {
	notFound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(notFound.Close)
	// A port nothing listens on: a connection error rather than a status.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	const token = "s3cret-token-value"
	addrs := []string{notFound.URL, closed}
	base := api.DefaultConfig()
	base.Token = token
	eps, err := newEndpoints(base, credentialsOf(t, base), addrs, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eps.close)

	tests := []struct {
		name       string
		endpoint   int32
		wantPrefix string
		wantStatus int // 0: no api.StatusError
	}{
		{"404 from Consul", 0, "consul at " + notFound.URL + ": Unexpected response code: 404", http.StatusNotFound},
		{"no connection", 1, "consul at " + closed + ": ", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := eps.clients[tc.endpoint].Catalog().Services(nil)
			if err == nil {
				t.Fatal("the request succeeded, want an error")
			}
			err = eps.named(tc.endpoint, err)
			if !strings.HasPrefix(err.Error(), tc.wantPrefix) {
				t.Errorf("error = %q, want it to start with %q", err, tc.wantPrefix)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error %q carries the ACL token", err)
			}
			var status api.StatusError
			if got := errors.As(err, &status); got != (tc.wantStatus != 0) || (got && status.Code != tc.wantStatus) {
				t.Errorf("errors.As(StatusError) = %v (%+v), want status %d", got, status, tc.wantStatus)
			}
		})
	}
	if eps.named(0, nil) != nil {
		t.Error("named(nil) is not nil")
	}
}
