// Package corednsproc builds and runs the real CoreDNS binary from cmd/coredns
// for end-to-end tests: each instance on free loopback ports, stopped when the
// test ends.
package corednsproc

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/freeport"

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
			buildErr = err
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

// Server is a running CoreDNS process.
type Server struct {
	// Addr is the DNS listen address, UDP and TCP.
	Addr string
	// ReadyAddr is the ready plugin's HTTP address; MetricsAddr the
	// prometheus plugin's, if the Corefile uses Ports.Metrics.
	ReadyAddr, MetricsAddr string
	Corefile               string
	Ports                  Ports

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// Ports are the ports a Corefile template is filled with; Metrics is free
// for the prometheus plugin when the Corefile wants it.
type Ports struct {
	DNS, Ready, Metrics int
}

// Start runs CoreDNS with the Corefile that corefile returns for freshly
// picked ports, waits until its ready endpoint answers 200, and stops it
// when the test ends. The Corefile must use the ready plugin on
// 127.0.0.1:<Ready> and bind the DNS server to 127.0.0.1:<DNS>.
func Start(t testing.TB, corefile func(Ports) string) *Server {
	t.Helper()
	return StartOn(t, Ports{DNS: FreePort(t), Ready: FreePort(t), Metrics: FreePort(t)}, corefile)
}

// StartOn is Start on given ports: a CoreDNS restarted where clients such as
// HAProxy expect it.
func StartOn(t testing.TB, ports Ports, corefile func(Ports) string) *Server {
	t.Helper()
	s := &Server{
		Addr:        fmt.Sprintf("127.0.0.1:%d", ports.DNS),
		ReadyAddr:   fmt.Sprintf("127.0.0.1:%d", ports.Ready),
		MetricsAddr: fmt.Sprintf("127.0.0.1:%d", ports.Metrics),
		Ports:       ports,
		Corefile:    corefile(ports),
	}
	path := filepath.Join(t.TempDir(), "Corefile")
	if err := os.WriteFile(path, []byte(s.Corefile), 0o600); err != nil {
		t.Fatal(err)
	}
	s.out = &syncBuffer{}
	s.cmd = exec.Command(Binary(t), "-conf", path)
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
			t.Logf("coredns output:\n%s", s.Output())
		}
	})
	began := time.Now()
	s.waitReady(t, 30*time.Second)
	t.Logf("coredns ready %s after start", time.Since(began).Round(time.Millisecond))
	return s
}

// Metrics returns the prometheus plugin's exposition.
func (s *Server) Metrics(t testing.TB) string {
	t.Helper()
	resp, err := http.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return string(body)
}

// Pid is the CoreDNS process's ID.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Output is everything CoreDNS printed so far.
func (s *Server) Output() string { return s.out.String() }

func (s *Server) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			t.Fatalf("coredns exited during start-up:\n%s", s.Output())
		default:
		}
		resp, err := client.Get("http://" + s.ReadyAddr + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && s.answers() {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("coredns not ready after %s:\n%s", timeout, s.Output())
}

// answers reports whether the DNS server answers at all: ready turns 200
// when the plugins are ready, which can be a moment before the DNS
// listeners are.
func (s *Server) answers() bool {
	m := new(dns.Msg)
	m.SetQuestion(".", dns.TypeNS)
	_, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(m, s.Addr)
	return err == nil
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
