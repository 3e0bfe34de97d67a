package replica

import (
	"context"
	"errors"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Cluster reads the cluster's identity: the trust domain of its Connect CA,
// "<cluster-id>.consul", which every token may read. A cluster whose
// Connect is off has none: "".
func (s *consulSource) Cluster(ctx context.Context) (string, Meta, error) {
	var roots struct{ TrustDomain string }
	meta, err := s.raw(ctx, "/v1/connect/ca/roots", &roots, true)
	if none(err) {
		return "", Meta{KnownLeader: true}, nil
	}
	if err != nil {
		return "", meta, err
	}
	return strings.ToLower(roots.TrustDomain), meta, nil
}

// none reports an answer that says the cluster has no identity to give:
// Connect is off ("Connect must be enabled", a 500), or the endpoint is
// refused or unknown (4xx). Other 5xx (no leader yet) are retried.
func none(err error) bool {
	var status api.StatusError
	if !errors.As(err, &status) {
		return false
	}
	return status.Code < 500 || strings.Contains(status.Body, "Connect must be enabled")
}

// readCluster reads the cluster's identity once, retrying while Consul does
// not answer, for OnCluster: it tells whether the data loaded from a
// snapshot file is this cluster's, and goes into the next file written.
func (r *Replicator) readCluster() {
	var id string
	read := func(ctx context.Context) (meta Meta, err error) {
		id, meta, err = r.src.Cluster(ctx)
		return meta, err
	}
	if !r.retry(r.run.ctx, "reading the cluster's identity", nil, read) {
		return
	}
	r.cluster.Store(&id)
	r.cfg.OnCluster(id)
}

// Cluster returns the identity of the cluster replicated ("<cluster-id>.consul",
// the trust domain of its Connect CA); known reports whether it was read,
// which only a replica with OnCluster does.
// A cluster without Connect has none: "", known.
func (r *Replicator) Cluster() (id string, known bool) {
	if p := r.cluster.Load(); p != nil {
		return *p, true
	}
	return "", false
}
