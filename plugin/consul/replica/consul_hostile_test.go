package replica

import (
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/faultproxy"

	"github.com/hashicorp/consul/api"
)

// TestReplicatorNullElements reads a real agent through a proxy that adds a
// null to both ends of every JSON array of every answer: every read the
// replica makes (agent, service list, health entries and their checks,
// nodes, non-passing checks, summaries, prepared queries, coordinates,
// datacenters) meets one. The nulls are skipped and counted; nothing
// panics, and the snapshot holds every real instance.
func TestReplicatorNullElements(t *testing.T) {
	srv := consulagent.Start(t, nil)
	client := consulagent.Client(t, srv)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "db-1", Service: "db", Port: 81}, "critical")
	if _, _, err := client.PreparedQuery().Create(&api.PreparedQueryDefinition{
		Name: "web-query", Service: api.ServiceQuery{Service: "web"}}, nil); err != nil {
		t.Fatal(err)
	}
	proxy := faultproxy.New(t, srv.HTTPAddr)
	proxy.Set(faultproxy.NullElements)

	cfg := DefaultConfig()
	cfg.MaxWatchers = 1 // detectors too: the summaries and the non-passing checks
	cfg.Wait = time.Second
	cfg.Coordinates = true
	cfg.DatacentersInterval = 100 * time.Millisecond
	datacenters := make(chan []string, 1)
	cfg.OnDatacenters = func(known, _ []string) {
		select {
		case datacenters <- known:
		default:
		}
	}
	_, ev := startReplica(t, &api.Config{Address: proxy.Addr}, cfg)
	s := ev.waitSnap(t, "both services and the query", func(s *snapshot.Snapshot) bool {
		return slices.Equal(ids(s, "web"), []string{"web-1"}) && slices.Equal(ids(s, "db"), []string{"db-1"}) &&
			len(s.Queries) == 1
	})
	if h := health(s, "db", "db-1"); h != snapshot.Critical {
		t.Errorf("db-1's health is %v, want critical: its checks were lost with the nulls", h)
	}
	select {
	case dcs := <-datacenters:
		if !slices.Equal(dcs, []string{"dc1"}) {
			t.Errorf("datacenters %q, want [dc1]", dcs)
		}
	case <-time.After(10 * time.Second):
		t.Error("no datacenter list")
	}
	if n := ev.panics.Load(); n != 0 {
		t.Errorf("%d panics", n)
	}
	if ev.invalid.Load() == 0 {
		t.Error("the nulls were not counted")
	}
}
