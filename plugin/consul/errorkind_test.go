package consul

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
)

// TestErrorKindHostile: an answer past the size limit and a redirect not
// followed are kinds of their own in request_errors_total, as the replica
// returns them (wrapped by the api package's url.Error and the endpoint's
// name).
func TestErrorKindHostile(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("consul at x: listing nodes: %w", replica.ErrBodyTooLarge), "too_large"},
		{fmt.Errorf("consul at x: %w", &url.Error{Op: "Get", URL: "http://x/v1/catalog/nodes", Err: fmt.Errorf("%w (to y)", replica.ErrRedirect)}), "redirect"},
	} {
		if got := errorKind(tc.err); got != tc.want {
			t.Errorf("errorKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
