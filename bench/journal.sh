#!/usr/bin/env bash
# bench/journal.sh: what the journal costs on the publish path (issue 15, docs/PERFORMANCE.md).
#
# hscd is run in three modes, each stated in the output:
#   memory  --data-dir none           (no journal: the memory engine alone)
#   batch   --fsync batch             (the default: written before the answer, synced every
#                                      --fsync-interval)
#   always  --fsync always            (written and fdatasync'ed before the answer)
# and for each, `hsc-bench publish` runs C publishers flat out (C in BENCH_PUBLISHERS, default
# "1 16 64"), each on its own keep-alive connection, for BENCH_SECONDS (default 5). From
# hscd's /metrics it reads records per write and per fsync: the group-commit factor; from
# /proc/PID/stat hscd's CPU time (user + system, every thread) during the run, per publish: on a
# shared machine a steadier measure of what the journal costs than publishes/s.
#
# Every hscd is started here on 127.0.0.1 with a fresh data directory under a temporary
# directory and stopped by the PID this script started. Environment: BUILD=build,
# BENCH_SECONDS=5, BENCH_PUBLISHERS="1 16 64", BENCH_MODES="memory batch always",
# BENCH_THREADS (hscd --threads; default: hscd's own, one per core). Results: one JSON object per
# line on stdout (BENCH_JSON=1) or a table.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
SECS=${BENCH_SECONDS:-5}
PUBLISHERS=${BENCH_PUBLISHERS:-1 16 64}
MODES=${BENCH_MODES:-memory batch always}
HSCD="$BUILD/hscd"
BENCH="$BUILD/hsc-bench"
for f in "$HSCD" "$BENCH"; do
    [ -x "$f" ] || { echo "bench/journal.sh: $f missing: build first" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/hsc-bench-journal.XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# cpu_ticks PID: the process's user + system time in clock ticks (/proc/PID/stat fields 14, 15).
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

metric() { # metric PORT NAME
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read().decode()
for line in body.splitlines():
    if line.startswith(sys.argv[2] + " "):
        print(line.split()[1]); break
else:
    print(0)
PY
}

[ "${BENCH_JSON:-0}" = 1 ] || printf '%-7s %5s %12s %10s %10s %14s %14s %12s\n' mode pubs "publishes/s" "p50 ms" "p99 ms" "records/write" "records/fsync" "cpu us/pub"
for mode in $MODES; do
    for c in $PUBLISHERS; do
        case "$mode" in
        memory) args=(--data-dir none) ;;
        batch) args=(--data-dir "$WORK/data-$mode-$c" --fsync batch) ;;
        always) args=(--data-dir "$WORK/data-$mode-$c" --fsync always) ;;
        *) echo "bench/journal.sh: unknown mode $mode" >&2; exit 2 ;;
        esac
        [ -n "${BENCH_THREADS:-}" ] && args+=(--threads "$BENCH_THREADS")
        log="$WORK/hscd-$mode-$c.log"
        "$HSCD" --listen 127.0.0.1:0 --max-connections 15000 "${args[@]}" 2>"$log" &
        PID=$!
        port=
        for _ in $(seq 1 200); do
            port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
            [ -n "$port" ] && break
            sleep 0.05
        done
        [ -n "$port" ] || { echo "bench/journal.sh: hscd did not start:" >&2; cat "$log" >&2; exit 1; }
        cpu0=$(cpu_ticks "$PID")
        out=$("$BENCH" publish --url "http://127.0.0.1:$port/v1/events?channel={ch}" -c "$c" \
            -t "$SECS" --label "hscd-$mode" --json)
        cpu1=$(cpu_ticks "$PID")
        writes=$(metric "$port" hsc_journal_writes_total)
        records=$(metric "$port" hsc_journal_records_total)
        fsyncs=$(metric "$port" hsc_journal_fsyncs_total)
        kill -TERM "$PID"
        wait "$PID" || true
        PID=
        python3 - "$mode" "$c" "$writes" "$records" "$fsyncs" "$out" "${BENCH_JSON:-0}" \
            "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
mode, c, writes, records, fsyncs, out, as_json, ticks, hz = sys.argv[1:]
r = json.loads(out)
r["mode"] = mode
r["server_cpu_s"] = int(ticks) / int(hz)
r["server_cpu_us_per_publish"] = (1e6 * r["server_cpu_s"] / r["published"]
                                  if r.get("published") else None)
writes, records, fsyncs = float(writes), float(records), float(fsyncs)
r["records_per_write"] = records / writes if writes else None
r["records_per_fsync"] = records / fsyncs if fsyncs else None
if as_json == "1":
    print(json.dumps(r))
else:
    f = lambda v: "-" if v is None else "%.1f" % v
    print("%-7s %5s %12.0f %10.2f %10.2f %14s %14s %12s" % (mode, c, r["publishes_per_s"],
          r["latency"]["p50_ms"], r["latency"]["p99_ms"], f(r["records_per_write"]),
          f(r["records_per_fsync"]), f(r["server_cpu_us_per_publish"])))
PY
    done
done
