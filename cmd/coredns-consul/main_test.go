package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/inspect"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/unsafepath"
)

// testSet is a file's content: two datacenters, a service with a healthy
// and a failing instance, a prepared query and a template.
func testSet(built time.Time) *snapshot.Set {
	web := &snapshot.Service{Name: "web", Index: 42, Instances: []snapshot.Instance{
		{ID: "web-1", Node: "node-a", NodeAddress: "10.0.0.1", Port: 80, Tags: []string{"v1", "primary"}},
		{ID: "web-2", Node: "node-b", NodeAddress: "10.0.0.2", Address: "10.1.0.2", Port: 8080,
			Health: snapshot.Critical, Checks: []snapshot.Check{{ID: "service:web-2", Health: snapshot.Critical}}},
	}}
	db := &snapshot.Service{Name: "db", Index: 7, Instances: []snapshot.Instance{{ID: "db", Node: "node-a", NodeAddress: "10.0.0.1", Port: 5432}}}
	nodes := map[string]*snapshot.Node{"node-a": {Name: "node-a"}, "node-b": {Name: "node-b"}}
	dc1 := snapshot.New("dc1", 50, map[string]*snapshot.Service{"web": web, "db": db}, nodes, built)
	dc1.Queries = []*snapshot.Query{
		{ID: "q-1", Name: "web-query", Service: snapshot.QueryService{Service: "web"}},
		{ID: "q-2", Template: snapshot.QueryTemplate{Type: "name_prefix_match", Regexp: "^geo-(.*)$"}, Service: snapshot.QueryService{Service: "${match(1)}"}},
	}
	dc2 := snapshot.New("dc2", 9, map[string]*snapshot.Service{"db": db}, nil, built.Add(-time.Minute))
	dc2.ServicesHidden = true
	api := &snapshot.Service{Name: "api", Index: 12, Instances: []snapshot.Instance{{ID: "api-1", Node: "exp-node", NodeAddress: "10.9.0.1", Port: 9090}}}
	exp := snapshot.New("dc1", 12, map[string]*snapshot.Service{"api": api}, nil, built)
	exp.Peer = "exp"
	return &snapshot.Set{Local: "dc1", Datacenters: []*snapshot.Snapshot{dc2, dc1}, Known: []string{"dc1", "dc2", "dc3"},
		ByDistance: []string{"dc1", "dc2", "dc3"}, Cluster: "11111111-2222-3333-4444-555555555555.consul",
		Peers: []*snapshot.Snapshot{exp}, KnownPeers: []string{"exp", "gone"}}
}

// writeSet writes set as the plugin writes its file and returns the path.
func writeSet(t *testing.T, set *snapshot.Set) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consul.snapshot")
	if err := snapshot.WriteFile(path, set); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCmd(args ...string) (status int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	status = run(args, &out, &errOut)
	return status, out.String(), errOut.String()
}

func TestShowText(t *testing.T) {
	path := writeSet(t, testSet(time.Now().Add(-90*time.Second)))
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string // lines, or parts of lines, in this order
		notWant []string
	}{
		{"summary", nil, []string{
			"format version:     2",
			"cluster:            11111111-2222-3333-4444-555555555555.consul",
			"local datacenter:   dc1",
			"known datacenters:  dc1, dc2, dc3",
			"known peers:        exp, gone",
			"DATACENTER  INDEX  BUILT",
			"dc1         50     ",
			"1m30s  2         3          2      2",
			"dc2         9      ",
			"1+",
			"PEER  INDEX  BUILT",
			"exp   12     ",
			"prepared queries in dc1:",
			"web-query  -                             web          q-1\n",
			"-          name_prefix_match ^geo-(.*)$  ${match(1)}  q-2\n",
			"the token may not read every one",
		}, []string{"service web"}},
		{"one service", []string{"-service", "WEB", "-dc", "dc1"}, []string{
			"service web in dc1 (index 42, 2 instances):",
			"NODE    ID     ADDRESS   PORT  HEALTH    FAILING CHECKS",
			"node-a  web-1  10.0.0.1  80    passing   -",
			"v1,primary",
			"node-b  web-2  10.1.0.2  8080  critical  service:web-2 (critical)",
		}, []string{"dc2 "}},
		{"every service", []string{"-services", "-dc", "DC1"}, []string{
			"services in dc1:",
			"  NAME  INDEX  INSTANCES  PASSING  WARNING  CRITICAL",
			"  db    7      1          1        0        0",
			"  web   42     2          1        0        1",
		}, []string{"dc2 ", "service web in"}},
		{"a service a datacenter lacks", []string{"-service", "web"}, []string{
			"service web in dc1", "service web: not in the snapshot of dc2", "service web: not in the snapshot of peer exp",
		}, nil},
		{"an imported service", []string{"-service", "api"}, []string{
			"service api: not in the snapshot of dc1", "service api in peer exp (index 12, 1 instances):", "exp-node  api-1  10.9.0.1  9090  passing",
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out, errOut := runCmd(append([]string{"snapshot", "show", path}, tc.args...)...)
			if status != exitOK || errOut != "" {
				t.Fatalf("status %d, stderr %q", status, errOut)
			}
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestShowJSON(t *testing.T) {
	built := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	path := writeSet(t, testSet(built))
	status, out, errOut := runCmd("snapshot", "show", "-json", path, "-service", "web", "-services")
	if status != exitOK {
		t.Fatalf("status %d: %s", status, errOut)
	}
	var r inspect.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	dc1 := r.Datacenters[0]
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"file", r.File, path},
		{"format_version", r.FormatVersion, uint32(snapshot.FileVersion)},
		{"local_datacenter", r.LocalDatacenter, "dc1"},
		{"datacenters", len(r.Datacenters), 2},
		{"datacenters[0].name", dc1.Name, "dc1"},
		{"datacenters[0].built", dc1.Built, built},
		{"datacenters[0].services", dc1.Services, 2},
		{"datacenters[0].instances", dc1.Instances, 3},
		{"datacenters[0].prepared_queries", len(dc1.Queries), 2},
		{"datacenters[0].service.instances", len(dc1.Service.Instances), 2},
		{"instance address (service's own)", dc1.Service.Instances[1].Address, "10.1.0.2"},
		{"instance address (node's)", dc1.Service.Instances[0].Address, "10.0.0.1"},
		{"failing check", dc1.Service.Instances[1].FailingChecks[0], inspect.Check{ID: "service:web-2", Health: "critical"}},
		{"datacenters[1].services_hidden", r.Datacenters[1].ServicesHidden, true},
		{"datacenters[1].missing_service", r.Datacenters[1].Missing, "web"},
		{"datacenters[0].service_list", len(dc1.ServiceList), 2},
		{"datacenters[0].service_list[1]", dc1.ServiceList[1], inspect.ServiceSummary{Name: "web", Index: 42, Instances: 2, Passing: 1, Critical: 1}},
		{"peers", len(r.Peers), 1},
		{"peers[0].name", r.Peers[0].Name, "exp"},
		{"peers[0].instances", r.Peers[0].Instances, 1},
		{"known_peers", len(r.KnownPeers), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
	// Stable names, and arrays never null: scripts read them.
	for _, key := range []string{`"age_seconds"`, `"known_datacenters"`, `"datacenters_by_distance"`, `"known_peers"`, `"peers"`, `"failing_checks": []`, `"tags": [`} {
		if !strings.Contains(out, key) {
			t.Errorf("JSON lacks %s:\n%s", key, out)
		}
	}
}

// TestBadFiles: every file that is not a snapshot is an error naming the
// file and why, with exit status 2, never a panic.
func TestBadFiles(t *testing.T) {
	good, err := os.ReadFile(writeSet(t, testSet(time.Now())))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-10] ^= 0xff
	for _, tc := range []struct {
		name, path, reason string
		extra              []string
	}{
		{"missing", filepath.Join(dir, "none"), "no such file or directory", nil},
		{"directory", dir, "not a regular file (a directory)", nil},
		{"corrupt", file("corrupt", corrupt), "corrupt snapshot file: checksum mismatch", nil},
		{"truncated", file("truncated", good[:len(good)/2]), "corrupt snapshot file: payload of", nil},
		{"truncated header", file("short", good[:20]), "shorter than the header", nil},
		{"not a snapshot", file("other", []byte(strings.Repeat("not a snapshot file at all ", 4))), "not a coredns-consul snapshot", nil},
		{"empty", file("empty", nil), "0 bytes, shorter than the header", nil},
		{"unknown datacenter", file("good", good), `no snapshot of datacenter "dc9" (it holds dc2, dc1)`, []string{"-dc", "dc9"}},
	} {
		for _, cmd := range []string{"show", "diff"} {
			t.Run(tc.name+"/"+cmd, func(t *testing.T) {
				status, out, errOut := runCmd(append([]string{"snapshot", cmd, tc.path, "127.0.0.1:1"}[:3+boolInt(cmd == "diff")], tc.extra...)...)
				if status != exitError || out != "" {
					t.Errorf("status %d, stdout %q; want 2 and nothing", status, out)
				}
				if !strings.Contains(errOut, tc.path) || !strings.Contains(errOut, tc.reason) {
					t.Errorf("stderr %q does not name %s and %q", errOut, tc.path, tc.reason)
				}
			})
		}
	}
}

// TestSpecialFiles: a named pipe or a link to a device is refused at once:
// opening a pipe blocked until a writer came, reading /dev/zero never ended.
func TestSpecialFiles(t *testing.T) {
	paths := unsafepath.Make(t, nil)
	for _, tc := range []struct{ name, reason string }{
		{"named pipe", "not a regular file (a named pipe)"},
		{"symlink to /dev/zero", "not a regular file (a device)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var status int
			var errOut string
			go func() {
				defer close(done)
				status, _, errOut = runCmd("snapshot", "show", paths[tc.name])
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("show did not return within 5s")
			}
			if status != exitError || !strings.Contains(errOut, tc.reason) {
				t.Errorf("status %d, stderr %q; want 2 and %q", status, errOut, tc.reason)
			}
		})
	}
}

// TestDiffConsulErrors: Consul unreachable, or a token file that cannot be
// read, is an error (2), not a difference (1).
func TestDiffConsulErrors(t *testing.T) {
	path := writeSet(t, testSet(time.Now()))
	missing := filepath.Join(t.TempDir(), "token")
	for _, tc := range []struct {
		name   string
		args   []string
		reason string
	}{
		{"unreachable", []string{"127.0.0.1:1"}, "listing the services of datacenter dc1 at 127.0.0.1:1"},
		{"token file", []string{"127.0.0.1:1", "-token-file", missing}, missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out, errOut := runCmd(append([]string{"snapshot", "diff", path}, tc.args...)...)
			if status != exitError || out != "" || !strings.Contains(errOut, tc.reason) {
				t.Errorf("status %d, stdout %q, stderr %q; want 2 and %q", status, out, errOut, tc.reason)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"snapshot", "show", "-h"}, {"snapshot", "diff", "-help"}} {
		if status, out, _ := runCmd(args...); status != exitOK || !strings.Contains(out, "usage:") {
			t.Errorf("%q: status %d, stdout %q; want 0 and the usage", args, status, out)
		}
	}
	for _, args := range [][]string{nil, {"snapshot"}, {"snapshot", "list"}, {"other", "show"}, {"snapshot", "show"},
		{"snapshot", "show", "a", "b"}, {"snapshot", "show", "-bogus", "a"}, {"snapshot", "diff"}, {"snapshot", "diff", "a", "b", "c"}} {
		if status, _, errOut := runCmd(args...); status != exitError || errOut == "" {
			t.Errorf("%q: status %d, stderr %q; want 2 and a message", args, status, errOut)
		}
	}
}
