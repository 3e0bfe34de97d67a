package consul

import (
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

func TestServeDNSPreparedQueries(t *testing.T) {
	withQueries := func(hidden, servicesHidden bool) *snapshot.Snapshot {
		snap := testSnapshot()
		snap.Queries = []*snapshot.Query{
			{ID: "11111111-2222-3333-4444-555555555555", Name: "web-v1", Service: snapshot.QueryService{Service: "web", Tags: []string{"v1"}}, TTL: "30s"},
			{ID: "q2", Name: "not-v1", Service: snapshot.QueryService{Service: "web", Tags: []string{"!v1"}}},
			{ID: "q3", Name: "mesh", Service: snapshot.QueryService{Service: "web", Connect: true}},
			{ID: "q4", Name: "all-", Template: snapshot.QueryTemplate{Type: "name_prefix_match"}, Service: snapshot.QueryService{Service: "${name.suffix}"}},
			{ID: "q5", Name: "db-ignoring", Service: snapshot.QueryService{Service: "db", IgnoreCheckIDs: []string{"broken"}}},
			{ID: "q6", Name: "ghost", Service: snapshot.QueryService{Service: "ghost"}},
			// Renders for "true" only: HIL cannot take "truex" as a bool.
			{ID: "q7", Name: "true", Template: snapshot.QueryTemplate{Type: "name_prefix_match"}, Service: snapshot.QueryService{Service: `${name.full ? "web" : "none"}`}},
		}
		snap.Services["db"].Instances[0].Checks = []snapshot.Check{{ID: "broken", Health: snapshot.Critical}}
		snap.QueriesHidden, snap.ServicesHidden = hidden, servicesHidden
		return snap
	}
	tests := []struct {
		name           string
		hidden         bool
		servicesHidden bool
		qname          string
		qtype          uint16
		rcode          int // dns.RcodeRefused: passed to the next plugin
		answer         []dns.RR
	}{
		{"tag and TTL", false, false, "web-v1.query.consul.", dns.TypeA, dns.RcodeSuccess, []dns.RR{
			test.A("web-v1.query.consul. 30 IN A 10.0.0.1"), test.A("web-v1.query.consul. 30 IN A 10.0.0.3"),
		}},
		{"by ID", false, false, "11111111-2222-3333-4444-555555555555.query.consul.", dns.TypeA, dns.RcodeSuccess, []dns.RR{
			test.A("11111111-2222-3333-4444-555555555555.query.consul. 30 IN A 10.0.0.1"),
			test.A("11111111-2222-3333-4444-555555555555.query.consul. 30 IN A 10.0.0.3"),
		}},
		{"negated tag", false, false, "not-v1.query.consul.", dns.TypeA, dns.RcodeSuccess, []dns.RR{
			test.A("not-v1.query.consul. 0 IN A 10.1.0.2"),
		}},
		{"template, RFC 2782", false, false, "_all-v6._tcp.query.consul.", dns.TypeSRV, dns.RcodeSuccess, []dns.RR{
			test.SRV("_all-v6._tcp.query.consul. 0 IN SRV 1 1 80 20010db8000000000000000000000006.addr.dc1.consul."),
		}},
		{"ignored check: the critical instance, weight 0", false, false, "db-ignoring.query.consul.", dns.TypeSRV, dns.RcodeSuccess, []dns.RR{
			test.SRV("db-ignoring.query.consul. 0 IN SRV 1 0 5432 n1.node.dc1.consul."),
		}},
		{"template without instances", false, false, "all-nothing.query.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"unknown", false, false, "nope.query.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"unknown, but the token may not list every query", true, false, "nope.query.consul.", dns.TypeA, dns.RcodeRefused, nil},
		{"connect", false, false, "mesh.query.consul.", dns.TypeA, dns.RcodeRefused, nil},
		{"a service nobody has", false, false, "ghost.query.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"a service the token may not read", false, true, "ghost.query.consul.", dns.TypeA, dns.RcodeRefused, nil},
		{"a service the token reads, others hidden", false, true, "not-v1.query.consul.", dns.TypeA, dns.RcodeSuccess, nil},
		{"a template that renders", false, false, "true.query.consul.", dns.TypeA, dns.RcodeSuccess, nil},
		{"a template that fails to render, as in Consul", false, false, "truex.query.consul.", dns.TypeA, dns.RcodeServerFailure, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions(), Next: test.NextHandler(dns.RcodeRefused, nil)})
			c.publish(withQueries(tc.hidden, tc.servicesHidden))
			msg, rcode := ask(t, c, tc.qname, tc.qtype)
			if rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[rcode], dns.RcodeToString[tc.rcode])
			}
			if tc.answer != nil {
				tcase := test.Case{Qname: tc.qname, Qtype: tc.qtype, Answer: tc.answer}
				msg.Extra = nil
				if err := test.SortAndCheck(msg, tcase); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
