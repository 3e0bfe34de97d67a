package prepared

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/hashicorp/hil"
	"github.com/hashicorp/hil/ast"

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
	query   *snapshot.Query
	re      *regexp.Regexp
	fields  []field // every string visitStrings visits, in its order
	renders renderCache
}

// field is one string of the query's Service, parsed with HIL.
type field struct {
	path  string   // as Consul's walk names it, for errors
	tree  ast.Node // nil when the field's value is the same for every name
	value string   // the value when tree is nil
}

// compile mirrors prepared_query.Compile (template.go:44-103): every string
// parsed with HIL, the regexp compiled, then a test render with the query's
// own name, which makes a template that cannot render fail here rather than
// at lookup time.
func compile(q *snapshot.Query) (*template, error) {
	if q.Template.Type != templateTypeNamePrefixMatch {
		return nil, fmt.Errorf("bad Template.Type '%s'", q.Template.Type)
	}
	t := &template{query: q}
	svc := cloneService(&q.Service)
	err := visitStrings(&svc, func(path fieldPath, v *string) error {
		if depth := nesting(*v); depth > maxNesting {
			return fmt.Errorf("bad format in Service%s: nested %d deep, more than %d", path, depth, maxNesting)
		}
		tree, err := hil.Parse(*v)
		if err != nil {
			return fmt.Errorf("bad format '%s' in Service%s: %w", *v, path, err)
		}
		t.fields = append(t.fields, field{path: path.String(), tree: tree})
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
	if err := t.testRender(&svc); err != nil {
		return nil, err
	}
	return t, nil
}

// maxNesting bounds how deeply a template string may nest before HIL parses
// it: its parser recurses once per level with no limit, and a string nested
// a million deep (6 KB in a gzipped snapshot file) overflowed the stack,
// which is fatal, not a panic.
// Consul's own templates nest a few levels (${match(1)}).
const maxNesting = 64

// nesting is how deeply s nests interpolations, parentheses and brackets, as
// the parser would descend: every opening counts, quotes or not, so the
// bound errs on the side of refusing.
func nesting(s string) int {
	depth, deepest := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ')', ']', '}':
			depth = max(0, depth-1)
		}
	}
	return deepest
}

// testRender is Compile's test render (template.go:91-98), done on the
// compiled trees themselves: HIL's type check rewrites a tree at its first
// evaluation, as it does Consul's, and every render then evaluates the tree
// as rewritten. A field that reads no variable and does not call match()
// keeps the value a render would give it, so that renders need not
// evaluate it again; that is the value of a second evaluation, which can
// differ from the first (see detach).
func (t *template) testRender(svc *snapshot.QueryService) error {
	cfg := t.evalConfig(t.query.Name, "")
	i := 0
	return visitStrings(svc, func(_ fieldPath, v *string) error {
		f := &t.fields[i]
		i++
		if _, err := f.eval(f.tree, *v, cfg); err != nil {
			return err
		}
		if readsScope(f.tree) {
			return nil
		}
		if s, err := f.eval(detach(f.tree), *v, cfg); err == nil {
			f.tree, f.value = nil, s
		}
		return nil
	})
}

// render mirrors CompiledTemplate.Render (template.go:108-209). name is used
// exactly as given: Consul's DNS server lower-cases the question first
// (agent/dns.go:781), and name.suffix is a case-sensitive TrimPrefix of the
// query's Name, so a template named "Geo-" sees the whole name as its suffix.
func (t *template) render(name, segment string) (*snapshot.Query, error) {
	var cfg *hil.EvalConfig
	q := *t.query
	q.Service = cloneService(&t.query.Service)
	i := 0
	err := visitStrings(&q.Service, func(_ fieldPath, v *string) error {
		f := &t.fields[i]
		i++
		if f.tree == nil {
			*v = f.value
			return nil
		}
		if cfg == nil {
			cfg = t.evalConfig(name, segment)
		}
		s, err := f.eval(detach(f.tree), *v, cfg)
		*v = s
		return err
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
