package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// catalog generates a varied catalog: nodes with IPv4 and IPv6 addresses,
// tagged addresses and meta; services with several instances per node, own
// IPv4, IPv6 and hostname addresses, tags, weights, and passing, warning,
// critical and maintenance checks.
func catalog(t *testing.T, client *api.Client, seed uint64) (services, nodes []string) {
	rng := rand.New(rand.NewPCG(seed, seed))
	type node struct {
		name, addr string
		tagged     map[string]string
		meta       map[string]string
	}
	var ns []node
	for i := range 8 {
		n := node{name: fmt.Sprintf("node-%d", i), addr: fmt.Sprintf("10.0.%d.%d", i/4, i+1)}
		switch i % 4 {
		case 1:
			n.meta = map[string]string{"rack": fmt.Sprintf("r%d", i), "zone": "z1", "rfc1035-note": "plain"}
		case 2:
			n.addr = fmt.Sprintf("2001:db8::%x", i+1)
		case 3:
			// A node whose tagged lan_ipv6 address differs from its address:
			// Consul targets it by address for SRV, by node name for A.
			n.tagged = map[string]string{"lan_ipv4": n.addr, "lan_ipv6": fmt.Sprintf("2001:db8:1::%x", i+1)}
		}
		ns = append(ns, n)
		nodes = append(nodes, n.name)
	}
	tags := []string{"v1", "v2", "primary", "canary"}
	statuses := []string{api.HealthPassing, api.HealthPassing, api.HealthPassing, api.HealthWarning, api.HealthCritical, "maintenance"}
	for s := range 16 {
		name := fmt.Sprintf("svc-%d", s)
		services = append(services, name)
		for i := range 1 + rng.IntN(6) {
			n := ns[rng.IntN(len(ns))]
			svc := &api.AgentService{
				// Distinct ports: Consul and the plugin both keep one SRV
				// record per target and port, the first in a random order.
				ID: fmt.Sprintf("%s-%d", name, i), Service: name, Port: 8000 + i,
				Tags:    []string{tags[rng.IntN(len(tags))]},
				Weights: api.AgentWeights{Passing: 1 + rng.IntN(10), Warning: 1 + rng.IntN(3)},
			}
			switch rng.IntN(6) {
			case 0:
				svc.Address = fmt.Sprintf("10.9.%d.%d", s, i+1)
			case 1:
				svc.Address = fmt.Sprintf("2001:db8:9::%x:%x", s, i+1)
			case 2:
				svc.Address = n.addr // own address equal to the node's
			case 3:
				svc.TaggedAddresses = map[string]api.ServiceAddress{
					"lan_ipv4": {Address: fmt.Sprintf("10.8.%d.%d", s, i+1), Port: svc.Port},
				}
			}
			if s == 7 && i == 0 {
				svc.Address = "api.example.com" // reached by hostname
			}
			status := statuses[rng.IntN(len(statuses))]
			checks := api.HealthChecks{{Node: n.name, CheckID: "check:" + svc.ID, Name: "check", Status: status, ServiceID: svc.ID}}
			if status == "maintenance" {
				checks = api.HealthChecks{{Node: n.name, CheckID: "_service_maintenance:" + svc.ID, Name: "Service Maintenance Mode",
					Status: api.HealthCritical, ServiceID: svc.ID}}
			}
			reg := &api.CatalogRegistration{Node: n.name, Address: n.addr, TaggedAddresses: n.tagged, NodeMeta: n.meta, Service: svc, Checks: checks}
			if _, err := client.Catalog().Register(reg, nil); err != nil {
				t.Fatalf("registering %s: %v", svc.ID, err)
			}
		}
	}
	return services, nodes
}

// TestDifferentialAgainstConsulDNS asks Consul's own DNS interface and the
// plugin the same questions about the same generated catalog and compares
// the answers as record sets, plus the rcodes. Differences the plugin makes
// on purpose are not asked here; the plugin's README lists them.
func TestDifferentialAgainstConsulDNS(t *testing.T) {
	for _, seed := range []uint64{42, 2026} {
		t.Run(fmt.Sprintf("catalog %d", seed), func(t *testing.T) { differential(t, seed) })
	}
}

func differential(t *testing.T, seed uint64) {
	agent, client := startAgent(t)
	services, nodes := catalog(t, client, seed)
	plugin := startPlugin(t, agent.HTTPAddr)

	var questions []question
	ask := func(name string, types ...uint16) {
		for _, qt := range types {
			questions = append(questions, question{name, qt})
		}
	}
	for _, s := range append(services, "consul", "no-such-service") {
		ask(s+".service.consul.", dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY, dns.TypeMX)
		ask(s+".service.dc1.consul.", dns.TypeA, dns.TypeSRV)
		ask(s+".service.dc1.dc.consul.", dns.TypeSRV)
		ask(s+".service.dc9.consul.", dns.TypeA)
		ask("_"+s+"._tcp.service.consul.", dns.TypeSRV)
		ask("_"+s+"._tcp.consul.", dns.TypeSRV)
		for _, tag := range []string{"v1", "primary", "nope"} {
			ask(tag+"."+s+".service.consul.", dns.TypeA, dns.TypeSRV)
			ask("_"+s+"._"+tag+".service.consul.", dns.TypeSRV)
		}
	}
	for _, n := range append(nodes, "no-such-node") {
		ask(n+".node.consul.", dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeANY)
		ask(n+".node.dc1.consul.", dns.TypeA)
		ask(n+".node.dc9.consul.", dns.TypeA)
	}
	for _, ip := range []string{"10.0.0.1", "192.168.7.9", "2001:db8::3"} {
		parsed := net.ParseIP(ip)
		raw := parsed.To4()
		if raw == nil {
			raw = parsed.To16()
		}
		ask(fmt.Sprintf("%x.addr.consul.", []byte(raw)), dns.TypeA, dns.TypeAAAA)
		ask(fmt.Sprintf("%x.addr.dc1.consul.", []byte(raw)), dns.TypeA)
	}
	ask("consul.", dns.TypeSOA, dns.TypeNS)
	ask("0a00zz01.addr.consul.", dns.TypeA)
	ask("a.b.c.d.consul.", dns.TypeA)

	// Over TCP: over UDP without EDNS, Consul cuts answers to 3 records.
	compare(t, agent.DNSAddr, plugin.Addr, questions)
}
