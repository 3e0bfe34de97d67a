// Package metrics reads Prometheus text expositions (CoreDNS's prometheus
// plugin, a Consul agent's /v1/agent/metrics?format=prometheus) for tests
// that wait on a metric or measure with one.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var client = &http.Client{Timeout: 10 * time.Second}

// Get reads a text endpoint: an exposition, a profile.
func Get(url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return string(body), nil
}

// Parse maps every sample of an exposition, by its name with labels as
// printed (`coredns_consul_stale{datacenter="local"}`), to its value.
func Parse(text string) map[string]float64 {
	m := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// Sum adds up the samples of the metric name, whatever their labels; false
// when there are none. A name with labels (`name{a="b"}`) picks that one
// sample.
func Sum(text, name string) (float64, bool) {
	sum, found := 0.0, false
	for key, v := range Parse(text) {
		if key == name || (!strings.Contains(name, "{") && strings.HasPrefix(key, name+"{")) {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

// Summary is the plugin's own metrics in one line, histograms and
// timestamps left out: what a log line says about a replica in progress.
func Summary(text string) string {
	var parts []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "coredns_consul_") && !strings.Contains(line, "_bucket") && !strings.Contains(line, "timestamp") {
			parts = append(parts, strings.TrimPrefix(line, "coredns_consul_"))
		}
	}
	return strings.Join(parts, "; ")
}
