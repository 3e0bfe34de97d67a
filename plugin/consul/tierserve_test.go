package consul

import (
	"fmt"
	"testing"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/freeport"

	"github.com/prometheus/client_golang/prometheus"
)

// gathered is the value of the counter or gauge name whose labels include
// labels, summed over the series; 0 when there is none.
func gathered(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestTierAndFollowerBlocks: a follower block answers what a tier block
// replicates, follows its changes, and a reload of both that keeps their
// tier and follow settings keeps the tier's server and the follower's
// state: no whole state is sent again.
func TestTierAndFollowerBlocks(t *testing.T) {
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	register(t, client, "web-1")
	noLeaks(t)
	tierAddr := fmt.Sprintf("127.0.0.1:%d", freeport.Port(t))
	blocks := func(ttl string) []string {
		return []string{
			fmt.Sprintf("consul {\n address %s\n tier_listen %s\n tier_no_auth\n}", agent.HTTPAddr, tierAddr),
			fmt.Sprintf("consul {\n follow %s\n node_name follower-1\n service_ttl * %s\n}", tierAddr, ttl),
		}
	}
	old := startCorefile(t, blocks("5s")...)
	follower := old[1]
	eventually(t, follower, "the follower answering web", func() bool { n, _ := answers(t, follower, "web.service.consul."); return n == 1 })
	if v := follower.local.view.Load(); v.Snap.AgentNode != "follower-1" {
		t.Errorf("the follower's snapshot has agent node %q, want its own node_name", v.Snap.AgentNode)
	}
	register(t, client, "web-2")
	eventually(t, follower, "the follower answering web-2", func() bool { n, _ := answers(t, follower, "web.service.consul."); return n == 2 })

	tiers.Lock()
	srv := tiers.by[tierAddr].srv
	tiers.Unlock()
	wholes := gathered(t, "coredns_consul_tier_answers_total", map[string]string{"kind": "whole"})
	next, err := reload(t, old, blocks("30s")...)
	if err != nil {
		t.Fatal(err)
	}
	tiers.Lock()
	kept := tiers.by[tierAddr].srv == srv
	tiers.Unlock()
	if !kept {
		t.Error("the reload made a new tier server although the tier settings did not change")
	}
	if n, ttl := answers(t, next[1], "web.service.consul."); n != 2 || ttl != 30 {
		t.Errorf("the reloaded follower answers %d records with TTL %d, want 2 with 30", n, ttl)
	}
	register(t, client, "web-3")
	eventually(t, next[1], "the reloaded follower answering web-3", func() bool { n, _ := answers(t, next[1], "web.service.consul."); return n == 3 })
	if now := gathered(t, "coredns_consul_tier_answers_total", map[string]string{"kind": "whole"}); now != wholes {
		t.Errorf("the tier sent the whole state %v more times across the reload, want 0", now-wholes)
	}
}

// TestTierAndFollowerOverTLS: a tier that serves HTTPS and requires client
// certificates is followed by a follower with the CA and a certificate; one
// without a certificate is refused and serves nothing.
func TestTierAndFollowerOverTLS(t *testing.T) {
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	register(t, client, "web-tls")
	ca, cert, key := testCertificate(t)
	tierAddr := fmt.Sprintf("127.0.0.1:%d", freeport.Port(t))
	blocks := startCorefile(t,
		fmt.Sprintf("consul {\n address %s\n tier_listen %s\n tier_tls %s %s %s\n}", agent.HTTPAddr, tierAddr, cert, key, ca),
		fmt.Sprintf("consul {\n follow %s\n follow_tls %s %s %s\n startup_timeout 100ms\n}", tierAddr, ca, cert, key),
		fmt.Sprintf("consul {\n follow https://%s\n follow_tls %s\n node_name no-cert\n startup_timeout 100ms\n}", tierAddr, ca),
	)
	eventually(t, blocks[1], "the follower answering over TLS", func() bool { n, _ := answers(t, blocks[1], "web.service.consul."); return n >= 1 })
	refused := func() float64 {
		return gathered(t, "coredns_consul_follower_errors_total", map[string]string{"tier": "https://" + tierAddr})
	}
	waitFor(t, "the follower without a certificate failing", func() bool { return refused() > 0 })
	if v := blocks[2].local.view.Load(); v != nil {
		t.Errorf("the follower without a client certificate serves %d services", len(v.Snap.Services))
	}
}
