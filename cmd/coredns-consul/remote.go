package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/inspect"
)

// isURL tells a running CoreDNS's inspect endpoint from a file.
func isURL(arg string) bool {
	return strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://")
}

// maxReport bounds what is read from an endpoint: the JSON of a catalog of
// 5,000 services is far less than this.
const maxReport = 256 << 20

// fetchReport reads the live replica's report from the inspect endpoint at
// base (http://127.0.0.1:PORT, with or without /snapshot).
func fetchReport(base string, opts inspect.Options) (*inspect.Report, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil {
		return nil, fmt.Errorf("inspect endpoint %s: %w", base, err)
	}
	if !strings.HasSuffix(u.Path, "/snapshot") {
		u.Path += "/snapshot"
	}
	q := u.Query()
	if opts.Service != "" {
		q.Set("service", opts.Service)
	}
	if opts.Datacenter != "" {
		q.Set("dc", opts.Datacenter)
	}
	if opts.Services {
		q.Set("services", "")
	}
	u.RawQuery = q.Encode()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(u.String())
	if err != nil {
		return nil, fmt.Errorf("inspect endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReport))
	if err != nil {
		return nil, fmt.Errorf("inspect endpoint %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("inspect endpoint %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	var r inspect.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("inspect endpoint %s: %w", u, err)
	}
	return &r, nil
}
