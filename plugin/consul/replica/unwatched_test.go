package replica

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"

	"github.com/hashicorp/consul/api"
)

// TestReplicatorUnwatchedChangesAreCheap checks what changes to services
// without a watcher cost: a registration or deregistration, with or without
// a check, is named by the services' summaries for a few requests and no
// sweep; a port change, which no count shows, costs one sweep.
func TestReplicatorUnwatchedChangesAreCheap(t *testing.T) {
	srv := consulagent.Start(t, nil)
	client := consulagent.Client(t, srv)
	consulagent.Populate(t, client, 200, 2, 20)
	cfg := DefaultConfig()
	cfg.MaxWatchers = 20
	r, latest := startReplica(t, consulagent.Config(srv), cfg)
	waitFor(t, latest, "initial sync", func(s *snapshot.Snapshot) bool { n, _ := s.Counts(); return n == 201 })
	waitWatchers(r, 20)

	// Each change goes to another service without a watcher (a changed
	// service takes a slot, so none is used twice).
	var unwatched []string
	r.mu.Lock()
	for _, e := range r.services {
		if e.watcher == nil && e.name != "consul" {
			unwatched = append(unwatched, e.name)
		}
	}
	r.mu.Unlock()
	slices.Sort(unwatched)
	for i, check := range []string{"passing", "", "passing", ""} {
		svc := unwatched[i]
		id := fmt.Sprintf("cheap-%d", i)
		before := r.Stats()
		consulagent.Register(t, client, "cheap-node", "10.9.9.9", &api.AgentService{ID: id, Service: svc, Port: 80}, check)
		waitFor(t, latest, svc+" registered", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, svc)) == 3 })
		time.Sleep(200 * time.Millisecond) // let the promotion's requests land
		after := r.Stats()
		if n := after.Requests - before.Requests; n > 10 {
			t.Errorf("registering %s (check %q) cost %d requests, want at most 10", id, check, n)
		}
		if after.Sweeps != before.Sweeps {
			t.Errorf("registering %s (check %q) cost a sweep", id, check)
		}
	}
	// A deregistration of an instance of a service that lost its watcher
	// slot to a later change.
	svc := unwatched[1]
	before := r.Stats()
	consulagent.Deregister(t, client, "cheap-node", "cheap-1")
	waitFor(t, latest, svc+" deregistered", func(s *snapshot.Snapshot) bool { return len(instanceIDs(s, svc)) == 2 })
	if after := r.Stats(); after.Requests-before.Requests > 10 || after.Sweeps != before.Sweeps {
		t.Errorf("a deregistration cost %d requests and %d sweeps", after.Requests-before.Requests, after.Sweeps-before.Sweeps)
	}
	// A port change of an unwatched instance: no count moves, a sweep finds it.
	svc = unwatched[len(unwatched)-1]
	v, _ := latest.Load().Service(svc)
	in := v.Instances[0]
	before = r.Stats()
	consulagent.Register(t, client, in.Node, in.NodeAddress, &api.AgentService{ID: in.ID, Service: svc, Port: 9999}, "")
	waitFor(t, latest, svc+" on port 9999", func(s *snapshot.Snapshot) bool {
		v, _ := s.Service(svc)
		for _, in := range v.Instances {
			if in.Port == 9999 {
				return true
			}
		}
		return false
	})
	// The sweep is counted once every probe is back, which may be after
	// the fetch it queued has landed.
	deadline := time.Now().Add(2 * time.Second)
	for r.Stats().Sweeps == before.Sweeps && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := r.Stats(); after.Sweeps == before.Sweeps {
		t.Error("a port change was found without a sweep: this test no longer tests the sweep")
	}
}
