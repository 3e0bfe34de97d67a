package consul

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics about the replica are labelled by datacenter; metrics about
// answers by server, as CoreDNS's own.
var (
	syncTimestamp = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "last_contact_timestamp_seconds",
		Help: "When Consul last answered the replica, in seconds since the epoch.",
	}, []string{"datacenter"})
	snapshotTimestamp = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "snapshot_timestamp_seconds",
		Help: "When the snapshot being served was built, in seconds since the epoch.",
	}, []string{"datacenter"})
	staleGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "stale",
		Help: "1 while Consul cannot be reached and answers come from the last good snapshot.",
	}, []string{"datacenter"})
	consulIndex = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "index",
		Help: "The highest Consul index in the snapshot being served.",
	}, []string{"datacenter"})
	serviceCount = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "services",
		Help: "Services in the snapshot being served.",
	}, []string{"datacenter"})
	instanceCount = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "instances",
		Help: "Service instances in the snapshot being served.",
	}, []string{"datacenter"})
	watchedServices = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "watched_services",
		Help: "Services with a blocking query of their own: their changes arrive in milliseconds.",
	}, []string{"datacenter"})
	unwatchedServices = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "unwatched_services",
		Help: "Services past the watcher budget (max_watchers), kept current by change detectors and sweeps.",
	}, []string{"datacenter"})
	watcherBudget = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "watcher_budget",
		Help: "How many services may have a blocking query of their own: max_watchers, or sized from the agent's http_max_conns_per_client.",
	}, []string{"datacenter"})
	sweeps = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "sweeps_total",
		Help: "Probe sweeps of the unwatched services: a change to the service list that no cheap signal named (a port or address changed).",
	}, []string{"datacenter"})
	sweepProbes = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "sweep_probes_total",
		Help: "Requests to Consul spent by probe sweeps, one per unwatched service swept.",
	}, []string{"datacenter"})
	requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "requests_total",
		Help: "Requests to Consul's HTTP API.",
	}, []string{"datacenter"})
	requestErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "request_errors_total",
		Help: "Failed requests to Consul's HTTP API, by kind: timeout, connection, rate_limited (429), server (5xx), denied (401/403), client (other 4xx), other.",
	}, []string{"datacenter", "kind"})
	publishDelay = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "publish_delay_seconds",
		Help:    "Time from Consul's answer carrying a change to the snapshot with it being served.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"datacenter"})
	aclFiltered = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "acl_filtered_total",
		Help: "Answers from Consul cut short because the ACL token may not read all of them.",
	}, []string{"datacenter"})
	guardHolding = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "guard_holding",
		Help: "1 while the removal guard holds back a snapshot that would remove most instances.",
	}, []string{"datacenter"})
	staleAnswers = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "stale_answers_total",
		Help: "Answers served from the last good snapshot while Consul could not be reached.",
	}, []string{"server"})
	expiredAnswers = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "expired_answers_total",
		Help: "Questions answered SERVFAIL because the snapshot was older than max_stale.",
	}, []string{"server"})
	snapshotWrites = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "snapshot_writes_total",
		Help: "Writes of the snapshot file, by result.",
	}, []string{"result"})
	queriesPassedOn = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "queries_passed_on_total",
		Help: "Prepared query questions passed to the next plugin, by reason: hidden (the token may not list every query), connect, peer, sameness_group, not_replicated (a failover datacenter), unknown_distances, unsupported.",
	}, []string{"server", "reason"})
	snapshotLoads = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: pluginName, Name: "snapshot_loads_total",
		Help: "Reads of the snapshot file at start-up, by result: ok, missing, corrupt, mismatch.",
	}, []string{"result"})
)

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

func (o observer) Published(delay time.Duration) {
	publishDelay.WithLabelValues(o.dc).Observe(delay.Seconds())
}

// errorKind sorts request failures for request_errors_total.
func errorKind(err error) string {
	var status api.StatusError
	var netErr net.Error
	switch {
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

// forgetMetrics drops the gauges of a datacenter no longer replicated, which
// would otherwise keep exporting its last values.
func forgetMetrics(dc string) {
	for _, g := range []*prometheus.GaugeVec{guardHolding, serviceCount, instanceCount, consulIndex, snapshotTimestamp,
		staleGauge, syncTimestamp, watchedServices, unwatchedServices, watcherBudget} {
		g.DeleteLabelValues(dc)
	}
}
