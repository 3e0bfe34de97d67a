package replica

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// Gateways answers as Consul's config entry list of a kind: a blocking
// query whose index moves when a gateway entry does.
func (c *memCatalog) Gateways(ctx context.Context, kind string, q Query) ([]*snapshot.Gateway, Meta, error) {
	i, err := c.block(ctx, "gateways "+kind, q, func() uint64 { return max(c.gatewaysIdx, 1) })
	defer c.mu.Unlock()
	if err != nil {
		return nil, Meta{}, err
	}
	if c.denyGateways {
		return nil, Meta{}, api.StatusError{Code: http.StatusForbidden, Body: "Permission denied"}
	}
	return slices.Clone(c.gateways[kind]), Meta{Index: i, KnownLeader: true}, nil
}

// setGateways writes the entries of kind.
func (c *memCatalog) setGateways(kind string, gws ...*snapshot.Gateway) {
	c.write(func(index uint64) {
		if c.gateways == nil {
			c.gateways = map[string][]*snapshot.Gateway{}
		}
		c.gateways[kind], c.gatewaysIdx = gws, index
	})
}

// TestGatewaysFollowed: the gateways' entries of both kinds reach the
// snapshot, sorted, and a change to them is published without any service
// changing.
func TestGatewaysFollowed(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(2, 1)
	b := &snapshot.Gateway{Name: "b-gw", Services: []string{"web"}}
	a := &snapshot.Gateway{Name: "a-gw", Services: []string{"api", "db"}}
	tg := &snapshot.Gateway{Name: "tg", Services: []string{"legacy"}}
	cat.setGateways(api.IngressGateway, b, a)
	cat.setGateways(api.TerminatingGateway, tg)
	_, ev := startMem(t, cat, testConfig())
	ev.waitSnap(t, "the entries", func(s *snapshot.Snapshot) bool {
		return s.IngressRead && reflect.DeepEqual(s.Ingress, []*snapshot.Gateway{a, b}) &&
			s.TerminatingRead && reflect.DeepEqual(s.Terminating, []*snapshot.Gateway{tg})
	})
	cat.setGateways(api.IngressGateway, b)
	ev.waitSnap(t, "a-gw's entry gone", func(s *snapshot.Snapshot) bool {
		return reflect.DeepEqual(s.Ingress, []*snapshot.Gateway{b}) && reflect.DeepEqual(s.Terminating, []*snapshot.Gateway{tg})
	})
}

// TestGatewaysDenied: a token that may not read the entries is not an
// outage: snapshots are published, with the entries marked unread.
func TestGatewaysDenied(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(1, 1)
	cat.denyGateways = true
	r, ev := startMem(t, cat, testConfig())
	ev.waitFor(t, "denied reads", func() bool {
		return cat.count("gateways "+api.IngressGateway) > 0 && cat.count("gateways "+api.TerminatingGateway) > 0
	})
	if s := ev.waitSnap(t, "sync", func(*snapshot.Snapshot) bool { return true }); s.IngressRead || s.TerminatingRead {
		t.Error("entries the token may not read are marked read")
	}
	if st := r.Stats(); st.Errors != 0 {
		t.Errorf("%d errors counted for a denied list", st.Errors)
	}
}

// TestConvertGateways keeps each service once, lower case, sorted, "*"
// included.
func TestConvertGateways(t *testing.T) {
	ingress := convertIngress(&api.IngressGatewayConfigEntry{Name: "ig", Listeners: []api.IngressListener{
		{Port: 8080, Protocol: "http", Services: []api.IngressService{{Name: "Web"}, {Name: "api"}}},
		{Port: 9090, Protocol: "tcp", Services: []api.IngressService{{Name: "web"}, {Name: ""}}},
		{Port: 9091, Protocol: "http", Services: []api.IngressService{{Name: "*"}}},
	}})
	terminating := convertTerminating(&api.TerminatingGatewayConfigEntry{Name: "tg", Services: []api.LinkedService{
		{Name: "Legacy"}, {Name: "db"}, {Name: "legacy"},
	}})
	for _, tc := range []struct{ got, want *snapshot.Gateway }{
		{ingress, &snapshot.Gateway{Name: "ig", Services: []string{"*", "api", "web"}}},
		{terminating, &snapshot.Gateway{Name: "tg", Services: []string{"db", "legacy"}}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("got %+v, want %+v", tc.got, tc.want)
		}
	}
}
