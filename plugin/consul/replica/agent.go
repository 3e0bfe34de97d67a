package replica

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
)

// agentSelf is what the replica reads from /v1/agent/self.
type agentSelf struct {
	Config struct {
		Datacenter string
		NodeName   string
	}
	DebugConfig struct {
		// HTTPMaxConnsPerClient is limits.http_max_conns_per_client; 0 is
		// no limit. Absent (nil) when the agent does not report it.
		HTTPMaxConnsPerClient *int
	}
}

// readAgent learns from the agent what the replica must know before it
// starts: the datacenter's name, which DNS answers carry in their SRV
// targets, when the configuration does not give it, and the agent's
// connection limit, which sizes the watcher budget. A token that may not read
// the agent (agent:read) costs only the limit: the budget falls back to one
// that fits Consul's default limit, said once in the log.
func (r *Replicator) readAgent(ctx context.Context) error {
	needLimit := r.autoBudget
	// The local replica also wants the agent's node name, which prepared
	// queries sort near ("_agent").
	if r.cfg.Datacenter != "" && !needLimit && r.cfg.OnDatacenters == nil {
		r.setDatacenter(r.cfg.Datacenter)
		return nil
	}
	backoff := newBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
	for {
		var self agentSelf
		_, err := r.query(ctx, 0, 0, 10*time.Second, func(_ context.Context, client *api.Client, opts *api.QueryOptions) (*api.QueryMeta, error) {
			// Agent().Self() takes no context; a hung agent would hold Stop.
			if _, err := client.Raw().Query("/v1/agent/self", &self, opts); err != nil {
				return nil, err
			}
			return &api.QueryMeta{KnownLeader: true}, nil
		})
		var status api.StatusError
		denied := errors.As(err, &status) && (status.Code == http.StatusForbidden || status.Code == http.StatusUnauthorized)
		switch {
		case err == nil && (self.Config.Datacenter != "" || r.cfg.Datacenter != ""):
			r.setDatacenter(cmp.Or(r.cfg.Datacenter, self.Config.Datacenter))
			r.mu.Lock()
			r.agentNode = self.Config.NodeName
			r.mu.Unlock()
			switch limit := self.DebugConfig.HTTPMaxConnsPerClient; {
			case needLimit && limit != nil:
				r.sizeBudget(*limit)
			case needLimit:
				log.Infof("the agent does not report its connection limit: watching at most %d services one by one", r.budget())
			}
			return nil
		case denied && r.cfg.Datacenter != "":
			log.Warningf("the ACL token may not read the agent (agent:read), so its connection limit is unknown: watching at most %d services one by one, which fits the default limit", r.budget())
			r.setDatacenter(r.cfg.Datacenter)
			return nil
		case err == nil:
			err = errors.New("agent did not report a datacenter; set one in the Corefile")
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		delay := backoff.next()
		log.Warningf("reading the agent's datacenter: %v (retrying in %s)", err, delay.Round(time.Millisecond))
		if !sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

func (r *Replicator) setDatacenter(dc string) {
	r.mu.Lock()
	r.datacenter = dc
	r.mu.Unlock()
}

// sizeBudget sets the watcher budget from the agent's connection limit, and
// rebuilds the endpoints so that their connection cap follows. It runs
// before any loop that sends requests.
func (r *Replicator) sizeBudget(limit int) {
	https := allHTTPS(r.consul, r.cfg.Addresses)
	budget := watcherBudget(limit, https, r.cfg.overhead(), r.cfg.Share)
	log.Infof("the agent allows %s per client: watching up to %d services one by one", describeLimit(limit), budget)
	r.mu.Lock()
	same := budget == r.cfg.MaxWatchers
	r.cfg.MaxWatchers = budget
	if !https && limit > 0 {
		// In a pool, what all the replicas may hold together: the limit
		// less what is left to other clients.
		r.capacity = limit - max(8, limit/8)
		same = same && r.cfg.Pool == nil
	}
	r.mu.Unlock()
	if same {
		return
	}
	eps, err := newEndpoints(r.consul, r.cfg.Addresses, r.cfg.connections(r.capacity))
	if err != nil {
		// Not seen: New built the same endpoints. The old cap is lower, so
		// requests past it wait for a connection rather than meet a 429.
		log.Warningf("resizing the connection pool for %d watchers: %v", budget, err)
		return
	}
	old := r.endpoints
	r.endpoints = eps
	old.close()
}

func describeLimit(limit int) string {
	if limit <= 0 {
		return "any number of connections"
	}
	return fmt.Sprintf("%d connections", limit)
}

// budget is the most services that may have a watcher.
func (r *Replicator) budget() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.budgetLocked()
}

// fallbackBudget is the budget when the agent's limit is not known.
func fallbackBudget(consul *api.Config, addrs []string, share int) int {
	if allHTTPS(consul, addrs) {
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

// warnBudgetLocked says, once and again whenever it gets worse, that not
// every service can be watched, with the numbers and the fix.
func (r *Replicator) warnBudgetLocked() {
	unwatched := len(r.services) - r.budgetLocked()
	if unwatched <= 0 || unwatched <= r.warned {
		return
	}
	r.warned = unwatched
	log.Warningf("%d services but a budget of %d watchers: changes to the other %d are found by detectors and may take longer "+
		"(up to a sweep for a changed port or address). To watch every service, set limits { http_max_conns_per_client = %d } "+
		"in the Consul agent's configuration, or reach the agent over https://, where HTTP/2 shares connections",
		len(r.services), r.budgetLocked(), unwatched, limitFor(len(r.services), r.cfg.overhead(), r.cfg.Share))
}
