// Package consulagent starts real Consul agents for tests, from the binary
// that `make consul` builds into .cache/bin (or the one $CONSUL_BIN names).
package consulagent

import (
	"errors"
	"fmt"
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

// Populate registers services service-0 … service-<services-1> with
// instances each, spread over nodes nodes, every instance with one passing
// check, in transactions of 60 operations so that large catalogs load fast.
func Populate(t testing.TB, client *api.Client, services, instances, nodes int) {
	t.Helper()
	var ops api.TxnOps
	flush := func() {
		if len(ops) == 0 {
			return
		}
		ok, resp, _, err := client.Txn().Txn(ops, nil)
		if err != nil || !ok {
			t.Fatalf("populating the catalog: %v %+v", err, resp)
		}
		ops = ops[:0]
	}
	for n := range nodes {
		ops = append(ops, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{
			Node: fmt.Sprintf("node-%d", n), Address: fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255),
		}}})
		if len(ops) == 60 {
			flush()
		}
	}
	flush()
	for s := range services {
		for i := range instances {
			node := fmt.Sprintf("node-%d", (s*instances+i)%nodes)
			id := fmt.Sprintf("service-%d-%d", s, i)
			ops = append(ops,
				&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: api.AgentService{
					ID: id, Service: fmt.Sprintf("service-%d", s), Port: 8000 + i,
				}}},
				&api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{
					Node: node, CheckID: "check-" + id, Name: "check " + id, Status: api.HealthPassing, ServiceID: id,
				}}})
			if len(ops) >= 60 {
				flush()
			}
		}
	}
	flush()
}

// StartTLS starts an agent that also serves its HTTP API over HTTPS, with a
// CA and a server certificate made by `consul tls`, and returns it with the
// CA file to verify it with. srv.HTTPSAddr is the HTTPS address.
func StartTLS(t testing.TB, configure func(*testutil.TestServerConfig)) (*testutil.TestServer, string) {
	t.Helper()
	ca, cert, key := certificates(t)
	srv := Start(t, func(c *testutil.TestServerConfig) {
		c.CAFile, c.CertFile, c.KeyFile = ca, cert, key
		if configure != nil {
			configure(c)
		}
	})
	return srv, ca
}

// certificates makes a CA and a server certificate for dc1 with `consul tls`
// and returns their files.
func certificates(t testing.TB) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server", "-dc", "dc1"}} {
		cmd := exec.Command(Binary(), args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("consul %v: %v\n%s", args, err, out)
		}
	}
	return filepath.Join(dir, "consul-agent-ca.pem"), filepath.Join(dir, "dc1-server-consul-0.pem"), filepath.Join(dir, "dc1-server-consul-0-key.pem")
}
