package replica

import (
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// consulAnswers are the answers the replica reads from Consul, decoded into
// the api package's types as consulSource decodes them.
type consulAnswers struct {
	Entries     []*api.ServiceEntry
	Nodes       []*api.Node
	Checks      api.HealthChecks
	Queries     []*api.PreparedQueryDefinition
	Coordinates []*api.CoordinateEntry
	Summaries   []uiSummary
	Datacenters []string
}

// FuzzConvert feeds Consul's answers, as any JSON, through the replica's
// conversions and its detectors into a snapshot, a view and answers: no
// value from Consul may panic.
func FuzzConvert(f *testing.F) {
	f.Add([]byte(`{"Entries":[null,{"Node":{"Node":"n1","Address":"10.0.0.1","Meta":{"k":"v"}},` +
		`"Service":{"ID":"web-1","Service":"web","Port":80,"Tags":["a",null],"Address":"web.example.com"},` +
		`"Checks":[null,{"Node":"n1","CheckID":"c","Status":"critical","ServiceName":"web"}]},{"Node":null}],` +
		`"Nodes":[null,{"Node":"n1","Address":"10.0.0.1"}],"Checks":[null,{"Node":"n1","CheckID":"serfHealth","Status":"warning"}],` +
		`"Queries":[null,{"ID":"q1","Name":"web-q","Service":{"Service":"web","Failover":{"Targets":[null,{"Datacenter":"dc2"}]}}},` +
		`{"ID":"t1","Name":"","Template":{"Type":"name_prefix_match","Regexp":"^(.*)$"},"Service":{"Service":"${match(1)}"}}],` +
		`"Coordinates":[null,{"Node":"n1","Coord":{"Vec":[0.1,null],"Error":1,"Adjustment":0,"Height":0.0001}}],` +
		`"Summaries":[null,{"Name":"web","InstanceCount":1}],"Datacenters":[null,"DC1",""]}`))
	f.Add([]byte(`{"Entries":[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"p","Service":"web","Kind":"connect-proxy",` +
		`"Proxy":{"DestinationServiceName":"web"},"Connect":{"Native":true},"TaggedAddresses":{"consul-virtual":{"Address":"x"},` +
		`"consul-virtual:web":{"Address":"240.0.0.9"}}},"Checks":[]}]}`))
	f.Add([]byte(`{"Entries":[{"Node":{"Node":"` + string(make([]byte, 70)) + `"},"Service":{"Service":"web","Meta":{"m":"x"}},"Checks":[]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var in consulAnswers
		if json.Unmarshal(data, &in) != nil {
			return
		}
		snap := convertAnswers(in)
		view := answer.NewView(snap, nil, []string{"consul."}, answer.DefaultOptions())
		names := []string{"web.service.consul.", "_web._tcp.service.consul.", "web-q.query.consul.",
			"web.connect.consul.", "web.ingress.consul.", "web.virtual.consul."}
		for _, n := range snap.Nodes {
			names = append(names, dns.Fqdn(n.Name)+"node.consul.")
		}
		for _, name := range names {
			for _, qtype := range []uint16{dns.TypeSRV, dns.TypeA, dns.TypeTXT} {
				q := answer.Question{Name: name, Lower: snapshot.Key(name), Zone: "consul.", Type: qtype}
				res := answer.Lookup(view, q)
				m := new(dns.Msg)
				m.Answer, m.Extra, m.Ns = res.Answer, res.Extra, res.Ns
				m.Pack() // an error is another test's; a panic is this one's
			}
		}
	})
}

// convertAnswers converts in as the replica's reads and detectors do, into
// the snapshot the replica would build.
func convertAnswers(in consulAnswers) *snapshot.Snapshot {
	svc, _, _ := buildService("web", in.Entries, 1)
	nodes, _ := convertNodes(in.Nodes)
	checks, _ := convertChecks(in.Checks)
	queries, _ := convertQueries(in.Queries)
	coords, _ := convertCoordinates(in.Coordinates)
	summaries, _ := convertSummaries(in.Summaries)
	cleanDatacenters(in.Datacenters)

	h := healthDetector{checks: make(map[checkKey]nonPassingCheck)}
	h.observe(checks)
	var d summaryDetector
	d.observe(summaries)
	d.observe(nil)

	byKey := make(map[string]*snapshot.Node, len(nodes))
	for _, n := range nodes {
		byKey[snapshot.Key(n.Name)] = n
	}
	snap := snapshot.New("dc1", 1, map[string]*snapshot.Service{"web": svc}, maps.Clone(byKey), time.Now())
	snap.Queries, snap.Coordinates = reuseQueries(queries, nil), coords
	return snap
}
