package prepared

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// templateTypeNamePrefixMatch is the only template type Consul knows
// (agent/structs/prepared_query.go QueryTemplateTypeNamePrefixMatch).
const templateTypeNamePrefixMatch = "name_prefix_match"

// IsTemplate reports whether q is a template, as Consul decides it: any
// Template.Type makes one (agent/consul/prepared_query/template.go:20).
func IsTemplate(q *snapshot.Query) bool { return q.Template.Type != "" }

// template is a compiled prepared query template: Consul's CompiledTemplate.
type template struct {
	query  *snapshot.Query
	re     *regexp.Regexp
	fields map[string]hilNode // by field path, as Consul's walk names them
}

// compile mirrors prepared_query.Compile (template.go:44-103), including its
// test render with the query's own name, which makes a template that cannot
// render fail here rather than at lookup time.
func compile(q *snapshot.Query) (*template, error) {
	if q.Template.Type != templateTypeNamePrefixMatch {
		return nil, fmt.Errorf("bad Template.Type '%s'", q.Template.Type)
	}
	t := &template{query: q, fields: make(map[string]hilNode)}
	svc := cloneService(&q.Service)
	err := visitStrings(&svc, func(path string, v *string) error {
		n, err := parseHIL(*v)
		if err != nil {
			return fmt.Errorf("bad format '%s' in Service%s: %w", *v, path, err)
		}
		t.fields[path] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	if q.Template.Regexp != "" {
		if t.re, err = regexp.Compile(q.Template.Regexp); err != nil {
			return nil, fmt.Errorf("bad Regexp: %w", err)
		}
	}
	if _, err := t.render(q.Name, ""); err != nil {
		return nil, err
	}
	return t, nil
}

// render mirrors CompiledTemplate.Render (template.go:108-209). name is used
// exactly as given: Consul's DNS server lower-cases the question first
// (agent/dns.go:781), and name.suffix is a case-sensitive TrimPrefix of the
// query's Name, so a template named "Geo-" sees the whole name as its suffix.
func (t *template) render(name, segment string) (*snapshot.Query, error) {
	var match []string
	if t.re != nil {
		match = t.re.FindStringSubmatch(name)
	}
	sc := &hilScope{
		vars: map[string]string{
			"name.full":     name,
			"name.prefix":   t.query.Name,
			"name.suffix":   strings.TrimPrefix(name, t.query.Name),
			"agent.segment": segment,
		},
		match: match,
	}
	q := *t.query
	q.Service = cloneService(&t.query.Service)
	err := visitStrings(&q.Service, func(path string, v *string) error {
		n, ok := t.fields[path]
		if !ok {
			return nil
		}
		s, err := evalHIL(n, sc)
		if err != nil {
			return fmt.Errorf("bad evaluation for '%s' in Service%s: %w", *v, path, err)
		}
		*v = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	if q.Template.RemoveEmptyTags {
		q.Service.Tags = slices.DeleteFunc(q.Service.Tags, func(tag string) bool { return tag == "" })
	}
	return &q, nil
}

// Render renders a template query for name (the query name as the DNS
// question gives it, lower case) and the agent's network segment; a query
// that is not a template comes back as it is. It compiles q each time: a Set
// keeps compiled templates for repeated lookups.
func Render(q *snapshot.Query, name, segment string) (*snapshot.Query, error) {
	if !IsTemplate(q) {
		return q, nil
	}
	t, err := compile(q)
	if err != nil {
		return nil, fmt.Errorf("prepared query %q: %w", q.Name, err)
	}
	r, err := t.render(name, segment)
	if err != nil {
		return nil, fmt.Errorf("prepared query %q: %w", q.Name, err)
	}
	return r, nil
}

// cloneService copies everything a render writes to, so that the definition
// shared by snapshots is never modified.
func cloneService(s *snapshot.QueryService) snapshot.QueryService {
	c := *s
	c.Failover.Datacenters = slices.Clone(s.Failover.Datacenters)
	c.Failover.Targets = slices.Clone(s.Failover.Targets)
	c.IgnoreCheckIDs = slices.Clone(s.IgnoreCheckIDs)
	c.Tags = slices.Clone(s.Tags)
	c.NodeMeta = maps.Clone(s.NodeMeta)
	c.ServiceMeta = maps.Clone(s.ServiceMeta)
	return c
}

// visitStrings calls fn on every string of a ServiceQuery that Consul's
// reflective walk interpolates (agent/consul/prepared_query/walk.go): every
// string field, slice element and map value, in the struct's field order;
// map keys are not interpolated. Paths follow walk's naming.
func visitStrings(s *snapshot.QueryService, fn func(path string, v *string) error) error {
	visit := func(path string, v *string) error { return fn(path, v) }
	visitSlice := func(path string, vs []string) error {
		for i := range vs {
			if err := visit(fmt.Sprintf("%s[%d]", path, i), &vs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	visitMap := func(path string, m map[string]string) error {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			v := m[k]
			if err := visit(fmt.Sprintf("%s[%s]", path, k), &v); err != nil {
				return err
			}
			m[k] = v
		}
		return nil
	}
	if err := visit(".Service", &s.Service); err != nil {
		return err
	}
	if err := visit(".SamenessGroup", &s.SamenessGroup); err != nil {
		return err
	}
	if err := visitSlice(".Failover.Datacenters", s.Failover.Datacenters); err != nil {
		return err
	}
	for i := range s.Failover.Targets {
		t := &s.Failover.Targets[i]
		if err := visit(fmt.Sprintf(".Failover.Targets[%d].Peer", i), &t.Peer); err != nil {
			return err
		}
		if err := visit(fmt.Sprintf(".Failover.Targets[%d].Datacenter", i), &t.Datacenter); err != nil {
			return err
		}
	}
	if err := visitSlice(".IgnoreCheckIDs", s.IgnoreCheckIDs); err != nil {
		return err
	}
	if err := visit(".Near", &s.Near); err != nil {
		return err
	}
	if err := visitSlice(".Tags", s.Tags); err != nil {
		return err
	}
	if err := visitMap(".NodeMeta", s.NodeMeta); err != nil {
		return err
	}
	if err := visitMap(".ServiceMeta", s.ServiceMeta); err != nil {
		return err
	}
	return visit(".Peer", &s.Peer)
}
