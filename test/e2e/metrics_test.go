package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
)

// TestWatchedServicesMetric: with more services than max_watchers, the
// metrics say how many have a watcher and how many do not.
func TestWatchedServicesMetric(t *testing.T) {
	agent := consulagent.Start(t, nil)
	client := consulagent.Client(t, agent)
	for i := range 4 {
		consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: fmt.Sprintf("s%d", i), Service: fmt.Sprintf("s%d", i), Port: 80}, "passing")
	}
	server := corednsproc.Start(t, func(p corednsproc.Ports) string {
		return fmt.Sprintf("consul.:%d {\n bind 127.0.0.1\n ready 127.0.0.1:%d\n prometheus 127.0.0.1:%d\n consul {\n  address %s\n  max_watchers 2\n }\n}\n",
			p.DNS, p.Ready, p.Metrics, agent.HTTPAddr)
	})
	// Consul's own "consul" service makes five.
	want := map[string]float64{"services": 5, "watched_services": 2, "unwatched_services": 3}
	var got map[string]float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		text := server.Metrics(t)
		got = map[string]float64{}
		for name := range want {
			m := regexp.MustCompile(`(?m)^coredns_consul_` + name + `\{[^}]*\} (\S+)$`).FindStringSubmatch(text)
			if m != nil {
				got[name], _ = strconv.ParseFloat(m[1], 64)
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
	}
	t.Errorf("metrics %v, want %v", got, want)
}
