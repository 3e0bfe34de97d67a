package bench

import (
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
)

var profileDir = flag.String("profile", "", "profile CoreDNS under dnsperf load and write cpu-<contender>.pprof and allocs-<contender>.pprof here")

// TestProfileUnderLoad profiles the CoreDNS binary while dnsperf loads it
// with the throughput section's A/SRV mix over 1,000 x 5, for the plugin
// and for whoami, the server's ceiling: where a question's CPU goes, which a
// Go benchmark of the handler alone does not show (the server's goroutine per
// question, its stack growth, scrubbing and packing, the syscalls). Read the
// profiles with `go tool pprof bin/coredns DIR/cpu-plugin.pprof` after
// `make build`.
//
//	go test -run TestProfileUnderLoad -v ./test/bench/ -profile=/tmp/prof
func TestProfileUnderLoad(t *testing.T) {
	if *profileDir == "" {
		t.Skip("a profiling harness: run it with -profile DIR")
	}
	agent := consulagent.StartProcessTLS(t)
	consulagent.Populate(t, agent.Client(), 1000, 5, 200)
	queries := queryMix(t, 800)
	for _, c := range []struct {
		name     string
		corefile corednsproc.Corefile
	}{
		{"plugin", corednsproc.Corefile{ConsulZones: "consul.", Consul: []string{"address " + agent.HTTPAddr}}},
		{"whoami", corednsproc.Corefile{After: []string{"whoami"}}},
	} {
		c.corefile.Zone, c.corefile.Pprof = ".", true
		s := corednsproc.Start(t, c.corefile.Build)
		target := contender{c.name, s.Addr, s.Pid(), true}
		pin(target.pid, "0")
		dnsperf(t, target, queries) // warm up
		done := make(chan perf)
		go func() { done <- dnsperf(t, target, queries) }()
		// The CPU profile covers 8 s of dnsperf's 10.
		fetch(t, "http://"+s.PprofAddr+"/debug/pprof/profile?seconds=8", filepath.Join(*profileDir, "cpu-"+c.name+".pprof"))
		r := <-done
		fetch(t, "http://"+s.PprofAddr+"/debug/pprof/allocs", filepath.Join(*profileDir, "allocs-"+c.name+".pprof"))
		t.Logf("%s: %.0f qps while profiled", c.name, r.qps)
		s.Stop(t)
	}
}

// fetch writes what url answers to path.
func fetch(t *testing.T, url, path string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
