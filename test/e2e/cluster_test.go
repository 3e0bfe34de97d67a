package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

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
	server := startPlugin(t, strings.Join(addresses, " "))
	probe := startProber(t, server.Addr, services, instances)
	probe.waitAsked()

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
	wait.Until(t, 30*time.Second, func() error {
		_, err := client.Catalog().Register(&api.CatalogRegistration{Node: "node-extra", Address: "10.99.0.1",
			Service: &api.AgentService{ID: "extra", Service: "service-0", Port: 80}}, nil)
		return err
	})
	t.Logf("a new leader took a write %s after the kill", time.Since(killed).Round(time.Millisecond))
	dnsq.WaitCount(t, server.Addr, "service-0.service.consul.", instances+1, 15*time.Second)
	t.Logf("the change was answered %s after the kill", time.Since(killed).Round(time.Millisecond))
	consulagent.Deregister(t, client, "node-extra", "extra")
	dnsq.WaitCount(t, server.Addr, "service-0.service.consul.", instances, 15*time.Second)
	probe.waitAsked()
	probe.halt()
	probe.check("leader killed")
}
