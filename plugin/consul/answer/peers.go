package answer

import (
	"net"
)

// virtualTag is the tagged address Consul puts a service's virtual IP in;
// proxySuffix ends the name of the proxy imported for a service.
const (
	virtualTag  = "consul-virtual"
	proxySuffix = "-sidecar-proxy"
)

// parsePeerVirtual reads <service>.virtual.<peer>.peer and
// <service>.virtual.<peer> into name: Consul reads a lone locality label of
// a virtual name as a peer, never a datacenter (virtual IPs are allocated
// per datacenter). False for a virtual name without a locality, the local
// datacenter's.
func parsePeerVirtual(name *Name, parts, locality []string) bool {
	peer := name.Peer
	if peer == "" && len(locality) == 1 {
		// Virtual IPs are allocated per datacenter: Consul reads one label
		// as a peer, and ignores <dc>.dc (parseMesh).
		peer = name.Datacenter
	}
	if peer == "" {
		return false
	}
	if len(parts) == 0 {
		*name = Name{}
		return true
	}
	*name = Name{Kind: KindPeerVirtual, Service: parts[len(parts)-1], Peer: peer}
	return true
}

// peerMismatch answers a name of another peer than the view's (or of a
// peer in a datacenter's view): the caller had no view of that peer.
// Consul answers a virtual name of a peer it does not know, and a node
// question of a type it does not look nodes up for, with NOERROR and
// nothing; every other name with NXDOMAIN.
func (b *builder) peerMismatch(name *Name) Result {
	if name.Kind == KindPeerVirtual || name.Kind == KindNode && !nodeType(b.q.Type) {
		return Result{}
	}
	return b.nxdomain()
}

// peerVirtual answers <service>.virtual.<peer> as Consul does
// (agent/dns.go, "virtual"): the virtual IP as A or AAAA under the question's
// name in lower case, in the answer section for its own type and ANY, in the
// additional section for any other type; NOERROR without the SOA when the
// service has none.
//
// An imported service's virtual IP is on the proxy the peering stream makes
// up for it when the exporter runs a mesh gateway, always named
// <service>-sidecar-proxy (peerstream's syntheticProxyNameSuffix): the
// importer assigns it when it registers that proxy.
func (b *builder) peerVirtual(name *Name) Result {
	svc, ok := b.snap.Service(name.Service + proxySuffix)
	if !ok {
		return Result{}
	}
	for i := range svc.Instances {
		if ip := net.ParseIP(svc.Instances[i].TaggedAddresses[virtualTag]); ip != nil {
			return b.virtualIP(ip)
		}
	}
	return Result{}
}
