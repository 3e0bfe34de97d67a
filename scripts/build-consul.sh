#!/usr/bin/env bash
# Builds the real Consul agent that tests and the demo run, from the tools
# module in test/consul, into .cache/bin/consul. It does nothing when the
# binary is there and of the version test/consul/go.mod requires: the first
# build takes minutes, so it is cached outside git.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
want=$(sed -n -E 's|^[[:space:]]*(require[[:space:]]+)?github.com/hashicorp/consul v([^ ]+).*$|\2|p' "$root/test/consul/go.mod")
bin="$root/.cache/bin/consul"

if [ -x "$bin" ] && [ "$("$bin" version 2>/dev/null | head -n 1)" = "Consul v$want" ]; then
  exit 0
fi

echo "building Consul v$want into .cache/bin/consul (several minutes the first time)..."
mkdir -p "$(dirname "$bin")"
start=$(date +%s)
(cd "$root/test/consul" && go build -o "$bin.tmp" github.com/hashicorp/consul)
mv "$bin.tmp" "$bin"
echo "built Consul v$want in $(( $(date +%s) - start ))s"
