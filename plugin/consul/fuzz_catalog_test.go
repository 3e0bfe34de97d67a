package consul

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// fuzzReader reads a catalog from fuzz input: every value the plugin takes
// from Consul (names, tags, addresses, ports, weights, health, node meta),
// within Consul's ranges and past DNS's limits, so that the fuzzer reaches
// view building and answering with values no fixed catalog holds. A short
// input reads as zeros.
type fuzzReader struct{ data []byte }

func (r *fuzzReader) byte() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *fuzzReader) u16() uint16 { return uint16(r.byte())<<8 | uint16(r.byte()) }

// str is a length byte and as many bytes; a length of 0xf0 or more is a
// long value (60 to 825 bytes), past a label's 63 bytes, a name's 255 and
// a TXT string's 255, that a few bytes of input could not spell.
func (r *fuzzReader) str() string {
	n := int(r.byte())
	if n >= 0xf0 {
		return strings.Repeat(string(rune('a'+n&7)), 60+3*int(r.byte()))
	}
	n = min(n, len(r.data))
	s := string(r.data[:n])
	r.data = r.data[n:]
	return s
}

// addr is none, an IPv4 or IPv6 address, or any string: a hostname, or
// what a broken catalog holds.
func (r *fuzzReader) addr() string {
	switch r.byte() % 4 {
	case 0:
		return ""
	case 1:
		return net.IPv4(10, r.byte(), r.byte(), r.byte()).String()
	case 2:
		return fmt.Sprintf("2001:db8::%x", r.u16())
	}
	return r.str()
}

func (r *fuzzReader) tagged() map[string]string {
	if r.byte()%4 != 0 {
		return nil
	}
	return map[string]string{"lan_ipv4": r.addr(), "lan_ipv6": r.addr()}
}

// options are the Corefile's answer settings the input picks.
func (r *fuzzReader) options() answer.Options {
	o, b := answer.DefaultOptions(), r.byte()
	o.OnlyPassing = b&1 != 0
	o.NodeMetaTXT = b&2 == 0
	o.HAProxyWeights = b&4 != 0
	if b&8 != 0 {
		o.ARecordLimit = int(b >> 4)
	}
	return o
}

// snapshot is a catalog of up to 4 services of up to 8 instances, their
// nodes with meta, and a prepared query for the first service.
func (r *fuzzReader) snapshot() *snapshot.Snapshot {
	dc := "dc1"
	if r.byte()&1 != 0 {
		dc = r.str()
	}
	services := map[string]*snapshot.Service{}
	nodes := map[string]*snapshot.Node{}
	first := ""
	for s := range 1 + int(r.byte()%4) {
		svc := &snapshot.Service{Name: r.str(), Index: uint64(s + 1)}
		if s == 0 {
			first = svc.Name
		}
		for range 1 + int(r.byte()%8) {
			in := r.instance()
			svc.Instances = append(svc.Instances, in)
			if key := snapshot.Key(in.Node); nodes[key] == nil {
				n := &snapshot.Node{Name: in.Node, Address: in.NodeAddress, TaggedAddresses: in.NodeTaggedAddresses}
				for range r.byte() % 3 {
					if n.Meta == nil {
						n.Meta = map[string]string{}
					}
					n.Meta[r.str()] = r.str()
				}
				nodes[key] = n
			}
		}
		services[snapshot.Key(svc.Name)] = svc
	}
	snap := snapshot.New(dc, 0, services, nodes, time.Unix(0, 0))
	snap.Queries = []*snapshot.Query{{ID: "q1", Name: r.str(), Service: snapshot.QueryService{Service: first}}}
	return snap
}

func (r *fuzzReader) instance() snapshot.Instance {
	in := snapshot.Instance{ID: r.str(), Node: r.str(), NodeAddress: r.addr(), Address: r.addr(), Port: r.u16(),
		WeightPassing: int(r.byte()), WeightWarning: int(r.byte()), Health: snapshot.Health(r.byte() % 3)}
	for range r.byte() % 3 {
		in.Tags = append(in.Tags, r.str())
	}
	in.TaggedAddresses, in.NodeTaggedAddresses = r.tagged(), r.tagged()
	return in
}

// fuzzCatalog spells a catalog for fuzzReader, for the seeds: services of
// instances, each instance's node, node address, service address, node
// meta (its first appearance only) and tags.
type fuzzCatalog []fuzzService

type fuzzService struct {
	name      string
	instances []fuzzInstance
}

type fuzzInstance struct {
	node, nodeAddr, addr string
	meta                 [][2]string
}

func (c fuzzCatalog) bytes() []byte {
	out := []byte{0, 0, byte(len(c) - 1)} // options, dc1, services
	str := func(s string) { out = append(append(out, byte(len(s))), s...) }
	addr := func(s string) {
		if s == "" {
			out = append(out, 0)
			return
		}
		out = append(out, 3)
		str(s)
	}
	seen := map[string]bool{}
	for _, svc := range c {
		str(svc.name)
		out = append(out, byte(len(svc.instances)-1))
		for i, in := range svc.instances {
			str(fmt.Sprintf("%s-%d", svc.name, i))
			str(in.node)
			addr(in.nodeAddr)
			addr(in.addr)
			out = append(out, 0x1f, 0x90, 1, 1, 0, 0, 1, 1) // port 8080, weights, passing, no tags or tagged addresses
			if !seen[in.node] {
				seen[in.node] = true
				out = append(out, byte(len(in.meta)))
				for _, kv := range in.meta {
					str(kv[0])
					str(kv[1])
				}
			}
		}
	}
	str("geo")
	return out
}
