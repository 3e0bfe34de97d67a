package consul

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/inspect"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/caddy"
)

func TestParseInspect(t *testing.T) {
	for _, tc := range []struct {
		line, err string
	}{
		{"inspect 127.0.0.1:9155", ""},
		{"inspect [::1]:9155", ""},
		{"inspect localhost:9155", ""},
		{"inspect 0.0.0.0:9155", "not a loopback address"},
		{"inspect 10.0.0.1:9155", "not a loopback address"},
		{"inspect :9155", "not a loopback address"},
		{"inspect 127.0.0.1", "missing port"},
		{"inspect 127.0.0.1:", "no port"},
		{"inspect", "one loopback address"},
		{"inspect 127.0.0.1:1 127.0.0.1:2", "one loopback address"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			c := caddy.NewTestController("dns", "consul {\n address 127.0.0.1:1\n "+tc.line+"\n}")
			_, err := parse(c)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one saying %q", err, tc.err)
			}
		})
	}
}

func TestInspectEndpoint(t *testing.T) {
	web := &snapshot.Service{Name: "web", Index: 3, Instances: []snapshot.Instance{{ID: "web-1", Node: "n1", NodeAddress: "10.0.0.1", Port: 80}}}
	var set *snapshot.Set
	s := &inspectServer{addr: "127.0.0.1:9155", collect: func() *snapshot.Set { return set }}
	srv := httptest.NewServer(s.handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/snapshot"); code != http.StatusServiceUnavailable {
		t.Errorf("before the first sync: %d %s, want 503", code, body)
	}
	snap := snapshot.New("dc1", 3, map[string]*snapshot.Service{"web": web}, nil, time.Now())
	set = &snapshot.Set{Local: "dc1", Datacenters: []*snapshot.Snapshot{snap}}
	for _, tc := range []struct {
		path      string
		code      int
		instances int // of the service asked, -1 for none asked
	}{
		{"/snapshot", 200, -1},
		{"/snapshot?service=WEB", 200, 1},
		{"/snapshot?services", 200, -1},
		{"/snapshot/service/web", 200, 1},
		{"/snapshot/service/web?dc=dc1", 200, 1},
		{"/snapshot/service/web?dc=dc2", 404, -1},
		{"/other", 404, -1},
	} {
		code, body := get(tc.path)
		if code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.path, code, body, tc.code)
			continue
		}
		if code != 200 {
			continue
		}
		var r inspect.Report
		if err := json.Unmarshal([]byte(body), &r); err != nil || len(r.Datacenters) != 1 || r.Datacenters[0].Services != 1 {
			t.Errorf("%s: %v, %s", tc.path, err, body)
			continue
		}
		if got := r.Datacenters[0].ServiceList; strings.Contains(tc.path, "services") != (len(got) == 1) {
			t.Errorf("%s: service list %+v", tc.path, got)
		}
		if got := r.Datacenters[0].Service; (got == nil) != (tc.instances < 0) || got != nil && len(got.Instances) != tc.instances {
			t.Errorf("%s: service %+v, want %d instances", tc.path, got, tc.instances)
		}
	}
	resp, err := http.Post(srv.URL+"/snapshot", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}
