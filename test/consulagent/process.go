package consulagent

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/freeport"
	"github.com/coredns-consul/coredns-consul/test/wait"

	"github.com/hashicorp/consul/api"
)

// Process is a Consul agent run as a process the test controls, on its own
// free loopback ports: it can be killed, frozen, thawed and restarted on the
// same ports, with its data (Restart) or without (RestartEmpty). Every agent
// the tests and benchmarks under test/ run is one: single servers, clusters,
// datacenters and fleets of client agents.
type Process struct {
	Name     string // the node name
	HTTPAddr string
	DNSAddr  string // Consul's own DNS interface
	// HTTPSAddr and CAFile are set when the agent also serves HTTPS.
	HTTPSAddr, CAFile string
	// SerfLANAddr is the address other agents join.
	SerfLANAddr string
	// LogFile holds the agent's output.
	LogFile string

	t       testing.TB
	opts    Options
	args    []string // every argument but the data directory
	dataDir string
	ports   ports
	cmd     *exec.Cmd
	exit    error // how the process ended, once done is closed
	done    chan struct{}
}

type ports struct{ http, server, serfLAN, serfWAN, dns int }

// Options say what kind of agent to run.
type Options struct {
	// Name is the node name; "consul-test" when empty.
	Name string
	// Client runs a client agent rather than a server.
	Client bool
	// Expect is how many servers bootstrap the cluster; 1 when 0.
	Expect int
	// Datacenter is the agent's datacenter; dc1 when empty.
	Datacenter string
	// Join and JoinWAN are serf LAN and WAN addresses to join.
	Join, JoinWAN []string
	// TLS serves the HTTP API over HTTPS too, with a certificate from a CA
	// made by `consul tls`.
	TLS bool
	// HCL is more agent configuration, e.g. Observable or
	// "limits { http_max_conns_per_client = 10000 }".
	HCL []string
	// ConfigDir is a directory of configuration files, read again on
	// `consul reload` (the HCL is not).
	ConfigDir string
	// ReadyWithin is how long the agent may take to answer catalog reads
	// with a known leader; 90 s when 0 (a make bench once saw a fresh agent
	// without a leader after 30 s, while the previous agents were still
	// shutting down).
	ReadyWithin time.Duration
}

// Observable is configuration for agents a benchmark measures: the debug
// endpoints (goroutine and heap profiles) and cumulative metrics in
// /v1/agent/metrics?format=prometheus.
var Observable = []string{
	"enable_debug = true",
	`telemetry { prometheus_retention_time = "24h" disable_hostname = true }`,
}

// StartProcess starts a single-server agent on free loopback ports, waits
// until it has a leader, and kills it when the test ends.
func StartProcess(t testing.TB) *Process {
	t.Helper()
	return StartProcessWith(t, Options{})
}

// StartProcessTLS is StartProcess with the HTTP API also served over HTTPS.
func StartProcessTLS(t testing.TB) *Process {
	t.Helper()
	return StartProcessWith(t, Options{TLS: true})
}

// StartProcessWith is StartProcess for any kind of agent.
func StartProcessWith(t testing.TB, opts Options) *Process {
	t.Helper()
	p := Launch(t, opts)
	p.WaitReady()
	return p
}

// Launch starts an agent and kills it when the test ends, without waiting
// for it: agents that must find each other start together.
func Launch(t testing.TB, opts Options) *Process {
	t.Helper()
	if _, err := os.Stat(Binary()); err != nil {
		t.Fatalf("no consul binary at %s (run `make consul`): %v", Binary(), err)
	}
	if opts.Name == "" {
		opts.Name = "consul-test"
	}
	if opts.ReadyWithin == 0 {
		opts.ReadyWithin = 90 * time.Second
	}
	p := &Process{t: t, Name: opts.Name, opts: opts, dataDir: t.TempDir(), LogFile: filepath.Join(t.TempDir(), "consul.log")}
	p.ports = ports{freeport.Port(t), freeport.Port(t), freeport.Port(t), freeport.Port(t), freeport.Port(t)}
	p.HTTPAddr = loopback(p.ports.http)
	p.DNSAddr = loopback(p.ports.dns)
	p.SerfLANAddr = loopback(p.ports.serfLAN)
	p.args = p.arguments()
	p.start()
	t.Cleanup(p.Kill)
	return p
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func (p *Process) arguments() []string {
	o := p.opts
	args := []string{"agent", "-node", p.Name, "-bind", "127.0.0.1", "-client", "127.0.0.1", "-log-level", "warn",
		"-http-port", strconv.Itoa(p.ports.http), "-server-port", strconv.Itoa(p.ports.server),
		"-serf-lan-port", strconv.Itoa(p.ports.serfLAN), "-serf-wan-port", strconv.Itoa(p.ports.serfWAN),
		"-dns-port", strconv.Itoa(p.ports.dns), "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-hcl", "disable_update_check = true"}
	if !o.Client {
		args = append(args, "-server", "-bootstrap-expect", strconv.Itoa(max(1, o.Expect)),
			"-hcl", "performance { raft_multiplier = 1 }")
	}
	if o.Datacenter != "" {
		args = append(args, "-datacenter", o.Datacenter)
	}
	for _, addr := range o.Join {
		args = append(args, "-retry-join", addr)
	}
	if len(o.Join) > 0 {
		// The default 30 s between attempts outlasts the wait for a leader
		// when the first attempt comes before the first server listens
		// (seen under make test's load).
		args = append(args, "-retry-interval", "1s")
	}
	for _, addr := range o.JoinWAN {
		args = append(args, "-retry-join-wan", addr, "-retry-interval-wan", "1s")
	}
	if o.TLS {
		ca, cert, key := certificates(p.t)
		https := freeport.Port(p.t)
		p.CAFile, p.HTTPSAddr = ca, loopback(https)
		args = append(args, "-https-port", strconv.Itoa(https), "-hcl",
			fmt.Sprintf(`tls { defaults { ca_file = %q cert_file = %q key_file = %q } }`, ca, cert, key))
	}
	for _, h := range o.HCL {
		args = append(args, "-hcl", h)
	}
	if o.ConfigDir != "" {
		args = append(args, "-config-dir", o.ConfigDir)
	}
	return args
}

func (p *Process) start() {
	p.t.Helper()
	p.cmd = exec.Command(Binary(), append(p.args, "-data-dir", p.dataDir)...)
	logFile, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatalf("consul log: %v", err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("starting consul %s: %v", p.Name, err)
	}
	p.done = make(chan struct{})
	go func() { p.exit = p.cmd.Wait(); logFile.Close(); close(p.done) }()
}

// WaitReady waits until the agent answers catalog reads with a known leader:
// for a client agent, until it has joined and reaches a server.
func (p *Process) WaitReady() {
	p.t.Helper()
	began := time.Now()
	err := wait.For(p.opts.ReadyWithin, func() error {
		select {
		case <-p.done:
			return wait.Abort(fmt.Errorf("exited: %v", p.exit))
		default:
		}
		resp, err := http.Get("http://" + p.HTTPAddr + "/v1/catalog/services")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Consul-Knownleader") != "true" {
			return fmt.Errorf("%s, known leader %q", resp.Status, resp.Header.Get("X-Consul-Knownleader"))
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("%s not ready: %v; its log ends:\n%s", p, err, p.logTail(30))
	}
	p.t.Logf("%s ready in %s", p, time.Since(began).Round(time.Millisecond))
}

func (p *Process) logTail(n int) string {
	data, _ := os.ReadFile(p.LogFile)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Pid is the agent's process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// ServerAddr is the server's RPC address, as /v1/status/leader names it.
func (p *Process) ServerAddr() string { return loopback(p.ports.server) }

// Config returns a client configuration for the agent's HTTP API.
func (p *Process) Config() *api.Config { return &api.Config{Address: p.HTTPAddr, Scheme: "http"} }

// Client returns an API client for the agent.
func (p *Process) Client() *api.Client {
	client, err := api.NewClient(p.Config())
	if err != nil {
		p.t.Fatalf("consul client: %v", err)
	}
	return client
}

// Kill ends the agent with SIGKILL, as a crash would. It may be called more
// than once.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// Freeze stops the agent with SIGSTOP: connections stay open, nothing answers.
func (p *Process) Freeze() { p.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen agent.
func (p *Process) Thaw() { p.cmd.Process.Signal(syscall.SIGCONT) }

// Restart starts the killed agent again, with its data, on its ports.
func (p *Process) Restart() {
	p.t.Helper()
	p.Kill()
	p.start()
	p.WaitReady()
}

// RestartEmpty starts a new, empty agent on the killed agent's ports: a
// cluster rebuilt from nothing behind the same address.
func (p *Process) RestartEmpty() {
	p.t.Helper()
	p.Kill()
	p.dataDir = p.t.TempDir()
	p.start()
	p.WaitReady()
}

func (p *Process) String() string { return fmt.Sprintf("consul %s at %s", p.Name, p.HTTPAddr) }

// StartCluster starts n servers that form one cluster, and waits until it
// has a leader.
func StartCluster(t testing.TB, n int) []*Process {
	t.Helper()
	var cluster []*Process
	for i := range n {
		opts := Options{Name: fmt.Sprintf("consul-%d", i), Expect: n}
		if i > 0 {
			opts.Join = []string{cluster[0].SerfLANAddr}
		}
		cluster = append(cluster, Launch(t, opts))
	}
	for _, p := range cluster {
		p.WaitReady()
	}
	return cluster
}

// StartDatacenters starts one single-server datacenter for each name, the
// later ones WAN-joined to the first, and waits until each has a leader and
// the first sees them all.
func StartDatacenters(t testing.TB, names ...string) []*Process {
	t.Helper()
	return StartDatacentersHCL(t, "", names...)
}

// StartDatacentersHCL is StartDatacenters with extra agent configuration
// (HCL) for every agent.
func StartDatacentersHCL(t testing.TB, hcl string, names ...string) []*Process {
	t.Helper()
	var dcs []*Process
	for i, dc := range names {
		opts := Options{Name: "consul-" + dc, Datacenter: dc}
		if hcl != "" {
			opts.HCL = []string{hcl}
		}
		if i > 0 {
			opts.JoinWAN = []string{loopback(dcs[0].ports.serfWAN)}
		}
		dcs = append(dcs, Launch(t, opts))
	}
	for _, p := range dcs {
		p.WaitReady()
	}
	wait.Until(t, 30*time.Second, func() error {
		known, err := dcs[0].Client().Catalog().Datacenters()
		if err == nil && len(known) != len(names) {
			err = fmt.Errorf("the first datacenter knows %v, want %v", known, names)
		}
		return err
	})
	return dcs
}
