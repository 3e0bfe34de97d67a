package prepared

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

func noShuffle(int, func(i, j int)) {}

func reverse(n int, swap func(i, j int)) {
	for i := 0; i < n/2; i++ {
		swap(i, n-1-i)
	}
}

func dcSnapshot(dc string, services map[string][]string) *snapshot.Snapshot {
	s := &snapshot.Snapshot{Datacenter: dc, Services: map[string]*snapshot.Service{}, Nodes: map[string]*snapshot.Node{}}
	for name, nodes := range services {
		svc := &snapshot.Service{Name: name}
		for _, n := range nodes {
			svc.Instances = append(svc.Instances, snapshot.Instance{Node: n, Health: snapshot.Passing})
			s.Nodes[snapshot.Key(n)] = &snapshot.Node{Name: n, Address: "10.0.0." + n[1:]}
		}
		s.Services[name] = svc
	}
	return s
}

func executeFixture() (*Set, func(string) *snapshot.Snapshot) {
	local := dcSnapshot("dc1", map[string][]string{"web": {"n1", "n2", "n3", "n4"}, "flaky": {"n1", "n2"}})
	flaky := local.Services["flaky"].Instances
	flaky[0].Health, flaky[0].Checks = snapshot.Critical, []snapshot.Check{{ID: "disk", Health: snapshot.Critical}}
	flaky[1].Health, flaky[1].Checks = snapshot.Critical, []snapshot.Check{{ID: "serfHealth", Health: snapshot.Critical}}
	local.Coordinates = coords("", map[string]int{"n1": 1, "n2": 2, "n3": 3, "n4": 4})
	local.Queries = []*snapshot.Query{
		{ID: "q-web", Name: "web", TTL: "10s", Service: snapshot.QueryService{Service: "web", Near: "_agent"}},
		{ID: "q-ip", Name: "web-ip", Service: snapshot.QueryService{Service: "web", Near: "_ip"}},
		{ID: "q-flaky", Name: "flaky", Service: snapshot.QueryService{Service: "flaky", IgnoreCheckIDs: []string{"disk"}}},
		{ID: "q-conn", Name: "conn", Service: snapshot.QueryService{Service: "web", Connect: true}},
		{ID: "q-peer", Name: "peer", Service: snapshot.QueryService{Service: "web", Peer: "other"}},
		{ID: "q-sg", Name: "sg", Service: snapshot.QueryService{Service: "web", SamenessGroup: "group"}},
		{ID: "q-pf", Name: "peerfail", Service: snapshot.QueryService{Service: "none",
			Failover: snapshot.QueryFailover{Targets: []snapshot.QueryTarget{{Peer: "other"}}}}},
		{ID: "f0f2c4e6-1111-2222-3333-444455556666", Name: "", Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch},
			Service: snapshot.QueryService{Service: "${name.full}", Failover: snapshot.QueryFailover{NearestN: 1, Datacenters: []string{"dc3"}}}},
		{ID: "q-bool", Name: "true", Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch},
			Service: snapshot.QueryService{Service: `${name.full ? "web" : "none"}`}},
	}
	remotes := map[string]*snapshot.Snapshot{
		"dc2": dcSnapshot("dc2", map[string][]string{"db": {"n21", "n22"}}),
		"dc3": dcSnapshot("dc3", map[string][]string{"db": {"n31"}, "cache": {"n31", "n32"}}),
	}
	return NewSet(local, nil), func(dc string) *snapshot.Snapshot { return remotes[dc] }
}

func TestExecute(t *testing.T) {
	agent := Agent{Datacenter: "dc1", Node: "n3", Segment: ""}
	byDistance := []string{"dc1", "dc2", "dc4", "dc3"}
	tests := []struct {
		name      string
		req       Request
		outcome   Outcome
		reason    error
		nodes     []string
		dc        string
		ttl       time.Duration
		ttlSet    bool
		service   string
		failovers int
	}{
		{
			name:    "near the agent, query TTL",
			req:     Request{Name: "web", Agent: agent, DatacentersByDistance: byDistance, Shuffle: reverse},
			outcome: Answer, nodes: []string{"n3", "n4", "n2", "n1"}, dc: "dc1", ttl: 10 * time.Second, ttlSet: true, service: "web",
		},
		{
			name:    "agent in another datacenter: shuffled only",
			req:     Request{Name: "web", Agent: Agent{Datacenter: "dc9", Node: "n3"}, DatacentersByDistance: byDistance, Shuffle: reverse},
			outcome: Answer, nodes: []string{"n4", "n3", "n2", "n1"}, dc: "dc1", ttl: 10 * time.Second, ttlSet: true, service: "web",
		},
		{
			name:    "near the client's IP",
			req:     Request{Name: "web-ip", Agent: agent, SourceIP: "10.0.0.1", DatacentersByDistance: byDistance, Shuffle: reverse},
			outcome: Answer, nodes: []string{"n1", "n2", "n3", "n4"}, dc: "dc1", service: "web",
		},
		{
			name:    "client's IP unknown: shuffled only",
			req:     Request{Name: "web-ip", Agent: agent, SourceIP: "192.0.2.1", DatacentersByDistance: byDistance, Shuffle: reverse},
			outcome: Answer, nodes: []string{"n4", "n3", "n2", "n1"}, dc: "dc1", service: "web",
		},
		{
			name:    "ignored check",
			req:     Request{Name: "flaky", Agent: agent, DatacentersByDistance: byDistance, Shuffle: noShuffle},
			outcome: Answer, nodes: []string{"n1"}, dc: "dc1", service: "flaky",
		},
		{
			name:    "catch-all template fails over to the nearest",
			req:     Request{Name: "db", Agent: agent, DatacentersByDistance: byDistance, Shuffle: noShuffle},
			outcome: Answer, nodes: []string{"n21", "n22"}, dc: "dc2", service: "db", failovers: 1,
		},
		{
			name:    "then to the listed datacenter",
			req:     Request{Name: "cache", Agent: agent, DatacentersByDistance: byDistance, Shuffle: reverse},
			outcome: Answer, nodes: []string{"n32", "n31"}, dc: "dc3", service: "cache", failovers: 2,
		},
		{
			name:    "nowhere",
			req:     Request{Name: "nothing", Agent: agent, DatacentersByDistance: byDistance, Shuffle: noShuffle},
			outcome: Answer, dc: "dc1", service: "nothing", failovers: 2,
		},
		{
			name:    "failover to a datacenter without a snapshot",
			req:     Request{Name: "db", Agent: agent, DatacentersByDistance: []string{"dc4", "dc2"}, Shuffle: noShuffle},
			outcome: PassOn, reason: ErrNotReplicated,
		},
		{
			name:    "failover without the datacenters",
			req:     Request{Name: "db", Agent: agent, Shuffle: noShuffle},
			outcome: PassOn, reason: ErrDatacentersUnknown,
		},
		{name: "connect", req: Request{Name: "conn", Agent: agent}, outcome: PassOn, reason: ErrConnect},
		{name: "peer", req: Request{Name: "peer", Agent: agent}, outcome: PassOn, reason: ErrPeer},
		{name: "sameness group", req: Request{Name: "sg", Agent: agent}, outcome: PassOn, reason: ErrSamenessGroup},
		{name: "failover to a peer", req: Request{Name: "peerfail", Agent: agent, DatacentersByDistance: byDistance}, outcome: PassOn, reason: ErrPeer},
		{
			name:    "template with a conditional",
			req:     Request{Name: "true", Agent: agent, Shuffle: noShuffle},
			outcome: Answer, nodes: []string{"n1", "n2", "n3", "n4"}, dc: "dc1", service: "web",
		},
		{name: "template failing to render", req: Request{Name: "truex", Agent: agent}, outcome: PassOn, reason: ErrTemplate},
		{name: "template by ID", req: Request{Name: "f0f2c4e6-1111-2222-3333-444455556666", Agent: agent}, outcome: PassOn, reason: errTemplateByID},
	}
	set, remote := executeFixture()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := set.Execute(tt.req, remote)
			if res.Outcome != tt.outcome || !errors.Is(res.Reason, tt.reason) {
				t.Fatalf("outcome %v (%v), want %v (%v)", res.Outcome, res.Reason, tt.outcome, tt.reason)
			}
			if tt.outcome != Answer {
				return
			}
			var nodes []string
			for _, i := range res.Instances {
				nodes = append(nodes, i.Node)
			}
			if !slices.Equal(nodes, tt.nodes) || res.Datacenter != tt.dc || res.Service != tt.service ||
				res.TTL != tt.ttl || res.TTLSet != tt.ttlSet || res.Failovers != tt.failovers {
				t.Errorf("got %q from %s, service %q, ttl %v/%v, failovers %d; want %q from %s, service %q, ttl %v/%v, failovers %d",
					nodes, res.Datacenter, res.Service, res.TTL, res.TTLSet, res.Failovers,
					tt.nodes, tt.dc, tt.service, tt.ttl, tt.ttlSet, tt.failovers)
			}
		})
	}
}

func TestExecuteNotFound(t *testing.T) {
	set := NewSet(dcSnapshot("dc1", nil), nil)
	res := set.Execute(Request{Name: "web"}, func(string) *snapshot.Snapshot { return nil })
	if res.Outcome != NotFound || !errors.Is(res.Reason, ErrNotFound) {
		t.Fatalf("got %v (%v)", res.Outcome, res.Reason)
	}
}

// The set is read by many DNS requests at once.
func TestExecuteConcurrent(t *testing.T) {
	set, remote := executeFixture()
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 50 {
				for _, name := range []string{"web", "web-ip", "db", "cache", "true", "truex"} {
					set.Execute(Request{Name: name, Agent: Agent{Datacenter: "dc1", Node: "n2"}, SourceIP: "10.0.0.4",
						DatacentersByDistance: []string{"dc2", "dc3"}}, remote)
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}
