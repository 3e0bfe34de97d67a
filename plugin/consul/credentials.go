package consul

import "github.com/coredns-consul/coredns-consul/plugin/consul/replica"

var _ replica.CredentialObserver = observer{}

// CredentialReload counts a change seen in the token or TLS files.
func (o observer) CredentialReload(kind string, ok bool) {
	result := "ok"
	if !ok {
		result = "error"
	}
	credentialReloads.WithLabelValues(kind, result).Inc()
}
