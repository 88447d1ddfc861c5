#!/usr/bin/env bash
# bench/journal_restart.sh: how long hscd takes to come back with a large journal, and the
# memory it needs for it (issue 15, docs/PERFORMANCE.md).
#
# One hscd (--fsync batch, the default) is filled through `hsc-bench publish` with events spread
# over BENCH_RESTART_CHANNELS channels (default 10,000) until the events published hold
# BENCH_RESTART_BYTES (default 1g; k, m, g suffixes) of data, with history limits large enough
# that every event is kept (so the journal holds them all after compaction). Then, twice:
#   sigterm  hscd is stopped with SIGTERM (a clean stop) and started again on the same directory;
#   kill9    hscd is killed with SIGKILL (as by a crash) and started again.
# Each restart is timed from the exec to the first 200 from /healthz (the journal is replayed
# before hscd listens), and its memory read from /proc/PID/status then: VmHWM (peak RSS) and
# VmRSS. /metrics gives the history restored (hsc_history_events, _bytes) and the journal's size.
#
# Every hscd is started here on 127.0.0.1 in a temporary directory and stopped by the PID this
# script started. Environment: BUILD=build, BENCH_RESTART_BYTES=1g, BENCH_RESTART_CHANNELS=10000,
# BENCH_RESTART_EVENT_BYTES=1000 (data per event), BENCH_RESTART_PUBLISHERS=16. Results: one JSON
# object per restart on stdout (BENCH_JSON=1) or a table; progress on stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
HSCD="$BUILD/hscd"
BENCH="$BUILD/hsc-bench"
for f in "$HSCD" "$BENCH"; do
    [ -x "$f" ] || { echo "bench/journal_restart.sh: $f missing: build first" >&2; exit 1; }
done
size_bytes() {
    python3 -c 'import sys; s=sys.argv[1].lower(); m={"k":1<<10,"m":1<<20,"g":1<<30}
print(int(float(s[:-1]) * m[s[-1]]) if s[-1] in m else int(s))' "$1"
}
BYTES=$(size_bytes "${BENCH_RESTART_BYTES:-1g}")
CHANNELS=${BENCH_RESTART_CHANNELS:-10000}
EVENT=${BENCH_RESTART_EVENT_BYTES:-1000}
PUBLISHERS=${BENCH_RESTART_PUBLISHERS:-16}
EVENTS=$(((BYTES + EVENT - 1) / EVENT))
PER_CHANNEL=$(((EVENTS + CHANNELS - 1) / CHANNELS))

WORK=$(mktemp -d /tmp/hsc-bench-restart.XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Limits well above what is published: every event stays in history, so in the journal.
ARGS=(--listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --fsync batch --log-level warn
    --max-channels $((CHANNELS * 2)) --channel-create-rate 0 --history $((PER_CHANNEL * 2 + 16))
    --history-bytes $((PER_CHANNEL * (EVENT + 512) * 2 + 65536))
    --history-total-bytes $((BYTES * 2 + (64 << 20))) --history-age 24h
    --max-event-bytes $((EVENT > 65536 ? EVENT : 65536)))

# start: runs hscd, sets PID and START_S (the seconds from the exec to a 200 from /healthz).
start() {
    local t0 t1
    t0=$(date +%s.%N)
    "$HSCD" "${ARGS[@]}" 2>>"$WORK/hscd.log" &
    PID=$!
    for _ in $(seq 1 30000); do
        if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz"; then
            t1=$(date +%s.%N)
            START_S=$(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$t0" "$t1")
            return 0
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.02
    done
    echo "bench/journal_restart.sh: hscd did not answer /healthz:" >&2
    tail -20 "$WORK/hscd.log" >&2
    exit 1
}

metric() { # metric NAME: its value in /metrics (0 when absent)
    curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'
}

status_kb() { # status_kb FIELD: VmHWM or VmRSS of hscd, in kB
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$PID/status"
}

echo "journal_restart: filling: $EVENTS events of $EVENT bytes over $CHANNELS channels" \
    "($((BYTES >> 20)) MiB of data), $PUBLISHERS publishers" >&2
start
t0=$(date +%s.%N)
fill=$("$BENCH" publish --url "http://127.0.0.1:$PORT/v1/events?channel={ch}" --channel ch \
    --channels "$CHANNELS" -c "$PUBLISHERS" -m "$EVENTS" -s "$EVENT" --json)
t1=$(date +%s.%N)
errors=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("publish_errors", 0))' "$fill")
if [ "$errors" != 0 ]; then
    echo "bench/journal_restart.sh: $errors publishes failed while filling" >&2
    exit 1
fi
FILL_RSS_KB=$(status_kb VmHWM)
FILL_EVENTS=$(metric hsc_history_events)
echo "journal_restart: filled in $(python3 -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$t1") s;" \
    "history $FILL_EVENTS events; peak RSS $((FILL_RSS_KB / 1024)) MiB" >&2

[ "${BENCH_JSON:-0}" = 1 ] || printf '%-8s %10s %12s %12s %10s %12s %12s\n' stop "journal MiB" "events" \
    "stop s" "restart s" "peak RSS MiB" "RSS MiB"
for how in sigterm kill9; do
    jbytes=$(metric hsc_journal_bytes)
    segments=$(metric hsc_journal_segments)
    t0=$(date +%s.%N)
    if [ "$how" = sigterm ]; then kill -TERM "$PID"; else kill -KILL "$PID"; fi
    wait "$PID" 2>/dev/null || true
    t1=$(date +%s.%N)
    PID=
    stop_s=$(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$t0" "$t1")
    disk=$(du -sb "$WORK/data" | cut -f1)
    start
    hwm=$(status_kb VmHWM)
    rss=$(status_kb VmRSS)
    events=$(metric hsc_history_events)
    hbytes=$(metric hsc_history_bytes)
    channels=$(metric hsc_channels)
    skipped=$(metric hsc_journal_records_skipped_total)
    python3 - "$how" "$jbytes" "$segments" "$disk" "$stop_s" "$START_S" "$hwm" "$rss" "$events" \
        "$hbytes" "$channels" "$skipped" "$FILL_EVENTS" "$FILL_RSS_KB" "$EVENT" "$fill" \
        "${BENCH_JSON:-0}" <<'PY'
import json, sys
(how, jbytes, segs, disk, stop_s, start_s, hwm, rss, events, hbytes, chans, skipped, fill_events,
 fill_rss, event, fill, as_json) = sys.argv[1:]
f = json.loads(fill)
r = {"scenario": "journal-restart", "stop": how, "journal_bytes": int(float(jbytes)),
     "journal_segments": int(float(segs)), "disk_bytes": int(disk), "stop_s": float(stop_s),
     "restart_s": float(start_s), "rss_peak_kb": int(hwm), "rss_kb": int(rss),
     "events_restored": int(float(events)), "events_before": int(float(fill_events)),
     "history_bytes": int(float(hbytes)), "channels": int(float(chans)),
     "records_skipped": int(float(skipped)), "event_bytes": int(event),
     "fill_publishes_per_s": f.get("publishes_per_s"), "fill_rss_peak_kb": int(fill_rss)}
if as_json == "1":
    print(json.dumps(r))
else:
    print("%-8s %10.0f %12d %12.2f %10.2f %12.0f %12.0f" % (how, r["journal_bytes"] / 2**20,
          r["events_restored"], r["stop_s"], r["restart_s"], r["rss_peak_kb"] / 1024,
          r["rss_kb"] / 1024))
PY
    echo "journal_restart: $how: back in ${START_S} s" >&2
done
kill -TERM "$PID"
wait "$PID" || true
PID=
