package prepared

import "time"

// ParseTTL reads a query's DNS.TTL as Consul's DNS server does
// (agent/dns.go:1628-1644). ok is false for an empty TTL: the answers then
// take the agent's service TTL for the query's (rendered) service, as for a
// service lookup. A value time.ParseDuration rejects is logged by Consul and
// "ignored", but the failed parse has already set the TTL to 0, so the
// answers carry a TTL of 0, not the service TTL. Consul refuses a bad or
// negative TTL when the query is written (prepared_query_endpoint.go:223-236),
// so neither should reach a snapshot; a negative one gives 0 here, where
// Consul's uint32 conversion would wrap it. Consul truncates the result to
// whole seconds when it writes the records.
func ParseTTL(s string) (ttl time.Duration, ok bool) {
	if s == "" {
		return 0, false
	}
	ttl, err := time.ParseDuration(s)
	if err != nil || ttl < 0 {
		return 0, true
	}
	return ttl, true
}
