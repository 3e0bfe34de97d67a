package consul

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/hashicorp/consul/api"
)

// TestFeedLend follows a reload that changes how Consul is read: the old
// block's replica (p, made for d1) is lent to the new block's datacenter d2
// until the new replica (n) publishes, and stopped by whichever block is
// left to stop it, once.
func TestFeedLend(t *testing.T) {
	noLeaks(t)
	s1, s2, s3 := sized(1, 1), sized(2, 2), sized(3, 3)
	type step func(p, n *feed, d1, d2 *datacenter)
	var (
		pPublishes = func(s *snapshot.Snapshot) step { return func(p, _ *feed, _, _ *datacenter) { p.publish(s) } }
		nPublishes = func(s *snapshot.Snapshot) step { return func(_, n *feed, _, _ *datacenter) { n.publish(s) } }
		oldStops   = func(_, _ *feed, d1, _ *datacenter) { d1.stop() }
		newStops   = func(_, _ *feed, _, d2 *datacenter) { d2.stop() }
		takenBack  = func(p, _ *feed, d1, _ *datacenter) { p.serve(d1) }
	)
	tests := []struct {
		name           string
		steps          []step
		d1, d2         *snapshot.Snapshot // served at the end
		pStops, nStops bool
	}{
		{"the old replica feeds the new block until the new one publishes",
			[]step{pPublishes(s1), nPublishes(s2), pPublishes(s3)}, s3, s2, false, false},
		{"the old block shuts down, then the new replica publishes",
			[]step{pPublishes(s1), oldStops, nPublishes(s2)}, nil, s2, true, false},
		{"the new replica publishes, then the old block shuts down",
			[]step{nPublishes(s2), oldStops}, nil, s2, true, false},
		{"the reload fails: the old block takes its replica back",
			[]step{takenBack, pPublishes(s1), nPublishes(s2), newStops}, s1, s2, false, true},
		{"the new block stops before its replica published, the old one shut down",
			[]step{oldStops, newStops}, nil, nil, true, true},
		{"the new block stops before its replica published, the old one runs on",
			[]step{newStops, pPublishes(s1)}, s1, nil, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d1, d2 := testDatacenter(), testDatacenter()
			p, n := unstartedFeed(t, d1), unstartedFeed(t, d2)
			p.serve(d1)
			n.predecessor = p
			n.serve(d2)
			for _, step := range tc.steps {
				step(p, n, d1, d2)
			}
			if d1.current() != tc.d1 || d2.current() != tc.d2 {
				t.Errorf("serving %v and %v, want %v and %v", d1.current(), d2.current(), tc.d1, tc.d2)
			}
			if p.isStopped() != tc.pStops || n.isStopped() != tc.nStops {
				t.Errorf("stopped: old %v, new %v; want %v, %v", p.isStopped(), n.isStopped(), tc.pStops, tc.nStops)
			}
			d1.stop()
			d2.stop()
			if !p.isStopped() || !n.isStopped() {
				t.Errorf("a replica runs on once both blocks stopped: old stopped %v, new %v", p.isStopped(), n.isStopped())
			}
		})
	}
}

// TestFeedReloadChain follows reloads that come faster than a new replica
// syncs: d1's replica f1 is lent to d2 (whose settings changed, replica f2);
// d3 keeps d2's settings (f2 handed over); d4 changes them again (f4). Every
// replica but the newest running one stops, whichever publishes first.
func TestFeedReloadChain(t *testing.T) {
	for _, publisher := range []string{"f2", "f4"} {
		t.Run(publisher+" publishes first", func(t *testing.T) {
			noLeaks(t)
			d1, d2, d3, d4 := testDatacenter(), testDatacenter(), testDatacenter(), testDatacenter()
			f1 := unstartedFeed(t, d1)
			f1.serve(d1)
			f2 := unstartedFeed(t, d2)
			f2.predecessor = f1
			f2.serve(d2)
			d1.stop()
			d3.feed = f2 // the same settings: handed over
			f2.serve(d3)
			d2.stop()
			f4 := unstartedFeed(t, d4)
			f4.predecessor = f2
			f4.serve(d4)
			d3.stop()
			if publisher == "f2" {
				f2.publish(sized(2, 2))
			}
			f4.publish(sized(4, 4))
			if d4.current() == nil {
				t.Error("the newest block serves nothing")
			}
			if !f1.isStopped() || !f2.isStopped() || f4.isStopped() {
				t.Errorf("stopped: f1 %v, f2 %v, f4 %v; want only f4 running", f1.isStopped(), f2.isStopped(), f4.isStopped())
			}
			d4.stop()
			if !f4.isStopped() {
				t.Error("f4 runs on once its block stopped")
			}
		})
	}
}

func testDatacenter() *datacenter {
	return &datacenter{label: "local", zones: []string{"consul."}, opts: answer.DefaultOptions()}
}

// unstartedFeed is the feed of d, whose Consul never answers.
func unstartedFeed(t *testing.T, d *datacenter) *feed {
	t.Helper()
	rc := replica.DefaultConfig()
	rc.Addresses = []string{"127.0.0.1:1"}
	rc.LivenessInterval = 0
	f, err := newFeed(&api.Config{Address: "127.0.0.1:1"}, rc, readSettings{}, d, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.feed = f
	return f
}

// TestReadSettings checks what makes a reload keep a replica: every setting
// of the replica and the client counts, callbacks do not, and neither does
// the transport each parse makes; the token and TLS files count by their
// names, not their contents, which the running replica follows itself.
func TestReadSettings(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func() (*api.Config, replica.Config) {
		client := api.DefaultConfig()
		client.TokenFile = token
		return client, replica.DefaultConfig()
	}
	client, rc := base()
	want := settingsOf(client, rc, nil)

	same := map[string]func(*api.Config, *replica.Config){
		"a transport of its own": func(c *api.Config, _ *replica.Config) { c.Transport = api.DefaultConfig().Transport },
		"callbacks": func(_ *api.Config, r *replica.Config) {
			r.Observer, r.OnDatacenters, r.OnCluster, r.Pool = observer{dc: "x"}, func([]string, []string) {}, func(string) {}, replica.NewPool()
		},
	}
	for name, change := range same {
		client, rc := base()
		change(client, &rc)
		if got := settingsOf(client, rc, nil); !got.equal(&want) {
			t.Errorf("%s: a new replica", name)
		}
	}

	// Every other field of either config, each set to a value of its own.
	callbacks := map[string]bool{"Observer": true, "OnDatacenters": true, "OnCluster": true, "Pool": true, "Transport": true, "HttpClient": true, "OnAgentDNS": true, "OnPeerings": true}
	for _, config := range []string{"client", "replica"} {
		client, rc := base()
		v := reflect.ValueOf(client).Elem()
		if config == "replica" {
			v = reflect.ValueOf(&rc).Elem()
		}
		for i := range v.NumField() {
			field := v.Type().Field(i)
			if callbacks[field.Name] || !field.IsExported() {
				continue
			}
			client, rc := base()
			f := reflect.ValueOf(client).Elem().FieldByName(field.Name)
			if config == "replica" {
				f = reflect.ValueOf(&rc).Elem().FieldByName(field.Name)
			}
			if !setOther(f) {
				t.Fatalf("%s.%s: a field of a kind the test cannot change", config, field.Name)
			}
			if got := settingsOf(client, rc, nil); got.equal(&want) {
				t.Errorf("%s.%s changed, and the replica is kept", config, field.Name)
			}
		}
	}

	if err := os.WriteFile(token, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	client, rc = base()
	if renewed := settingsOf(client, rc, nil); !renewed.equal(&want) {
		t.Error("the token file was renewed in place, and a new replica is made")
	}
}

// setOther changes v to another value; false for a kind it does not know.
func setOther(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() && setOther(v.Field(i)) {
				return true
			}
		}
		return false
	default:
		return false
	}
	return true
}
