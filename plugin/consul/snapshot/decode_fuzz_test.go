package snapshot_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/prepared"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/miekg/dns"
)

// decodeSeeds are payloads (the JSON, before compression) that crashed or
// hung start-up, and well-formed ones to mutate from.
var decodeSeeds = []string{
	`{"Local":"dc1","Datacenters":[{"Datacenter":"dc1","Services":{"web":null}}]}`,
	`{"Local":"dc1","Datacenters":[{"Datacenter":"dc1","Nodes":{"n1":null}}]}`,
	`{"Local":"dc1","Datacenters":[{"Datacenter":"dc1","Queries":[null]}]}`,
	`{"Local":"dc1","Datacenters":[{"Datacenter":"dc1","Coordinates":[null,{"Node":"n1","Coord":{"Vec":[1],"Height":0}}]}]}`,
	`{"Local":"dc1","Datacenters":[{"Datacenter":"dc1","Queries":[{"ID":"q","Name":"","Template":{"Type":"name_prefix_match"},"Service":{"Service":"${` + strings.Repeat("(", 200) + `}"}}]}]}`,
	`{"Local":"dc1","Datacenters":[{"Datacenter":"dc1","Services":{"web":{"Name":"web","Instances":[{"Node":"` + strings.Repeat("n", 70) + `","Address":"a..b","Port":1,"Meta":{"k":"` + strings.Repeat("v", 300) + `"}}]}}}]}`,
	`{"Local":"dc1","Datacenters":[{"Datacenter":"dc1","Services":{"web":{"Name":"web","Instances":[{"Checks":[{"ID":"c","Health":9}],"Health":7}]}}}]}`,
}

// FuzzDecode fuzzes the payload of a snapshot file, framed with a valid
// checksum so that it reaches the JSON decoder, and what Decode accepts is
// made a view and asked questions, as start-up does with the file. v1 reads
// it as a version 1 file (one snapshot); raw hands it to Decode as it is,
// for the header's checks.
func FuzzDecode(f *testing.F) {
	good, err := json.Marshal(snapshot.Sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, false, false)
	f.Add(good[:len(good)/2], false, false)
	dc1, _ := json.Marshal(snapshot.Sample().Snapshot("dc1"))
	f.Add(dc1, true, false)
	for _, s := range decodeSeeds {
		f.Add([]byte(s), false, false)
	}
	f.Fuzz(func(t *testing.T, payload []byte, v1, raw bool) {
		data := payload
		if !raw {
			version := uint32(snapshot.FileVersion)
			if v1 {
				version = 1
			}
			var z bytes.Buffer
			// Stored, not compressed: the fuzzer's time goes to the
			// plugin's code, not to deflate's.
			zw, _ := gzip.NewWriterLevel(&z, gzip.NoCompression)
			zw.Write(payload)
			zw.Close()
			data = snapshot.Framed(version, z.Bytes())
		}
		set, err := snapshot.Decode(data)
		if (set == nil) == (err == nil) {
			t.Fatalf("Decode gave set %v and error %v", set, err)
		}
		if err != nil {
			return
		}
		for _, snap := range set.Datacenters {
			askAll(answer.NewView(snap, nil, []string{"consul."}, answer.DefaultOptions()), set)
		}
	})
}

// askAll asks v about a few of each kind of name its snapshot holds. Answers
// that do not pack are the answer package's to prevent; here only a panic
// fails.
func askAll(v *answer.View, set *snapshot.Set) {
	names := []string{"consul.", "nothing.service.consul.", "0a000001.addr.consul."}
	for name := range limit(v.Snap.Services) {
		names = append(names, name+".service.consul.", "_"+name+"._tcp.service.consul.", name+".service."+v.Snap.Datacenter+".consul.")
	}
	for name := range limit(v.Snap.Nodes) {
		names = append(names, name+".node.consul.")
	}
	for _, name := range names {
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT} {
			fqdn := dns.Fqdn(name)
			res := answer.Lookup(v, answer.Question{Name: fqdn, Lower: strings.ToLower(fqdn), Zone: "consul.", Type: qtype})
			m := new(dns.Msg)
			m.SetQuestion(fqdn, qtype)
			m.Answer, m.Extra, m.Ns = res.Answer, res.Extra, res.Ns
			m.Pack()
		}
	}
	for i, q := range v.Snap.Queries {
		if i == 3 {
			break
		}
		for _, name := range []string{q.Name, q.ID, q.Name + "-x"} {
			v.Queries.Execute(prepared.Request{Name: name, Agent: prepared.Agent{Datacenter: set.Local, Node: v.Snap.AgentNode},
				DatacentersByDistance: set.ByDistance}, set.Snapshot)
		}
	}
}

// limit yields at most 3 keys of m: enough kinds of names, few questions.
func limit[T any](m map[string]T) func(func(string) bool) {
	return func(yield func(string) bool) {
		n := 0
		for k := range m {
			if n == 3 || !yield(k) {
				return
			}
			n++
		}
	}
}
