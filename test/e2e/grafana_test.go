package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestGrafanaDashboard checks deploy/grafana/coredns-consul.json: it is a
// dashboard Grafana imports (a schema version, a Prometheus data source
// chosen by variable), its panels do not overlap, every variable it uses is
// defined, every metric its queries use is one the plugin exports (the check
// the alert rules go through), and it shows what an operator looks at first.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "grafana", "coredns-consul.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID           string `json:"uid"`
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name, Type string
				Query      any
				Datasource *struct{ Type, UID string }
			}
		}
		Panels []panel
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want both and a schema of Grafana 9 or later", dash.UID, dash.Title, dash.SchemaVersion)
	}

	metrics := pluginMetrics(t)
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			if v.Query != "prometheus" {
				t.Errorf("data source variable %s picks %v, not prometheus", v.Name, v.Query)
			}
		case "query":
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s does not query the chosen data source", v.Name)
			}
			q, _ := json.Marshal(v.Query)
			metrics.check(t, "variable "+v.Name, string(q))
		}
	}
	if !vars["datasource"] {
		t.Fatal("no datasource variable: the dashboard would be tied to one data source")
	}

	used := map[string]bool{}
	var placed []panel
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				placed = append(placed, p)
				continue
			}
			where := fmt.Sprintf("panel %q", p.Title)
			if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
				t.Errorf("%s: data source %q, %d queries", where, p.Datasource.UID, len(p.Targets))
			}
			for _, target := range p.Targets {
				if target.Datasource.UID != "${datasource}" {
					t.Errorf("%s: a query on data source %q", where, target.Datasource.UID)
				}
				if metrics.check(t, where, target.Expr) == 0 {
					t.Errorf("%s: query %q uses no metric", where, target.Expr)
				}
				for _, m := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(target.Expr, -1) {
					if !vars[m[1]] {
						t.Errorf("%s: query uses $%s, which the dashboard does not define", where, m[1])
					}
				}
				for _, m := range regexp.MustCompile(`coredns_\w+`).FindAllString(target.Expr, -1) {
					used[m] = true
				}
			}
			placed = append(placed, p)
		}
	}
	walk(dash.Panels)
	for i, a := range placed {
		if a.GridPos.W <= 0 || a.GridPos.X < 0 || a.GridPos.X+a.GridPos.W > 24 {
			t.Errorf("panel %q %v is outside Grafana's 24 columns", a.Title, a.GridPos)
		}
		for _, b := range placed[i+1:] {
			if a.GridPos.overlaps(b.GridPos) {
				t.Errorf("panels %q %v and %q %v overlap", a.Title, a.GridPos, b.Title, b.GridPos)
			}
		}
	}

	// What the dashboard is for: staleness, Consul's errors, the catalog,
	// publish delay, stale and expired answers, the guard.
	for _, m := range []string{
		"coredns_consul_last_contact_timestamp_seconds", "coredns_consul_snapshot_timestamp_seconds",
		"coredns_consul_stale", "coredns_consul_request_errors_total", "coredns_consul_services",
		"coredns_consul_publish_delay_seconds_bucket", "coredns_consul_stale_answers_total",
		"coredns_consul_expired_answers_total", "coredns_consul_guard_holding",
		"coredns_consul_watched_services", "coredns_consul_unwatched_services",
	} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

type panel struct {
	Type, Title string
	Datasource  struct{ UID string }
	GridPos     gridPos
	Targets     []struct {
		Expr       string
		Datasource struct{ UID string }
	}
	Panels []panel
}

type gridPos struct{ H, W, X, Y int }

func (a gridPos) overlaps(b gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}
