#!/usr/bin/env bash
# Installs what `make bench` compares hscd with, from Debian, only when missing: nginx with the
# nchan module, Pushpin (and zurl, which carries its origin requests), gnuplot for the plots.
# scripts/bench.sh starts each on loopback itself; no system service is used.
set -euo pipefail

packages=(nginx libnginx-mod-nchan pushpin zurl gnuplot-nox)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-bench-deps: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
