package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// meshCatalog registers a mesh: web with two sidecar proxies (one
// critical), api with a warning sidecar on an IPv6 node, a Connect-native
// service with its own address, two ingress gateway instances (one with
// its own address) exposing web and api, a service with neither, and a
// service registered through the agent with a sidecar (whose default checks
// fail: no Envoy listens), and a terminating gateway. Consul assigns the
// virtual IPs.
func meshCatalog(t *testing.T, client *api.Client) []string {
	proxy := func(id, dest string) *api.AgentService {
		return &api.AgentService{ID: id, Service: dest + "-sidecar-proxy", Kind: api.ServiceKindConnectProxy, Port: 21000,
			Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: dest, DestinationServiceID: dest + "-1"}}
	}
	consulagent.Register(t, client, "n1", "10.0.0.1", &api.AgentService{ID: "web-1", Service: "web", Port: 80}, api.HealthPassing)
	consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: "web-2", Service: "web", Port: 80}, api.HealthPassing)
	consulagent.Register(t, client, "n1", "10.0.0.1", proxy("web-1-sidecar", "web"), api.HealthPassing)
	consulagent.Register(t, client, "n2", "10.0.0.2", proxy("web-2-sidecar", "web"), api.HealthCritical)
	consulagent.Register(t, client, "n5", "2001:db8::5", &api.AgentService{ID: "api-1", Service: "api", Port: 81}, api.HealthPassing)
	consulagent.Register(t, client, "n5", "2001:db8::5", proxy("api-1-sidecar", "api"), api.HealthWarning)
	consulagent.Register(t, client, "n2", "10.0.0.2", &api.AgentService{ID: "nat-1", Service: "nat", Port: 8443, Address: "10.1.1.1",
		Connect: &api.AgentServiceConnect{Native: true}}, api.HealthPassing)
	consulagent.Register(t, client, "n3", "10.0.0.3", &api.AgentService{ID: "ig-1", Service: "ig", Kind: api.ServiceKindIngressGateway,
		Port: 8888}, api.HealthPassing)
	consulagent.Register(t, client, "n4", "10.0.0.4", &api.AgentService{ID: "ig-2", Service: "ig", Kind: api.ServiceKindIngressGateway,
		Port: 8889, Address: "10.2.2.2"}, api.HealthPassing)
	consulagent.Register(t, client, "n4", "10.0.0.4", &api.AgentService{ID: "lonely-1", Service: "lonely", Port: 90}, api.HealthPassing)
	entry := &api.IngressGatewayConfigEntry{Kind: api.IngressGateway, Name: "ig", Listeners: []api.IngressListener{
		{Port: 9999, Protocol: "tcp", Services: []api.IngressService{{Name: "web"}}},
		{Port: 9998, Protocol: "tcp", Services: []api.IngressService{{Name: "api"}}},
	}}
	if _, _, err := client.ConfigEntries().Set(entry, nil); err != nil {
		t.Fatalf("writing the ingress gateway's entry: %v", err)
	}
	// A terminating gateway linking an external service and web: both
	// answer .connect with it, and it carries their virtual IPs.
	consulagent.Register(t, client, "n6", "10.0.0.6", &api.AgentService{ID: "tg-1", Service: "tg", Kind: api.ServiceKindTerminatingGateway,
		Port: 8443}, api.HealthPassing)
	consulagent.Register(t, client, "ext", "10.9.9.9", &api.AgentService{ID: "legacy-1", Service: "legacy", Port: 5432}, api.HealthPassing)
	linking := &api.TerminatingGatewayConfigEntry{Kind: api.TerminatingGateway, Name: "tg", Services: []api.LinkedService{{Name: "legacy"}, {Name: "web"}}}
	if _, _, err := client.ConfigEntries().Set(linking, nil); err != nil {
		t.Fatalf("writing the terminating gateway's entry: %v", err)
	}
	err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "agentsvc-1", Name: "agentsvc", Port: 9000,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{}}})
	if err != nil {
		t.Fatalf("registering agentsvc with a sidecar: %v", err)
	}
	return []string{"web", "api", "nat", "agentsvc", "ig", "lonely", "legacy", "tg", "web-sidecar-proxy", "no-such-service"}
}

// meshQuestions asks every form of the mesh names about services.
func meshQuestions(services []string) []question {
	var qs []question
	ask := func(name string, types ...uint16) {
		for _, qt := range types {
			qs = append(qs, question{name, qt})
		}
	}
	for _, s := range services {
		for _, kind := range []string{"connect", "ingress", "virtual"} {
			// Not TXT: Consul answers it with the A records, as for
			// service names; the README lists that difference.
			ask(s+"."+kind+".consul.", dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY, dns.TypeMX)
			ask(s+"."+kind+".dc1.consul.", dns.TypeA, dns.TypeSRV)
			ask(s+"."+kind+".dc1.dc.consul.", dns.TypeA, dns.TypeSRV)
			ask(s+"."+kind+".dc9.consul.", dns.TypeA)
			ask("x."+s+"."+kind+".consul.", dns.TypeA)
		}
	}
	ask("Web.Connect.consul.", dns.TypeSRV)
	ask("Web.Virtual.consul.", dns.TypeA)
	ask("connect.consul.", dns.TypeA)
	ask("virtual.consul.", dns.TypeA)
	return qs
}

// TestMeshNames compares every form of <svc>.connect, <svc>.ingress and
// <svc>.virtual with Consul's own DNS, then checks that every one of them
// is answered as before while Consul is frozen and after CoreDNS restarts
// from its snapshot file with Consul dead.
func TestMeshNames(t *testing.T) {
	agent, client := startAgent(t, "connect { enabled = true }")
	services := meshCatalog(t, client)
	snapshotPath := filepath.Join(t.TempDir(), "consul.snapshot")
	corefile := pluginCorefile(agent.HTTPAddr, "snapshot "+snapshotPath+" 100ms").Build
	plugin := corednsproc.Start(t, corefile)
	// The agent's own registrations reach the catalog by anti-entropy.
	waitFor(t, agent.DNSAddr, "agentsvc.virtual.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	waitFor(t, plugin.Addr, "agentsvc.virtual.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	waitFor(t, plugin.Addr, "web.ingress.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
	waitFor(t, plugin.Addr, "legacy.virtual.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })

	questions := meshQuestions(services)
	t.Run("differential", func(t *testing.T) {
		compare(t, agent.DNSAddr, plugin.Addr, questions)
	})

	t.Run("changes propagate", func(t *testing.T) {
		consulagent.Register(t, client, "n4", "10.0.0.4", &api.AgentService{ID: "lonely-1-sidecar", Service: "lonely-sidecar-proxy",
			Kind: api.ServiceKindConnectProxy, Port: 21001, Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "lonely"}}, api.HealthPassing)
		waitFor(t, plugin.Addr, "lonely.connect.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
		waitFor(t, plugin.Addr, "lonely.virtual.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
		entry := &api.IngressGatewayConfigEntry{Kind: api.IngressGateway, Name: "ig", Listeners: []api.IngressListener{
			{Port: 9999, Protocol: "tcp", Services: []api.IngressService{{Name: "lonely"}}},
		}}
		if _, _, err := client.ConfigEntries().Set(entry, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, plugin.Addr, "lonely.ingress.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
		waitFor(t, plugin.Addr, "web.ingress.consul.", dns.TypeA, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
		compare(t, agent.DNSAddr, plugin.Addr, questions)
	})

	want := answersOf(t, plugin.Addr, questions)
	t.Run("Consul frozen", func(t *testing.T) {
		agent.Freeze()
		defer agent.Thaw()
		plugin.WaitMetric(t, stale, 30*time.Second, is(1))
		sameAnswers(t, plugin.Addr, questions, want)
	})
	t.Run("Consul killed, CoreDNS restarted from the file", func(t *testing.T) {
		waitSnapshotFile(t, plugin, snapshotPath)
		agent.Kill()
		plugin.Stop(t)
		restarted := corednsproc.StartOn(t, plugin.Ports, corefile)
		sameAnswers(t, restarted.Addr, questions, want)
	})
}

// TestMeshOtherDatacenter asks the mesh names of a replicated datacenter
// (dc2, through dc1's agent) of the plugin and of Consul's DNS in dc1:
// proxies, gateways and entries are dc2's, SRV targets named in dc2; the
// virtual form reads one label as a peer, never a datacenter.
func TestMeshOtherDatacenter(t *testing.T) {
	dcs := consulagent.StartDatacentersHCL(t, "connect { enabled = true }", "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	services := meshCatalog(t, dc2.Client())
	plugin := startPlugin(t, dc1.HTTPAddr, "datacenters dc2")
	waitFor(t, plugin.Addr, "web.ingress.dc2.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
	waitFor(t, plugin.Addr, "legacy.connect.dc2.consul.", dns.TypeSRV, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	var questions []question
	for _, s := range services {
		for _, kind := range []string{"connect", "ingress"} {
			for _, dc := range []string{".dc2", ".dc2.dc"} {
				for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV} {
					questions = append(questions, question{s + "." + kind + dc + ".consul.", qt})
				}
			}
		}
		questions = append(questions, question{s + ".virtual.dc2.consul.", dns.TypeA}, question{s + ".connect.consul.", dns.TypeA})
	}
	compare(t, dc1.DNSAddr, plugin.Addr, questions)
}
