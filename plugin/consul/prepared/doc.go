// Package prepared evaluates Consul prepared queries against a replicated
// snapshot, the way Consul 1.22.5 executes them for its DNS interface
// (<name>.query.consul): query resolution by ID, name or template prefix,
// template rendering (with HashiCorp's HIL, the version Consul uses),
// instance filtering, sorting by network distance and datacenter failover.
// It is pure: it reads snapshots and never talks to Consul. Whatever it
// cannot decide exactly as Consul would (Connect, peers, sameness groups,
// datacenters it has no snapshot of) or that Consul fails (a template that
// does not render) it reports as "pass on", for the caller to forward the
// question to Consul.
//
// File references in comments are to github.com/hashicorp/consul@v1.22.5.
package prepared
