package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/freeport"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
)

var (
	inspectOnce sync.Once
	inspectBin  string
	inspectErr  error
)

// inspector returns the coredns-consul command: $COREDNS_CONSUL_BIN when
// set (make build builds it), else one built into a temporary directory.
func inspector(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("COREDNS_CONSUL_BIN"); bin != "" {
		return bin
	}
	inspectOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		dir, err := os.MkdirTemp("", "coredns-consul-bin")
		if err != nil {
			inspectErr = err
			return
		}
		inspectBin = filepath.Join(dir, "coredns-consul")
		cmd := exec.Command("go", "build", "-o", inspectBin, "./cmd/coredns-consul")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			inspectErr = errors.Join(err, errors.New(string(out)))
		}
	})
	if inspectErr != nil {
		t.Fatalf("building coredns-consul: %v", inspectErr)
	}
	return inspectBin
}

// inspect runs the inspector with args, with no CONSUL_* setting of the
// test's environment, and returns its exit status and outputs.
func inspect(t *testing.T, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(inspector(t), args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CONSUL_HTTP_") })
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatalf("running coredns-consul %s: %v", strings.Join(args, " "), err)
	}
	return status, out.String(), errOut.String()
}

// TestInspector: the command run on a snapshot file the real plugin wrote,
// beside the live agent it was read from: show prints it (and the same of
// the running CoreDNS's replica through its inspect endpoint), diff finds no
// difference, then exactly the changes made in Consul since; a damaged
// file is an error naming it, exit status 2.
func TestInspector(t *testing.T) {
	agent, client := startAgent(t)
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80, Tags: []string{"v1"}}, "passing")
	consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: "web-2", Service: "web", Port: 80}, "critical")
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "cache", Service: "cache", Port: 6379}, "passing")
	path := filepath.Join(t.TempDir(), "consul.snapshot")
	endpoint := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(freeport.Port(t)))
	server := startPlugin(t, agent.HTTPAddr, "snapshot "+path+" 10ms", "inspect "+strings.TrimPrefix(endpoint, "http://"))
	waitSnapshotFile(t, server, path)

	inspectShow(t, server, path, endpoint)
	// The file must not move while Consul does.
	server.Stop(t)
	status, out, errOut := inspect(t, "snapshot", "show", path, "-json")
	var report struct {
		Datacenters []struct {
			Name      string
			Services  int
			Instances int
		}
	}
	if err := json.Unmarshal([]byte(out), &report); status != 0 || err != nil {
		t.Fatalf("show -json: status %d, %v: %s%s", status, err, errOut, out)
	}
	// web, cache and the agent's own consul service.
	if d := report.Datacenters; len(d) != 1 || d[0].Name != "dc1" || d[0].Services != 3 || d[0].Instances != 4 {
		t.Errorf("show -json: %+v, want dc1 with 3 services and 4 instances", d)
	}

	if status, out, errOut = inspect(t, "snapshot", "diff", path, agent.HTTPAddr); status != 0 || !strings.Contains(out, "no difference") {
		t.Fatalf("diff of an unchanged catalog: status %d, want 0:\n%s%s", status, out, errOut)
	}

	consulagent.Register(t, client, "n3", "10.0.0.3", &api.AgentService{ID: "api-1", Service: "api", Port: 9000}, "passing")
	consulagent.Deregister(t, client, "n1", "cache")
	consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: "web-2", Service: "web", Port: 80}, "passing")
	status, out, errOut = inspect(t, "snapshot", "diff", "-json", path, "http://"+agent.HTTPAddr)
	var d struct {
		OnlyInFile   []string `json:"only_in_file"`
		OnlyInConsul []string `json:"only_in_consul"`
		Changed      []struct {
			Name    string
			Changed []struct {
				ID      string
				Changes []string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &d); status != 1 || err != nil {
		t.Fatalf("diff after changes: status %d (want 1), %v: %s%s", status, err, errOut, out)
	}
	if !slices.Equal(d.OnlyInFile, []string{"cache"}) || !slices.Equal(d.OnlyInConsul, []string{"api"}) ||
		len(d.Changed) != 1 || d.Changed[0].Name != "web" || len(d.Changed[0].Changed) != 1 ||
		!slices.Contains(d.Changed[0].Changed[0].Changes, "health: critical -> passing") {
		t.Errorf("diff after registering api, deregistering cache, web-2 passing:\n%s", out)
	}
	inspectBadFiles(t, path, agent.HTTPAddr)
}

// inspectShow: show prints the file and, through the inspect endpoint, the
// running replica alike; the endpoint survives a reload of the block.
func inspectShow(t *testing.T, server *corednsproc.Server, path, endpoint string) {
	t.Helper()
	// The file, and the live replica through the inspect endpoint.
	for _, source := range []string{path, endpoint} {
		status, out, errOut := inspect(t, "snapshot", "show", source, "-service", "web")
		if status != 0 {
			t.Fatalf("show %s: status %d: %s", source, status, errOut)
		}
		for _, want := range []string{"local datacenter:   dc1", "n1    web-1  10.0.0.1  80    passing   -                       v1",
			"n2    web-2  10.0.0.2  80    critical  check:web-2 (critical)  -"} {
			if !strings.Contains(out, want) {
				t.Errorf("show %s lacks %q:\n%s", source, want, out)
			}
		}
	}
	if status, out, errOut := inspect(t, "snapshot", "show", endpoint, "-dc", "dc9"); status != 2 || !strings.Contains(errOut, "404 Not Found") {
		t.Errorf("show of an unknown datacenter on the endpoint: status %d, %s%s; want 2 and 404", status, out, errOut)
	}
	// A reload hands the endpoint's address over to the new block.
	server.Reload(t, server.Corefile+"\n")
	wait.Until(t, 10*time.Second, func() error {
		if n := strings.Count(server.Output(), "inspect: the replica is served on"); n != 2 {
			return fmt.Errorf("the endpoint was started %d times, want 2", n)
		}
		if status, _, errOut := inspect(t, "snapshot", "show", endpoint); status != 0 {
			return fmt.Errorf("show after the reload: status %d: %s", status, errOut)
		}
		return nil
	})
	if strings.Contains(server.Output(), "Restart failed") {
		t.Errorf("the reload failed:\n%s", server.Tail(20))
	}
}

// inspectBadFiles: a corrupt or a truncated copy of the file at path is an
// error naming the file and the reason, exit status 2, for show and diff.
func inspectBadFiles(t *testing.T, path, consul string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)-1] ^= 0xff
	for name, tc := range map[string]struct {
		data   []byte
		reason string
	}{
		"corrupt":   {corrupt, "checksum mismatch"},
		"truncated": {data[:len(data)-7], "header says"},
	} {
		bad := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(bad, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"show", "diff"} {
			status, out, errOut := inspect(t, "snapshot", cmd, bad, consul)
			if cmd == "show" {
				status, out, errOut = inspect(t, "snapshot", cmd, bad)
			}
			if status != 2 || out != "" || !strings.Contains(errOut, bad) || !strings.Contains(errOut, tc.reason) {
				t.Errorf("%s %s file: status %d, stdout %q, stderr %q; want 2 and an error naming the file and %q", cmd, name, status, out, errOut, tc.reason)
			}
		}
	}
}
