package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/inspect"
	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
)

// readInspect reads "inspect ADDRESS": serve what the replica holds, as
// "coredns-consul snapshot show -json" prints a file, over HTTP on ADDRESS.
// The listener follows the block's life as the health and prometheus
// plugins' do: closed before a reload starts the new one on the same
// address, opened again when the reload fails.
func readInspect(c *caddy.Controller, _ *config) error {
	args := c.RemainingArgs()
	if len(args) != 1 {
		return c.Errf("inspect takes one loopback address, HOST:PORT")
	}
	if err := loopbackOnly(args[0]); err != nil {
		return c.Errf("inspect %s: %v", args[0], err)
	}
	s := &inspectServer{addr: args[0], collect: func() *snapshot.Set {
		// Looked up per request: the handler is registered once the
		// server is built, after the Corefile is parsed.
		if h, ok := dnsserver.GetConfig(c).Handler(pluginName).(*Consul); ok {
			return h.collect()
		}
		return nil
	}}
	c.OnStartup(s.start)
	c.OnRestart(s.stop)
	c.OnRestartFailed(s.start)
	c.OnFinalShutdown(s.stop)
	return nil
}

// loopbackOnly refuses an address reachable from other hosts: the report
// lists the whole catalog the plugin's token may read.
func loopbackOnly(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" {
		return errors.New("no port")
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return errors.New("not a loopback address (127.0.0.1, ::1 or localhost): the catalog would be readable from other hosts")
	}
	return nil
}

// inspectServer serves the report of collect's set.
type inspectServer struct {
	addr    string
	collect func() *snapshot.Set
	srv     *http.Server
}

func (s *inspectServer) start() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	s.srv = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln)
	log.Infof("inspect: the replica is served on http://%s/snapshot", ln.Addr())
	return nil
}

func (s *inspectServer) stop() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.srv = nil
	return err
}

// handler serves GET /snapshot (?service=NAME&dc=DC&services) and
// /snapshot/service/NAME.
func (s *inspectServer) handler() http.Handler {
	mux := http.NewServeMux()
	options := func(r *http.Request) inspect.Options {
		q := r.URL.Query()
		return inspect.Options{Datacenter: q.Get("dc"), Service: q.Get("service"), Services: q.Has("services")}
	}
	mux.HandleFunc("GET /snapshot", func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, options(r))
	})
	mux.HandleFunc("GET /snapshot/service/{name}", func(w http.ResponseWriter, r *http.Request) {
		opts := options(r)
		opts.Service = r.PathValue("name")
		s.serve(w, opts)
	})
	return mux
}

func (s *inspectServer) serve(w http.ResponseWriter, opts inspect.Options) {
	set := s.collect()
	if set == nil {
		http.Error(w, "no snapshot yet: the replica has not synced", http.StatusServiceUnavailable)
		return
	}
	report, err := inspect.New("http://"+s.addr+"/snapshot", snapshot.FileVersion, set, time.Now(), opts)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	inspect.WriteJSON(w, report)
}
