package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/consulagent"
	"github.com/coredns-consul/coredns-consul/test/corednsproc"
)

// goroutines reads the goroutine count from the pprof plugin.
func goroutines(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`goroutine profile: total (\d+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no goroutine count in %q", body[:min(len(body), 200)])
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// sockets counts a process's open sockets.
func sockets(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// TestReloads reloads the real CoreDNS 50 times (SIGUSR1) while questions
// run: none fails, and goroutines and sockets return to where they were.
func TestReloads(t *testing.T) {
	const services, instances = 20, 2
	agent := consulagent.Start(t, nil)
	consulagent.Populate(t, consulagent.Client(t, agent), services, instances, 10)
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", corednsproc.FreePort(t))
	server := corednsproc.Start(t, func(p corednsproc.Ports) string {
		return fmt.Sprintf("consul.:%d {\n bind 127.0.0.1\n ready 127.0.0.1:%d\n pprof %s\n consul {\n  address %s\n }\n}\n",
			p.DNS, p.Ready, pprofAddr, agent.HTTPAddr)
	})
	probe := startProber(t, server.Addr, services, instances)
	time.Sleep(2 * time.Second)
	baseGoroutines, baseSockets := goroutines(t, pprofAddr), sockets(t, server.Pid())

	for range 50 {
		if err := syscall.Kill(server.Pid(), syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // the last old instances finish stopping
	probe.halt()
	probe.check("50 reloads")
	g, s := goroutines(t, pprofAddr), sockets(t, server.Pid())
	t.Logf("goroutines %d -> %d, sockets %d -> %d after 50 reloads", baseGoroutines, g, baseSockets, s)
	if g > baseGoroutines+10 {
		t.Errorf("goroutines grew from %d to %d over 50 reloads", baseGoroutines, g)
	}
	if s > baseSockets+5 {
		t.Errorf("sockets grew from %d to %d over 50 reloads", baseSockets, s)
	}
	if out := server.Output(); strings.Count(out, "Reloading") < 50 && strings.Count(out, "plugin/consul: version") < 51 {
		t.Errorf("CoreDNS did not reload 50 times:\n%s", out)
	}
}
