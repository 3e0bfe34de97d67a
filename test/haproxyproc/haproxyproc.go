// Package haproxyproc runs the real HAProxy (Debian's haproxy package, which
// scripts/deps.sh installs) for end-to-end tests, with backends found through
// DNS SRV records, on free loopback ports.
package haproxyproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/coredns-consul/coredns-consul/test/freeport"
	"github.com/coredns-consul/coredns-consul/test/wait"
)

// Config is what the HAProxy configuration is made from.
type Config struct {
	// Nameserver is the DNS server HAProxy's resolvers ask (host:port).
	Nameserver string
	// SRV is the name server-template resolves, e.g. _web._tcp.service.consul.
	SRV string
	// Slots is the number of servers server-template creates.
	Slots int
}

// Proxy is a running HAProxy.
type Proxy struct {
	// Addr is the frontend's address.
	Addr   string
	Config string
	log    string // the file HAProxy's output goes to
	cmd    *exec.Cmd
	done   chan struct{}
}

// Template is the configuration, documented in docs/haproxy.md: the resolver
// settings that matter for riding out a Consul outage are the hold times.
const Template = `global
    maxconn 1000

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 2
    option redispatch

resolvers consul
    nameserver coredns %[1]s
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 500ms
    timeout retry 500ms
    hold valid 10s
    hold other 10s
    hold refused 10s
    hold nx 10s
    hold timeout 10s
    hold obsolete 2s

frontend web
    bind 127.0.0.1:%[2]d
    default_backend web

backend web
    balance roundrobin
    default-server init-addr none check inter 500ms fall 2 rise 1
    server-template web %[4]d %[3]s resolvers consul resolve-prefer ipv4 resolve-opts allow-dup-ip
`

// Start runs HAProxy with Template filled from cfg and stops it when the
// test ends.
func Start(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	port := freeport.Port(t)
	return StartConfig(t, fmt.Sprintf(Template, cfg.Nameserver, port, cfg.SRV, cfg.Slots), fmt.Sprintf("127.0.0.1:%d", port))
}

// StartConfig runs HAProxy with a configuration of the caller's, waits until
// it listens on addr, one of its frontends, and stops it when the test ends.
func StartConfig(t testing.TB, config, addr string) *Proxy {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("no haproxy on PATH (make test installs it with scripts/deps.sh): %v", err)
	}
	dir := t.TempDir()
	p := &Proxy{Addr: addr, Config: config, log: filepath.Join(dir, "haproxy.log"), done: make(chan struct{})}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(p.Config), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(p.log)
	if err != nil {
		t.Fatalf("haproxy log: %v", err)
	}
	p.cmd = exec.Command(bin, "-db", "-f", path)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting haproxy: %v", err)
	}
	go func() { p.cmd.Wait(); log.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("haproxy configuration:\n%s\nhaproxy output:\n%s", p.Config, p.Output())
		}
	})
	wait.Until(t, 10*time.Second, func() error {
		select {
		case <-p.done:
			return wait.Abort(fmt.Errorf("haproxy exited:\n%s", p.Output()))
		default:
		}
		c, err := net.Dial("tcp", p.Addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return p
}

// Output is what HAProxy printed.
func (p *Proxy) Output() string {
	out, _ := os.ReadFile(p.log)
	return string(out)
}
