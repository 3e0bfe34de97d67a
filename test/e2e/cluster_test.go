package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
)

// TestClusterLeaderLoss runs the real CoreDNS against a real 3-server Consul
// cluster on loopback and kills the leader while questions run: no question
// fails, and changes propagate again once a new leader is elected.
func TestClusterLeaderLoss(t *testing.T) {
	const services, instances = 20, 2
	cluster := consulagent.StartCluster(t, 3)
	consulagent.Populate(t, cluster[0].Client(), services, instances, 10)
	var addresses []string
	for _, p := range cluster {
		addresses = append(addresses, p.HTTPAddr)
	}
	server := corednsproc.Start(t, func(p corednsproc.Ports) string {
		return fmt.Sprintf("consul.:%d {\n bind 127.0.0.1\n ready 127.0.0.1:%d\n consul {\n  address %s\n }\n}\n",
			p.DNS, p.Ready, strings.Join(addresses, " "))
	})
	probe := startProber(t, server.Addr, services, instances)
	time.Sleep(time.Second)

	leaderAddr, err := cluster[1].Client().Status().Leader()
	if err != nil {
		t.Fatal(err)
	}
	var leader *consulagent.Process
	var survivors []*consulagent.Process
	for _, p := range cluster {
		if p.ServerAddr() == leaderAddr {
			leader = p
		} else {
			survivors = append(survivors, p)
		}
	}
	if leader == nil {
		t.Fatalf("leader %s is none of the servers", leaderAddr)
	}
	killed := time.Now()
	leader.Kill()
	t.Logf("killed the leader %s", leader.Name)

	// Write through a survivor until the new leader takes the write.
	client := survivors[0].Client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := client.Catalog().Register(&api.CatalogRegistration{Node: "node-extra", Address: "10.99.0.1",
			Service: &api.AgentService{ID: "extra", Service: "service-0", Port: 80}}, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader took a write within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("a new leader took a write %s after the kill", time.Since(killed).Round(time.Millisecond))
	waitAnswers(t, server.Addr, "service-0.service.consul.", instances+1, 15*time.Second)
	t.Logf("the change was answered %s after the kill", time.Since(killed).Round(time.Millisecond))
	consulagent.Deregister(t, client, "node-extra", "extra")
	waitAnswers(t, server.Addr, "service-0.service.consul.", instances, 15*time.Second)
	time.Sleep(time.Second)
	probe.halt()
	probe.check("leader killed")
}
