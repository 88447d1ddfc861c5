#!/usr/bin/env bash
# Installs the Debian packages hsc needs, only those that are missing. Idempotent and quiet when
# everything is present, so `make run` and `make test` can call it every time.
set -euo pipefail

packages=(
    build-essential cmake pkg-config git
    libuv1-dev        # event loop, timers, processes, threads
    node-llhttp       # the HTTP/1.1 parser's C sources, compiled into libhsc
    libjansson-dev    # JSON
    libcurl4-openssl-dev
    libssl-dev        # OpenSSL 3: TLS (docs/tls.md) and HMAC-SHA256 for JWTs (docs/security.md)
    libnghttp2-dev    # HTTP/2 framing, HPACK and flow control (docs/tls.md)
    nghttp2-client    # nghttp and h2load: HTTP/2 stream-level tests and benchmarks
    libcmocka-dev     # unit tests
    clang libclang-rt-14-dev  # sanitizers and libFuzzer
    clang-format
    python3 curl      # integration tests use real clients
    nodejs            # the npm eventsource client (tests/js, scripts/install-js.sh)
    chromium          # headless browser for tests/integration/test_browser.py
    nginx             # a real front end for tests/integration/test_smuggling.py
    redis-server redis-tools  # cluster mode's tests and `make cluster` (docs/cluster.md)
    libhiredis-dev    # the Redis protocol (command formatting, reply reader) for --redis
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm: Debian packages it apart from nodejs; NodeSource's nodejs bundles it (and conflicts with
# Debian's npm package), so it is asked for only when the command is missing.
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# Debian's nginx and redis-server start their services (on ports 80 and 6379) when installed;
# the tests start their own on loopback. A policy-rc.d that answers 101 ("action forbidden") keeps every service from starting
# during the install; it is removed afterwards, and one that was already there is left alone.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
