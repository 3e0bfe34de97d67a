#!/usr/bin/env bash
# Installs the Debian packages that provide the given commands, only for the
# commands that are missing. Usage: scripts/deps.sh dig curl cgo haproxy ...
# ("cgo" stands for a C compiler with libc's headers, which go test -race needs).
set -euo pipefail

# present CMD: whether the machine has CMD.
present() {
  case "$1" in
    cgo) command -v gcc >/dev/null 2>&1 && [ -f /usr/include/stdlib.h ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# packages CMD: the Debian packages that provide CMD.
packages() {
  case "$1" in
    dig) echo bind9-dnsutils ;;
    cgo) echo gcc libc6-dev ;;
    *) echo "$1" ;; # curl, haproxy, dnsperf, make, git: named as the command
  esac
}

missing=()
for cmd in "$@"; do
  if ! present "$cmd"; then
    read -r -a pkgs <<<"$(packages "$cmd")"
    missing+=("${pkgs[@]}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
