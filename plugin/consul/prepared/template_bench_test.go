package prepared

import (
	"fmt"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// Consul's bigBench and smallBench (prepared_query/template_test.go): every
// feature of templates, and a minimal geo failover template.
var (
	bigBench = &snapshot.Query{
		Name: "hello",
		Template: snapshot.QueryTemplate{
			Type: templateTypeNamePrefixMatch, Regexp: "^hello-(.*)-(.*)$", RemoveEmptyTags: true,
		},
		Service: snapshot.QueryService{
			Service:        "${name.full}",
			Failover:       snapshot.QueryFailover{Datacenters: allVariables},
			IgnoreCheckIDs: allVariables,
			Tags:           allVariables,
			NodeMeta: map[string]string{
				"foo": "${name.prefix}", "bar": "${match(0)}", "baz": "${match(1)}", "zoo": "${agent.segment}",
			},
		},
	}
	allVariables = []string{
		"${name.full}", "${name.prefix}", "${name.suffix}",
		"${match(0)}", "${match(1)}", "${match(2)}", "${agent.segment}",
	}
	smallBench = &snapshot.Query{
		Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch},
		Service: snapshot.QueryService{
			Service:  "${name.full}",
			Failover: snapshot.QueryFailover{Datacenters: []string{"dc1", "dc2", "dc3"}},
		},
	}
)

func BenchmarkTemplateRender(b *testing.B) {
	for _, bc := range []struct {
		name  string
		query *snapshot.Query
	}{
		{"small", smallBench},
		{"big", bigBench},
	} {
		b.Run(bc.name, func(b *testing.B) {
			t, err := compile(bc.query)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := t.render("hello-bench-mark", ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A question for a static query, for the same query made a template, and
// for the template with a name it has not rendered lately.
func BenchmarkExecute(b *testing.B) {
	services := map[string][]string{"web": {"n1", "n2", "n3", "n4"}}
	var fresh []string
	for i := range 4 * renderSlots {
		name := fmt.Sprintf("web%d", i)
		services[name] = services["web"]
		fresh = append(fresh, name+"-v1")
	}
	snap := dcSnapshot("dc1", services)
	snap.Queries = []*snapshot.Query{
		{ID: "q-web", Name: "web", Service: snapshot.QueryService{Service: "web"}},
		{ID: "q-all", Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch, Regexp: "^(.*)-v1$"},
			Service: snapshot.QueryService{Service: "${match(1)}"}},
	}
	set := NewSet(snap, nil)
	none := func(string) *snapshot.Snapshot { return nil }
	for _, bc := range []struct {
		name  string
		names []string
	}{
		{"static", []string{"web"}},
		{"template", []string{"web-v1"}},
		{"template-new-name", fresh},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				res := set.Execute(Request{Name: bc.names[i%len(bc.names)], Shuffle: noShuffle}, none)
				if res.Outcome != Answer || len(res.Instances) != 4 {
					b.Fatalf("%v: %v", res.Outcome, res.Reason)
				}
				i++
			}
		})
	}
}
