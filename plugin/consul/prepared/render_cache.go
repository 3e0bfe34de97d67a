package prepared

import (
	"hash/maphash"
	"sync/atomic"

	"github.com/coredns-consul/coredns-consul/plugin/consul/snapshot"
)

// renderCache keeps a template's latest renders. HIL's evaluation of one
// field costs some 50 allocations, ten times what the rest of a question
// costs, and DNS clients ask for the same few names again and again. It is
// direct-mapped: a name has one slot, taken by the latest render of a name
// that hashes there. Lock-free, and bounded whatever names clients make up.
type renderCache [renderSlots]atomic.Pointer[rendered]

const renderSlots = 64

type rendered struct {
	name, segment string
	query         *snapshot.Query
}

var renderSeed = maphash.MakeSeed()

// renderCached is render, for a query that the caller only reads: it may be
// shared with other questions. A failed render is not kept: Consul answers
// such questions, at a cost far above an evaluation.
func (t *template) renderCached(name, segment string) (*snapshot.Query, error) {
	slot := &t.renders[maphash.String(renderSeed, name)%renderSlots]
	if r := slot.Load(); r != nil && r.name == name && r.segment == segment {
		return r.query, nil
	}
	q, err := t.render(name, segment)
	if err != nil {
		return nil, err
	}
	slot.Store(&rendered{name: name, segment: segment, query: q})
	return q, nil
}
