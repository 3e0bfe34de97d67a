package tier

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The tier's metrics, beside the plugin's (coredns_consul_*).
var (
	followers = promauto.NewGauge(prometheus.GaugeOpts{Namespace: plugin.Namespace, Subsystem: "consul",
		Name: "tier_followers", Help: "Followers' requests the tier is answering or holding (long-polls in progress)."})
	answers = promauto.NewCounterVec(prometheus.CounterOpts{Namespace: plugin.Namespace, Subsystem: "consul",
		Name: "tier_answers_total", Help: "Answers to followers, by kind: whole (the whole state), delta (the changes since the follower's generation), none (the wait ended with nothing newer), refused (no token, a wrong one, a bad request)."},
		[]string{"kind"})
	answerBytes = promauto.NewCounterVec(prometheus.CounterOpts{Namespace: plugin.Namespace, Subsystem: "consul",
		Name: "tier_bytes_total", Help: "Bytes of answers written to followers, by kind, heartbeats not counted."},
		[]string{"kind"})
	transfersWaiting = promauto.NewGauge(prometheus.GaugeOpts{Namespace: plugin.Namespace, Subsystem: "consul",
		Name: "tier_transfers_waiting", Help: "Followers waiting for a slot to be sent the whole state (tier_transfers)."})
	generationGauge = promauto.NewGauge(prometheus.GaugeOpts{Namespace: plugin.Namespace, Subsystem: "consul",
		Name: "tier_generation", Help: "The generation of the state the tier serves: it moves with every change served."})
)
