package answer

import (
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// TestUnrepresentableValues: a catalog value DNS cannot carry leaves out the
// records that would carry it, and only those: the answer packs, and keeps
// every good instance.
func TestUnrepresentableValues(t *testing.T) {
	good := snapshot.Instance{ID: "good", Node: "n1", NodeAddress: "10.0.0.1", Port: 80}
	long := strings.Repeat("x", 64)
	tests := []struct {
		name string
		bad  snapshot.Instance
		meta map[string]string // of the bad instance's node
		// srv: SRV records wanted (the good one, and the bad one if DNS can
		// carry it); a: A records wanted.
		srv, a int
		reason string
	}{
		{"node name over 63 bytes", snapshot.Instance{ID: "bad", Node: long, NodeAddress: "10.0.0.2", Port: 80}, nil, 1, 2, reasonLongLabel},
		{"node name making the target over 255 bytes", snapshot.Instance{ID: "bad", Node: strings.Repeat("abcdefghi.", 24) + "abcdefghi", NodeAddress: "10.0.0.2", Port: 80}, nil, 1, 2, reasonLongName},
		{"hostname with an empty label", snapshot.Instance{ID: "bad", Node: "n2", NodeAddress: "10.0.0.2", Address: "a..b", Port: 80}, nil, 1, 1, reasonEmptyLabel},
		{"hostname over 255 bytes", snapshot.Instance{ID: "bad", Node: "n2", NodeAddress: "10.0.0.2", Address: strings.Repeat("abcdefghi.", 26) + "com", Port: 80}, nil, 1, 1, reasonLongName},
		{"hostname with a label over 63 bytes", snapshot.Instance{ID: "bad", Node: "n2", NodeAddress: "10.0.0.2", Address: long + ".example.com", Port: 80}, nil, 1, 1, reasonLongLabel},
		{"node meta over 255 bytes is split", snapshot.Instance{ID: "bad", Node: "n2", NodeAddress: "10.0.0.2", Port: 80}, map[string]string{"k": strings.Repeat("v", 512)}, 2, 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := map[string]*snapshot.Node{
				"n1":                      {Name: "n1", Address: "10.0.0.1"},
				snapshot.Key(tc.bad.Node): {Name: tc.bad.Node, Address: tc.bad.NodeAddress, Meta: tc.meta},
			}
			svc := &snapshot.Service{Name: "web", Instances: []snapshot.Instance{good, tc.bad}}
			v := NewView(catalog(map[string]*snapshot.Service{"web": svc}, nodes), nil, zones, DefaultOptions())
			for _, qt := range []struct {
				qtype uint16
				want  int
			}{{dns.TypeSRV, tc.srv}, {dns.TypeA, tc.a}} {
				q := "web.service.consul."
				res := Lookup(v, Question{Name: q, Lower: q, Zone: "consul.", Type: qt.qtype})
				m := new(dns.Msg)
				m.SetQuestion(q, qt.qtype)
				m.Rcode, m.Answer, m.Extra, m.Ns = res.Rcode, res.Answer, res.Extra, res.Ns
				packed, err := m.Pack()
				if err != nil {
					t.Fatalf("%s: the answer does not pack: %v", dns.TypeToString[qt.qtype], err)
				}
				if err := new(dns.Msg).Unpack(packed); err != nil {
					t.Fatalf("%s: the answer packs to what a client cannot read: %v", dns.TypeToString[qt.qtype], err)
				}
				if res.Rcode != dns.RcodeSuccess || len(res.Answer) != qt.want {
					t.Errorf("%s: rcode %d, %d answers, want %d", dns.TypeToString[qt.qtype], res.Rcode, len(res.Answer), qt.want)
				}
			}
			if got := v.Dropped[tc.reason]; tc.reason != "" && got == 0 {
				t.Errorf("nothing counted as %s: %v", tc.reason, v.Dropped)
			}
		})
	}
}

// TestNilEntries: a snapshot with nil services, nodes or queries (a broken
// snapshot file) is prepared and answered without them.
func TestNilEntries(t *testing.T) {
	snap := catalog(map[string]*snapshot.Service{"web": web(80)}, map[string]*snapshot.Node{})
	// Past snapshot.New, as Decode hands a file's over.
	snap.Services["gone"], snap.Nodes["n1"], snap.Queries = nil, nil, []*snapshot.Query{nil}
	v := NewView(snap, nil, zones, DefaultOptions())
	for _, q := range []string{"web.service.consul.", "gone.service.consul.", "n1.node.consul."} {
		for _, qtype := range []uint16{dns.TypeSRV, dns.TypeA, dns.TypeTXT} {
			Lookup(v, Question{Name: q, Lower: q, Zone: "consul.", Type: qtype})
		}
	}
	if q, _ := v.Queries.Find("x"); q != nil {
		t.Error("a nil query was found")
	}
}
