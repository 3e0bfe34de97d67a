package e2e

// The follower mode end to end (issue 23): tiers replicate Consul through
// their own client agents and serve what they hold; followers follow both
// tiers and must answer as the tier and as Consul's DNS do, keep answering
// when Consul and every tier are gone, and keep the good tier when another
// one in the list is of another cluster, refuses the token or is not a tier.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// fleetQueries creates prepared queries of the kinds the followers must
// run as the tiers do, Near "_agent" among them (on near-svc, which
// registerNear puts on every agent's node), and returns the questions that
// ask them.
func fleetQueries(t *testing.T, client *api.Client, services []string) []question {
	t.Helper()
	defs := []*api.PreparedQueryDefinition{
		{Name: "tagged", Service: api.ServiceQuery{Service: services[1], Tags: []string{"v1"}}},
		{Name: "passing", Service: api.ServiceQuery{Service: services[3], OnlyPassing: true}},
		{Name: "ttl", Service: api.ServiceQuery{Service: services[5]}, DNS: api.QueryDNSOptions{TTL: "42s"}},
		{Name: "near", Service: api.ServiceQuery{Service: "near-svc", Near: "_agent"}},
		{Name: "tpl-", Template: api.QueryTemplate{Type: "name_prefix_match"}, Service: api.ServiceQuery{Service: "${name.suffix}"}},
		{Name: "empty", Service: api.ServiceQuery{Service: "no-such-service"}},
	}
	for _, d := range defs {
		if _, _, err := client.PreparedQuery().Create(d, nil); err != nil {
			t.Fatalf("creating query %q: %v", d.Name, err)
		}
	}
	var qs []question
	for _, n := range []string{"tagged", "passing", "ttl", "near", "tpl-" + services[7], "tpl-no-such-service", "empty", "no-such-query"} {
		qs = append(qs, question{n + ".query.consul.", dns.TypeA}, question{n + ".query.consul.", dns.TypeSRV},
			question{"_" + n + "._tcp.query.consul.", dns.TypeSRV})
	}
	return qs
}

// differentialFleet is a fleet whose catalog is a generated one (seed),
// near-svc on every agent's node and the prepared queries; it returns the
// questions that ask about all of it and where near-svc is on each node.
func differentialFleet(t *testing.T, seed uint64) (*followFleet, []question, map[string]string) {
	var questions []question
	var near map[string]string
	f := startFollowFleet(t, func(f *followFleet) {
		services, nodes := catalog(t, f.client, seed)
		near = registerNear(t, f, "near-svc")
		questions = append(catalogQuestions(append(services, "near-svc"), nodes, "consul."), fleetQueries(t, f.client, services)...)
	})
	return f, questions, near
}

// TestFollowerDifferential: every follower answers the differential name
// set (services, tags, nodes, .addr, prepared queries) as its tier and as
// Consul's own DNS do; Near "_agent" sorts around the follower's own
// node_name, as the DNS of the agent of that name does; answers are
// reshuffled per question; a change propagates to every follower.
func TestFollowerDifferential(t *testing.T) {
	f, questions, near := differentialFleet(t, 42)
	f.startFollowers(t, 3)
	consulDNS := f.consul.Clients[0].DNSAddr

	for i, fl := range f.followers {
		t.Run(fmt.Sprintf("follower %d", i), func(t *testing.T) {
			compare(t, consulDNS, fl.Addr, questions)
			if err := differences(t, f.tiers[0].Addr, fl.Addr, questions); err != nil {
				t.Errorf("answered otherwise than tier 0:\n%v", err)
			}
			node := fl.Options.NodeName
			agent := f.agentNamed(t, node)
			if got, want := firstA(t, fl.Addr, "near.query.consul."), near[node]; got != want {
				t.Errorf("near.query with node_name %s: first %s, want %s (that node's instance)", node, got, want)
			}
			if got, want := firstA(t, agent.DNSAddr, "near.query.consul."), near[node]; got != want {
				t.Errorf("Consul's DNS on %s: near.query first %s, want %s", node, got, want)
			}
			orders := map[string]bool{}
			for range 30 {
				var order []string
				for _, rr := range dnsq.Query(t, fl.Addr, "near-svc.service.consul.", dns.TypeA, dnsq.TCP).Answer {
					order = append(order, rr.String())
				}
				orders[strings.Join(order, ",")] = true
			}
			if len(orders) < 2 {
				t.Errorf("near-svc's 3 instances came in one order over 30 questions: not reshuffled")
			}
		})
	}

	t.Run("a change propagates to every follower", func(t *testing.T) {
		for _, fl := range f.followers {
			bounce(t, f.client, fl.Addr, "svc-0", dnsq.Count(t, consulDNS, "svc-0.service.consul."))
		}
	})
}

// TestFollowerOutage: with Consul frozen, then both tiers frozen, then
// both killed, every follower answers every name of the differential set
// as the tier did before (names the followers were never asked before
// included); a follower restarted during the outage answers from its
// snapshot file at once.
func TestFollowerOutage(t *testing.T) {
	f, questions, _ := differentialFleet(t, 2026)
	f.startFollowers(t, 3)
	// Asked of the tier only: every question is new to the followers when
	// the outage begins.
	want := answersOf(t, f.tiers[0].Addr, questions)
	allSame := func(t *testing.T) {
		for _, fl := range f.followers {
			sameAnswers(t, fl.Addr, questions, want)
		}
	}

	t.Run("Consul frozen", func(t *testing.T) {
		f.freezeConsul(t)
		for _, tr := range f.tiers {
			tr.WaitMetric(t, stale, 30*time.Second, is(1))
		}
		allSame(t)
	})
	t.Run("the followers say Consul cannot be reached", func(t *testing.T) {
		// As a direct-mode instance does: soon after the tiers know it,
		// not when the followers' long-polls end (their wait is 60 s).
		began := time.Now()
		for i, fl := range f.followers {
			fl.WaitMetric(t, stale, 15*time.Second, is(1))
			t.Logf("follower %d: stale %s after the tiers", i, time.Since(began).Round(time.Millisecond))
		}
	})
	t.Run("both tiers frozen", func(t *testing.T) {
		frozen := time.Now()
		for _, tr := range f.tiers {
			tr.Freeze(t)
		}
		f.waitTierErrors(t, `kind="hang"`)
		t.Logf("every follower found both tiers hung within %s", time.Since(frozen).Round(time.Millisecond))
		allSame(t)
	})
	t.Run("both tiers killed", func(t *testing.T) {
		for _, tr := range f.tiers {
			tr.Kill()
		}
		f.waitTierErrors(t, `kind="unreachable"`)
		allSame(t)
	})
	t.Run("follower restarted during the outage", func(t *testing.T) {
		fl := f.followers[0]
		waitSnapshotFile(t, fl.Server, fl.Options.Snapshot)
		began := time.Now()
		if err := fl.Restart(t); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("the restarted follower took %s to be ready, not at once", took)
		}
		sameAnswers(t, fl.Addr, questions, want)
	})
}

// waitTierErrors waits until every follower counts an error of the kind
// (labels holding kind) for each tier.
func (f *followFleet) waitTierErrors(t *testing.T, kind string) {
	t.Helper()
	wait.Until(t, 15*time.Second, func() error {
		for i, fl := range f.followers {
			for _, tr := range f.tiers {
				if n := fl.MetricWhere("coredns_consul_follower_errors_total", kind, portOf(tr.Listen)); !(n >= 1) {
					return fmt.Errorf("follower %d counts %v errors %s for tier %s", i, n, kind, tr.Listen)
				}
			}
		}
		return nil
	})
}

func (f *followFleet) tierServers() []*corednsproc.Server {
	return each(f.tiers, func(tr *corednsproc.Tier) *corednsproc.Server { return tr.Server })
}

func (f *followFleet) followerServers() []*corednsproc.Server {
	return each(f.followers, func(fl *corednsproc.Follower) *corednsproc.Server { return fl.Server })
}

// TestFollowerBadInput: a follower whose first tier is of another Consul
// cluster, refuses its token, or is not a tier at all serves from the good
// tier after it, says so in its log (no token in it) and counts it in
// coredns_consul_follower_errors_total.
func TestFollowerBadInput(t *testing.T) {
	f := startFollowFleet(t, func(f *followFleet) { consulagent.Populate(t, f.client, 5, 2, 3) })
	other := consulagent.StartProcess(t) // another cluster, with a datacenter of the same name
	consulagent.Register(t, other.Client(), "other-node", "10.66.0.1", &api.AgentService{ID: "only-other", Service: "only-other", Port: 66}, api.HealthPassing)
	otherTier := corednsproc.StartTier(t, corednsproc.TierOptions{Address: other.HTTPAddr, TokenFile: f.tokenFile})
	dnsq.WaitCount(t, otherTier.Addr, "only-other.service.consul.", 1, 30*time.Second)
	const wrongToken = "a-token-the-followers-do-not-hold"
	refusing := corednsproc.StartTier(t, corednsproc.TierOptions{Address: f.consul.Server.HTTPAddr, TokenFile: corednsproc.WriteToken(t, wrongToken)})
	garbage := startGarbage(t)
	seed := waitClusterFile(t, f.tiers[0].Snapshot)

	tests := []struct{ name, bad, kind string }{
		{"a tier of another cluster", otherTier.Listen, "cluster"},
		{"a wrong token", refusing.Listen, "refused"},
		{"not a tier", garbage.addr(), "garbage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The follower ran before: its snapshot file says which cluster
			// it follows, whatever the first tier in its list says.
			path := filepath.Join(t.TempDir(), "follower.snapshot")
			if err := os.WriteFile(path, seed, 0o600); err != nil {
				t.Fatal(err)
			}
			fl := f.addFollower(t, corednsproc.FollowerOptions{Tiers: []string{tc.bad, f.tiers[0].Listen}, Snapshot: path})
			f.mark(t, fl.Addr)
			wait.Until(t, 10*time.Second, func() error {
				if n := fl.MetricWhere("coredns_consul_follower_errors_total", `kind="`+tc.kind+`"`, portOf(tc.bad)); !(n >= 1) {
					return fmt.Errorf("errors of kind %s for %s: %v", tc.kind, tc.bad, n)
				}
				return nil
			})
			if got := dnsq.Count(t, fl.Addr, "only-other.service.consul."); got != -dns.RcodeNameError {
				t.Errorf("only-other, which only the other cluster has: %d answers, want NXDOMAIN", got)
			}
			if err := differences(t, f.tiers[0].Addr, fl.Addr, catalogQuestions([]string{"service-0", "service-4"}, []string{"node-0"}, "consul.")); err != nil {
				t.Errorf("answered otherwise than the good tier:\n%v", err)
			}
			out := fl.Output()
			if !strings.Contains(out, tc.bad) {
				t.Errorf("no log line names %s:\n%s", tc.bad, fl.Tail(30))
			}
			if n := strings.Count(out, tc.bad); n > 5 {
				t.Errorf("%d log lines name %s: one per tier and kind of failure expected", n, tc.bad)
			}
			for _, token := range []string{fleetToken, wrongToken} {
				if strings.Contains(out, token) || strings.Contains(refusing.Output(), token) {
					t.Errorf("a token is in a log")
				}
			}
		})
	}
}

// waitClusterFile waits until the snapshot file at path records the cluster
// it was read from, and returns its bytes.
func waitClusterFile(t *testing.T, path string) []byte {
	t.Helper()
	var data []byte
	wait.Until(t, 30*time.Second, func() error {
		set, err := snapshot.ReadFile(path)
		if err == nil && set.Cluster == "" {
			err = fmt.Errorf("%s records no cluster", path)
		}
		if err == nil {
			data, err = os.ReadFile(path)
		}
		return err
	})
	return data
}
