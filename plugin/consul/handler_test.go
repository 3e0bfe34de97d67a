package consul

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// withLocal gives c a local datacenter that nothing replicates: tests publish
// its snapshots by hand.
func withLocal(c *Consul) *Consul {
	c.local = &datacenter{label: "local", zones: c.Zones, opts: c.opts, changed: &c.changed}
	return c
}

// ask sends c one question and returns the rcode its answer carries, or the
// one ServeDNS returned when it wrote none (SERVFAIL, or the next plugin's).
func ask(t *testing.T, c *Consul, qname string, qtype uint16) (*dns.Msg, int) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	rcode, err := c.ServeDNS(context.Background(), rec, m)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Msg != nil {
		rcode = rec.Msg.Rcode
	}
	return rec.Msg, rcode
}
