// Package dnsq asks DNS servers questions for tests and benchmarks, and
// reads their answers: every test asks the same way, so that a timeout or a
// buffer size is chosen once.
package dnsq

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/miekg/dns"
)

// Option changes how a question is asked.
type Option func(*asking)

type asking struct {
	net     string
	bufsize uint16
	timeout time.Duration
}

// TCP asks over TCP, where no answer is cut.
func TCP(a *asking) { a.net = "tcp" }

// EDNS asks with an EDNS0 buffer of size bytes: over UDP, without it an
// answer is cut to 512 bytes.
func EDNS(size uint16) Option { return func(a *asking) { a.bufsize = size } }

// Timeout sets how long to wait for the answer (2 s by default).
func Timeout(d time.Duration) Option { return func(a *asking) { a.timeout = d } }

// Ask sends one question to the server at addr, over UDP unless TCP is
// given.
func Ask(addr, name string, qtype uint16, opts ...Option) (*dns.Msg, error) {
	a := asking{net: "udp", timeout: 2 * time.Second}
	for _, o := range opts {
		o(&a)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if a.bufsize > 0 {
		m.SetEdns0(a.bufsize, false)
	}
	resp, _, err := (&dns.Client{Net: a.net, Timeout: a.timeout, UDPSize: 65535}).Exchange(m, addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s to %s over %s: %w", name, dns.TypeToString[qtype], addr, a.net, err)
	}
	return resp, nil
}

// Query is Ask that fails the test when no answer comes.
func Query(t testing.TB, addr, name string, qtype uint16, opts ...Option) *dns.Msg {
	t.Helper()
	resp, err := Ask(addr, name, qtype, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Count is the number of A records the server at addr answers for name, or
// minus the rcode when it is not NOERROR.
func Count(t testing.TB, addr, name string) int {
	t.Helper()
	return count(Query(t, addr, name, dns.TypeA))
}

func count(m *dns.Msg) int {
	if m.Rcode != dns.RcodeSuccess {
		return -m.Rcode
	}
	return len(m.Answer)
}

// WaitCount waits up to within for Count to be want.
func WaitCount(t testing.TB, addr, name string, want int, within time.Duration) {
	t.Helper()
	Wait(t, addr, name, dns.TypeA, within, func(m *dns.Msg) bool { return count(m) == want })
}

// Wait asks name over TCP until ok accepts the answer, for up to within,
// and returns that answer; the test fails with the last answer otherwise.
func Wait(t testing.TB, addr, name string, qtype uint16, within time.Duration, ok func(*dns.Msg) bool) *dns.Msg {
	t.Helper()
	var last *dns.Msg
	wait.Until(t, within, func() error {
		m, err := Ask(addr, name, qtype, TCP)
		if err != nil {
			return err
		}
		if last = m; !ok(m) {
			return fmt.Errorf("%s %s: still %s", name, dns.TypeToString[qtype], strings.ReplaceAll(m.String(), "\n", " | "))
		}
		return nil
	})
	return last
}

// Records renders a section as sorted "name type data" strings, TTL aside.
func Records(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		out = append(out, h.Name+" "+dns.TypeToString[h.Rrtype]+" "+strings.TrimPrefix(rr.String(), h.String()))
	}
	sort.Strings(out)
	return out
}

// Normalize renders a section as a sorted set of "name type rdata" strings:
// TTL, order, case and duplicates aside, the OPT record and the SOA's serial
// too (Consul's is the time, the plugin's the replicated index).
func Normalize(rrs []dns.RR) []string {
	set := map[string]bool{}
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		if soa, ok := rr.(*dns.SOA); ok {
			c := *soa
			c.Serial = 0
			rr = &c
		}
		set[strings.ToLower(Records([]dns.RR{rr})[0])] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Answered reports whether m is a NOERROR answer with records: an
// instance's absence counts only in an answer that has the others.
func Answered(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 }

// HasA reports whether m's answer holds an A record for ip.
func HasA(m *dns.Msg, ip net.IP) bool {
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok && a.A.Equal(ip) {
			return true
		}
	}
	return false
}

// HasPort reports whether m's answer holds an SRV record for port.
func HasPort(m *dns.Msg, port uint16) bool {
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok && srv.Port == port {
			return true
		}
	}
	return false
}

// TTL is the TTL of m's first answer record, or -1 when it has none.
func TTL(m *dns.Msg) int {
	if len(m.Answer) == 0 {
		return -1
	}
	return int(m.Answer[0].Header().Ttl)
}
