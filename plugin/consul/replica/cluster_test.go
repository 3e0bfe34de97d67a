package replica

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/sdk/testutil"
)

// TestClusterIdentity reads a real agent's cluster identity: its CA's trust
// domain with Connect on, none without.
func TestClusterIdentity(t *testing.T) {
	tests := []struct {
		name    string
		connect bool
	}{
		{"connect on", true},
		{"connect off", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := consulagent.Start(t, func(c *testutil.TestServerConfig) {
				c.Connect = map[string]any{"enabled": tc.connect}
			})
			want := ""
			if tc.connect {
				// The CA answers 500 until it has initialized.
				wait.Until(t, 10*time.Second, func() error {
					roots, _, err := consulagent.Client(t, srv).Connect().CARoots(nil)
					if err == nil {
						want = roots.TrustDomain
					}
					return err
				})
				if !strings.HasSuffix(want, ".consul") {
					t.Fatalf("trust domain %q", want)
				}
			}
			heard := make(chan string, 1)
			cfg := DefaultConfig()
			cfg.OnCluster = func(id string) { heard <- id }
			r, _ := startReplica(t, consulagent.Config(srv), cfg)
			select {
			case id := <-heard:
				if id != want {
					t.Errorf("OnCluster heard %q, want %q", id, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("OnCluster not called within 10s")
			}
			if id, known := r.Cluster(); id != want || !known {
				t.Errorf("Cluster() = %q, %v; want %q, true", id, known, want)
			}
		})
	}
}

// TestClusterRetried checks that the identity is read again while Consul
// does not answer, and given once it does.
func TestClusterRetried(t *testing.T) {
	cat := newMemCatalog()
	cat.cluster = "c1.consul"
	cat.setFail(errors.New("connection refused"))
	heard := make(chan string, 1)
	cfg := testConfig()
	cfg.OnCluster = func(id string) { heard <- id }
	r, ev := startMem(t, cat, cfg)
	ev.waitFor(t, "failed reads", func() bool { return ev.failures.Load() >= 3 })
	if id, known := r.Cluster(); known {
		t.Fatalf("Cluster() = %q while Consul fails", id)
	}
	cat.setFail(nil)
	select {
	case id := <-heard:
		if id != "c1.consul" {
			t.Errorf("OnCluster heard %q", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnCluster not called within 10s of Consul answering")
	}
}
