package snapshot

// Mesh is what a service instance is in Consul's service mesh: the names
// <svc>.connect, <svc>.ingress and <svc>.virtual are answered from it.
type Mesh struct {
	// Kind is the service's kind: "connect-proxy", "ingress-gateway",
	// "mesh-gateway", "terminating-gateway", "api-gateway"; empty for a
	// typical service.
	Kind string `json:",omitempty"`
	// Destination is a connect-proxy's Proxy.DestinationServiceName: the
	// service whose <svc>.connect name the proxy answers.
	Destination string `json:",omitempty"`
	// Native is Connect.Native: the service speaks mTLS itself and answers
	// its own <svc>.connect name.
	Native bool `json:",omitempty"`
}

// Mesh kinds the answers read.
const (
	KindConnectProxy       = "connect-proxy"
	KindIngressGateway     = "ingress-gateway"
	KindTerminatingGateway = "terminating-gateway"
)

// VirtualIPTag is the tagged address Consul puts a service's virtual IP in,
// on its proxies' and its Connect-native instances' registrations.
const VirtualIPTag = "consul-virtual"

// Gateway is one ingress-gateway or terminating-gateway config entry:
// which services the gateway of that name exposes (ingress) or links to the
// mesh (terminating).
type Gateway struct {
	// Name is the gateway's service name.
	Name string
	// Services are the services' names, lower case, sorted, once each; "*"
	// for a wildcard (an ingress listener exposing every service of its
	// protocol, a terminating gateway linking every service).
	Services []string
}
