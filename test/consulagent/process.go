package consulagent

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/freeport"

	"github.com/hashicorp/consul/api"
)

// Pid is the agent's process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Process is a single-server Consul agent run as a process the test
// controls: it can be killed, frozen, thawed and restarted on the same ports,
// with its data (Restart) or without (RestartEmpty).
type Process struct {
	Name     string // the node name
	HTTPAddr string
	DNSAddr  string // Consul's own DNS interface
	// HTTPSAddr and CAFile are set when the agent also serves HTTPS.
	HTTPSAddr, CAFile string
	extraArgs         []string // TLS settings, extra configuration
	t                 testing.TB
	dataDir           string
	ports             []int    // http, server, serf lan, serf wan, dns
	expect            int      // servers to bootstrap with
	join              []string // serf LAN addresses to join
	datacenter        string   // empty for dc1
	joinWAN           []string // serf WAN addresses to join
	cmd               *exec.Cmd
	done              chan struct{}
}

// StartProcess starts an agent on free loopback ports and stops it when the
// test ends.
func StartProcess(t testing.TB) *Process {
	t.Helper()
	return startProcess(t, false)
}

// StartProcessTLS is StartProcess with the HTTP API also served over HTTPS,
// with a certificate from a CA made by `consul tls`.
func StartProcessTLS(t testing.TB) *Process {
	t.Helper()
	return startProcess(t, true)
}

func startProcess(t testing.TB, withTLS bool) *Process {
	t.Helper()
	p := newProcess(t, "consul-test", 1)
	if withTLS {
		p.enableTLS()
	}
	p.start()
	p.waitLeader()
	t.Cleanup(func() { p.Kill() })
	return p
}

// StartCluster starts n servers that form one cluster, and waits until it
// has a leader.
func StartCluster(t testing.TB, n int) []*Process {
	t.Helper()
	var cluster []*Process
	for i := range n {
		p := newProcess(t, fmt.Sprintf("consul-%d", i), n)
		if i > 0 {
			p.join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(cluster[0].ports[2]))}
		}
		p.start()
		t.Cleanup(func() { p.Kill() })
		cluster = append(cluster, p)
	}
	for _, p := range cluster {
		p.waitLeader()
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
		p := newProcess(t, "consul-"+dc, 1)
		p.datacenter = dc
		if hcl != "" {
			p.extraArgs = append(p.extraArgs, "-hcl", hcl)
		}
		if i > 0 {
			p.joinWAN = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(dcs[0].ports[3]))}
		}
		p.start()
		t.Cleanup(func() { p.Kill() })
		dcs = append(dcs, p)
	}
	for _, p := range dcs {
		p.waitLeader()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		known, err := dcs[0].Client().Catalog().Datacenters()
		if err == nil && len(known) == len(names) {
			return dcs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first datacenter knows %v after 30s (%v), want %v", known, err, names)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ServerAddr is the server's RPC address, as /v1/status/leader names it.
func (p *Process) ServerAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.ports[1]))
}

func newProcess(t testing.TB, name string, expect int) *Process {
	p := &Process{t: t, Name: name, expect: expect}
	for range 5 {
		p.ports = append(p.ports, freeport.Port(t))
	}
	p.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p.ports[0]))
	p.DNSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p.ports[4]))
	p.dataDir = t.TempDir()
	return p
}

// enableTLS makes the agent serve its HTTP API over HTTPS too.
func (p *Process) enableTLS() {
	ca, cert, key := certificates(p.t)
	p.CAFile = ca
	https := freeport.Port(p.t)
	p.HTTPSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(https))
	p.extraArgs = append(p.extraArgs, "-https-port", strconv.Itoa(https), "-hcl", fmt.Sprintf(
		`tls { defaults { ca_file = %q cert_file = %q key_file = %q } }`, ca, cert, key))
}

func (p *Process) start() {
	p.t.Helper()
	p.cmd = exec.Command(Binary(), "agent", "-server", "-bootstrap-expect", strconv.Itoa(p.expect), "-node", p.Name,
		"-data-dir", p.dataDir, "-bind", "127.0.0.1", "-client", "127.0.0.1", "-log-level", "warn",
		"-http-port", strconv.Itoa(p.ports[0]), "-server-port", strconv.Itoa(p.ports[1]),
		"-serf-lan-port", strconv.Itoa(p.ports[2]), "-serf-wan-port", strconv.Itoa(p.ports[3]),
		"-dns-port", strconv.Itoa(p.ports[4]), "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-hcl", "performance { raft_multiplier = 1 }", "-hcl", "disable_update_check = true")
	p.cmd.Args = append(p.cmd.Args, p.extraArgs...)
	for _, addr := range p.join {
		p.cmd.Args = append(p.cmd.Args, "-retry-join", addr)
	}
	for _, addr := range p.joinWAN {
		p.cmd.Args = append(p.cmd.Args, "-retry-join-wan", addr, "-retry-interval-wan", "1s")
	}
	if p.datacenter != "" {
		p.cmd.Args = append(p.cmd.Args, "-datacenter", p.datacenter)
	}
	if len(p.join) > 0 {
		// The default 30s between attempts outlasts waitLeader when the
		// first attempt comes before the first server listens (seen under
		// make test's load: "no leader after 30s").
		p.cmd.Args = append(p.cmd.Args, "-retry-interval", "1s")
	}
	logFile, err := os.Create(filepath.Join(p.t.TempDir(), "consul.log"))
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("starting consul: %v", err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); logFile.Close(); close(p.done) }()
}

// waitLeader waits until the agent answers catalog reads.
func (p *Process) waitLeader() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + p.HTTPAddr + "/v1/catalog/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Consul-Knownleader") == "true" {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("consul at %s has no leader after 30s", p.HTTPAddr)
}

// Client returns an API client for the agent.
func (p *Process) Client() *api.Client {
	client, err := api.NewClient(&api.Config{Address: p.HTTPAddr})
	if err != nil {
		p.t.Fatal(err)
	}
	return client
}

// Kill ends the agent with SIGKILL, as a crash would.
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
	p.waitLeader()
}

// RestartEmpty starts a new, empty agent on the killed agent's ports: a
// cluster rebuilt from nothing behind the same address.
func (p *Process) RestartEmpty() {
	p.t.Helper()
	p.Kill()
	p.dataDir = p.t.TempDir()
	p.start()
	p.waitLeader()
}

func (p *Process) String() string { return fmt.Sprintf("consul at %s", p.HTTPAddr) }
