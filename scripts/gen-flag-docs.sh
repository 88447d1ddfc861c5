#!/usr/bin/env bash
# Rewrites the flag table of docs/hscd.md (from `<!-- hscd-flags:begin -->` to
# `<!-- hscd-flags:end -->`, markers included) with what `hscd --help-markdown` prints, so the
# doc says exactly what src/hscd/flags.c's table says. Run it after changing a flag and
# rebuilding; tests/integration/test_flags.py fails until you do.
#
#   scripts/gen-flag-docs.sh            # uses build/hscd
#   HSCD=build-asan/hscd scripts/gen-flag-docs.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hscd="${HSCD:-$root/build/hscd}"
doc="$root/docs/hscd.md"
begin='<!-- hscd-flags:begin -->'
end='<!-- hscd-flags:end -->'

if [ ! -x "$hscd" ]; then
    echo "gen-flag-docs: $hscd is not built (cmake --build build, or set HSCD)" >&2
    exit 1
fi
if [ "$(grep -cxF "$begin" "$doc")" != 1 ] || [ "$(grep -cxF "$end" "$doc")" != 1 ]; then
    echo "gen-flag-docs: $doc needs one '$begin' line and one '$end' line" >&2
    exit 1
fi

section="$(mktemp)"
out="$(mktemp)"
trap 'rm -f "$section" "$out"' EXIT
"$hscd" --help-markdown >"$section"
awk -v begin="$begin" -v end="$end" -v section="$section" '
    $0 == begin { while ((getline line < section) > 0) print line; skip = 1; next }
    $0 == end   { skip = 0; next }
    !skip       { print }
' "$doc" >"$out"
if cmp -s "$out" "$doc"; then
    echo "gen-flag-docs: $doc is up to date" >&2
else
    cat "$out" >"$doc"
    echo "gen-flag-docs: rewrote the flag table of $doc" >&2
fi
