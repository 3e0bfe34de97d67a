// Package consulagent starts real Consul agents for tests, from the binary
// that `make consul` builds into .cache/bin (or the one $CONSUL_BIN names).
package consulagent

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/sdk/testutil"
	"github.com/hashicorp/go-cleanhttp"
)

var pathOnce sync.Once

// Binary returns the path of the consul binary tests run.
func Binary() string {
	if bin := os.Getenv("CONSUL_BIN"); bin != "" {
		return bin
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ".cache", "bin", "consul")
}

// Start starts a single-server Consul agent on free loopback ports and stops
// it when the test ends. configure may adjust the agent's configuration.
func Start(t testing.TB, configure func(*testutil.TestServerConfig)) *testutil.TestServer {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no consul binary at %s (run `make consul`): %v", bin, err)
	}
	// testutil runs "consul" from $PATH.
	pathOnce.Do(func() {
		os.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	})
	began := time.Now()
	srv, err := testutil.NewTestServerConfigT(t, func(c *testutil.TestServerConfig) {
		c.LogLevel = "warn"
		// Connect and peering are not needed and slow the agent's start.
		c.Connect = nil
		c.Peering = nil
		if configure != nil {
			configure(c)
		}
	})
	if err != nil {
		t.Fatalf("starting consul agent: %v", err)
	}
	t.Cleanup(func() {
		began := time.Now()
		// The agent exits with status 1 on the interrupt Stop sends; only
		// other failures are worth a line.
		var exit *exec.ExitError
		if err := srv.Stop(); err != nil && !errors.As(err, &exit) {
			t.Logf("stopping consul agent: %v", err)
		}
		t.Logf("consul agent stopped in %s", time.Since(began).Round(time.Millisecond))
	})
	srv.WaitForLeader(t)
	t.Logf("consul agent up with a leader in %s", time.Since(began).Round(time.Millisecond))
	return srv
}

// Config returns a client configuration for srv, free of whatever CONSUL_*
// variables the environment holds.
func Config(srv *testutil.TestServer) *api.Config {
	return &api.Config{Address: srv.HTTPAddr, Scheme: "http"}
}

// Client returns an API client for srv. It keeps no idle connection, so tests
// that count goroutines see none of its.
func Client(t testing.TB, srv *testutil.TestServer) *api.Client {
	t.Helper()
	cfg := Config(srv)
	cfg.Transport = cleanhttp.DefaultTransport()
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("consul client: %v", err)
	}
	return client
}

// Register registers one service instance on an external node through the
// catalog API, with one service check in the given status ("passing",
// "warning" or "critical"); an empty status registers no check.
func Register(t testing.TB, client *api.Client, node, nodeAddr string, svc *api.AgentService, status string) {
	t.Helper()
	reg := &api.CatalogRegistration{Node: node, Address: nodeAddr, Service: svc}
	if status != "" {
		reg.Checks = api.HealthChecks{{
			Node:      node,
			CheckID:   "check:" + svc.ID,
			Name:      "check " + svc.ID,
			Status:    status,
			ServiceID: svc.ID,
		}}
	}
	if _, err := client.Catalog().Register(reg, nil); err != nil {
		t.Fatalf("registering %s on %s: %v", svc.ID, node, err)
	}
}

// Deregister removes one service instance from a node.
func Deregister(t testing.TB, client *api.Client, node, serviceID string) {
	t.Helper()
	if _, err := client.Catalog().Deregister(&api.CatalogDeregistration{Node: node, ServiceID: serviceID}, nil); err != nil {
		t.Fatalf("deregistering %s from %s: %v", serviceID, node, err)
	}
}
