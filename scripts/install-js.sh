#!/usr/bin/env bash
# Installs the JavaScript clients the integration tests use (tests/js: the npm `eventsource` and
# `openai` packages and `playwright-core`, which drives Debian's /usr/bin/chromium and downloads
# no browser; pinned by tests/js/package-lock.json) with `npm ci`, only when tests/js/node_modules is
# missing or older than package.json / package-lock.json. Idempotent and quiet when everything
# is present, so `make test` can call it every time. Needs node and npm (scripts/install-deps.sh).
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/js" && pwd)"
stamp="$dir/node_modules/.hsc-installed"

if [ -f "$stamp" ] && [ "$stamp" -nt "$dir/package.json" ] && [ "$stamp" -nt "$dir/package-lock.json" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install-js: npm is missing; run scripts/install-deps.sh" >&2
    exit 1
fi
echo "install-js: npm ci in $dir" >&2
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
touch "$stamp"
