package follower

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Observer hears what the follower does, for metrics. Its methods must not
// block: they are called from the loop that reads the tiers.
type Observer interface {
	// Answer: a tier's answer of kind (whole, delta, none) was applied;
	// bytes is its payload.
	Answer(tier, kind string, bytes int)
	// Error: a request to a tier failed, by kind: refused (401/403),
	// garbage, cluster (another cluster's or datacenter's tier),
	// unreachable, hang (no byte for Idle), status (another HTTP status).
	Error(tier, kind string)
	// Switch: the follower moved to another tier.
	Switch()
	// Held: how many services are served that the tier followed lacks,
	// kept until it has seen past them.
	Held(n int)
}

// Failure kinds, as Observer.Error hears them.
const (
	errRefused     = "refused"
	errGarbage     = "garbage"
	errCluster     = "cluster"
	errUnreachable = "unreachable"
	errHang        = "hang"
	errStatus      = "status"
	errCannotRead  = "cannot_read" // the tier answers, but reports it cannot read Consul (skip.go)
)

const subsystem = "consul"

var (
	answers = promauto.NewCounterVec(prometheus.CounterOpts{Namespace: plugin.Namespace, Subsystem: subsystem,
		Name: "follower_answers_total", Help: "Answers from tiers applied by followers, by tier and kind: whole, delta, none (the wait ended with nothing newer)."},
		[]string{"tier", "kind"})
	errorsTotal = promauto.NewCounterVec(prometheus.CounterOpts{Namespace: plugin.Namespace, Subsystem: subsystem,
		Name: "follower_errors_total", Help: "Failed requests from followers to tiers, by tier and kind: refused (401/403), garbage (not a feed answer, truncated, or not applicable), cluster (another Consul cluster's or datacenter's tier), unreachable, hang (no byte within the idle time), status (another HTTP status), cannot_read (the tier answers but has not read Consul for 5 s: the follower moved on)."},
		[]string{"tier", "kind"})
	switches = promauto.NewCounter(prometheus.CounterOpts{Namespace: plugin.Namespace, Subsystem: subsystem,
		Name: "follower_switches_total", Help: "Times a follower moved to another tier."})
	bytesTotal = promauto.NewCounterVec(prometheus.CounterOpts{Namespace: plugin.Namespace, Subsystem: subsystem,
		Name: "follower_bytes_total", Help: "Payload bytes of the tiers' answers applied by followers, by tier."},
		[]string{"tier"})
	held = promauto.NewGauge(prometheus.GaugeOpts{Namespace: plugin.Namespace, Subsystem: subsystem,
		Name: "follower_held_services", Help: "Services a follower serves that the tier it follows lacks, kept until that tier has seen past them (it is behind)."})
)

// Metrics is the Observer that feeds the follower's prometheus metrics;
// a Config without an Observer uses it.
type Metrics struct{}

func (Metrics) Answer(tier, kind string, bytes int) {
	answers.WithLabelValues(tier, kind).Inc()
	bytesTotal.WithLabelValues(tier).Add(float64(bytes))
}

func (Metrics) Error(tier, kind string) { errorsTotal.WithLabelValues(tier, kind).Inc() }
func (Metrics) Switch()                 { switches.Inc() }
func (Metrics) Held(n int)              { held.Set(float64(n)) }
