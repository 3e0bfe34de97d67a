package prepared

import (
	"fmt"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// A kept render answers only its own name and segment, also when names
// share a slot (more names than slots, asked twice over).
func TestRenderCached(t *testing.T) {
	tp, err := compile(tmpl("", "", snapshot.QueryService{Service: "${name.full}/${agent.segment}"}))
	if err != nil {
		t.Fatal(err)
	}
	type lookup struct{ name, segment string }
	var lookups []lookup
	for i := range 3 * renderSlots {
		lookups = append(lookups, lookup{fmt.Sprintf("n%d", i), ""}, lookup{fmt.Sprintf("n%d", i), "seg"})
	}
	for range 2 {
		for _, l := range lookups {
			q, err := tp.renderCached(l.name, l.segment)
			if err != nil {
				t.Fatal(err)
			}
			if want := l.name + "/" + l.segment; q.Service.Service != want {
				t.Fatalf("%+v rendered %q, want %q", l, q.Service.Service, want)
			}
		}
	}
	a, _ := tp.renderCached("again", "")
	b, _ := tp.renderCached("again", "")
	if a != b {
		t.Error("a repeated name was rendered again")
	}
}
