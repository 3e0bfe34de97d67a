package answer

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// TTLs are the answer TTLs, with Consul's rules for services
// (dns_config.service_ttl): an exact service name wins, then the longest
// "prefix*" pattern that matches, then "*", else 0.
type TTLs struct {
	exact    map[string]uint32
	prefixes []prefixTTL // longest prefix first
	fallback uint32
	Node     uint32
}

type prefixTTL struct {
	prefix string
	ttl    uint32
}

// SetService adds a service TTL rule: a name, a "prefix*", or "*".
func (t *TTLs) SetService(pattern string, ttl uint32) error {
	pattern = strings.ToLower(pattern)
	switch {
	case pattern == "*":
		t.fallback = ttl
	case strings.HasSuffix(pattern, "*"):
		prefix := strings.TrimSuffix(pattern, "*")
		if strings.Contains(prefix, "*") {
			return fmt.Errorf("service TTL pattern %q: only a trailing * is allowed", pattern)
		}
		t.prefixes = slices.DeleteFunc(t.prefixes, func(p prefixTTL) bool { return p.prefix == prefix })
		t.prefixes = append(t.prefixes, prefixTTL{prefix, ttl})
		slices.SortStableFunc(t.prefixes, func(a, b prefixTTL) int { return len(b.prefix) - len(a.prefix) })
	case strings.Contains(pattern, "*"):
		return fmt.Errorf("service TTL pattern %q: only a trailing * is allowed", pattern)
	default:
		if t.exact == nil {
			t.exact = make(map[string]uint32)
		}
		t.exact[pattern] = ttl
	}
	return nil
}

// Service returns the TTL of a service's records; service is lower case.
func (t *TTLs) Service(service string) uint32 {
	if ttl, ok := t.exact[service]; ok {
		return ttl
	}
	for _, p := range t.prefixes {
		if strings.HasPrefix(service, p.prefix) {
			return p.ttl
		}
	}
	return t.fallback
}

// values lists every TTL that Service can return, each once.
func (t *TTLs) values() []uint32 {
	out := []uint32{t.fallback}
	add := func(ttl uint32) {
		if !slices.Contains(out, ttl) {
			out = append(out, ttl)
		}
	}
	for _, ttl := range t.exact {
		add(ttl)
	}
	for _, p := range t.prefixes {
		add(p.ttl)
	}
	return out
}

// equal reports whether t and u give every name the same TTL.
func (t *TTLs) equal(u *TTLs) bool {
	return t.fallback == u.fallback && t.Node == u.Node && maps.Equal(t.exact, u.exact) && slices.Equal(t.prefixes, u.prefixes)
}
