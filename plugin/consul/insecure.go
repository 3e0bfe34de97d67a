package consul

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// verifyFromEnvironment undoes what api.DefaultConfig makes of a
// CONSUL_HTTP_SSL_VERIFY it cannot parse: it reads any value but a boolean
// ("yes", "on", a typo) as false and turns certificate verification off,
// saying nothing. Only a value that means false turns it off here; the
// other values keep verification on, with a warning (the value is no
// secret). readTLS turns it on again for a Corefile that names a CA.
func verifyFromEnvironment(client *api.Config) (warning string) {
	v, set := os.LookupEnv(api.HTTPSSLVerifyEnvName)
	if !set || v == "" {
		return ""
	}
	verify, err := strconv.ParseBool(v)
	if err != nil {
		client.TLSConfig.InsecureSkipVerify = false
		return fmt.Sprintf("%s=%q is not true or false: Consul's certificate is verified", api.HTTPSSLVerifyEnvName, v)
	}
	client.TLSConfig.InsecureSkipVerify = !verify
	return ""
}

// insecureWarnings are what start-up warns of in how Consul is reached:
// certificate verification off, and an ACL token sent in the clear to
// another machine. Never the token itself.
func insecureWarnings(cfg *config) []string {
	var out []string
	if cfg.client.TLSConfig.InsecureSkipVerify {
		out = append(out, fmt.Sprintf("Consul's TLS certificate is not verified (%s=false in the environment): "+
			"anyone in between can read the ACL token and forge answers; name the CA with tls in the Corefile", api.HTTPSSLVerifyEnvName))
	}
	if cfg.client.Token == "" && cfg.client.TokenFile == "" {
		return out
	}
	for _, addr := range cfg.replica.Addresses {
		if host, clear := plainRemote(addr, cfg.client.Scheme); clear {
			out = append(out, fmt.Sprintf("the ACL token is sent over plain HTTP to %s, which is not this machine: "+
				"anyone on the way can read it; use an https address", host))
		}
	}
	return out
}

// plainRemote reports whether addr is reached over plain HTTP on another
// machine, and its host; scheme is the default for an address without one.
// A name other than localhost may resolve anywhere: it counts as remote.
func plainRemote(addr, scheme string) (string, bool) {
	if s, rest, found := strings.Cut(addr, "://"); found {
		scheme, addr = s, rest
	}
	if scheme != "http" && scheme != "" {
		return "", false // https, or a unix socket
	}
	addr, _, _ = strings.Cut(addr, "/") // a path prefix
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return host, false
	}
	return host, true
}
