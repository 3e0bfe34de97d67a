package replica

import (
	"time"

	"golang.org/x/time/rate"
)

// Config tunes a Replicator. Start from DefaultConfig: zero rates and
// intervals are not defaults.
type Config struct {
	// Addresses of Consul agents or servers, in order of preference; empty
	// means the address in the api.Config.
	Addresses []string
	// Datacenter to replicate; empty means the agent's own.
	Datacenter string
	// Peer, when set, replicates the services imported from that cluster
	// peer instead of a datacenter's (peers.go).
	Peer string
	// OnPeerings, when set, is given the peerings Consul lists, read every
	// PeeringsInterval (Consul offers no blocking query for them).
	OnPeerings       func([]Peering)
	PeeringsInterval time.Duration
	// Namespace and Partition are passed through to Consul Enterprise.
	Namespace, Partition string
	Consistency          Consistency
	// Wait is the blocking-query wait time sent to Consul.
	Wait time.Duration
	// RequestSlack is how long past Wait (plus Consul's jitter) a request may
	// take before it is abandoned as hung.
	RequestSlack time.Duration
	// RateLimit and RateBurst bound the request rate of each blocking loop.
	RateLimit rate.Limit
	RateBurst int
	// BackoffMin and BackoffMax bound the delay after a failed request.
	BackoffMin, BackoffMax time.Duration
	// MaxWatchers caps the per-service blocking queries. Over plain HTTP
	// each holds a connection, and a Consul agent accepts 200 per client IP
	// by default; over HTTPS they share HTTP/2 connections. AutoWatchers
	// sizes the budget from the agent's limit (watcherBudget).
	MaxWatchers int
	// Share is how many replicas (one per replicated datacenter) read
	// through the same agents and share their connection limit; 0 or 1 for
	// a replica alone.
	Share int
	// Pool, when set, lends the budget a replica does not need to the
	// others in it.
	Pool *Pool
	// WatchStarts bounds how many watchers may wait for their first answer
	// at once: a Consul agent that sees thousands of new blocking queries
	// at once grows its memory by several times what they cost it once
	// running, while a bounded number in flight starts them as fast as the
	// agent takes them.
	WatchStarts int
	// Fetchers is the number of concurrent fetches and sweep probes.
	Fetchers int
	// FetchRate bounds fetches and probes per second, all fetchers together.
	FetchRate rate.Limit
	// SummaryInterval is the least time between two reads of the services'
	// summaries; SweepInterval the least time between two probe sweeps.
	SummaryInterval, SweepInterval time.Duration
	// PublishInterval is the least time between two snapshots: changes that
	// land within it are published together; a lone change is not delayed.
	PublishInterval time.Duration
	// LivenessInterval is how often the agent is pinged, so that a Consul
	// that hangs is noticed within LivenessInterval + LivenessTimeout even
	// while every blocking query waits; 0 turns the pings off.
	LivenessInterval, LivenessTimeout time.Duration
	// Observer hears of every request's outcome and every publication.
	Observer Observer
	// OnDatacenters, when set, is given the datacenters Consul knows, read
	// every DatacentersInterval (Consul offers no blocking query for them),
	// and the same nearest first (nil when the coordinates cannot be read).
	OnDatacenters       func(known, byDistance []string)
	DatacentersInterval time.Duration
	// OnCluster, when set, is given the cluster's identity once read (see
	// Replicator.Cluster).
	OnCluster func(id string)
	// OnAgentDNS, when set, is given the agent's DNS settings once read,
	// and again whenever they change, read every AgentInterval.
	OnAgentDNS    func(AgentDNS)
	AgentInterval time.Duration
	// Coordinates reads the nodes' network coordinates every
	// CoordinateInterval: prepared queries sort by them only in the agent's
	// own datacenter.
	Coordinates bool
}

// Observer hears about the replica; its methods must not block.
type Observer interface {
	// Request reports a request's outcome: nil, or why it failed.
	Request(err error)
	// Published reports a new snapshot, delay after the first change in it
	// arrived from Consul.
	Published(delay time.Duration)
	// Filtered reports an answer Consul cut short because the ACL token may
	// not read all of it.
	Filtered()
	// Swept reports a sweep of per-service probes: a change no cheap signal
	// named.
	Swept(probes int)
	// Watching reports how many of the listed services have a watcher of
	// their own, and how many may.
	Watching(watched, services, budget int)
	// Panicked reports a panic recovered in one of the replica's loops,
	// which then restarts.
	Panicked(loop string)
	// Invalid reports n values in an answer from Consul that the replica
	// could not use and skipped (a null where an object belongs): what
	// names the kind of value.
	Invalid(what string, n int)
}

// DefaultConfig returns the settings used when the Corefile says nothing.
func DefaultConfig() Config {
	return Config{
		Wait:            5 * time.Minute,
		RequestSlack:    10 * time.Second,
		RateLimit:       20,
		RateBurst:       10,
		BackoffMin:      250 * time.Millisecond,
		BackoffMax:      30 * time.Second,
		MaxWatchers:     AutoWatchers,
		WatchStarts:     4,
		Fetchers:        16,
		FetchRate:       5000,
		SummaryInterval: 10 * time.Millisecond,
		SweepInterval:   time.Second,
		PublishInterval: 5 * time.Millisecond,

		LivenessInterval: 5 * time.Second,
		LivenessTimeout:  2 * time.Second,

		DatacentersInterval: 10 * time.Second,
		PeeringsInterval:    10 * time.Second,
		AgentInterval:       30 * time.Second,
	}
}

// Watcher budgets.
const (
	// AutoWatchers sizes the budget from the agent's connection limit.
	AutoWatchers = -1
	// HTTPWatchers is the budget when the agent's limit cannot be read: it
	// leaves room under Consul's default of 200 connections per client IP
	// for the fetchers, the detector loops and other clients.
	HTTPWatchers = 128
	// HTTPSWatchers, and the budget under an agent without a limit, bound
	// the agent's memory, not connections: HTTP/2 carries up to 250
	// concurrent requests on each connection.
	HTTPSWatchers = 8192
)

// overhead is the connections a replica needs besides its watchers: the
// fetchers and the six blocking loops (service list, nodes, checks,
// prepared queries, ingress and terminating gateways' entries). The brief periodic reads (liveness, datacenters,
// coordinates) borrow an idle fetcher's connection: the fetchers are all
// busy only during a burst, when those reads may wait for one.
func (c Config) overhead() int { return c.Fetchers + 6 }
