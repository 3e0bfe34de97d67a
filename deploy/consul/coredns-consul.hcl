# Consul agent configuration for CoreDNS with the consul plugin: put it in the
# agent's configuration directory (e.g. /etc/consul.d/coredns-consul.hcl) of
# every agent a plugin reads from, and run `consul reload`.
#
# Why: the plugin gives every service a blocking query of its own, so that a
# change reaches DNS in milliseconds. Over plain HTTP each one holds a TCP
# connection, and an agent accepts 200 per client IP by default: the plugin
# then watches 153 services (it reads the limit at start-up and leaves an
# eighth to other clients) and finds changes to the others through detectors:
# registrations, deregistrations and health changes in tens of milliseconds
# more, a changed port or address of an unwatched instance only through a
# paced sweep of per-service probes (coredns_consul_sweeps_total counts them).
# It logs a warning with the numbers and the value to set here.
#
# Set the limit to at least (services + 22) x 8/7, rounded up: 1,400 for 1,000
# services, 5,800 for 5,000. Or reach the agent over HTTPS (address
# https://...): HTTP/2 carries the blocking queries over a few connections and
# no limit needs raising.
#
# What it costs (docs/fleet-cost.md, measured with Consul 1.22.5): each watched
# service costs the agent about 30 KB of heap (60-75 KB of RSS) and 4
# goroutines for the first plugin instance on it, half that for each further
# one on the same agent; the servers 1 goroutine and 5-7 KB of heap per
# service per subscribing agent. 5,000 services: about 420 MB RSS and 20,000
# goroutines on the agent. Two CoreDNS instances on one agent need twice the
# connections: count them all.
limits {
  http_max_conns_per_client = 1400
}
