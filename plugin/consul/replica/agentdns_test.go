package replica

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// selfJSON is the DNS part of a real 1.22.5 agent's /v1/agent/self
// DebugConfig, with a non-default dns_config.
const selfJSON = `{"DNSARecordLimit": 2, "DNSAllowStale": true, "DNSAltDomain": "alt.example", "DNSCacheMaxAge": "0s",
	"DNSDisableCompression": false, "DNSDomain": "mydom", "DNSEnableTruncate": false, "DNSMaxStale": "87600h0m0s",
	"DNSNodeMetaTXT": false, "DNSNodeTTL": "9s", "DNSOnlyPassing": true, "DNSRecursorTimeout": "2s", "DNSRecursors": [],
	"DNSSOA": {"Expire": 86400, "Minttl": 11, "Refresh": 100, "Retry": 600}, "DNSServiceTTL": {"*": "5s", "web*": "7s"},
	"DNSUDPAnswerLimit": 3, "DNSUseCache": false, "HTTPMaxConnsPerClient": 200}`

func TestAgentDNSConvert(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		want    *AgentDNS
		wantErr string
	}{
		{name: "a real agent's", json: selfJSON, want: &AgentDNS{Domain: "mydom", AltDomain: "alt.example",
			ServiceTTL: map[string]time.Duration{"*": 5 * time.Second, "web*": 7 * time.Second}, NodeTTL: 9 * time.Second,
			OnlyPassing: true, ARecordLimit: 2, SOA: SOA{Refresh: 100, Retry: 600, Expire: 86400, Minttl: 11},
			UDPAnswerLimit: 3, Recursors: []string{}, AllowStale: true}},
		{name: "no DebugConfig", json: `{"HTTPMaxConnsPerClient": 200}`},
		{name: "a TTL that is no duration", json: `{"DNSDomain": "consul", "DNSNodeTTL": "soon"}`, wantErr: `DNSNodeTTL "soon"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var j agentDNSJSON
			if err := json.Unmarshal([]byte(tc.json), &j); err != nil {
				t.Fatal(err)
			}
			got, err := j.convert()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one about %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestAgentDNSReread: the agent's DNS settings are handed on once read, and
// again when they change, read every AgentInterval; unchanged, not again.
func TestAgentDNSReread(t *testing.T) {
	cat := newMemCatalog()
	cat.dns.Store(&AgentDNS{Domain: "consul", NodeTTL: time.Second})
	var mu sync.Mutex
	var heard []AgentDNS
	cfg := testConfig()
	cfg.AgentInterval = 10 * time.Millisecond
	cfg.OnAgentDNS = func(a AgentDNS) {
		mu.Lock()
		heard = append(heard, a)
		mu.Unlock()
	}
	_, ev := startMem(t, cat, cfg)
	heardNow := func() []AgentDNS {
		mu.Lock()
		defer mu.Unlock()
		return append([]AgentDNS(nil), heard...)
	}
	ev.waitFor(t, "the first settings", func() bool { return len(heardNow()) == 1 })
	readsAfter := func(n int64) func() bool {
		from := cat.agentReads.Load()
		return func() bool { return cat.agentReads.Load() >= from+n }
	}
	ev.waitFor(t, "the agent read again, unchanged", readsAfter(5))
	cat.dns.Store(&AgentDNS{Domain: "consul", NodeTTL: 2 * time.Second})
	ev.waitFor(t, "the changed settings", func() bool { return len(heardNow()) >= 2 })
	ev.waitFor(t, "the agent read again after the change", readsAfter(5))
	got := heardNow()
	if len(got) != 2 || got[0].NodeTTL != time.Second || got[1].NodeTTL != 2*time.Second {
		t.Fatalf("heard %+v; want node TTL 1s, then 2s once", got)
	}
}

// TestAgentDNSDenied: a token without agent:read follows nothing, said
// once; the catalog is replicated all the same. One that loses it later
// keeps what it followed, said once too.
func TestAgentDNSDenied(t *testing.T) {
	logs := captureLog(t)
	cat := newMemCatalog()
	cat.dns.Store(&AgentDNS{Domain: "consul", NodeTTL: time.Second})
	cat.denyAgent.Store(true)
	var mu sync.Mutex
	heard := 0
	cfg := testConfig()
	cfg.Datacenter = "dc1"
	cfg.AgentInterval = 5 * time.Millisecond
	cfg.OnAgentDNS = func(AgentDNS) { mu.Lock(); heard++; mu.Unlock() }
	_, ev := startMem(t, cat, cfg)
	ev.waitSnap(t, "a snapshot", func(*snapshot.Snapshot) bool { return true })
	from := cat.agentReads.Load()
	ev.waitFor(t, "the agent asked again", func() bool { return cat.agentReads.Load() >= from+20 })
	mu.Lock()
	n := heard
	mu.Unlock()
	if n != 0 {
		t.Errorf("settings heard %d times from an agent that refuses the token", n)
	}
	if got := strings.Count(strings.Join(logs.take(), "\n"), "dns_config is not followed"); got != 1 {
		t.Errorf("said %d times that the agent's dns_config is not followed, want once", got)
	}
}
