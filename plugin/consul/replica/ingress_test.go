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

// IngressGateways answers as Consul's ingress-gateway config entry list: a
// blocking query whose index moves when an entry does.
func (c *memCatalog) IngressGateways(ctx context.Context, q Query) ([]*snapshot.IngressGateway, Meta, error) {
	i, err := c.block(ctx, "ingress", q, func() uint64 { return max(c.ingressIdx, 1) })
	defer c.mu.Unlock()
	if err != nil {
		return nil, Meta{}, err
	}
	if c.denyIngress {
		return nil, Meta{}, api.StatusError{Code: http.StatusForbidden, Body: "Permission denied"}
	}
	return slices.Clone(c.ingress), Meta{Index: i, KnownLeader: true}, nil
}

// setIngress writes the ingress gateways' entries.
func (c *memCatalog) setIngress(gws ...*snapshot.IngressGateway) {
	c.write(func(index uint64) { c.ingress, c.ingressIdx = gws, index })
}

// TestIngressFollowed: the gateways' entries reach the snapshot, sorted,
// and a change to them is published without any service changing.
func TestIngressFollowed(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(2, 1)
	b := &snapshot.IngressGateway{Name: "b-gw", Services: []string{"web"}}
	a := &snapshot.IngressGateway{Name: "a-gw", Services: []string{"api", "db"}}
	cat.setIngress(b, a)
	_, ev := startMem(t, cat, testConfig())
	ev.waitSnap(t, "the entries", func(s *snapshot.Snapshot) bool {
		return s.IngressRead && reflect.DeepEqual(s.Ingress, []*snapshot.IngressGateway{a, b})
	})
	cat.setIngress(b)
	ev.waitSnap(t, "a-gw's entry gone", func(s *snapshot.Snapshot) bool {
		return s.IngressRead && reflect.DeepEqual(s.Ingress, []*snapshot.IngressGateway{b})
	})
}

// TestIngressDenied: a token that may not read the entries is not an
// outage: snapshots are published, with the entries marked unread.
func TestIngressDenied(t *testing.T) {
	cat := newMemCatalog()
	cat.populate(1, 1)
	cat.denyIngress = true
	r, ev := startMem(t, cat, testConfig())
	ev.waitFor(t, "a denied read", func() bool { return cat.count("ingress") > 0 })
	if s := ev.waitSnap(t, "sync", func(*snapshot.Snapshot) bool { return true }); s.IngressRead {
		t.Error("entries the token may not read are marked read")
	}
	if st := r.Stats(); st.Errors != 0 {
		t.Errorf("%d errors counted for a denied list", st.Errors)
	}
}

// TestConvertIngress keeps each exposed service once, lower case, sorted,
// "*" included.
func TestConvertIngress(t *testing.T) {
	got := convertIngress(&api.IngressGatewayConfigEntry{Name: "ig", Listeners: []api.IngressListener{
		{Port: 8080, Protocol: "http", Services: []api.IngressService{{Name: "Web"}, {Name: "api"}}},
		{Port: 9090, Protocol: "tcp", Services: []api.IngressService{{Name: "web"}, {Name: ""}}},
		{Port: 9091, Protocol: "http", Services: []api.IngressService{{Name: "*"}}},
	}})
	want := &snapshot.IngressGateway{Name: "ig", Services: []string{"*", "api", "web"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
