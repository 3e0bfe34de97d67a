package e2e

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/metrics"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// peerName is what the importing cluster calls the exporting one.
const peerName = "exp"

// exportCatalog registers on the exporter services with tags, several
// instances on nodes with and without meta, addresses of their own, and
// passing, warning and critical checks, and exports them to the importer.
func exportCatalog(t *testing.T, p *consulagent.Peered) []string {
	t.Helper()
	exp := p.Exporter.Client()
	reg := func(node, addr string, meta map[string]string, svc *api.AgentService, status string) {
		r := &api.CatalogRegistration{Node: node, Address: addr, NodeMeta: meta, Service: svc,
			Checks: api.HealthChecks{{Node: node, CheckID: "check:" + svc.ID, Name: "check", Status: status, ServiceID: svc.ID}}}
		if _, err := exp.Catalog().Register(r, nil); err != nil {
			t.Fatalf("registering %s: %v", svc.ID, err)
		}
	}
	meta := map[string]string{"rack": "r1", "rfc1035-note": "plain"}
	reg("ext-1", "127.0.0.21", meta, &api.AgentService{ID: "web-1", Service: "web", Port: 8001, Tags: []string{"v1"}}, api.HealthPassing)
	reg("ext-2", "127.0.0.22", nil, &api.AgentService{ID: "web-2", Service: "web", Port: 8002, Address: "10.9.0.2", Tags: []string{"v2"}}, api.HealthPassing)
	reg("ext-1", "127.0.0.21", meta, &api.AgentService{ID: "web-3", Service: "web", Port: 8003, Address: "10.9.0.3", Tags: []string{"v1"}}, api.HealthCritical)
	reg("ext-2", "127.0.0.22", nil, &api.AgentService{ID: "db-1", Service: "db", Port: 5432, Tags: []string{"primary"}}, api.HealthWarning)
	reg("ext-1", "127.0.0.21", meta, &api.AgentService{ID: "db-2", Service: "db", Port: 5433, Address: "2001:db8::2"}, api.HealthPassing)
	reg("ext-2", "127.0.0.22", nil, &api.AgentService{ID: "down-1", Service: "down", Port: 9000}, api.HealthCritical)
	// A mesh gateway in the exporter: the importer then gets a proxy for
	// each exported Connect service (a sidecar's, a Connect-native one's),
	// with a virtual IP.
	reg("ext-1", "127.0.0.21", meta, &api.AgentService{ID: "web-1-sidecar", Service: "web-sidecar-proxy", Kind: api.ServiceKindConnectProxy, Port: 21000,
		Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "web", DestinationServiceID: "web-1", LocalServicePort: 8001}}, api.HealthPassing)
	reg("ext-2", "127.0.0.22", nil, &api.AgentService{ID: "mgw", Service: "mesh-gateway", Kind: api.ServiceKindMeshGateway, Port: 8443}, api.HealthPassing)
	reg("ext-2", "127.0.0.22", nil, &api.AgentService{ID: "nat-1", Service: "nat", Port: 8100, Connect: &api.AgentServiceConnect{Native: true}}, api.HealthPassing)
	exported := []string{"web", "db", "down", "nat"}
	p.Export(t, exported...)
	wait.Until(t, 30*time.Second, func() error {
		m := dnsq.Query(t, p.Importer.DNSAddr, "nat.virtual."+peerName+".consul.", dns.TypeA)
		if len(m.Answer) == 0 {
			return fmt.Errorf("no virtual IP for nat in the importer yet")
		}
		return nil
	})
	return append(exported, "web-sidecar-proxy", "nat-sidecar-proxy")
}

// peerQuestions are every peer form, for services that exist, are all
// critical, or do not exist, in the peer and in peers that do not exist.
// Not TXT for a service: Consul answers it with A records, a difference
// the README lists.
func peerQuestions(services []string) []question {
	var qs []question
	ask := func(name string, types ...uint16) {
		for _, qtype := range types {
			qs = append(qs, question{name, qtype})
		}
	}
	all := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeANY}
	for _, s := range append(services, "nope") {
		for _, n := range []string{
			s + ".service." + peerName + ".peer.consul.", "v1." + s + ".service." + peerName + ".peer.consul.",
			"_" + s + "._tcp.service." + peerName + ".peer.consul.", "_" + s + "._v1.service." + peerName + ".peer.consul.",
			s + ".service.zz.peer.consul.",
		} {
			ask(n, dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY)
		}
		for _, n := range []string{
			s + ".virtual." + peerName + ".consul.", s + ".virtual." + peerName + ".peer.consul.",
			s + ".virtual.zz.consul.", s + ".virtual.dc1.consul.",
		} {
			ask(n, all...)
		}
	}
	for _, n := range []string{"ext-1", "ext-2", "ext-9"} {
		ask(n+".node."+peerName+".peer.consul.", all...)
	}
	ask("ext-1.node.zz.peer.consul.", all...)
	return qs
}

// TestPeersDifferential asks the plugin, replicating the services imported
// from a cluster peer, and the importing cluster's own DNS every peer form
// and type: they answer alike.
func TestPeersDifferential(t *testing.T) {
	p := consulagent.StartPeered(t, peerName)
	services := exportCatalog(t, p)
	// A local service of the same name: peer names must not reach it.
	consulagent.Register(t, p.Importer.Client(), "local-1", "127.0.0.31", &api.AgentService{ID: "web-l", Service: "web", Port: 7000}, api.HealthPassing)
	server := startPlugin(t, p.Importer.HTTPAddr, "peers "+peerName)
	waitFor(t, server.Addr, "web.service."+peerName+".peer.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
	compare(t, p.Importer.DNSAddr, server.Addr, peerQuestions(services))
}

// TestPeersOutage freezes both clusters: every peer name is answered as
// before, also names never asked; then CoreDNS restarts with both dead and
// answers them from the snapshot file.
func TestPeersOutage(t *testing.T) {
	p := consulagent.StartPeered(t, peerName)
	services := exportCatalog(t, p)
	path := filepath.Join(t.TempDir(), "consul.snapshot")
	// Every peering: after the restart, which peers to answer comes from
	// the file alone.
	corefile := pluginCorefile(p.Importer.HTTPAddr, "peers *", "snapshot "+path+" 100ms").Build
	server := corednsproc.Start(t, corefile)
	waitFor(t, server.Addr, "web.service."+peerName+".peer.consul.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
	questions := peerQuestions(services)
	// Asked of Consul, so the plugin has never seen them.
	want := answersOf(t, p.Importer.DNSAddr, questions)
	waitPeerSnapshotFile(t, server, path)

	p.Exporter.Freeze()
	p.Importer.Freeze()
	t.Cleanup(func() { p.Exporter.Thaw(); p.Importer.Thaw() })
	server.WaitMetric(t, `coredns_consul_stale{datacenter="peer:`+peerName+`"}`, 30*time.Second, is(1))
	sameAnswers(t, server.Addr, questions, want)

	server.Stop(t)
	p.Exporter.Kill()
	p.Importer.Kill()
	restarted := corednsproc.Start(t, corefile)
	sameAnswers(t, restarted.Addr, questions, want)
}

// waitPeerSnapshotFile waits until the snapshot file holds the peer's
// snapshot CoreDNS serves.
func waitPeerSnapshotFile(t *testing.T, server *corednsproc.Server, path string) {
	t.Helper()
	wait.Until(t, 10*time.Second, func() error {
		set, err := snapshot.ReadFile(path)
		if err != nil {
			return err
		}
		snap := set.PeerSnapshot(peerName)
		if snap == nil {
			return fmt.Errorf("no snapshot of peer %s in the file", peerName)
		}
		built := metrics.Parse(server.Metrics(t))[`coredns_consul_snapshot_timestamp_seconds{datacenter="peer:`+peerName+`"}`]
		if math.Abs(built-float64(snap.Built.UnixNano())/1e9) > 1e-3 {
			return fmt.Errorf("the file holds the peer built at %s, CoreDNS serves one built at %.3f", snap.Built, built)
		}
		return nil
	})
}

// TestPeersLifecycle: while the exporter is gone (the peering's stream
// broken) the importer keeps its data and the plugin answers as its DNS
// does; once the peering is deleted, the plugin answers the peer's names as
// Consul does, whether it names the peer or replicates every one.
func TestPeersLifecycle(t *testing.T) {
	p := consulagent.StartPeered(t, peerName)
	services := exportCatalog(t, p)
	named := startPlugin(t, p.Importer.HTTPAddr, "peers "+peerName)
	every := startPlugin(t, p.Importer.HTTPAddr, "peers *")
	web := "web.service." + peerName + ".peer.consul."
	for _, s := range []*corednsproc.Server{named, every} {
		waitFor(t, s.Addr, web, dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
	}
	questions := peerQuestions(services)

	p.Exporter.Kill()
	importer := p.Importer.Client()
	wait.Until(t, 2*time.Minute, func() error {
		peering, _, err := importer.Peerings().Read(t.Context(), peerName, nil)
		if err == nil && peering.State != api.PeeringStateFailing {
			err = fmt.Errorf("peering %s is %s", peerName, peering.State)
		}
		return err
	})
	compare(t, p.Importer.DNSAddr, named.Addr, questions)
	compare(t, p.Importer.DNSAddr, every.Addr, questions)

	if _, err := importer.Peerings().Delete(t.Context(), peerName, nil); err != nil {
		t.Fatalf("deleting the peering: %v", err)
	}
	dnsq.Wait(t, p.Importer.DNSAddr, web, dns.TypeA, 30*time.Second, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
	for _, s := range []*corednsproc.Server{named, every} {
		// The peerings are read every 10 s.
		dnsq.Wait(t, s.Addr, web, dns.TypeA, 30*time.Second, func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
		compare(t, p.Importer.DNSAddr, s.Addr, questions)
	}
}

// TestPeersUnwatched: with no watcher to spare (max_watchers 0), a change
// to an imported service still reaches the plugin: the peer's replica has
// no health detector (Consul ignores ?peer= on the checks), so it polls the
// peer's summaries.
func TestPeersUnwatched(t *testing.T) {
	p := consulagent.StartPeered(t, peerName)
	exportCatalog(t, p)
	server := startPlugin(t, p.Importer.HTTPAddr, "peers "+peerName, "max_watchers 0")
	web := "web.service." + peerName + ".peer.consul."
	waitFor(t, server.Addr, web, dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
	exp := p.Exporter.Client()
	check := &api.HealthCheck{Node: "ext-2", CheckID: "check:web-2", Name: "check", ServiceID: "web-2", Status: api.HealthCritical}
	if _, err := exp.Catalog().Register(&api.CatalogRegistration{Node: "ext-2", Address: "127.0.0.22", Checks: api.HealthChecks{check}}, nil); err != nil {
		t.Fatal(err)
	}
	dnsq.Wait(t, p.Importer.DNSAddr, web, dns.TypeA, 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	waitFor(t, server.Addr, web, dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	consulagent.Register(t, exp, "ext-3", "127.0.0.23", &api.AgentService{ID: "web-4", Service: "web", Port: 8004}, api.HealthPassing)
	waitFor(t, server.Addr, web, dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 2 })
}

// TestPeersReload: a reload hands the peer's replica over to the new block,
// which answers with its own settings and goes on following the exporter.
func TestPeersReload(t *testing.T) {
	p := consulagent.StartPeered(t, peerName)
	exportCatalog(t, p)
	cf := pluginCorefile(p.Importer.HTTPAddr, "peers "+peerName)
	server := corednsproc.Start(t, cf.Build)
	web := "web.service." + peerName + ".peer.consul."
	waitFor(t, server.Addr, web, dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 2 })

	cf.Consul = append(cf.Consul, "service_ttl * 7s")
	server.Reload(t, cf.Build(server.Ports))
	waitFor(t, server.Addr, web, dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 2 && dnsq.TTL(m) == 7 })
	if strings.Contains(server.Output(), "Restart failed") {
		t.Fatalf("the reload failed:\n%s", server.Tail(20))
	}
	consulagent.Register(t, p.Exporter.Client(), "ext-3", "127.0.0.23", &api.AgentService{ID: "web-4", Service: "web", Port: 8004}, api.HealthPassing)
	waitFor(t, server.Addr, web, dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 3 })
}
