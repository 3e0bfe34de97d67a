package replica

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// peeringCatalog is an in-memory catalog that also lists peerings, or
// refuses to with err.
type peeringCatalog struct {
	*memCatalog
	err   error
	calls atomic.Int64
}

func (c *peeringCatalog) Peerings(context.Context) ([]Peering, Meta, error) {
	c.calls.Add(1)
	if c.err != nil {
		return nil, Meta{}, c.err
	}
	return []Peering{{Name: "exp", State: "ACTIVE"}}, Meta{KnownLeader: true}, nil
}

// TestPeeringsLoop: the peerings are handed on; a token without
// peering:read is not a failure of Consul's (no stale answers, no failed
// request), and nothing is handed on.
func TestPeeringsLoop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		heard int64
	}{
		{"listed", nil, 1},
		{"denied", api.StatusError{Code: http.StatusForbidden, Body: "Permission denied"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat := &peeringCatalog{memCatalog: newMemCatalog(), err: tc.err}
			cat.populate(1, 1)
			var heard atomic.Int64
			cfg := testConfig()
			cfg.OnPeerings = func(list []Peering) {
				if len(list) == 1 && list[0].Name == "exp" {
					heard.Add(1)
				}
			}
			ev := newEvents()
			cfg.Observer = ev
			r := newReplicator(cat, cfg, newBudget(cfg, false), ev.publish)
			r.Start()
			t.Cleanup(r.Stop)
			ev.waitSnap(t, "the first snapshot", func(*snapshot.Snapshot) bool { return true })
			ev.waitFor(t, "a read of the peerings", func() bool { return cat.calls.Load() >= 1 && heard.Load() >= tc.heard })
			if _, failing := r.Contact(); !failing.IsZero() || ev.failures.Load() != 0 {
				t.Errorf("failing since %v, %d failed requests; want none", failing, ev.failures.Load())
			}
			if heard.Load() != tc.heard {
				t.Errorf("peerings handed on %d times, want %d", heard.Load(), tc.heard)
			}
		})
	}
}
