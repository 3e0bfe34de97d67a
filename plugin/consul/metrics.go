package consul

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coredns-consul/coredns-consul/plugin/consul/answer"
	"github.com/coredns-consul/coredns-consul/plugin/consul/replica"

	"github.com/coredns/coredns/plugin"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics about the replica are labelled by datacenter; metrics about
// answers by server, as CoreDNS's own.
var (
	syncTimestamp = gauge("last_contact_timestamp_seconds", []string{"datacenter"},
		"When Consul last answered the replica, in seconds since the epoch.")
	snapshotTimestamp = gauge("snapshot_timestamp_seconds", []string{"datacenter"},
		"When the snapshot being served was built, in seconds since the epoch.")
	staleGauge = gauge("stale", []string{"datacenter"},
		"1 while Consul cannot be reached and answers come from the last good snapshot.")
	consulIndex = gauge("index", []string{"datacenter"},
		"The highest Consul index in the snapshot being served.")
	serviceCount = gauge("services", []string{"datacenter"},
		"Services in the snapshot being served.")
	instanceCount = gauge("instances", []string{"datacenter"},
		"Service instances in the snapshot being served.")
	watchedServices = gauge("watched_services", []string{"datacenter"},
		"Services with a blocking query of their own: their changes arrive in milliseconds.")
	unwatchedServices = gauge("unwatched_services", []string{"datacenter"},
		"Services past the watcher budget (max_watchers), kept current by change detectors and sweeps.")
	watcherBudget = gauge("watcher_budget", []string{"datacenter"},
		"How many services may have a blocking query of their own: max_watchers, or sized from the agent's http_max_conns_per_client.")
	sweeps = counter("sweeps_total", []string{"datacenter"},
		"Probe sweeps of the unwatched services: a change to the service list that no cheap signal named (a port or address changed).")
	sweepProbes = counter("sweep_probes_total", []string{"datacenter"},
		"Requests to Consul spent by probe sweeps, one per unwatched service swept.")
	requests = counter("requests_total", []string{"datacenter"},
		"Requests to Consul's HTTP API.")
	requestErrors = counter("request_errors_total", []string{"datacenter", "kind"},
		"Failed requests to Consul's HTTP API, by kind: timeout, connection, rate_limited (429), server (5xx), denied (401/403), client (other 4xx), too_large (an answer past the replica's size limit), redirect (not followed), other.")
	publishDelay = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "publish_delay_seconds",
		Help:    "Time from Consul's answer carrying a change to the snapshot with it being served.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"datacenter"})
	aclFiltered = counter("acl_filtered_total", []string{"datacenter"},
		"Answers from Consul cut short because the ACL token may not read all of them.")
	guardHolding = gauge("guard_holding", []string{"datacenter"},
		"1 while the removal guard holds back a snapshot that would remove most instances.")
	staleAnswers = counter("stale_answers_total", []string{"server"},
		"Answers served from the last good snapshot while Consul could not be reached.")
	expiredAnswers = counter("expired_answers_total", []string{"server"},
		"Questions answered SERVFAIL because the snapshot was older than max_stale.")
	queriesPassedOn = counter("queries_passed_on_total", []string{"server", "reason"},
		"Prepared query questions passed to the next plugin, by reason: hidden (the token may not list every query), connect, peer, sameness_group, not_replicated (a failover datacenter), unknown_distances, unsupported.")
	snapshotWrites = counter("snapshot_writes_total", []string{"result"},
		"Writes of the snapshot file, by result.")
	snapshotLoads = counter("snapshot_loads_total", []string{"result"},
		"Reads of the snapshot file at start-up, by result: ok, missing, corrupt, mismatch (another datacenter or cluster), refused (not a regular file of the running user, or in a directory every user may write to).")
	panics = counter("panics_total", []string{"datacenter", "loop"},
		"Panics recovered in the replica's loops, by loop; the loop restarts after a backoff. Any is a bug to report.")
	invalidValues = counter("invalid_values_total", []string{"datacenter", "what"},
		"Values in Consul's answers the replica skipped because it cannot use them (a null where an object belongs), by kind.")
	// recordsDropped is counted when a service's or node's records are
	// built (once per change of it), not per question.
	recordsDropped = counter("records_dropped_total", []string{"datacenter", "reason"},
		"Records left out of answers because DNS cannot carry a catalog value, by reason: label_too_long, name_too_long, empty_label, bad_name, txt_too_long.")

	credentialReloads = counter("credential_reloads_total", []string{"file_kind", "result"},
		"Changes seen in the token_file (file_kind token) or the tls CA, certificate and key files (tls), by result: ok (in use for the next requests or connections), error (unreadable, empty or invalid: the last good credentials stay in use). Counted by each replica that reads the files.")
)

// gauge and counter make the plugin's metrics, by label.
func gauge(name string, labels []string, help string) *prometheus.GaugeVec {
	return promauto.NewGaugeVec(prometheus.GaugeOpts{Namespace: plugin.Namespace, Subsystem: pluginName, Name: name, Help: help}, labels)
}

func counter(name string, labels []string, help string) *prometheus.CounterVec {
	return promauto.NewCounterVec(prometheus.CounterOpts{Namespace: plugin.Namespace, Subsystem: pluginName, Name: name, Help: help}, labels)
}

// observer feeds the replica's events into the metrics.
type observer struct{ dc string }

func (o observer) Request(err error) {
	requests.WithLabelValues(o.dc).Inc()
	if err != nil {
		requestErrors.WithLabelValues(o.dc, errorKind(err)).Inc()
		staleGauge.WithLabelValues(o.dc).Set(1)
		return
	}
	syncTimestamp.WithLabelValues(o.dc).SetToCurrentTime()
	staleGauge.WithLabelValues(o.dc).Set(0)
}

func (o observer) Filtered() { aclFiltered.WithLabelValues(o.dc).Inc() }

func (o observer) Watching(watched, services, budget int) {
	watchedServices.WithLabelValues(o.dc).Set(float64(watched))
	unwatchedServices.WithLabelValues(o.dc).Set(float64(max(0, services-watched)))
	watcherBudget.WithLabelValues(o.dc).Set(float64(budget))
}

func (o observer) Swept(probes int) {
	sweeps.WithLabelValues(o.dc).Inc()
	sweepProbes.WithLabelValues(o.dc).Add(float64(probes))
}

func (o observer) Panicked(loop string) { panics.WithLabelValues(o.dc, loop).Inc() }

func (o observer) Invalid(what string, n int) {
	invalidValues.WithLabelValues(o.dc, what).Add(float64(n))
}

func (o observer) Published(delay time.Duration) {
	publishDelay.WithLabelValues(o.dc).Observe(delay.Seconds())
}

// errorKind sorts request failures for request_errors_total.
func errorKind(err error) string {
	var status api.StatusError
	var netErr net.Error
	switch {
	case errors.Is(err, replica.ErrBodyTooLarge):
		return "too_large"
	case errors.Is(err, replica.ErrRedirect):
		return "redirect"
	case errors.As(err, &status):
		switch {
		case status.Code == http.StatusTooManyRequests:
			return "rate_limited"
		case status.Code >= 500:
			return "server"
		case status.Code == http.StatusUnauthorized || status.Code == http.StatusForbidden:
			return "denied"
		}
		return "client"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &netErr):
		return "connection"
	}
	return "other"
}

// forgetMetrics drops every series of a datacenter no longer replicated:
// gauges would keep exporting its last values, and with `datacenters *` a
// list that churns through names would grow the registry without bound.
func forgetMetrics(dc string) {
	for _, g := range []*prometheus.GaugeVec{guardHolding, serviceCount, instanceCount, consulIndex, snapshotTimestamp,
		staleGauge, syncTimestamp, watchedServices, unwatchedServices, watcherBudget} {
		g.DeleteLabelValues(dc)
	}
	for _, c := range []*prometheus.CounterVec{sweeps, sweepProbes, requests, requestErrors, aclFiltered, panics, invalidValues, recordsDropped} {
		c.DeletePartialMatch(prometheus.Labels{"datacenter": dc})
	}
	publishDelay.DeleteLabelValues(dc)
}

// droppedLogged is when countDropped last logged, in Unix nanoseconds.
var droppedLogged atomic.Int64

// countDropped counts the records view left out, with one log line for the
// view, at most one a minute: a value DNS cannot carry is the catalog's to
// fix, not each question's (nor each change of its service) to report.
func countDropped(dc string, view *answer.View) {
	if len(view.Dropped) == 0 {
		return
	}
	total := 0
	for reason, n := range view.Dropped {
		recordsDropped.WithLabelValues(dc, reason).Add(float64(n))
		total += n
	}
	now, last := time.Now().UnixNano(), droppedLogged.Load()
	if now-last < int64(time.Minute) || !droppedLogged.CompareAndSwap(last, now) {
		return
	}
	example := view.DroppedExample
	if len(example) > 80 {
		example = example[:80] + "..."
	}
	log.Warningf("datacenter %s: %d records left out of answers, DNS cannot carry them (%v), such as %q", dc, total, view.Dropped, example)
}
