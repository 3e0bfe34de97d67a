package e2e

import (
	"testing"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/dnsq"

	"github.com/miekg/dns"
)

// TestAnswerSize checks what Consul gets wrong for HAProxy: a large answer
// over UDP without EDNS0 fits 512 bytes and says it was cut (TC), so the
// client retries over TCP; with EDNS0 it fills the client's buffer; over TCP
// it holds every instance.
func TestAnswerSize(t *testing.T) {
	agent, client := startAgent(t)
	consulagent.Populate(t, client, 1, 40, 40) // service-0 with 40 instances on 40 nodes
	server := startPlugin(t, agent.HTTPAddr, "node_meta_txt off")

	tests := []struct {
		name      string
		tcp       bool
		bufsize   uint16 // 0: no EDNS0
		truncated bool
		answers   int // exact count, or 0 for "fewer than 40"
	}{
		{"udp without EDNS0", false, 0, true, 0},
		{"udp with EDNS0 1232", false, 1232, true, 0},
		{"udp with EDNS0 8192", false, 8192, false, 40},
		{"tcp", true, 0, false, 40},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []dnsq.Option
			if tc.tcp {
				opts = append(opts, dnsq.TCP)
			}
			if tc.bufsize > 0 {
				opts = append(opts, dnsq.EDNS(tc.bufsize))
			}
			for _, qtype := range []uint16{dns.TypeSRV, dns.TypeA} {
				resp := dnsq.Query(t, server.Addr, "service-0.service.consul.", qtype, opts...)
				resp.Compress = true // as it came over the wire
				size := resp.Len()
				limit := 512
				if tc.bufsize > 0 {
					limit = int(tc.bufsize)
				}
				if !tc.tcp && size > limit {
					t.Errorf("%s: %d bytes over a %d-byte limit", dns.TypeToString[qtype], size, limit)
				}
				if qtype == dns.TypeA && tc.bufsize == 1232 {
					continue // 40 A records fit in 1232 bytes
				}
				if resp.Truncated != tc.truncated {
					t.Errorf("%s: TC = %v, want %v (%d answers, %d bytes)", dns.TypeToString[qtype], resp.Truncated, tc.truncated, len(resp.Answer), size)
				}
				if tc.answers > 0 && len(resp.Answer) != tc.answers {
					t.Errorf("%s: %d answers, want %d", dns.TypeToString[qtype], len(resp.Answer), tc.answers)
				}
				if tc.answers == 0 && (len(resp.Answer) == 0 || len(resp.Answer) >= 40) {
					t.Errorf("%s: %d answers, want some but not all", dns.TypeToString[qtype], len(resp.Answer))
				}
			}
		})
	}
}
