package consulagent

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/freeport"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
)

// Peered is two single-server clusters on loopback, peered: Importer reads
// the services Exporter exports to it, under the peer name Peer.
type Peered struct {
	Exporter, Importer *Process
	// Peer is the importer's name for the exporter: the <peer> of
	// <service>.service.<peer>.peer.consul. Consumer is the exporter's name
	// for the importer, which its exported-services entry names.
	Peer, Consumer string
}

// peeringHCL lets a server take part in peering: Connect (its CA signs the
// peering's TLS) and a gRPC TLS port for the peering stream.
func peeringHCL(t testing.TB) []string {
	return []string{fmt.Sprintf("ports { grpc_tls = %d }", freeport.Port(t)), "connect { enabled = true }"}
}

// StartPeered starts an exporting cluster (datacenter exp-dc) and an
// importing one (dc1), each a single server with ports of its own, with
// more configuration (hcl) for both, and peers them: the importer calls the
// exporter peer.
func StartPeered(t testing.TB, peer string, hcl ...string) *Peered {
	t.Helper()
	exporter := Launch(t, Options{Name: "exporter", Datacenter: "exp-dc", HCL: append(peeringHCL(t), hcl...)})
	importer := Launch(t, Options{Name: "importer", Datacenter: "dc1", HCL: append(peeringHCL(t), hcl...)})
	exporter.WaitReady()
	importer.WaitReady()
	p := &Peered{Exporter: exporter, Importer: importer, Peer: peer, Consumer: "importer"}
	p.establish(t)
	return p
}

// establish peers the clusters and waits until the importer's side is
// ACTIVE.
func (p *Peered) establish(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// One client each: a client per attempt would leave its connections
	// open, past the agent's limit per client address.
	exporter, importer := p.Exporter.Client(), p.Importer.Client()
	var token string
	wait.Until(t, time.Minute, func() error {
		resp, _, err := exporter.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: p.Consumer}, nil)
		if err == nil {
			token = resp.PeeringToken
		}
		return err
	})
	// Right after its election the exporter may not serve its peering
	// certificate yet, and the importer's dialer would then back off for up
	// to a minute: establish only once a handshake works.
	waitHandshake(t, token)
	if _, _, err := importer.Peerings().Establish(ctx, api.PeeringEstablishRequest{PeerName: p.Peer, PeeringToken: token}, nil); err != nil {
		t.Fatalf("establishing the peering: %v", err)
	}
	began := time.Now()
	wait.Until(t, time.Minute, func() error {
		peering, _, err := importer.Peerings().Read(ctx, p.Peer, nil)
		if err == nil && (peering == nil || peering.State != api.PeeringStateActive) {
			err = fmt.Errorf("peering %s: %+v", p.Peer, peering)
		}
		return err
	})
	t.Logf("peering %s active in %s", p.Peer, time.Since(began).Round(time.Millisecond))
}

// waitHandshake waits until the server a peering token names completes a
// TLS handshake for the name the token gives.
func waitHandshake(t testing.TB, token string) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		t.Fatalf("peering token: %v", err)
	}
	var tok struct {
		ServerAddresses []string
		ServerName      string
	}
	if err := json.Unmarshal(raw, &tok); err != nil || len(tok.ServerAddresses) == 0 {
		t.Fatalf("peering token %s: %v", raw, err)
	}
	wait.Until(t, time.Minute, func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", tok.ServerAddresses[0],
			// The peer's CA is checked by Consul; here only whether the
			// certificate is served at all.
			&tls.Config{ServerName: tok.ServerName, InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// Export exports services from the exporter to the importer, replacing what
// was exported, and waits until the importer lists them all as imported.
func (p *Peered) Export(t testing.TB, services ...string) {
	t.Helper()
	entry := &api.ExportedServicesConfigEntry{Name: "default"}
	for _, s := range services {
		entry.Services = append(entry.Services, api.ExportedService{Name: s, Consumers: []api.ServiceConsumer{{Peer: p.Consumer}}})
	}
	if _, _, err := p.Exporter.Client().ConfigEntries().Set(entry, nil); err != nil {
		t.Fatalf("exporting %v: %v", services, err)
	}
	importer := p.Importer.Client()
	wait.Until(t, 30*time.Second, func() error {
		var list []struct{ Name string }
		if _, err := importer.Raw().Query("/v1/internal/ui/services", &list, &api.QueryOptions{Peer: p.Peer}); err != nil {
			return err
		}
		if len(list) < len(services) {
			return fmt.Errorf("importer lists %v, want %v", list, services)
		}
		return nil
	})
}
