package replica

import (
	"reflect"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// TestBuildServiceMesh keeps what the mesh names are answered from: a
// proxy's kind and destination, Connect-native, and the virtual IP Consul
// tags both with; a plain service carries nothing more.
func TestBuildServiceMesh(t *testing.T) {
	vip := map[string]api.ServiceAddress{snapshot.VirtualIPTag: {Address: "240.0.0.1", Port: 21000}}
	tests := []struct {
		name    string
		service *api.AgentService
		want    *snapshot.Mesh
		vip     string
	}{
		{"plain", &api.AgentService{ID: "web-1", Service: "web"}, nil, ""},
		{"sidecar", &api.AgentService{ID: "web-1-sidecar", Service: "web-sidecar-proxy", Kind: api.ServiceKindConnectProxy,
			Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "web"}, TaggedAddresses: vip},
			&snapshot.Mesh{Kind: snapshot.KindConnectProxy, Destination: "web"}, "240.0.0.1"},
		{"native", &api.AgentService{ID: "nat-1", Service: "nat", Connect: &api.AgentServiceConnect{Native: true}, TaggedAddresses: vip},
			&snapshot.Mesh{Native: true}, "240.0.0.1"},
		{"gateway", &api.AgentService{ID: "ig-1", Service: "ig", Kind: api.ServiceKindIngressGateway},
			&snapshot.Mesh{Kind: snapshot.KindIngressGateway}, ""},
		{"connect without native", &api.AgentService{ID: "x-1", Service: "x", Connect: &api.AgentServiceConnect{}}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries := []*api.ServiceEntry{{Node: &api.Node{Node: "n1", Address: "10.0.0.1"}, Service: tc.service}}
			svc, _, _ := buildService(tc.service.Service, entries, 1)
			in := svc.Instances[0]
			if !reflect.DeepEqual(in.Mesh, tc.want) || in.TaggedAddresses[snapshot.VirtualIPTag] != tc.vip {
				t.Errorf("mesh %+v, virtual IP %q; want %+v, %q", in.Mesh, in.TaggedAddresses[snapshot.VirtualIPTag], tc.want, tc.vip)
			}
		})
	}
}
