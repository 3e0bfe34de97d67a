#!/usr/bin/env bash
# The local demo: a Consul dev agent on loopback, a few sample services, CoreDNS
# with the consul plugin, and real dig answers. Ctrl-C stops everything it
# started. Run it through `make demo`, which builds the binaries first.
#
# Ports (all on 127.0.0.1): by default Consul's HTTP API on 18500 (its server
# and serf ports on 18501-18503, CoreDNS's ready and metrics on 18504-18505)
# and DNS on 1053; DEMO_PORT_BASE and DEMO_DNS_PORT move them.
# DEMO_HOLD=0 prints the answers and exits instead of waiting for Ctrl-C
# (`make test` runs it that way to keep this script honest); the ports it is
# not given are then picked free, as every other test does, so that a demo
# left running (or anything else on 18500 or 1053) cannot fail the tests.
#
# `scripts/demo.sh --check-ports` only checks that the ports are free, and
# exits: `make demo` runs it before building rather than after.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
consul="$root/.cache/bin/consul"
coredns="$root/bin/coredns"
hold=${DEMO_HOLD:-1}
check_only=0
case "${1:-}" in
  --check-ports) check_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--check-ports]" >&2; exit 2 ;;
esac

# in_use PORT: whether anything holds PORT on this machine, over TCP or UDP
# (Consul's serf and DNS use both), on any address. A TCP socket in
# TIME_WAIT (state 06) does not count: the servers bind with SO_REUSEADDR,
# and the last demo's connections leave some behind for a minute.
in_use() {
  local want file _sl local _remote state _rest
  want=$(printf '%04X' "$1")
  for file in /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6; do
    [ -r "$file" ] || continue
    while read -r _sl local _remote state _rest; do
      [ "${local##*:}" = "$want" ] || continue
      case "$file" in */tcp*) [ "$state" = "06" ] && continue ;; esac
      return 0
    done <"$file"
  done
  # Without /proc (not Linux): at least a TCP listener on loopback.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_port VAR: sets VAR to a random free port not picked before, below
# 32768, where Linux does not take ports for outgoing connections.
picked=" "
pick_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((10000 + RANDOM % 22768))
    case "$picked" in *" $port "*) continue ;; esac
    in_use "$port" && continue
    picked+="$port "
    printf -v "$1" '%s' "$port"
    return 0
  done
  echo "no free port found on 127.0.0.1" >&2
  exit 1
}

# The default or given ports must be free; in DEMO_HOLD=0 the others are
# picked free. fixed holds PORT:PURPOSE pairs to check.
fixed=()
# Given ports are never picked for something else.
[ -n "${DEMO_DNS_PORT:-}" ] && picked+="$DEMO_DNS_PORT "
if [ -n "${DEMO_PORT_BASE:-}" ]; then
  for i in 0 1 2 3 4 5; do picked+="$((DEMO_PORT_BASE + i)) "; done
fi
if [ -n "${DEMO_PORT_BASE:-}" ] || [ "$hold" != "0" ]; then
  base=${DEMO_PORT_BASE:-18500}
  http_port=$base
  server_port=$((base + 1))
  serf_lan_port=$((base + 2))
  serf_wan_port=$((base + 3))
  ready_port=$((base + 4))
  metrics_port=$((base + 5))
  fixed+=("$http_port:Consul HTTP" "$server_port:Consul server RPC" "$serf_lan_port:Consul serf LAN"
    "$serf_wan_port:Consul serf WAN" "$ready_port:CoreDNS ready" "$metrics_port:CoreDNS metrics")
else
  for var in http_port server_port serf_lan_port serf_wan_port ready_port metrics_port; do
    pick_port "$var"
  done
fi
if [ -n "${DEMO_DNS_PORT:-}" ] || [ "$hold" != "0" ]; then
  dns_port=${DEMO_DNS_PORT:-1053}
  fixed+=("$dns_port:CoreDNS DNS")
else
  pick_port dns_port
fi

# Another demo (or anything else) on these ports would answer in our place,
# or stop Consul or CoreDNS from starting.
busy=0
for entry in ${fixed[@]+"${fixed[@]}"}; do
  if in_use "${entry%%:*}"; then
    echo "port ${entry%%:*} on 127.0.0.1 (${entry#*:}) is in use" >&2
    busy=1
  fi
done
if [ "$busy" = 1 ]; then
  cat >&2 <<EOF
The demo needs it. Stop what holds it ('ss -tulpn | grep :PORT' names the process; an earlier
'make demo' still running?), or move the demo, e.g. DEMO_PORT_BASE=28500 DEMO_DNS_PORT=2053 make demo
(DEMO_PORT_BASE moves the ports BASE to BASE+5). With DEMO_HOLD=0 the demo picks free ports itself.
EOF
  exit 1
fi
[ "$check_only" = 1 ] && exit 0

for bin in "$consul" "$coredns"; do
  [ -x "$bin" ] || { echo "missing $bin: run 'make demo'" >&2; exit 1; }
done
for cmd in dig curl; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd: run 'make demo' (it installs it)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "stopping..."; exit 0' INT TERM

wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2
  return 1
}

echo "==> starting a Consul dev agent on 127.0.0.1:$http_port"
# deploy/consul/coredns-consul.hcl raises the agent's connection limit per
# client so that the plugin can give every service a blocking query of its
# own over plain HTTP: what every agent the plugin reads from should have.
echo "    with deploy/consul/coredns-consul.hcl: limits { http_max_conns_per_client = 1400 }"
"$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node demo \
  -config-file "$root/deploy/consul/coredns-consul.hcl" \
  -http-port "$http_port" -server-port "$server_port" \
  -serf-lan-port "$serf_lan_port" -serf-wan-port "$serf_wan_port" \
  -dns-port -1 -grpc-port -1 -grpc-tls-port -1 >"$work/consul.log" 2>&1 &
pids+=($!)
consul_api="http://127.0.0.1:$http_port"
wait_for "Consul's leader" sh -c "curl -sf $consul_api/v1/status/leader | grep -q :" ||
  { cat "$work/consul.log"; exit 1; }

register() { # register NODE NODE_ADDR SERVICE_JSON CHECK_STATUS
  local id
  id=$(printf '%s' "$3" | sed -n 's/.*"ID": *"\([^"]*\)".*/\1/p')
  curl -sSf -X PUT "$consul_api/v1/catalog/register" -d @- >/dev/null <<JSON
{"Node": "$1", "Address": "$2", "Service": $3,
 "Checks": [{"CheckID": "check:$id", "Name": "$id health", "Status": "$4", "ServiceID": "$id"}]}
JSON
}

echo "==> registering sample services"
register web-1 127.0.0.21 '{"ID": "web-1", "Service": "web", "Port": 8080, "Tags": ["v1"]}' passing
register web-2 127.0.0.22 '{"ID": "web-2", "Service": "web", "Port": 8080, "Tags": ["v1"]}' passing
register web-3 127.0.0.23 '{"ID": "web-3", "Service": "web", "Port": 9090, "Address": "127.0.1.23", "Tags": ["v2"], "Weights": {"Passing": 5, "Warning": 1}}' passing
register web-4 127.0.0.24 '{"ID": "web-4", "Service": "web", "Port": 8080}' critical
register db-1 127.0.0.31 '{"ID": "db-1", "Service": "db", "Port": 5432}' passing
echo "    web: 3 healthy instances (web-3 with its own address and weight 5), web-4 failing its check; db: 1 instance"

cat >"$work/Corefile" <<EOF
consul.:$dns_port {
    bind 127.0.0.1
    errors
    log
    bufsize 1232
    ready 127.0.0.1:$ready_port
    prometheus 127.0.0.1:$metrics_port
    consul {
        address 127.0.0.1:$http_port
    }
}
EOF

echo "==> starting CoreDNS with the consul plugin on 127.0.0.1:$dns_port"
"$coredns" -conf "$work/Corefile" >"$work/coredns.log" 2>&1 &
pids+=($!)
wait_for "CoreDNS to be ready" curl -sf "http://127.0.0.1:$ready_port/ready" ||
  { cat "$work/coredns.log"; exit 1; }

show() {
  echo
  echo "\$ dig @127.0.0.1 -p $dns_port $*"
  dig @127.0.0.1 -p "$dns_port" +noall +answer +authority +additional +comments "$@" | grep -v '^;; \(Got answer\|OPT\|global\|WARNING\)\|^$' || true
}

show web.service.consul A
show web.service.consul SRV
show db.service.consul SRV +tcp
show nope.service.consul A

echo
echo "==> registering web-5 and asking again: no restart, no TTL to wait out"
register web-5 127.0.0.25 '{"ID": "web-5", "Service": "web", "Port": 8080}' passing
srv_count() { dig @127.0.0.1 -p "$dns_port" +short web.service.consul SRV | wc -l; }
# The demo checks itself: web must reach four SRV records (in milliseconds).
wait_for "web-5 in DNS" sh -c "[ \$(dig @127.0.0.1 -p $dns_port +short web.service.consul SRV | wc -l) -eq 4 ]" || {
  echo "demo check failed: web.service.consul has $(srv_count) SRV records, want 4" >&2
  cat "$work/coredns.log" >&2
  exit 1
}
show web.service.consul SRV

echo
echo "==> the plugin's watcher budget, read from the agent's limit (without the setting: 155 services)"
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^coredns_consul_(watcher_budget|watched_services|unwatched_services)' || true

[ "$hold" = "0" ] && { echo; echo "demo OK"; exit 0; }

cat <<EOF

==> running. Try:
    dig @127.0.0.1 -p $dns_port web.service.consul SRV
    dig @127.0.0.1 -p $dns_port db.service.consul A +tcp
    curl -s http://127.0.0.1:$metrics_port/metrics | grep coredns_dns_requests_total
    curl -X PUT $consul_api/v1/catalog/deregister -d '{"Node": "web-1", "ServiceID": "web-1"}'
Press Ctrl-C to stop Consul and CoreDNS.
EOF
while :; do sleep 1; done
