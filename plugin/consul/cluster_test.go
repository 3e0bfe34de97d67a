package consul

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/sdk/testutil"
	"github.com/miekg/dns"
)

// TestSnapshotFileOfAnotherCluster: a snapshot file written in one cluster,
// loaded by a block that reads another cluster whose datacenter has the
// same name, stops being served as soon as the block knows which cluster it
// reads, not at the first sync (which here never comes until the test lets
// it), and the next file written records the new cluster.
func TestSnapshotFileOfAnotherCluster(t *testing.T) {
	connect := func(c *testutil.TestServerConfig) { c.Connect = map[string]any{"enabled": true} }
	a, b := consulagent.Start(t, connect), consulagent.Start(t, connect) // both dc1
	consulagent.Register(t, consulagent.Client(t, a), "n-a", "10.0.0.1", &api.AgentService{ID: "only-a-1", Service: "only-a", Port: 80}, "passing")
	consulagent.Register(t, consulagent.Client(t, b), "n-b", "10.0.0.2", &api.AgentService{ID: "only-b-1", Service: "only-b", Port: 80}, "passing")
	path := filepath.Join(t.TempDir(), "snap")

	blockA := startCorefile(t, fmt.Sprintf("consul {\n address %s\n snapshot %s 10ms\n}", a.HTTPAddr, path))
	var fromA *snapshot.Set
	waitFor(t, "a file of A's cluster", func() bool {
		set, err := snapshot.ReadFile(path)
		if err != nil || set.Cluster == "" || set.Snapshot("dc1") == nil {
			return false
		}
		_, ok := set.Snapshot("dc1").Service("only-a")
		fromA = set
		return ok
	})
	blockA[0].shutdown()

	// B answers the agent and its CA, and nothing else until open.
	var open atomic.Bool
	target, _ := url.Parse("http://" + b.HTTPAddr)
	forward := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case open.Load(), r.URL.Path == "/v1/agent/self", r.URL.Path == "/v1/connect/ca/roots":
			forward.ServeHTTP(w, r)
		default:
			http.Error(w, "held by the test", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(proxy.Close)

	mismatches := loads(t, "mismatch")
	handlers, err := loadCorefile(t, fmt.Sprintf("consul {\n address %s\n snapshot %s 10ms\n}", proxy.Listener.Addr(), path))
	if err != nil {
		t.Fatal(err)
	}
	h := handlers[0]
	if _, rcode := ask(t, h, "only-a.service.consul.", dns.TypeA); rcode != dns.RcodeSuccess {
		t.Fatalf("before start-up, only-a from the file: rcode %d", rcode)
	}
	start(t, handlers)
	waitFor(t, "the file's data dropped", func() bool {
		_, rcode := ask(t, h, "only-a.service.consul.", dns.TypeA)
		return rcode == dns.RcodeServerFailure
	})
	if got := loads(t, "mismatch"); got != mismatches+1 {
		t.Errorf("snapshot_loads_total{result=mismatch} went from %v to %v", mismatches, got)
	}

	open.Store(true)
	eventually(t, h, "answering only-b from B", func() bool { n, _ := answers(t, h, "only-b.service.consul."); return n == 1 })
	waitFor(t, "a file of B's cluster", func() bool {
		set, err := snapshot.ReadFile(path)
		return err == nil && set.Cluster != "" && set.Cluster != fromA.Cluster
	})
}

// TestClusterCheckSkipped: only two known identities that differ drop the
// file's data; a file written before files recorded one, or a cluster
// without Connect, keeps it.
func TestClusterCheckSkipped(t *testing.T) {
	tests := []struct {
		name, file, read string
		served           bool
	}{
		{"the same cluster", "a.consul", "a.consul", true},
		{"an older file", "", "a.consul", true},
		{"a cluster without Connect", "a.consul", "", true},
		{"another cluster", "a.consul", "b.consul", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions()})
			set := oneService("dc1", "web")
			set.Cluster = tc.file
			c.persist = newPersister(filepath.Join(t.TempDir(), "snap"), time.Hour, c.collect)
			c.persist.loaded(set)
			c.local.start(set.Datacenters[0])
			c.clusterRead(tc.read)
			if served := c.local.current() != nil; served != tc.served {
				t.Errorf("the file's data served: %v, want %v", served, tc.served)
			}
		})
	}
}
