package consul

import (
	"context"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary messages to the request path: it must never
// panic, and whatever it writes must pack.
func FuzzServeDNS(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"web.service.consul.", dns.TypeSRV}, {"_web._tcp.service.consul.", dns.TypeSRV},
		{"v1.web.service.dc1.dc.consul.", dns.TypeA}, {"n1.node.consul.", dns.TypeTXT},
		{"0a000001.addr.consul.", dns.TypeA}, {"consul.", dns.TypeSOA}, {"x.query.consul.", dns.TypeA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		packed, _ := m.Pack()
		f.Add(packed)
	}
	c := withLocal(&Consul{Zones: []string{"consul."}, opts: answer.DefaultOptions(), Next: test.NextHandler(dns.RcodeRefused, nil)})
	c.publish(testSnapshot())
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if m.Unpack(data) != nil || len(m.Question) != 1 {
			return // the server drops what does not parse, and asks one question
		}
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		c.ServeDNS(context.Background(), rec, m)
		if rec.Msg != nil {
			if _, err := rec.Msg.Pack(); err != nil {
				t.Fatalf("answer to %v does not pack: %v", m.Question[0], err)
			}
		}
	})
}

// FuzzParse feeds arbitrary Corefile blocks to the parser: an error or a
// config, never a panic.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"consul",
		"consul consul. alt.\n",
		"consul {\n address 127.0.0.1:8500 https://h:8501\n token t\n service_ttl web* 5s\n guard 0.5 1m\n}",
		"consul {\n snapshot /tmp/x 1s\n max_stale 1h\n stale_ttl 5s\n srv_weights haproxy\n fallthrough\n}",
		"consul {\n tls a b c\n consistency stale\n max_watchers 10\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		c := caddy.NewTestController("dns", input)
		c.ServerBlockKeys = []string{"consul.:53"}
		cfg, err := parse(c)
		if err == nil && cfg == nil {
			t.Fatal("no config and no error")
		}
	})
}
