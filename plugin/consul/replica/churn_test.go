package replica

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/hashicorp/consul/api"
)

// TestReplicatorChurn churns instances between services (an instance
// registered again under another service's name leaves the first: Consul
// does not move that service's index) with one watcher per three services:
// once it settles, the replica holds exactly Consul's catalog.
func TestReplicatorChurn(t *testing.T) {
	const services = 30
	srv := consulagent.Start(t, nil)
	client := consulagent.Client(t, srv)
	consulagent.Populate(t, client, services, 3, 10)
	cfg := DefaultConfig()
	cfg.MaxWatchers = 10
	r, latest := startReplica(t, consulagent.Config(srv), cfg)
	waitFor(t, latest, "sync", func(s *snapshot.Snapshot) bool { n, _ := s.Counts(); return n == services+1 })
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		extra := rand.N(20)
		id := fmt.Sprintf("churn-%d", extra)
		node := fmt.Sprintf("churn-node-%d", extra)
		if rand.N(4) == 0 {
			consulagent.Deregister(t, client, node, id)
		} else {
			consulagent.Register(t, client, node, fmt.Sprintf("10.200.0.%d", extra+1), &api.AgentService{ID: id, Service: fmt.Sprintf("service-%d", rand.N(services)), Port: 9000}, []string{"passing", "warning", "critical"}[rand.N(3)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	t.Logf("%d requests, %d summaries, %d sweeps", r.Stats().Requests, r.Stats().Summaries, r.Stats().Sweeps)
	snap := latest.Load()
	for s := range services {
		name := fmt.Sprintf("service-%d", s)
		entries, _, _ := client.Health().Service(name, "", false, nil)
		var want []string
		for _, e := range entries {
			want = append(want, e.Service.ID)
		}
		slices.Sort(want)
		got := instanceIDs(snap, name)
		if !slices.Equal(got, want) {
			t.Errorf("%s: holds %v, Consul's catalog says %v", name, got, want)
		}
	}
}
