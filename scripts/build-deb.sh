#!/usr/bin/env bash
# `make deb`: builds the Debian packages (hscd, hsc, libhsc0, libhsc-dev) from debian/ in a copy
# of the tree's tracked files, runs lintian on them, and leaves the .deb files in $OUT
# (build/deb by default). Installs debhelper and lintian when they are missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/build/deb}"
missing=()
for p in debhelper lintian dpkg-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "build-deb: installing ${missing[*]}" >&2
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/hsc-0.1.0" "$out"
# The tree as git sees it (tracked and new files, uncommitted edits included; nothing ignored).
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - --no-recursion) | tar -xf - -C "$work/hsc-0.1.0"
(cd "$work/hsc-0.1.0" && dpkg-buildpackage -us -uc -b -j"$(nproc)")
cp "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$out"/
echo "build-deb: packages in $out:"
ls -1 "$out"/*.deb
# Lintian's remarks are listed; errors fail the build. docs/operations.md explains what is left.
lintian --info --display-info --fail-on error "$work"/*.changes
