package prepared

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/serf/coordinate"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// ErrNotFound is returned when no query answers a name. Consul answers
// NXDOMAIN for it (structs.ErrQueryNotFound, agent/dns.go:1143), but a
// snapshot holds only the queries its token may list, and executing a query
// needs no right to read it, so a caller that is not sure to see every query
// should let Consul answer.
var ErrNotFound = errors.New("prepared query not found")

// ErrTemplate wraps the failure of a template to render for a name, which
// fails Consul's query too: its DNS answers SERVFAIL, and when HIL panics
// (an implicit string to integer conversion, see detach), Consul 1.22.5's
// agent crashes on the question. A caller that forwards such a question to
// Consul brings its agent down: SERVFAIL is Consul's answer without it.
var ErrTemplate = errors.New("prepared query template")

// errTemplateByID is Consul's answer to a template's ID
// (agent/consul/state/prepared_query.go:325-327); DNS turns it into SERVFAIL.
var errTemplateByID = errors.New("prepared query templates can only be resolved up by name, not by ID")

// Set indexes the prepared queries of one snapshot for lookups, with their
// templates compiled. It is immutable once built and safe for concurrent use.
type Set struct {
	snap      *snapshot.Snapshot
	byPtr     map[*snapshot.Query]*entry
	byID      map[string]*entry // lower-cased ID
	byName    map[string]*entry // lower-cased non-empty name
	templates []*entry          // by decreasing length of name, for the longest prefix

	coordsOnce sync.Once
	coords     map[string]coordinateSet // by lower-cased node name

	addrsOnce sync.Once
	addrs     map[string]string // node address to node name
}

// coordinateSet is a node's coordinate in each of its segments: Consul's
// librtt.CoordinateSet.
type coordinateSet map[string]*coordinate.Coordinate

type entry struct {
	query *snapshot.Query
	tmpl  *template
	err   error // why the template did not compile
}

// NewSet indexes the queries of s. prev, the set of the previous snapshot
// (or nil), lends it the templates it compiled for the same *snapshot.Query:
// consecutive snapshots share unchanged queries, so a template is compiled
// once, not at every catalog change.
func NewSet(s *snapshot.Snapshot, prev *Set) *Set {
	set := &Set{
		snap:   s,
		byPtr:  make(map[*snapshot.Query]*entry, len(s.Queries)),
		byID:   make(map[string]*entry, len(s.Queries)),
		byName: make(map[string]*entry, len(s.Queries)),
	}
	for _, q := range s.Queries {
		if q == nil {
			continue // a broken snapshot file's: Decode should not let it in
		}
		e := (*entry)(nil)
		if prev != nil {
			e = prev.byPtr[q]
		}
		if e == nil {
			e = &entry{query: q}
			if IsTemplate(q) {
				e.tmpl, e.err = compile(q)
			}
		}
		set.byPtr[q] = e
		set.byID[strings.ToLower(q.ID)] = e
		// Consul's name index is lower-cased and leaves out empty names
		// (state/prepared_query.go:30-38); its template index holds every
		// template, the empty name included (prepared_query_index.go:21-35).
		if name := strings.ToLower(q.Name); name != "" {
			if _, dup := set.byName[name]; !dup {
				set.byName[name] = e
			}
		}
		if IsTemplate(q) {
			set.templates = append(set.templates, e)
		}
	}
	slices.SortStableFunc(set.templates, func(a, b *entry) int {
		return cmp.Compare(len(b.query.Name), len(a.query.Name))
	})
	return set
}

// Snapshot returns the snapshot the set was built from.
func (s *Set) Snapshot() *snapshot.Snapshot { return s.snap }

// validUUID is Consul's test for a name that may be an ID
// (state/prepared_query.go:58-68).
var validUUID = regexp.MustCompile(`(?i)^[\da-f]{8}-[\da-f]{4}-[\da-f]{4}-[\da-f]{4}-[\da-f]{12}$`)

// Find returns the definition that answers name, as Consul's
// PreparedQueryResolve picks it (state/prepared_query.go:302-373): by ID when
// name looks like a UUID (case-insensitively, and never a template), then by
// exact name, case-insensitively, then the template with the longest name
// that prefixes name, case-insensitively; a template named "" is the
// catch-all. The template is not rendered: see Resolve.
func (s *Set) Find(name string) (*snapshot.Query, error) {
	e, err := s.find(name)
	if err != nil {
		return nil, err
	}
	return e.query, nil
}

func (s *Set) find(name string) (*entry, error) {
	if name == "" {
		return nil, errors.New("missing query ID") // Consul's ErrMissingQueryID
	}
	lower := strings.ToLower(name)
	if len(name) == 36 && validUUID.MatchString(name) {
		if e, ok := s.byID[lower]; ok {
			if IsTemplate(e.query) {
				return nil, errTemplateByID
			}
			return e, nil
		}
	}
	if e, ok := s.byName[lower]; ok {
		return e, nil
	}
	for _, e := range s.templates {
		if strings.HasPrefix(lower, strings.ToLower(e.query.Name)) {
			return e, nil
		}
	}
	return nil, ErrNotFound
}

// Resolve returns the query that answers name, rendered for name and the
// agent's segment when it is a template, for the caller to read only. name
// is the query name as the DNS question gives it (see QueryName). An error
// other than ErrNotFound is for Consul to answer, except ErrTemplate (see
// there).
func (s *Set) Resolve(name, segment string) (*snapshot.Query, error) {
	e, err := s.find(name)
	if err != nil {
		return nil, err
	}
	if !IsTemplate(e.query) {
		return e.query, nil
	}
	if e.err != nil {
		// Consul accepted the template: its answer is the one to give.
		return nil, fmt.Errorf("prepared query template %q does not compile: %w", e.query.Name, e.err)
	}
	q, err := e.tmpl.renderCached(name, segment)
	if err != nil {
		return nil, fmt.Errorf("%w %q for %q: %w", ErrTemplate, e.query.Name, name, err)
	}
	return q, nil
}

// QueryName turns the labels of a DNS question before its "query" label
// (lower case, as Consul's DNS server lower-cases the question) into the
// query name or ID to resolve, as agent/dns.go:1039-1054 does: an RFC 2782
// form "_name._tcp" gives "name" (the last label, the protocol, is dropped
// and so is the first underscore), and any other form joins the labels with
// dots, so that query names may contain dots. It returns "" for no labels,
// which Consul answers with NXDOMAIN.
func QueryName(labels []string) string {
	n := len(labels)
	if n >= 2 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[n-1], "_") {
		return strings.Join(labels[:n-1], ".")[1:]
	}
	return strings.Join(labels, ".")
}
