package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/dnsq"

	"github.com/hashicorp/consul/api"
)

// TestDamagedSnapshotFile starts the real CoreDNS on damaged snapshot files:
// each is logged and ignored, start-up goes on, answers come from Consul,
// and the file is replaced by a good one.
func TestDamagedSnapshotFile(t *testing.T) {
	agent, client := startAgent(t)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, "passing")

	good := new(bytes.Buffer)
	if err := snapshot.Encode(good, &snapshot.Set{Local: "dc1", Datacenters: []*snapshot.Snapshot{snapshot.New("dc1", 1, nil, nil, time.Unix(0, 0))}}); err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good.Bytes())
	flipped[len(flipped)-2] ^= 0xff
	otherVersion := bytes.Clone(good.Bytes())
	otherVersion[19]++
	tests := map[string][]byte{
		"empty":            {},
		"truncated":        good.Bytes()[:good.Len()/2],
		"flipped byte":     flipped,
		"other version":    otherVersion,
		"not a snapshot":   []byte("hello\n"),
		"random big bytes": bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1<<16),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snap")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			server := startPlugin(t, agent.HTTPAddr, "snapshot "+path+" 10ms")
			if got := dnsq.Count(t, server.Addr, "web.service.consul."); got != 1 {
				t.Errorf("web: %d answers, want 1 from Consul", got)
			}
			if !strings.Contains(server.Output(), "ignoring the snapshot file") {
				t.Errorf("the damaged file was not reported:\n%s", server.Output())
			}
			server.Stop(t)
			set, err := snapshot.ReadFile(path)
			if err != nil {
				t.Fatalf("the file was not replaced by a good one: %v", err)
			}
			if _, ok := set.Snapshot(set.Local).Service("web"); !ok {
				t.Error("the new file lacks web")
			}
		})
	}
}
