// Package corednsproc builds and runs the real CoreDNS binary from cmd/coredns
// for end-to-end tests and benchmarks: each instance on free loopback ports,
// stopped when the test ends.
package corednsproc

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/dnsq"
	"github.com/coredns-consul/coredns-consul/test/freeport"
	"github.com/coredns-consul/coredns-consul/test/metrics"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/miekg/dns"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Binary returns the CoreDNS binary to test: $COREDNS_BIN when set (the
// Makefile builds it once for every package), else one built from
// cmd/coredns into a temporary directory, once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("COREDNS_BIN"); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "coredns-bin")
		if err != nil {
			buildErr = fmt.Errorf("building coredns: %w", err)
			return
		}
		buildBin = filepath.Join(dir, "coredns")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/coredns")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/coredns: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// FreePort returns a loopback port free for both TCP and UDP.
func FreePort(t testing.TB) int { return freeport.Port(t) }

// Ports are the ports a Corefile is filled with. Metrics and Pprof are free
// for the prometheus and pprof plugins, should the Corefile want them.
type Ports struct {
	DNS, Ready, Metrics, Pprof int
}

// FreePorts picks every port free.
func FreePorts(t testing.TB) Ports {
	return Ports{DNS: FreePort(t), Ready: FreePort(t), Metrics: FreePort(t), Pprof: FreePort(t)}
}

// Corefile is the Corefile of most tests: one server block bound to loopback
// with the ready plugin, optionally prometheus and pprof, and the consul
// plugin with its settings. Build fills it with the ports.
type Corefile struct {
	// Zone is the server block's zone; "consul." when empty.
	Zone string
	// Metrics and Pprof add the prometheus and pprof plugins on their ports.
	Metrics, Pprof bool
	// Plugins are lines of other plugins, before the consul plugin's: log,
	// errors, debug, cache...
	Plugins []string
	// ConsulZones follow the word consul: the zones the plugin answers,
	// when not the server block's.
	ConsulZones string
	// Consul are the consul block's settings, one a line: "address ...",
	// "max_watchers 2". Nil leaves the consul plugin out.
	Consul []string
	// After are lines of plugins after the consul plugin's: whoami,
	// forward.
	After []string
}

// Build writes the Corefile for ports.
func (c Corefile) Build(p Ports) string {
	zone := c.Zone
	if zone == "" {
		zone = "consul."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d {\n    bind 127.0.0.1\n    ready 127.0.0.1:%d\n", zone, p.DNS, p.Ready)
	if c.Metrics {
		fmt.Fprintf(&b, "    prometheus 127.0.0.1:%d\n", p.Metrics)
	}
	if c.Pprof {
		fmt.Fprintf(&b, "    pprof 127.0.0.1:%d\n", p.Pprof)
	}
	lines := func(ls []string) {
		for _, l := range ls {
			b.WriteString("    " + strings.ReplaceAll(l, "\n", "\n    ") + "\n")
		}
	}
	lines(c.Plugins)
	if c.Consul != nil {
		b.WriteString(strings.TrimRight("    consul "+c.ConsulZones, " ") + " {\n")
		for _, s := range c.Consul {
			b.WriteString("        " + s + "\n")
		}
		b.WriteString("    }\n")
	}
	lines(c.After)
	b.WriteString("}\n")
	return b.String()
}

// Server is a running CoreDNS process.
type Server struct {
	// Addr is the DNS listen address, UDP and TCP.
	Addr string
	// ReadyAddr is the ready plugin's HTTP address; MetricsAddr and
	// PprofAddr the prometheus and pprof plugins', if the Corefile has them.
	ReadyAddr, MetricsAddr, PprofAddr string
	Corefile                          string
	Ports                             Ports

	path string // of the Corefile
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// Options say how to run CoreDNS beyond its Corefile.
type Options struct {
	// Ports are where it listens; every one picked free when nil.
	Ports *Ports
	// ReadyWithin is how long it may take to be ready: 30 s when 0; not
	// waited for when negative.
	ReadyWithin time.Duration
	// Progress, when set, is called every 30 s while CoreDNS is not ready.
	Progress func(*Server)
}

// Start runs CoreDNS with the Corefile that corefile returns for freshly
// picked ports, waits until its ready endpoint answers 200 and it answers
// DNS, and stops it when the test ends. The Corefile must use the ready
// plugin on 127.0.0.1:<Ready> and bind the DNS server to 127.0.0.1:<DNS>, as
// Corefile.Build does.
func Start(t testing.TB, corefile func(Ports) string) *Server {
	t.Helper()
	s, err := StartWith(t, Options{}, corefile)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// StartOn is Start on given ports: a CoreDNS restarted where clients such as
// HAProxy expect it.
func StartOn(t testing.TB, ports Ports, corefile func(Ports) string) *Server {
	t.Helper()
	s, err := StartWith(t, Options{Ports: &ports}, corefile)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// StartWith is Start with options; it returns an error, not a failed test,
// when CoreDNS exits or is not ready in time, so that a benchmark can report
// it and go on.
func StartWith(t testing.TB, opts Options, corefile func(Ports) string) (*Server, error) {
	t.Helper()
	ports := FreePorts(t)
	if opts.Ports != nil {
		ports = *opts.Ports
	}
	addr := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	s := &Server{
		Addr: addr(ports.DNS), ReadyAddr: addr(ports.Ready), MetricsAddr: addr(ports.Metrics), PprofAddr: addr(ports.Pprof),
		Ports: ports, Corefile: corefile(ports), path: filepath.Join(t.TempDir(), "Corefile"),
	}
	if err := os.WriteFile(s.path, []byte(s.Corefile), 0o600); err != nil {
		t.Fatal(err)
	}
	s.out = &syncBuffer{}
	s.cmd = exec.Command(Binary(t), "-conf", s.path)
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting coredns: %v", err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("coredns output (last 200 lines):\n%s", s.Tail(200))
		}
	})
	if opts.ReadyWithin < 0 {
		return s, nil
	}
	if opts.ReadyWithin == 0 {
		opts.ReadyWithin = 30 * time.Second
	}
	began := time.Now()
	if err := s.waitReady(opts.ReadyWithin, opts.Progress); err != nil {
		return nil, err
	}
	t.Logf("coredns ready %s after start", time.Since(began).Round(time.Millisecond))
	return s, nil
}

var errExited = errors.New("coredns exited")

func (s *Server) waitReady(within time.Duration, progress func(*Server)) error {
	client := &http.Client{Timeout: time.Second}
	nextReport := time.Now().Add(30 * time.Second)
	err := wait.For(within, func() error {
		select {
		case <-s.done:
			return wait.Abort(errExited)
		default:
		}
		if progress != nil && time.Now().After(nextReport) {
			nextReport = nextReport.Add(30 * time.Second)
			progress(s)
		}
		resp, err := client.Get("http://" + s.ReadyAddr + "/ready")
		if err != nil {
			return fmt.Errorf("ready: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		// ready turns 200 when the plugins are ready, which can be a moment
		// before the DNS listeners are.
		_, err = dnsq.Ask(s.Addr, ".", dns.TypeNS, dnsq.Timeout(200*time.Millisecond))
		return err
	})
	if errors.Is(err, errExited) {
		return fmt.Errorf("coredns exited during start-up:\n%s", s.Tail(50))
	}
	if err != nil {
		return fmt.Errorf("coredns not ready: %w\n%s", err, s.Tail(50))
	}
	return nil
}

// Metrics returns the prometheus plugin's exposition.
func (s *Server) Metrics(t testing.TB) string {
	t.Helper()
	text, err := metrics.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// Metric sums the samples of one metric (see metrics.Sum); false when
// CoreDNS exports none.
func (s *Server) Metric(t testing.TB, name string) (float64, bool) {
	t.Helper()
	return metrics.Sum(s.Metrics(t), name)
}

// WaitMetric waits up to within for the metric name to exist and satisfy
// ok, and returns its value.
func (s *Server) WaitMetric(t testing.TB, name string, within time.Duration, ok func(float64) bool) float64 {
	t.Helper()
	var v float64
	wait.Until(t, within, func() error {
		var found bool
		if v, found = s.Metric(t, name); !found || !ok(v) {
			return fmt.Errorf("%s is %v (exported: %v)", name, v, found)
		}
		return nil
	})
	return v
}

// Pid is the CoreDNS process's ID.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Output is everything CoreDNS printed so far.
func (s *Server) Output() string { return s.out.String() }

// Tail is the last n lines CoreDNS printed, those of the ready plugin
// waiting for the others left out.
func (s *Server) Tail(n int) string {
	lines := strings.Split(s.Output(), "\n")
	kept := lines[:0]
	for _, l := range lines {
		if !strings.Contains(l, "plugin/ready: Plugins not ready") {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept[max(0, len(kept)-n):], "\n")
}

// WaitOutput waits up to within for CoreDNS to have printed text at least
// n times.
func (s *Server) WaitOutput(t testing.TB, text string, n int, within time.Duration) {
	t.Helper()
	wait.Until(t, within, func() error {
		if got := strings.Count(s.Output(), text); got < n {
			return fmt.Errorf("coredns printed %q %d times, want %d; last lines:\n%s", text, got, n, s.Tail(10))
		}
		return nil
	})
}

// Reload replaces the Corefile with corefile and has CoreDNS reload it with
// SIGUSR1, as an operator would; it returns once CoreDNS has taken the
// signal. What the reload changed is for the caller to wait on.
func (s *Server) Reload(t testing.TB, corefile string) {
	t.Helper()
	const taken = "SIGUSR1: Reloading"
	before := strings.Count(s.Output(), taken)
	s.Corefile = corefile
	if err := os.WriteFile(s.path, []byte(corefile), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatalf("reloading coredns: %v", err)
	}
	s.WaitOutput(t, taken, before+1, 10*time.Second)
}

// Stop ends CoreDNS with SIGTERM, as an init system would, and kills it if it
// does not exit in time.
func (s *Server) Stop(t testing.TB) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	began := time.Now()
	select {
	case <-s.done:
		t.Logf("coredns stopped %s after SIGTERM", time.Since(began).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Errorf("coredns did not stop within 10s of SIGTERM; killing it")
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Run runs the binary with args, without a Corefile of its own (-version,
// -plugins), and returns what it printed.
func Run(t testing.TB, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Goroutines is CoreDNS's goroutine count, from the pprof plugin.
func (s *Server) Goroutines(t testing.TB) int {
	t.Helper()
	return s.profileValue(t, "/debug/pprof/goroutine?debug=1", `goroutine profile: total (\d+)`)
}

// HeapInuse is CoreDNS's HeapInuse after a GC, in bytes, from the pprof
// plugin.
func (s *Server) HeapInuse(t testing.TB) int {
	t.Helper()
	return s.profileValue(t, "/debug/pprof/heap?debug=1&gc=1", `# HeapInuse = (\d+)`)
}

func (s *Server) profileValue(t testing.TB, path, re string) int {
	t.Helper()
	body, err := metrics.Get("http://" + s.PprofAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(re).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in %s: %.200q", re, path, body)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
