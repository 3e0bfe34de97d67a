package e2e

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/metrics"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
)

// TestWatchedServicesMetric: with more services than max_watchers, the
// metrics say how many have a watcher and how many do not.
func TestWatchedServicesMetric(t *testing.T) {
	agent, client := startAgent(t)
	for i := range 4 {
		consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: fmt.Sprintf("s%d", i), Service: fmt.Sprintf("s%d", i), Port: 80}, "passing")
	}
	server := startPlugin(t, agent.HTTPAddr, "max_watchers 2")
	// Consul's own "consul" service makes five.
	want := map[string]float64{"services": 5, "watched_services": 2, "unwatched_services": 3}
	wait.Until(t, 10*time.Second, func() error {
		text := server.Metrics(t)
		got := map[string]float64{}
		for name := range want {
			got[name], _ = metrics.Sum(text, "coredns_consul_"+name)
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("metrics %v, want %v", got, want)
		}
		return nil
	})
}
