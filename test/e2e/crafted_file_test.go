package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/unsafepath"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
)

// TestCraftedSnapshotFile starts the real CoreDNS on snapshot files that
// took it down at every start: nulls where Consul never sends one. It starts,
// says what it left out, and answers from Consul.
func TestCraftedSnapshotFile(t *testing.T) {
	agent, client := startAgent(t)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")
	tests := map[string]func(*snapshot.Snapshot){
		"null service": func(s *snapshot.Snapshot) { s.Services["web"] = nil },
		"null node":    func(s *snapshot.Snapshot) { s.Nodes["n1"] = nil },
		"null query":   func(s *snapshot.Snapshot) { s.Queries = []*snapshot.Query{nil} },
	}
	for name, craft := range tests {
		t.Run(name, func(t *testing.T) {
			snap := snapshot.New("dc1", 1, map[string]*snapshot.Service{}, map[string]*snapshot.Node{}, time.Unix(0, 0))
			craft(snap)
			path := filepath.Join(t.TempDir(), "snap")
			if err := snapshot.WriteFile(path, &snapshot.Set{Local: "dc1", Datacenters: []*snapshot.Snapshot{snap}}); err != nil {
				t.Fatal(err)
			}
			server := startPlugin(t, agent.HTTPAddr, "snapshot "+path+" 10ms")
			// The file's (empty) catalog answers first, then Consul's.
			wait.Until(t, 10*time.Second, func() error {
				if got := dnsq.Count(t, server.Addr, "web.service.consul."); got != 1 {
					return fmt.Errorf("web: %d answers, want 1 from Consul", got)
				}
				return nil
			})
			if !strings.Contains(server.Output(), "null or unusable entries, left out") {
				t.Errorf("what was left out was not reported:\n%s", server.Tail(20))
			}
		})
	}
}

// TestUnsafeSnapshotPath: a snapshot path another user could fill stops
// start-up at once with the snapshot line; a named pipe there hung it,
// a link to /dev/zero grew its memory without bound.
func TestUnsafeSnapshotPath(t *testing.T) {
	tests := unsafepath.Make(t, nil)
	for name, path := range tests {
		t.Run(name, func(t *testing.T) {
			began := time.Now()
			server, err := corednsproc.StartWith(t, corednsproc.Options{ReadyWithin: 10 * time.Second},
				pluginCorefile("127.0.0.1:1", "snapshot "+path+" 10ms").Build)
			if err == nil {
				t.Fatalf("CoreDNS started:\n%s", server.Tail(20))
			}
			if took := time.Since(began); took > 5*time.Second {
				t.Errorf("refused after %s", took.Round(time.Millisecond))
			}
			if !strings.Contains(err.Error(), "exited during start-up") || !strings.Contains(err.Error(), "unsafe snapshot path") {
				t.Errorf("CoreDNS did not name the snapshot line: %v", err)
			}
		})
	}
}
