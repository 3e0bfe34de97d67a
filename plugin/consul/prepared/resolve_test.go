package prepared

import (
	"errors"
	"strings"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

const (
	staticID = "a0f2c4e6-1111-2222-3333-444455556666"
	tmpl1ID  = "b0f2c4e6-1111-2222-3333-444455556666"
	tmpl2ID  = "c0f2c4e6-1111-2222-3333-444455556666"
)

// The queries of Consul's TestStateStore_PreparedQueryResolve, plus a
// catch-all.
func resolveSet(catchAll bool) *Set {
	queries := []*snapshot.Query{
		{ID: staticID, Name: "my-test-query", Service: snapshot.QueryService{Service: "redis"}},
		{ID: tmpl1ID, Name: "prod-", Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch},
			Service: snapshot.QueryService{Service: "${name.suffix}"}},
		{ID: tmpl2ID, Name: "prod-redis", Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch, Regexp: "^prod-(.*)$"},
			Service: snapshot.QueryService{Service: "${match(1)}-primary"}},
		{ID: "d0f2c4e6-1111-2222-3333-444455556666", Name: "cmp-", Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch},
			Service: snapshot.QueryService{Service: "${name.full == 1}"}},
		{ID: "70f2c4e6-1111-2222-3333-444455556666", Name: "7", Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch},
			Service: snapshot.QueryService{Service: "${name.full + 0.5}"}},
		{ID: "80f2c4e6-1111-2222-3333-444455556666", Name: "bad-", Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch},
			Service: snapshot.QueryService{Service: "${name.full ? 1 : 2}"}},
	}
	if catchAll {
		queries = append(queries, &snapshot.Query{ID: "e0f2c4e6-1111-2222-3333-444455556666",
			Template: snapshot.QueryTemplate{Type: templateTypeNamePrefixMatch},
			Service:  snapshot.QueryService{Service: "${name.full}"}})
	}
	return NewSet(&snapshot.Snapshot{Datacenter: "dc1", Queries: queries}, nil)
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name     string
		catchAll bool
		lookup   string
		wantID   string
		wantSvc  string
		wantErr  error  // errors.Is
		errText  string // or Contains
	}{
		{name: "by ID", lookup: staticID, wantID: staticID, wantSvc: "redis"},
		{name: "by ID, upper case", lookup: strings.ToUpper(staticID), wantID: staticID, wantSvc: "redis"},
		{name: "by name", lookup: "my-test-query", wantID: staticID, wantSvc: "redis"},
		{name: "by name, case-insensitive", lookup: "MY-Test-Query", wantID: staticID, wantSvc: "redis"},
		{name: "unknown UUID", lookup: "f0f2c4e6-1111-2222-3333-444455556666", wantErr: ErrNotFound},
		{name: "unknown name", lookup: "nope", wantErr: ErrNotFound},
		{name: "empty", lookup: "", errText: "missing query ID"},
		{name: "shorter prefix", lookup: "prod-mongodb", wantID: tmpl1ID, wantSvc: "mongodb"},
		{name: "longer prefix", lookup: "prod-redis-foobar", wantID: tmpl2ID, wantSvc: "redis-foobar-primary"},
		{name: "template by exact name", lookup: "prod-redis", wantID: tmpl2ID, wantSvc: "redis-primary"},
		{name: "exact template prefix renders empty", lookup: "prod-", wantID: tmpl1ID, wantSvc: ""},
		{name: "prefix is case-insensitive", lookup: "PROD-x", wantID: tmpl1ID, wantSvc: "PROD-x"},
		{name: "template by ID", lookup: tmpl1ID, errText: "only be resolved up by name"},
		{name: "catch-all", catchAll: true, lookup: "anything", wantID: "e0f2c4e6-1111-2222-3333-444455556666", wantSvc: "anything"},
		{name: "catch-all loses to a longer prefix", catchAll: true, lookup: "prod-db", wantID: tmpl1ID, wantSvc: "db"},
		{name: "any HIL expression", lookup: "cmp-x", wantID: "d0f2c4e6-1111-2222-3333-444455556666", wantSvc: "false"},
		{name: "render fails", lookup: "7x", wantErr: ErrTemplate},
		{name: "compile failed", lookup: "bad-x", errText: "does not compile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := resolveSet(tt.catchAll).Resolve(tt.lookup, "")
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			case tt.errText != "":
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("error = %v, want %q", err, tt.errText)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if q.ID != tt.wantID || q.Service.Service != tt.wantSvc {
				t.Errorf("resolved %s/%q, want %s/%q", q.ID, q.Service.Service, tt.wantID, tt.wantSvc)
			}
		})
	}
}

func TestNewSetReusesTemplates(t *testing.T) {
	first := resolveSet(false)
	q := first.snap.Queries[1]
	next := NewSet(&snapshot.Snapshot{Queries: []*snapshot.Query{q}}, first)
	if next.byPtr[q] != first.byPtr[q] {
		t.Error("template compiled again for the same query")
	}
	copied := *q
	other := NewSet(&snapshot.Snapshot{Queries: []*snapshot.Query{&copied}}, first)
	if other.byPtr[&copied] == first.byPtr[q] {
		t.Error("a different query took another's template")
	}
}

func TestFindReturnsDefinition(t *testing.T) {
	set := resolveSet(false)
	q, err := set.Find("prod-x")
	if err != nil || q != set.snap.Queries[1] {
		t.Fatalf("Find = %v, %v", q, err)
	}
}

// agent/dns.go:1039-1054.
func TestQueryName(t *testing.T) {
	tests := []struct {
		labels []string
		want   string
	}{
		{nil, ""},
		{[]string{"geo-db"}, "geo-db"},
		{[]string{"my", "dotted", "query"}, "my.dotted.query"},
		{[]string{"_geo-db", "_tcp"}, "geo-db"},
		{[]string{"_my", "dotted", "_udp"}, "my.dotted"},
		{[]string{"_geo-db"}, "_geo-db"},
		{[]string{"_geo-db", "tcp"}, "_geo-db.tcp"},
		{[]string{"geo-db", "_tcp"}, "geo-db._tcp"},
	}
	for _, tt := range tests {
		if got := QueryName(tt.labels); got != tt.want {
			t.Errorf("QueryName(%q) = %q, want %q", tt.labels, got, tt.want)
		}
	}
}
