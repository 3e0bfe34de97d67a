package replica

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// budget decides how many services may have a watcher of their own: sized
// from the agent's connection limit when it says it (auto), and lent to or
// from the other replicas of a Pool. Its fields but allowance are guarded by
// the replica's mu.
type budget struct {
	auto  bool // sized from the agent's limit
	https bool // HTTP/2 shares connections: the budget bounds memory only
	// base is the replica's own share; in a pool, share replicas brought
	// one each.
	base, share int
	// overhead is the connections the replica needs besides its watchers;
	// capacity how many the agent allows all the replicas of a pool
	// together (0: unknown or unbounded).
	overhead, capacity int
	pool               *Pool
	// allowance is what the pool hands out, when in one.
	allowance atomic.Int64
	// warned is how many services were unwatched at the last warning.
	warned int
	// rebalance fits the replica's watchers to a changed allowance; it
	// takes the replica's lock.
	rebalance func()
}

func newBudget(cfg Config, https bool) *budget {
	b := &budget{auto: cfg.MaxWatchers < 0, https: https, base: cfg.MaxWatchers, share: max(1, cfg.Share),
		overhead: cfg.overhead(), pool: cfg.Pool}
	if b.auto {
		b.base = fallbackBudget(https, b.share)
	}
	return b
}

// limit is how many services may have a watcher now.
func (b *budget) limit() int {
	if b.pool != nil {
		return int(b.allowance.Load())
	}
	return b.base
}

// connections is the most HTTP connections the replica opens to one
// endpoint: every watcher, and its overhead. In a pool it may be lent the
// others' budgets: up to what the agent allows all of them, when known.
func (b *budget) connections() int {
	if b.pool != nil {
		return max(b.capacity, b.base*b.share+b.overhead)
	}
	return b.base + b.overhead
}

// size sets the budget from the agent's connection limit (0: none). It
// reports whether the connection cap changed.
func (b *budget) size(limit int) bool {
	before := b.connections()
	b.base = watcherBudget(limit, b.https, b.overhead, b.share)
	if !b.https && limit > 0 {
		// In a pool, what all the replicas may hold together: the limit
		// less what is left to other clients.
		b.capacity = limit - max(8, limit/8)
	}
	log.Infof("the agent allows %s per client: watching up to %d services one by one", describeLimit(limit), b.base)
	return b.connections() != before
}

// readAgent learns from the agent what the replica must know before it
// starts: the datacenter's name, which DNS answers carry in their SRV
// targets, when the configuration does not give it, and the agent's
// connection limit, which sizes the watcher budget. A token that may not read
// the agent (agent:read) costs only the limit: the budget falls back to one
// that fits Consul's default limit, said once in the log. It reports false
// when the replica stopped first.
func (r *Replicator) readAgent() bool {
	// The local replica also wants the agent's node name, which prepared
	// queries sort near ("_agent").
	if r.cfg.Datacenter != "" && !r.budget.auto && r.cfg.OnDatacenters == nil && r.cfg.OnAgentDNS == nil {
		r.setAgent(Agent{Datacenter: r.cfg.Datacenter})
		return true
	}
	var self Agent
	var refused bool
	return r.retry(r.run.ctx, "reading the agent's datacenter", nil, func(ctx context.Context) (Meta, error) {
		var err error
		self, err = r.src.Agent(ctx)
		switch {
		case denied(err) && r.cfg.Datacenter != "":
			if !refused {
				log.Warningf("the ACL token may not read the agent (agent:read), so its connection limit is unknown: watching at most %d services one by one, which fits the default limit", r.budget.base)
				if r.cfg.OnAgentDNS != nil {
					log.Warningf("the ACL token may not read the agent (agent:read), so its dns_config is not followed: answers use the Corefile's settings and Consul's defaults")
				}
			}
			refused = true
			r.setAgent(Agent{Datacenter: r.cfg.Datacenter})
			return Meta{}, nil
		case err != nil:
			return Meta{}, err
		case self.Datacenter == "" && r.cfg.Datacenter == "":
			return Meta{}, errors.New("agent did not report a datacenter; set one in the Corefile")
		}
		self.Datacenter = cmp.Or(r.cfg.Datacenter, self.Datacenter)
		r.setAgent(self)
		r.sizeBudget(self.MaxConnsPerClient)
		r.agentDNS = self.DNS
		switch {
		case r.cfg.OnAgentDNS == nil:
		case self.DNS == nil:
			log.Warningf("the agent does not report its DNS settings (no DebugConfig in /v1/agent/self): its dns_config is not followed")
		default:
			r.cfg.OnAgentDNS(*self.DNS)
		}
		return Meta{KnownLeader: true}, nil
	})
}

// setAgent records what the agent said.
func (r *Replicator) setAgent(a Agent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data.datacenter, r.data.agentNode = a.Datacenter, a.NodeName
}

// sizeBudget sizes an automatic budget from the agent's connection limit
// (nil: not reported), and caps the source's connections to fit. It runs
// before any loop that sends requests.
func (r *Replicator) sizeBudget(limit *int) {
	if !r.budget.auto {
		return
	}
	r.mu.Lock()
	resize := false
	if limit != nil {
		resize = r.budget.size(*limit)
	} else {
		log.Infof("the agent does not report its connection limit: watching at most %d services one by one", r.budget.base)
	}
	conns := r.budget.connections()
	r.mu.Unlock()
	if c, ok := r.src.(interface{ capConns(int) error }); ok && resize {
		if err := c.capConns(conns); err != nil {
			// Not seen: New built the same endpoints. The old cap is lower,
			// so requests past it wait for a connection, not a 429.
			log.Warningf("resizing the connection pool for %d watchers: %v", r.budget.base, err)
		}
	}
}

func describeLimit(limit int) string {
	if limit <= 0 {
		return "any number of connections"
	}
	return fmt.Sprintf("%d connections", limit)
}

// fallbackBudget is the budget when the agent's limit is not known.
func fallbackBudget(https bool, share int) int {
	if https {
		return HTTPSWatchers
	}
	return HTTPWatchers / max(1, share)
}

// watcherBudget is how many services may have a watcher under an agent that
// accepts limit connections per client IP (0: any number), when the replica
// needs overhead connections besides. Over plain HTTP each watcher holds a
// connection, and an eighth of the limit is left to other clients on the
// same address (a health checker, consul-template, a second CoreDNS); over
// HTTPS, HTTP/2 multiplexes them and the budget only bounds the agent's
// memory. share replicas (one per datacenter) split what is left equally.
func watcherBudget(limit int, https bool, overhead, share int) int {
	if https || limit <= 0 {
		return HTTPSWatchers
	}
	share = max(1, share)
	return min(HTTPSWatchers, max(0, (limit-max(8, limit/8))/share-overhead))
}

// limitFor is the agent connection limit under which a replica with overhead
// connections besides its watchers, one of share, watches every one of
// services.
func limitFor(services, overhead, share int) int {
	need := (services + overhead) * max(1, share) * 8 / 7 // the inverse of watcherBudget's eighth
	return (need/100 + 1) * 100
}

// warnLocked says, once and again whenever it gets worse, that not every
// one of services can be watched, with the numbers and the fix.
func (b *budget) warnLocked(services int) {
	unwatched := services - b.limit()
	if unwatched <= 0 || unwatched <= b.warned {
		return
	}
	b.warned = unwatched
	log.Warningf("%d services but a budget of %d watchers: changes to the other %d are found by detectors and may take longer "+
		"(up to a sweep for a changed port or address). To watch every service, set limits { http_max_conns_per_client = %d } "+
		"in the Consul agent's configuration, or reach the agent over https://, where HTTP/2 shares connections",
		services, b.limit(), unwatched, limitFor(services, b.overhead, b.share))
}
