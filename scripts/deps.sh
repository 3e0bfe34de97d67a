#!/usr/bin/env bash
# Installs the Debian packages that provide the given commands, only for the
# commands that are missing. Usage: scripts/deps.sh dig curl haproxy ...
set -euo pipefail

package_for() {
  case "$1" in
    dig) echo bind9-dnsutils ;;
    *) echo "$1" ;; # curl, haproxy, dnsperf, make, git: package named as the command
  esac
}

missing=()
for cmd in "$@"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$(package_for "$cmd")")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
