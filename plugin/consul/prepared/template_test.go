package prepared

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

func tmpl(name, re string, svc snapshot.QueryService) *snapshot.Query {
	return &snapshot.Query{
		ID:       "tmpl-" + name,
		Name:     name,
		Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch, Regexp: re},
		Service:  svc,
	}
}

// From Consul's TestTemplate_Compile (prepared_query/template_test.go).
func TestCompile(t *testing.T) {
	base := func() *snapshot.Query {
		return tmpl("", "^(hello)there$", snapshot.QueryService{
			Service:        "${name.full}",
			IgnoreCheckIDs: []string{"${match(1)}", "${agent.segment}"},
			Tags:           []string{"${match(1)}", "${agent.segment}"},
		})
	}
	tests := []struct {
		name    string
		edit    func(q *snapshot.Query)
		wantErr string
	}{
		{"not a template", func(q *snapshot.Query) { q.Template.Type = "" }, "bad Template.Type"},
		{"unknown type", func(q *snapshot.Query) { q.Template.Type = "nope" }, "bad Template.Type"},
		{"valid", func(*snapshot.Query) {}, ""},
		{"syntax error", func(q *snapshot.Query) { q.Service.Service = "${name.full" }, "bad format"},
		{"unknown variable", func(q *snapshot.Query) { q.Service.Service = "${name.nope}" }, "unknown variable"},
		{"identifier takes a dash", func(q *snapshot.Query) { q.Service.Service = "${name.full-x}" }, "unknown variable accessed: name.full-x"},
		{"unknown function", func(q *snapshot.Query) { q.Service.Service = "${lower(name.full)}" }, "unknown function"},
		{"bad regexp", func(q *snapshot.Query) { q.Template.Regexp = "^(nope$" }, "bad Regexp"},
		{"bad field in map", func(q *snapshot.Query) { q.Service.NodeMeta = map[string]string{"k": "${"} }, "in Service.NodeMeta[k]"},
		{"bad target", func(q *snapshot.Query) {
			q.Service.Failover.Targets = []snapshot.QueryTarget{{Peer: "${x"}}
		}, "in Service.Failover.Targets[0].Peer"},
		{"divide by zero at the test render", func(q *snapshot.Query) { q.Service.Service = "${1 / 0}" }, "divide by zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := base()
			tt.edit(q)
			_, err := compile(q)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("compile: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("compile error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRenderLeavesDefinition(t *testing.T) {
	q := tmpl("", "^(hello)there$", snapshot.QueryService{
		Service:        "${name.full}",
		IgnoreCheckIDs: []string{"${match(1)}", "${agent.segment}"},
		Tags:           []string{"${match(1)}", "${agent.segment}", ""},
		NodeMeta:       map[string]string{"k": "${match(1)}"},
	})
	q.Template.RemoveEmptyTags = true
	backup := *q
	backup.Service = cloneService(&q.Service)

	got, err := Render(q, "hellothere", "segment-foo")
	if err != nil {
		t.Fatal(err)
	}
	want := snapshot.QueryService{
		Service:        "hellothere",
		IgnoreCheckIDs: []string{"hello", "segment-foo"},
		Tags:           []string{"hello", "segment-foo"},
		NodeMeta:       map[string]string{"k": "hello"},
	}
	if !reflect.DeepEqual(got.Service, want) {
		t.Errorf("rendered %+v, want %+v", got.Service, want)
	}
	if !reflect.DeepEqual(*q, backup) {
		t.Errorf("render changed the definition: %+v", q)
	}
}

// From Consul's TestTemplate_Render.
func TestRender(t *testing.T) {
	allTags := []string{"${match(-1)}", "${match(0)}", "${match(1)}", "${match(2)}", "${match(3)}", "${match(4)}", "${40 + 2}"}
	svc := snapshot.QueryService{
		Service:  "${name.prefix} xxx ${name.full} xxx ${name.suffix} xxx ${agent.segment}",
		Tags:     allTags,
		NodeMeta: map[string]string{"foo": "${match(1)}"},
	}
	tests := []struct {
		name, qname, re, lookup, segment string
		svc                              snapshot.QueryService
		removeEmpty                      bool
		want                             snapshot.QueryService
	}{
		{
			name: "static", re: "", lookup: "unused",
			svc:  snapshot.QueryService{Service: "hellothere"},
			want: snapshot.QueryService{Service: "hellothere"},
		},
		{
			name: "regexp matches", qname: "hello-", re: "^(.*?)-(.*?)-(.*)$", lookup: "hello-foo-bar-none", segment: "segment-bar",
			svc: svc,
			want: snapshot.QueryService{
				Service:  "hello- xxx hello-foo-bar-none xxx foo-bar-none xxx segment-bar",
				Tags:     []string{"", "hello-foo-bar-none", "hello", "foo", "bar-none", "", "42"},
				NodeMeta: map[string]string{"foo": "hello"},
			},
		},
		{
			name: "regexp does not match", qname: "hello-", re: "^(.*?)-(.*?)-(.*)$", lookup: "hello-nope", segment: "segment-bar",
			svc: svc,
			want: snapshot.QueryService{
				Service:  "hello- xxx hello-nope xxx nope xxx segment-bar",
				Tags:     []string{"", "", "", "", "", "", "42"},
				NodeMeta: map[string]string{"foo": ""},
			},
		},
		{
			name: "remove empty tags, match", qname: "hello-", re: "^(.*?)-(.*?)-(.*)$", lookup: "hello-foo-bar-none", segment: "segment-baz",
			svc: snapshot.QueryService{Service: svc.Service, Tags: allTags}, removeEmpty: true,
			want: snapshot.QueryService{
				Service: "hello- xxx hello-foo-bar-none xxx foo-bar-none xxx segment-baz",
				Tags:    []string{"hello-foo-bar-none", "hello", "foo", "bar-none", "42"},
			},
		},
		{
			name: "remove empty tags, no match", qname: "hello-", re: "^(.*?)-(.*?)-(.*)$", lookup: "hello-nope", segment: "segment-baz",
			svc: snapshot.QueryService{Service: svc.Service, Tags: allTags}, removeEmpty: true,
			want: snapshot.QueryService{
				Service: "hello- xxx hello-nope xxx nope xxx segment-baz",
				Tags:    []string{"42"},
			},
		},
		{
			// name.suffix is a case-sensitive TrimPrefix of the query's
			// own Name, while DNS lower-cases the name it looks up.
			name: "suffix is case-sensitive", qname: "Geo-", lookup: "geo-db",
			svc:  snapshot.QueryService{Service: "${name.suffix}", Near: "${name.prefix}"},
			want: snapshot.QueryService{Service: "geo-db", Near: "Geo-"},
		},
		{
			name: "every interpolated field", qname: "x-", re: "^x-(.*)$", lookup: "x-db", segment: "seg",
			svc: snapshot.QueryService{
				Service:        "${match(1)}",
				SamenessGroup:  "${match(1)}",
				Failover:       snapshot.QueryFailover{NearestN: 2, Datacenters: []string{"${agent.segment}"}, Targets: []snapshot.QueryTarget{{Peer: "${match(1)}", Datacenter: "${match(1)}"}}},
				IgnoreCheckIDs: []string{"${match(1)}"},
				Near:           "${match(1)}",
				NodeMeta:       map[string]string{"${match(1)}": "${match(1)}"},
				ServiceMeta:    map[string]string{"k": "${match(1)}"},
				Peer:           "${match(1)}",
			},
			want: snapshot.QueryService{
				Service:        "db",
				SamenessGroup:  "db",
				Failover:       snapshot.QueryFailover{NearestN: 2, Datacenters: []string{"seg"}, Targets: []snapshot.QueryTarget{{Peer: "db", Datacenter: "db"}}},
				IgnoreCheckIDs: []string{"db"},
				Near:           "db",
				NodeMeta:       map[string]string{"${match(1)}": "db"}, // keys are not interpolated
				ServiceMeta:    map[string]string{"k": "db"},
				Peer:           "db",
			},
		},
		{
			name: "escapes and expressions", lookup: "a",
			svc:  snapshot.QueryService{Service: `$${name.full} $$ $ ${ "q\"s" }${(1+2)*3-10%4}${-1}${ name.full }`},
			want: snapshot.QueryService{Service: `${name.full} $ $ q"s7-1a`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tmpl(tt.qname, tt.re, tt.svc)
			q.Template.RemoveEmptyTags = tt.removeEmpty
			got, err := Render(q, tt.lookup, tt.segment)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Service, tt.want) {
				t.Errorf("rendered\n%#v\nwant\n%#v", got.Service, tt.want)
			}
		})
	}
}

// Templates beyond variables and match(): HIL's expressions, which Consul
// evaluates for any field.
func TestRenderExpressions(t *testing.T) {
	tests := []struct{ qname, expr, name, want string }{
		{"", `${name.full == "a" ? "b" : "c"}`, "a", "b"},
		{"", `${name.full == "a" ? "b" : "c"}`, "x", "c"},
		{"", `${name.full != "a" && name.suffix != ""}`, "x", "true"},
		{"", `${1.5}`, "x", "1.5"},
		{"", `${1.5 + 1}`, "x", "2.5"},
		{"", `${true}`, "x", "true"},
		{"", `${!true}`, "x", "false"},
		{"", `${1 < 2}`, "x", "true"},
		{"", `${1 + 1.5 * 2}`, "x", "4"},
		{"", `${5 % 3}`, "x", "2"},
		{"", `${-1}`, "x", "-1"},
		{"", `${name.full == 1}`, "1", "true"},
		{"", `${match(0.9)}`, "x", "x"},
		{"", `${"${name.full}-${match(0)}"}`, "x", "x-x"},
		// The test render converts the query's own name: it must be a number.
		{"1", `${name.full + 0.5}`, "1", "1.5"},
		{"1", `${name.full > 0.5 ? "big" : "small"}`, "0.25", "small"},
		{"true", `${name.full && true}`, "true", "true"},
	}
	for _, tt := range tests {
		t.Run(tt.expr+" "+tt.name, func(t *testing.T) {
			got, err := Render(tmpl(tt.qname, "^.*$", snapshot.QueryService{Service: tt.expr}), tt.name, "")
			if err != nil {
				t.Fatal(err)
			}
			if got.Service.Service != tt.want {
				t.Errorf("rendered %q, want %q", got.Service.Service, tt.want)
			}
		})
	}
}

// Consul rejects these at registration: Compile's test render with the
// query's own name fails (template.go:91-98).
func TestCompileErrors(t *testing.T) {
	tests := []struct{ qname, expr, wantErr string }{
		{"", "${", "bad format"},
		{"", "${}", "bad format"},
		{"", "${name.full", "bad format"},
		{"", `${"abc}`, "bad format"},
		{"", `${"\x"}`, "bad format"},
		{"", "${match(1}", "bad format"},
		{"", "${1 +}", "bad format"},
		{"", "${=}", "bad format"},
		{"", "${)}", "bad format"},
		{"", "${name.full[0]}", "bad evaluation"},
		{"", "${nope(1)}", "unknown function"},
		{"", "${match(1, 2)}", "bad evaluation"},
		{"", "${name.full + 1}", "bad evaluation"},         // "" is no number
		{"geo-", "${name.full ? 1 : 2}", "bad evaluation"}, // nor a bool
		{"", "${1 % 0}", "bad evaluation"},
		{"", "${1.5 % 2}", "bad evaluation"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := compile(tmpl(tt.qname, "", snapshot.QueryService{Service: tt.expr}))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %.200v, want %q", err, tt.wantErr)
			}
		})
	}
}

// A template that renders for its own name may fail for another, and one
// that turns a string into an integer fails at every render: Consul's first
// render evaluates it again, and HIL wraps the conversion in a second one,
// which panics. Consul fails the query; the caller lets Consul answer it.
func TestRenderErrors(t *testing.T) {
	tests := []struct{ qname, re, expr, lookup, wantErr string }{
		{"true", "", `${name.full ? "a" : "b"}`, "truex", `bad evaluation for '${name.full ? "a" : "b"}' in Service.Tags[1]`},
		{"1", "", "${name.full + 0.5}", "1x", "ParseFloat"},
		{"1", `^(\d+)$`, "${match(1) + 0.5}", "1x", "ParseFloat"}, // no match: "" is no number
		{"7", "", "${name.full + 1}", "7", "HIL panicked"},
		{"7", "", "${-name.full}", "8", "HIL panicked"},
		{"", "", `${match("0")}`, "x", "HIL panicked"},
		{"", "", `${"1" + 1}`, "x", "HIL panicked"}, // constant, yet evaluated again
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			q := tmpl(tt.qname, tt.re, snapshot.QueryService{Tags: []string{"a", tt.expr}})
			_, err := Render(q, tt.lookup, "")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %.200v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestVisitStringsOrder(t *testing.T) {
	// Consul's TestWalk_ServiceQuery, without the Enterprise fields.
	svc := snapshot.QueryService{
		Service:  "the-service",
		Failover: snapshot.QueryFailover{Datacenters: []string{"dc1", "dc2"}},
		Near:     "_agent",
		Tags:     []string{"tag1", "tag2", "tag3"},
		NodeMeta: map[string]string{"foo": "bar", "role": "server"},
	}
	var got []string
	_ = visitStrings(&svc, func(path fieldPath, v *string) error {
		got = append(got, path.String()+":"+*v)
		return nil
	})
	want := []string{
		".Failover.Datacenters[0]:dc1", ".Failover.Datacenters[1]:dc2", ".Near:_agent",
		".NodeMeta[foo]:bar", ".NodeMeta[role]:server", ".Peer:", ".SamenessGroup:",
		".Service:the-service", ".Tags[0]:tag1", ".Tags[1]:tag2", ".Tags[2]:tag3",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("visited %q, want %q", got, want)
	}
}

// TestCompileDeepNesting: HIL's parser has no depth limit and recurses once
// per level, so a template nested a million deep (6 KB in a gzipped snapshot
// file) overflowed the stack, which no recover catches: the snapshot file or
// /v1/query could crash CoreDNS at every start. Consul's own templates nest
// a few levels.
func TestCompileDeepNesting(t *testing.T) {
	deep := 1 << 20
	tests := []struct {
		name, expr string
		wantErr    string
	}{
		{"parentheses", "${" + strings.Repeat("(", deep) + "1" + strings.Repeat(")", deep) + "}", "nested"},
		{"interpolations", strings.Repeat(`${"`, deep) + "x" + strings.Repeat(`"}`, deep), "nested"},
		{"calls", "${" + strings.Repeat("match(", deep) + "1" + strings.Repeat(")", deep) + "}", "nested"},
		{"unbalanced", "${" + strings.Repeat("(", deep), "nested"},
		{"as deep as allowed", "${" + strings.Repeat("(", maxNesting-1) + "1" + strings.Repeat(")", maxNesting-1) + "}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compile(tmpl("", "", snapshot.QueryService{Service: tt.expr}))
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("error = %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %.200v, want %q", err, tt.wantErr)
			}
		})
	}
}
