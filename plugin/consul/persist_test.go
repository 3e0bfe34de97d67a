package consul

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/unsafepath"

	"github.com/coredns/caddy"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
)

// TestSnapshotLineRefusesUnsafePaths checks that the snapshot line is
// refused, naming it, for a path another user could fill, and that the
// parse returns at once: nothing there is opened.
func TestSnapshotLineRefusesUnsafePaths(t *testing.T) {
	var file bytes.Buffer
	if err := snapshot.Encode(&file, oneService("dc1", "web")); err != nil {
		t.Fatal(err)
	}
	tests := unsafepath.Make(t, file.Bytes())
	tests["a device"] = "/dev/null"
	for name, path := range tests {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				c := caddy.NewTestController("dns", "consul {\n address 127.0.0.1:1\n snapshot "+path+"\n}")
				c.ServerBlockKeys = []string{"consul.:53"}
				_, err := parse(c)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "Testfile:3") || !strings.Contains(err.Error(), "unsafe snapshot path") {
					t.Errorf("parse error = %v, want the snapshot line refused", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("parse still running after 5s")
			}
		})
	}
}

// oneService is a set of one datacenter holding one service.
func oneService(dc, name string) *snapshot.Set {
	svc := &snapshot.Service{Name: name, Index: 2, Instances: []snapshot.Instance{{ID: name + "-1", Node: "n1", NodeAddress: "10.0.0.1", Port: 80}}}
	snap := snapshot.New(dc, 2, map[string]*snapshot.Service{name: svc}, map[string]*snapshot.Node{}, time.Now())
	return &snapshot.Set{Local: dc, Datacenters: []*snapshot.Snapshot{snap}}
}

// startFromFile makes a block that reads the snapshot file at path, from an
// address where no Consul answers: it answers from the file alone.
func startFromFile(t *testing.T, path string) *Consul {
	return blockFromFile(t, "consul.:53", path, "")
}

// blockFromFile makes the block of server block key that reads the snapshot
// file at path from an address where no Consul answers, with the Corefile
// lines more; not started.
func blockFromFile(t *testing.T, key, path, more string) *Consul {
	t.Helper()
	c := caddy.NewTestController("dns", "consul {\n address 127.0.0.1:1\n snapshot "+path+"\n"+more+"}")
	c.ServerBlockKeys = []string{key}
	cfg, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newConsul(cfg, generationOf(c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.stop(false) })
	return h
}

// TestLoadSnapshotCrafted checks that a file holding nulls where Consul
// never sends one (each of them took start-up down) starts the plugin with
// the rest of the file.
func TestLoadSnapshotCrafted(t *testing.T) {
	tests := map[string]func(*snapshot.Snapshot){
		"null service":    func(s *snapshot.Snapshot) { s.Services["broken"] = nil },
		"null node":       func(s *snapshot.Snapshot) { s.Nodes["broken"] = nil },
		"null query":      func(s *snapshot.Snapshot) { s.Queries = []*snapshot.Query{nil} },
		"null coordinate": func(s *snapshot.Snapshot) { s.Coordinates = []*snapshot.Coordinate{nil} },
		// A few kilobytes once compressed; HIL's parser overflowed the
		// stack on it, a fatal error no recover catches.
		"deeply nested template": func(s *snapshot.Snapshot) {
			s.Queries = []*snapshot.Query{{ID: "q", Template: snapshot.QueryTemplate{Type: "name_prefix_match"},
				Service: snapshot.QueryService{Service: "${" + strings.Repeat("(", 2_000_000) + "}"}}}
		},
	}
	for name, craft := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snap")
			set := oneService("dc1", "web")
			craft(set.Datacenters[0])
			if err := snapshot.WriteFile(path, set); err != nil {
				t.Fatal(err)
			}
			ok := loads(t, "ok")
			h := startFromFile(t, path)
			if got := loads(t, "ok"); got != ok+1 {
				t.Errorf("snapshot_loads_total{result=ok} went from %v to %v", ok, got)
			}
			if m, rcode := ask(t, h, "web.service.consul.", dns.TypeA); rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				t.Errorf("web from the file: rcode %d, answer %v", rcode, m)
			}
		})
	}
}

// TestLoadSnapshotRecovers checks that a panic while the file is read
// ignores the file, as a corrupt one, rather than stop start-up.
func TestLoadSnapshotRecovers(t *testing.T) {
	read := readSnapshotFile
	t.Cleanup(func() { readSnapshotFile = read })
	readSnapshotFile = func(string) (*snapshot.Set, error) { panic("a bug reading the file") }
	corrupt := loads(t, "corrupt")
	if set := loadSnapshot(filepath.Join(t.TempDir(), "snap"), ""); set != nil {
		t.Errorf("loadSnapshot = %v, want nil", set)
	}
	if got := loads(t, "corrupt"); got != corrupt+1 {
		t.Errorf("snapshot_loads_total{result=corrupt} went from %v to %v", corrupt, got)
	}
}

// loads reads snapshot_loads_total for result.
func loads(t *testing.T, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := snapshotLoads.WithLabelValues(result).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
