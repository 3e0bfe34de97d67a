package consul

import (
	"context"
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// FuzzServeDNS builds a catalog from fuzz input (fuzzReader), prepares it
// as a published snapshot is, and asks it a fuzzed question over UDP or
// TCP, as the server does (the reply fitted to the client by a ScrubWriter).
// "@" in the question's name stands for the first service's name and "#"
// for the first node's, so that mutated questions keep reaching the
// catalog. Nothing may panic, and the reply must be one a client reads: it
// packs, unpacks, fits the client's size, and answers the name asked.
func FuzzServeDNS(f *testing.F) {
	good := []fuzzInstance{{node: "n1", nodeAddr: "10.0.0.1", meta: [][2]string{{"rack", "r1"}}}, {node: "n2", nodeAddr: "10.0.0.2", addr: "10.1.0.2"}}
	long := strings.Repeat("n", 64)
	for _, c := range []fuzzCatalog{
		{{"web", good}, {"ext", []fuzzInstance{{node: "n1", nodeAddr: "10.0.0.1", addr: "api.example.com"}}}},
		{{"web", append(good, fuzzInstance{node: long, nodeAddr: "10.0.0.3"})}},
		{{"web", append(good, fuzzInstance{node: "n3", nodeAddr: "10.0.0.3", addr: "a..b"})}},
		{{"web", append(good, fuzzInstance{node: "n3", nodeAddr: "10.0.0.3", meta: [][2]string{{"k", strings.Repeat("v", 200)}, {"k2", `a\b"c`}}})}},
		{{"web", append(good, fuzzInstance{node: "n3", nodeAddr: "2001:db8::3", addr: strings.Repeat("abcdefgh.", 28) + "com"})}},
	} {
		for _, q := range []struct {
			name  string
			qtype uint16
		}{
			{"@.service.consul.", dns.TypeSRV}, {"_@._tcp.service.consul.", dns.TypeSRV},
			{"@.service.dc1.consul.", dns.TypeA}, {"#.node.consul.", dns.TypeTXT}, {"#.node.consul.", dns.TypeANY},
			{"0a000001.addr.consul.", dns.TypeA}, {"consul.", dns.TypeNS}, {"geo.query.consul.", dns.TypeSRV},
		} {
			m := new(dns.Msg)
			m.SetQuestion(q.name, q.qtype)
			packed, _ := m.Pack()
			f.Add(c.bytes(), packed, false)
		}
	}
	f.Fuzz(func(t *testing.T, catalog, msg []byte, tcp bool) {
		m := new(dns.Msg)
		if m.Unpack(msg) != nil || len(m.Question) != 1 {
			return // the server drops what does not parse, and asks one question
		}
		r := &fuzzReader{data: catalog}
		c := withLocal(&Consul{Zones: []string{"consul."}, opts: r.options(), Next: test.NextHandler(dns.RcodeRefused, nil)})
		snap := r.snapshot()
		c.publish(snap)
		if !fuzzQuestion(m, snap) {
			return
		}
		w := &packing{discard: discard{test.ResponseWriter{TCP: tcp}}}
		if _, err := c.ServeDNS(context.Background(), request.NewScrubWriter(m, w), m); err != nil {
			t.Fatalf("%v: %v", m.Question[0], err)
		}
		if w.msg == nil {
			return // SERVFAIL or the next plugin's, written by the server
		}
		checkReply(t, m, w.msg, tcp)
	})
}

// fuzzQuestion puts the catalog's names in m's question for "@" (the first
// service) and "#" (the first node); false when that is no name a client
// could send.
func fuzzQuestion(m *dns.Msg, snap *snapshot.Snapshot) bool {
	name := m.Question[0].Name
	if strings.ContainsAny(name, "@#") {
		for _, svc := range snap.Services {
			name = strings.ReplaceAll(name, "@", svc.Name)
			if len(svc.Instances) > 0 {
				name = strings.ReplaceAll(name, "#", svc.Instances[0].Node)
			}
			break
		}
	}
	if _, ok := dns.IsDomainName(name); !ok || !dns.IsFqdn(name) {
		return false
	}
	m.Question[0].Name = name
	return true
}

// checkReply fails t unless reply, as the server would send it to the
// client that asked q, is one the client can read.
func checkReply(t *testing.T, q, reply *dns.Msg, tcp bool) {
	t.Helper()
	packed, err := reply.Pack()
	if err != nil {
		t.Fatalf("the reply to %v does not pack: %v", q.Question[0], err)
	}
	var read dns.Msg
	if err := read.Unpack(packed); err != nil {
		t.Fatalf("the reply to %v packs to what a client cannot read: %v\n%v", q.Question[0], err, reply)
	}
	client := request.Request{Req: q, W: &test.ResponseWriter{TCP: tcp}}
	if size := client.Size(); len(packed) > size {
		t.Fatalf("the reply to %v takes %d bytes, over the client's %d", q.Question[0], len(packed), size)
	}
	for _, rr := range read.Answer {
		if len(read.Question) == 0 || !strings.EqualFold(rr.Header().Name, read.Question[0].Name) {
			t.Fatalf("the reply to %v answers another name: %v", q.Question[0], rr)
		}
	}
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
