#!/usr/bin/env bash
# `make bench`: hscd side by side with nchan (nginx), Pushpin and the floor (hsc-bench floor), in
# one run on this machine, each scenario repeated; results as JSON lines, then
# bench/report.py writes docs/PERFORMANCE.md and the plots in docs/bench/.
#
# Every server is started here on 127.0.0.1 with a fresh process for every repetition (clean
# memory readings) and stopped by the PID this script started. Environment:
#   BUILD=build  BENCH_REPS=3  BENCH_QUICK=1 (small sizes, one repetition: a smoke run)
#   BENCH_SERVERS="floor hscd nchan pushpin"  BENCH_OUT=docs  BENCH_CHAOS_SECONDS=60 (0 = skip)
#   BENCH_HSCD_FSYNC=none (hscd's mode: none = memory only, --data-dir none, like nchan's and
#   Pushpin's memory stores; batch or always = hscd's journal in a fresh directory with that
#   --fsync). bench/journal.sh measures the journal itself: memory vs batch vs always.
#   The journal (issue 15), each repetition: bench/journal.sh, and the 1k fan-out scenario with
#   hscd memory only and with --fsync batch alternately (BENCH_JOURNAL=0 skips both); once:
#   bench/journal_restart.sh with a journal of BENCH_RESTART_BYTES (default 1g; 0 skips it)
#   over BENCH_RESTART_CHANNELS (10000) channels. BENCH_ONLY=journal runs only these and
#   rewrites only the journal's sections of PERFORMANCE.md (bench/report.py --journal-only).
#   The cluster scenario (issue 16, docs/cluster.md), once per repetition: BENCH_CLUSTER_NODES=6
#   hscd --redis nodes, then as many nginx + nchan instances in nchan's Redis mode, each set on a
#   redis-server started here; 1,000 channels x 100 subscribers plus one channel with 10,000, at
#   a steady publish rate; Redis commands per publish; then a resume storm after a node is killed.
#   BENCH_CLUSTER=0 skips it; BENCH_ONLY=cluster runs only it and rewrites only its section of
#   PERFORMANCE.md (bench/report.py --only-section cluster).
#   BENCH_CLUSTER_{NODES,CHANNELS,PER,HOT,RATE,EVENTS} change its sizes.
#   TLS (issue 18, docs/tls.md), each repetition, on a test certificate made here (EC P-256):
#   the 1k fan-out scenario against hscd and nginx + nchan over cleartext and over TLS (the
#   subscribers over TLS, publishing cleartext); handshakes/s with `openssl s_time` (TLS 1.3 and
#   1.2, new and resumed); h2load for requests/s over h2c, h2 and HTTP/1.1 (bench/tls_rates.py).
#   BENCH_TLS=0 skips it; BENCH_ONLY=tls runs only it and rewrites only its section of
#   PERFORMANCE.md (bench/report.py --only-section tls). BENCH_TLS_SECONDS (5) per rate run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
REPS=${BENCH_REPS:-3}
QUICK=${BENCH_QUICK:-0}
SERVERS=${BENCH_SERVERS:-floor hscd nchan pushpin}
OUT=${BENCH_OUT:-$ROOT/docs}
CHAOS_SECONDS=${BENCH_CHAOS_SECONDS:-60}
BENCH="$BUILD/hsc-bench"
HSCD="$BUILD/hscd"
HSCD_FSYNC=${BENCH_HSCD_FSYNC:-none}
ONLY=${BENCH_ONLY:-}
case "$ONLY" in
"" | journal | cluster | tls | h2) ;;
*) echo "bench: BENCH_ONLY must be empty, journal, cluster, tls or h2" >&2; exit 2 ;;
esac
RESTART_BYTES=${BENCH_RESTART_BYTES:-1g}
case "$HSCD_FSYNC" in
none | batch | always) ;;
*) echo "bench: BENCH_HSCD_FSYNC must be none, batch or always" >&2; exit 2 ;;
esac

CLUSTER=${BENCH_CLUSTER:-1}
[ "$ONLY" = journal ] && CLUSTER=0
TLS=${BENCH_TLS:-1}
[ "$ONLY" = journal ] && TLS=0
TLS_SECONDS=${BENCH_TLS_SECONDS:-5}
CL_NODES=${BENCH_CLUSTER_NODES:-6}; CL_CH=${BENCH_CLUSTER_CHANNELS:-1000}
CL_PER=${BENCH_CLUSTER_PER:-100}; CL_HOT=${BENCH_CLUSTER_HOT:-10000}
CL_RATE=${BENCH_CLUSTER_RATE:-400}; CL_EVENTS=${BENCH_CLUSTER_EVENTS:-12000}
N1K=1000; M1K=200; N10K=10000; M10K=50; NLAT=1000; MLAT=100; RLAT=20; NIDLE=10000
SCALE_N="100 300 3000"; STREAM_C=20; STREAM_D=5
if [ "$QUICK" = 1 ]; then
    REPS=1; N1K=200; M1K=50; N10K=1000; M10K=20; NLAT=100; MLAT=20; NIDLE=1000
    SCALE_N="50"; STREAM_D=2; CHAOS_SECONDS=0; RESTART_BYTES=${BENCH_RESTART_BYTES:-64m}
    CL_NODES=${BENCH_CLUSTER_NODES:-3}; CL_CH=${BENCH_CLUSTER_CHANNELS:-50}
    CL_PER=${BENCH_CLUSTER_PER:-10}; CL_HOT=${BENCH_CLUSTER_HOT:-200}
    CL_RATE=${BENCH_CLUSTER_RATE:-200}; CL_EVENTS=${BENCH_CLUSTER_EVENTS:-1000}
    TLS_SECONDS=${BENCH_TLS_SECONDS:-2}
fi
[ "$ONLY" = journal ] && SERVERS="" && CHAOS_SECONDS=0
# The storm runs at 6/10 of the size: after the kill, one node fewer must hold everyone, each
# under the 20,000 open files a process may have here.
CL_STORM_PER=$((CL_PER * 6 / 10)); CL_STORM_HOT=$((CL_HOT * 6 / 10))

for f in "$BENCH" "$HSCD"; do
    [ -x "$f" ] || { echo "bench: $f missing: run make build first" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/hsc-bench.XXXXXX)
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
PIDS=()
echo "bench: hscd runs with --data-dir $([ "$HSCD_FSYNC" = none ] && echo "none (memory only)" ||
    echo "in $WORK, --fsync $HSCD_FSYNC")" >&2

# The channel server's journal arguments (a fresh directory each start): this run's mode, or
# MODE (none, batch, always) when given.
hscd_journal_args() {
    local mode=${1:-$HSCD_FSYNC}
    if [ "$mode" = none ]; then
        echo "--data-dir none"
    else
        echo "--data-dir $(mktemp -d "$WORK/hscd-data.XXXXXX") --fsync $mode"
    fi
}

cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT: until something accepts connections on 127.0.0.1:PORT (bounded: 20 s).
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# start_server NAME: sets SRV_PID, SUB_URL, PUB_URL, PUB_FORMAT, EXTRA_PID.
start_server() {
    local name=$1 port
    port=$(free_port)
    PUB_FORMAT=body
    EXTRA_PIDS=()
    case "$name" in
    floor)
        "$BENCH" floor --listen "127.0.0.1:$port" 2>"$WORK/floor.log" &
        SRV_PID=$!
        SUB_URL="http://127.0.0.1:$port/sub/{ch}"
        PUB_URL="http://127.0.0.1:$port/pub/{ch}"
        ;;
    hscd | hscd-none | hscd-batch | hscd-always) # hscd-MODE: with that journal mode
        local mode=$HSCD_FSYNC
        [ "$name" = hscd ] || mode=${name#hscd-}
        # shellcheck disable=SC2046
        "$HSCD" --listen "127.0.0.1:$port" --max-connections 15000 --log-level warn \
            $(hscd_journal_args "$mode") 2>"$WORK/hscd.log" &
        SRV_PID=$!
        SUB_URL="http://127.0.0.1:$port/v1/events?channel={ch}"
        PUB_URL="http://127.0.0.1:$port/v1/events?channel={ch}"
        ;;
    hscd-tls) # cleartext --listen (publishes, h2c, HTTP/1.1) and --listen-tls on the test cert
        TLS_PORT=$(free_port)
        "$HSCD" --listen "127.0.0.1:$port" --listen-tls "127.0.0.1:$TLS_PORT" \
            --tls-cert "$TLS_DIR/srv.crt" --tls-key "$TLS_DIR/srv.key" \
            --max-connections 15000 --log-level warn --data-dir none 2>"$WORK/hscd-tls.log" &
        SRV_PID=$!
        SUB_URL="https://127.0.0.1:$TLS_PORT/v1/events?channel={ch}"
        PUB_URL="http://127.0.0.1:$port/v1/events?channel={ch}"
        H2_PORT=$TLS_PORT; H2C_PORT=$port; H1_PORT=$port
        ;;
    nchan)
        local dir="$WORK/nginx"
        mkdir -p "$dir"
        sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" "$ROOT/bench/nginx-nchan.conf.in" \
            >"$dir/nginx.conf"
        nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$WORK/nginx.log" &
        SRV_PID=$!
        SUB_URL="http://127.0.0.1:$port/sub/{ch}"
        PUB_URL="http://127.0.0.1:$port/pub/{ch}"
        ;;
    nchan-tls) # ssl without http2 (the HTTP/1.1 fan-out), ssl http2, http2 cleartext: one cert
        local dir="$WORK/nginx-tls"
        mkdir -p "$dir/www"
        TLS_PORT=$(free_port); H2_PORT=$(free_port); H2C_PORT=$(free_port); H1_PORT=$port
        cp "$TLS_DIR/healthz" "$dir/www/healthz"
        cp "$TLS_DIR/index.html" "$dir/www/index.html"
        # nginx's workers run as nobody: they must reach www/ (the keys stay 0600, read by root)
        chmod 711 "$WORK" "$dir"
        chmod 755 "$dir/www"
        chmod 644 "$dir/www/healthz" "$dir/www/index.html"
        sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@TLS@|$TLS_PORT|g" \
            -e "s|@H2@|$H2_PORT|g" -e "s|@H2C@|$H2C_PORT|g" -e "s|@CERT@|$TLS_DIR/srv.crt|g" \
            -e "s|@KEY@|$TLS_DIR/srv.key|g" "$ROOT/bench/nginx-nchan-tls.conf.in" \
            >"$dir/nginx.conf"
        nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$WORK/nginx.log" &
        SRV_PID=$!
        SUB_URL="https://127.0.0.1:$TLS_PORT/sub/{ch}"
        PUB_URL="http://127.0.0.1:$port/pub/{ch}"
        ;;
    pushpin)
        # Pushpin: condure, pushpin-proxy and pushpin-handler under its runner; requests to the
        # origin go through zurl, started here with a configuration that allows loopback (the
        # stock one denies 127.*); the origin answers GRIP stream holds (bench/grip_origin.py).
        local dir="$WORK/pushpin" origin push
        rm -rf "$dir"
        mkdir -p "$dir/run" "$dir/log"
        origin=$(free_port)
        push=$(free_port)
        python3 "$ROOT/bench/grip_origin.py" --port "$origin" >"$dir/origin.log" 2>&1 &
        EXTRA_PIDS+=($!)
        printf '%s\n' "[General]" "in_spec=ipc://$dir/run/zurl-in" \
            "in_stream_spec=ipc://$dir/run/zurl-in-stream" "out_spec=ipc://$dir/run/zurl-out" \
            "defpolicy=allow" "allow=" "deny=" "max_open_requests=20000" "buffer_size=200000" \
            "timeout=600" "in_hwm=20000" "out_hwm=20000" >"$dir/zurl.conf"
        (ulimit -n 20000 2>/dev/null; exec zurl --config="$dir/zurl.conf" >"$dir/zurl.log" 2>&1) &
        EXTRA_PIDS+=($!)
        echo "* 127.0.0.1:$origin" >"$dir/routes"
        # The stock configuration with its own ports and directories, warnings-only logs, and
        # the handler's message rate limit (2,500/s by default) lifted so that Pushpin itself is
        # measured, not its throttle.
        sed -e "s|^rundir=.*|rundir=$dir/run|" -e "s|^logdir=.*|logdir=$dir/log|" \
            -e "s|^http_port=.*|http_port=127.0.0.1:$port|" \
            -e "s|^port_offset=.*|port_offset=0|" -e "s|^log_level=.*|log_level=1|" \
            -e "s|^push_in_http_port=.*|push_in_http_port=$push|" \
            -e "s|^routesfile=.*|routesfile=$dir/routes|" \
            -e "s|^message_rate=.*|message_rate=1000000|" \
            -e "s|^message_hwm=.*|message_hwm=1000000|" \
            -e "s|^client_maxconn=.*|client_maxconn=50000|" \
            -e "/^\[proxy\]$/a zurl_out_specs=ipc://$dir/run/zurl-in" \
            -e "/^\[proxy\]$/a zurl_out_stream_specs=ipc://$dir/run/zurl-in-stream" \
            -e "/^\[proxy\]$/a zurl_in_specs=ipc://$dir/run/zurl-out" \
            /etc/pushpin/pushpin.conf >"$dir/pushpin.conf"
        (ulimit -n 20000 2>/dev/null; exec pushpin --config "$dir/pushpin.conf" \
            >"$dir/pushpin.out" 2>&1) &
        SRV_PID=$!
        SUB_URL="http://127.0.0.1:$port/sub/{ch}"
        PUB_URL="http://127.0.0.1:$push/publish/"
        PUB_FORMAT=pushpin
        wait_port "$origin"
        wait_port "$push"
        ;;
    esac
    PIDS+=("$SRV_PID" "${EXTRA_PIDS[@]}")
    wait_port "$port"
    sleep 0.3
}

stop_server() {
    stop_pid "$SRV_PID"
    for p in "${EXTRA_PIDS[@]}"; do stop_pid "$p"; done
    sleep 0.2
}

# record SCENARIO SERVER REP JSON: one line of results.jsonl.
record() {
    python3 - "$1" "$2" "$3" "$4" >>"$RESULTS" <<'EOF'
import json, sys
r = json.loads(sys.argv[4]) if sys.argv[4].strip() else {"error": "no output"}
r.update({"case": sys.argv[1], "server": sys.argv[2], "rep": int(sys.argv[3])})
try:  # the machine's load when the run ended: other work shares these cores
    r["loadavg"] = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
except (OSError, ValueError):
    pass
print(json.dumps(r))
EOF
}

run_fanout() { # case server rep n m rate
    local case=$1 srv=$2 rep=$3 n=$4 m=$5 rate=$6 out
    start_server "$srv"
    local pids=(--pid "$SRV_PID")
    for p in "${EXTRA_PIDS[@]}"; do pids+=(--pid "$p"); done
    out=$(timeout 600 "$BENCH" fanout --sub-url "$SUB_URL" --pub-url "$PUB_URL" \
        --pub-format "$PUB_FORMAT" -n "$n" -m "$m" -r "$rate" -s 64 "${pids[@]}" \
        --label "$srv" --json) || true
    stop_server
    record "$case" "$srv" "$rep" "$out"
    echo "  $case $srv #$rep: $(echo "$out" | python3 -c 'import json,sys
try:
    r=json.load(sys.stdin); print("%.0f deliveries/s, %s lost, p99 %.1f ms, cpu %.2f us/delivery" % (r["deliveries_per_s"], r["lost"], r["latency"]["p99_ms"], r.get("server_usage",{}).get("cpu_us_per_delivery",0)))
except Exception as e: print("failed", e)')"
}

run_connect() { # case server rep n
    local case=$1 srv=$2 rep=$3 n=$4 out
    start_server "$srv"
    local pids=(--pid "$SRV_PID")
    for p in "${EXTRA_PIDS[@]}"; do pids+=(--pid "$p"); done
    out=$(timeout 600 "$BENCH" connect --sub-url "$SUB_URL" -n "$n" "${pids[@]}" \
        --label "$srv" --json) || true
    stop_server
    record "$case" "$srv" "$rep" "$out"
    echo "  $case $srv #$rep: $(echo "$out" | python3 -c 'import json,sys
try:
    r=json.load(sys.stdin); print("%d connected, %.0f/s, %.0f bytes per idle subscriber" % (r["connected"], r["connects_per_s"], r["bytes_per_idle_subscriber"]))
except Exception as e: print("failed", e)')"
}

run_stream() { # case label rep url pid
    local case=$1 label=$2 rep=$3 url=$4 pid=$5 out
    out=$(timeout 120 "$BENCH" stream --url "$url" -c "$STREAM_C" -d "$STREAM_D" -k 10 \
        --pid "$pid" --label "$label" --json) || true
    record "$case" "$label" "$rep" "$out"
    echo "  $case $label #$rep: $(echo "$out" | python3 -c 'import json,sys
try:
    r=json.load(sys.stdin); print("%.0f answers/s, %d failed, first piece p50 %.2f ms" % (r["answers_per_s"], r["failed"], r["first_piece"]["p50_ms"]))
except Exception as e: print("failed", e)')"
}

# ---- HTTP/2 fan-out (BENCH_H2) ----------------------------------------------------------------
# Issue 18: the 1k fan-out scenario ($N1K subscribers x $M1K events of 64 bytes, flat out) against
# hscd with its subscribers over HTTP/1.1 cleartext, HTTP/1.1 over TLS, h2c (prior knowledge) and
# h2 over TLS (ALPN), BENCH_H2_STREAMS (100) streams per HTTP/2 connection (hsc-bench --h2).
# Publishing stays cleartext (hscd --listen-tls beside --listen), on a test certificate (EC
# P-256) made here. A fresh hscd for each run. Cases "h2-fanout-{h1,h1-tls,h2c,h2-tls}".
# BENCH_H2=0 skips it; BENCH_ONLY=h2 runs only it and rewrites only its section of
# PERFORMANCE.md (bench/report.py --h2-only).
H2=${BENCH_H2:-1}
H2_STREAMS=${BENCH_H2_STREAMS:-100}

run_h2_fanout() { # mode(h1|h1-tls|h2c|h2-tls) rep
    local mode=$1 rep=$2 port tport pid out sub h2=()
    port=$(free_port)
    tport=$(free_port)
    "$HSCD" --listen "127.0.0.1:$port" --listen-tls "127.0.0.1:$tport" \
        --tls-cert "$H2_CERT_DIR/srv.crt" --tls-key "$H2_CERT_DIR/srv.key" \
        --max-connections 15000 --log-level warn --data-dir none 2>"$WORK/hscd-h2.log" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    wait_port "$tport"
    sleep 0.3
    case "$mode" in
    h1 | h2c) sub="http://127.0.0.1:$port/v1/events?channel={ch}" ;;
    *) sub="https://127.0.0.1:$tport/v1/events?channel={ch}" ;;
    esac
    case "$mode" in h2*) h2=(--h2 "$H2_STREAMS") ;; esac
    out=$(timeout 600 "$BENCH" fanout --sub-url "$sub" \
        --pub-url "http://127.0.0.1:$port/v1/events?channel={ch}" "${h2[@]}" -n "$N1K" \
        -m "$M1K" -r 0 -s 64 --pid "$pid" --label "hscd-$mode" --json) || true
    stop_pid "$pid"
    record "h2-fanout-$mode" hscd "$rep" "$out"
    echo "  h2-fanout-$mode #$rep: $(echo "$out" | python3 -c 'import json,sys
try:
    r=json.load(sys.stdin); print("%.0f deliveries/s, %s lost, %s dup, p50 %.1f p99 %.1f ms, cpu %.2f us/delivery, peak RSS %d kB" % (r["deliveries_per_s"], r["lost"], r["duplicated"], r["latency"]["p50_ms"], r["latency"]["p99_ms"], r["server_usage"]["cpu_us_per_delivery"], r["server_usage"]["rss_peak_kb"]))
except Exception as e: print("failed", e)')"
}

run_h2_all() {
    H2_CERT_DIR="$WORK/h2-cert"
    mkdir -p "$H2_CERT_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$H2_CERT_DIR/srv.key" -out "$H2_CERT_DIR/srv.crt" -days 2 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$WORK/h2-cert.log" 2>&1 ||
        { echo "bench: openssl could not make the test certificate" >&2; return 0; }
    for rep in $(seq 1 "$REPS"); do
        echo "== h2: fan-out $N1K x $M1K over HTTP/1.1, HTTP/1.1 TLS, h2c, h2 TLS" \
            "($H2_STREAMS streams per connection), rep $rep/$REPS =="
        for mode in h1 h1-tls h2c h2-tls; do
            run_h2_fanout "$mode" "$rep"
        done
    done
}

if [ "$ONLY" = h2 ]; then
    echo "bench: results in $RESULTS"
    run_h2_all
    python3 "$ROOT/bench/report.py" --results "$RESULTS" --out "$OUT" --hscd "$HSCD" \
        --reps "$REPS" --quick "$QUICK" --h2-only
    echo "bench: wrote the HTTP/2 fan-out section of $OUT/PERFORMANCE.md"
    exit 0
fi

# ---- the cluster scenario (BENCH_CLUSTER) ----------------------------------------------------
# start_redis: a redis-server on a free loopback port, no persistence, in a fresh directory.
start_redis() {
    local dir
    dir=$(mktemp -d "$WORK/redis.XXXXXX")
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --maxclients 10000 --daemonize no >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_port "$REDIS_PORT"
}

# start_nodes SERVER: CL_NODES nodes on that Redis; sets NODE_PIDS, NODE_PORTS, SUB_URLS, PUB_URLS.
start_nodes() {
    local srv=$1 i port dir
    NODE_PIDS=(); NODE_PORTS=(); SUB_URLS=(); PUB_URLS=()
    for i in $(seq 1 "$CL_NODES"); do
        port=$(free_port)
        case "$srv" in
        hscd)
            "$HSCD" --listen "127.0.0.1:$port" --redis "redis://127.0.0.1:$REDIS_PORT" \
                --threads 1 --max-connections 19800 --data-dir none --log-level warn \
                2>"$WORK/cluster-hscd-$i.log" &
            SUB_URLS+=("http://127.0.0.1:$port/v1/events?channel={ch}")
            PUB_URLS+=("http://127.0.0.1:$port/v1/events?channel={ch}")
            ;;
        nchan)
            dir="$WORK/cluster-nginx-$i"
            mkdir -p "$dir"
            sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@REDIS@|$REDIS_PORT|g" \
                "$ROOT/bench/nginx-nchan-redis.conf.in" >"$dir/nginx.conf"
            nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$dir/nginx.log" &
            SUB_URLS+=("http://127.0.0.1:$port/sub/{ch}")
            PUB_URLS+=("http://127.0.0.1:$port/pub/{ch}")
            ;;
        esac
        NODE_PIDS+=($!)
        NODE_PORTS+=("$port")
        PIDS+=($!)
    done
    for port in "${NODE_PORTS[@]}"; do wait_port "$port"; done
    sleep 1 # the nodes' Redis connections
}

# run_cluster CASE SERVER REP STORM(0|1): one run. Its record holds hsc-bench's result plus
# "redis" (commands per publish), "pubsub" (node subscriptions per channel, sampled during the
# run) and, for the storm, "storm" (Redis commands from the kill to the end) and the surviving
# hscd nodes' counters.
run_cluster() {
    local case=$1 srv=$2 rep=$3 storm=$4 per=$CL_PER hot=$CL_HOT out i sampler
    [ "$storm" = 1 ] && { per=$CL_STORM_PER; hot=$CL_STORM_HOT; }
    local n=$((CL_CH * per + hot)) stats="$WORK/$case-$srv-$rep" rs="$ROOT/bench/redis_stats.py"
    mkdir -p "$stats"
    start_redis
    start_nodes "$srv"
    local args=() pids=(--aux-pid "$REDIS_PID")
    for u in "${SUB_URLS[@]}"; do args+=(--sub-url "$u"); done
    for i in "${!PUB_URLS[@]}"; do
        # The storm kills the first node: publishes go through the others.
        [ "$storm" = 1 ] && [ "$i" = 0 ] && continue
        args+=(--pub-url "${PUB_URLS[$i]}")
    done
    for p in "${NODE_PIDS[@]}"; do pids+=(--pid "$p"); done
    if [ "$storm" = 1 ]; then
        # SIGKILL to the node and its children (an nginx master's worker outlives it), then
        # 5 s without publishes while its subscribers resume elsewhere: what Redis does in that
        # window is the storm's (and the nodes' pings).
        local victim="${NODE_PIDS[0]} \$(cat /proc/${NODE_PIDS[0]}/task/*/children 2>/dev/null)"
        args+=(--resume --midway "python3 $rs snapshot $REDIS_PORT >$stats/kill.json;
            kill -KILL $victim; sleep 5; python3 $rs snapshot $REDIS_PORT >$stats/storm.json")
    else
        # Halfway through the publishing, 3 s of MONITOR: round trips apart from script work.
        args+=(--midway "python3 $rs census $REDIS_PORT 3 >$stats/census.json 2>&1 &")
    fi
    (while sleep 3; do
        python3 "$rs" pubsub "$REDIS_PORT" '*cluster-*' >>"$stats/pubsub.jsonl" 2>/dev/null
    done) &
    sampler=$!
    PIDS+=("$sampler")
    python3 "$rs" snapshot "$REDIS_PORT" >"$stats/before.json"
    out=$(timeout 900 "$BENCH" fanout "${args[@]}" "${pids[@]}" --channel "cluster-$rep" \
        --channels $((CL_CH + 1)) --hot "$hot" -n "$n" -m "$CL_EVENTS" -r "$CL_RATE" -s 64 \
        -P 16 --idle 20 --label "$srv" --json) || true
    python3 "$rs" snapshot "$REDIS_PORT" >"$stats/after.json"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    : >"$stats/metrics.txt"
    if [ "$srv" = hscd ]; then
        for i in "${!NODE_PORTS[@]}"; do
            [ "$storm" = 1 ] && [ "$i" = 0 ] && continue
            curl -s "http://127.0.0.1:${NODE_PORTS[$i]}/metrics" | grep '^hsc_redis_' \
                >>"$stats/metrics.txt" || true
        done
    fi
    for p in "${NODE_PIDS[@]}"; do stop_pid "$p"; done
    stop_pid "$REDIS_PID"
    out=$(python3 "$ROOT/bench/redis_stats.py" merge "$stats" "$storm" <<<"$out")
    record "$case" "$srv" "$rep" "$out"
    echo "  $case $srv #$rep: $(echo "$out" | python3 -c 'import json,sys
try:
    r=json.load(sys.stdin); print("%d/%d connected, %.0f deliveries/s, %s lost, %s dup, p50 %.1f p99 %.1f ms, Redis CPU %.0f%%, %.2f Redis commands/publish" % (r["connected"], r["subscribers"], r["deliveries_per_s"], r["lost"], r["duplicated"], r["latency"]["p50_ms"], r["latency"]["p99_ms"], r.get("aux_usage",{}).get("cpu_percent",0), r["redis"].get("total_per_publish",0)))
except Exception as e: print("failed", e)')"
}

run_cluster_all() {
    command -v redis-server >/dev/null ||
        { echo "bench: redis-server is missing (scripts/install-deps.sh)" >&2; return 0; }
    for rep in $(seq 1 "$REPS"); do
        echo "== cluster: $CL_NODES nodes, $CL_CH x $CL_PER + $CL_HOT subscribers," \
            "$CL_RATE publishes/s, rep $rep/$REPS =="
        for srv in $SERVERS; do
            case "$srv" in hscd | nchan) ;; *) continue ;; esac
            run_cluster cluster "$srv" "$rep" 0
            run_cluster cluster-storm "$srv" "$rep" 1
        done
    done
}

# ---- TLS (BENCH_TLS) ------------------------------------------------------------------------
# make_tls_cert: a test CA and a server certificate (EC P-256, localhost and 127.0.0.1) in
# $TLS_DIR; then hscd's own /healthz and / answers, which nginx serves as static files.
make_tls_cert() {
    TLS_DIR="$WORK/tls"
    mkdir -p "$TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.crt -days 2 -subj "/CN=hsc bench CA"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
            -out srv.csr -subj "/CN=localhost"
        echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >ext
        openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt \
            -days 2 -extfile ext
    ) >"$WORK/tls-cert.log" 2>&1
    start_server hscd-tls
    curl -sf "http://127.0.0.1:$H1_PORT/healthz" >"$TLS_DIR/healthz"
    curl -sf "http://127.0.0.1:$H1_PORT/" >"$TLS_DIR/index.html"
    stop_server
}

# run_tls_rates SERVER REP: handshakes and h2load against a fresh SERVER (hscd-tls, nchan-tls).
run_tls_rates() {
    local srv=$1 rep=$2 path proto url line
    start_server "$srv"
    {
        python3 "$ROOT/bench/tls_rates.py" handshakes --connect "127.0.0.1:$TLS_PORT" \
            --pid "$SRV_PID" --seconds "$TLS_SECONDS"
        for path in healthz page; do
            for proto in h2c h2 h1 h1-tls; do
                case "$proto" in
                h2c) url="http://127.0.0.1:$H2C_PORT" ;;
                h2) url="https://127.0.0.1:$H2_PORT" ;;
                h1) url="http://127.0.0.1:$H1_PORT" ;;
                h1-tls) url="https://127.0.0.1:$TLS_PORT" ;;
                esac
                [ "$path" = healthz ] && url="$url/healthz" || url="$url/"
                python3 "$ROOT/bench/tls_rates.py" h2load --url "$url" --path-name "$path" \
                    --proto "$proto" --pid "$SRV_PID" --seconds "$TLS_SECONDS"
            done
        done
    } >"$WORK/tls-rates.jsonl" || echo "bench: tls_rates.py FAILED" >&2
    stop_server
    while read -r line; do
        [ -n "$line" ] || continue
        record "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["case"])' "$line")" \
            "${srv%-tls}" "$rep" "$line"
    done <"$WORK/tls-rates.jsonl"
    echo "  tls rates $srv #$rep: $(python3 -c 'import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("; ".join("%s %.0f/s" % (r["case"][4:], r.get("handshakes_per_s", r.get("requests_per_s", 0))) for r in rows))' "$WORK/tls-rates.jsonl")"
}

run_tls_all() {
    command -v h2load >/dev/null || echo "bench: h2load is missing (nghttp2-client)" >&2
    make_tls_cert
    for rep in $(seq 1 "$REPS"); do
        echo "== tls: fan-out $N1K x $M1K cleartext vs TLS, handshakes, h2load, rep $rep/$REPS =="
        for srv in hscd hscd-tls nchan nchan-tls; do
            run_fanout tls-fanout-1k "$srv" "$rep" "$N1K" "$M1K" 0
        done
        run_tls_rates hscd-tls "$rep"
        run_tls_rates nchan-tls "$rep"
    done
}

REPORT_ARGS=(--results "$RESULTS" --out "$OUT" --hscd "$HSCD" --reps "$REPS" --quick "$QUICK")
if [ "$ONLY" = cluster ]; then
    echo "bench: results in $RESULTS"
    run_cluster_all
    python3 "$ROOT/bench/report.py" "${REPORT_ARGS[@]}" --only-section cluster
    echo "bench: wrote the cluster section of $OUT/PERFORMANCE.md"
    exit 0
fi
if [ "$ONLY" = tls ]; then
    echo "bench: results in $RESULTS"
    run_tls_all
    python3 "$ROOT/bench/report.py" "${REPORT_ARGS[@]}" --only-section tls
    echo "bench: wrote the TLS section of $OUT/PERFORMANCE.md"
    exit 0
fi

EXEC_LOOP='for i in 1 2 3 4 5 6 7 8 9 10; do echo "piece $i of 10"; done'

# Streamed answers: hscd's demo at interval 0, an exec responder, the Python template.
run_streams() { # rep
    local rep=$1 port pid t0 t1
    port=$(free_port)
    "$HSCD" --listen "127.0.0.1:$port" --interval 0 --max-gen-len 10 --legacy-get \
        --data-dir none --log-level warn 2>"$WORK/hscd-stream.log" &
    pid=$!; PIDS+=("$pid")
    wait_port "$port"
    run_stream stream-demo hscd "$rep" "http://127.0.0.1:$port/bench%20question" "$pid"
    stop_pid "$pid"
    port=$(free_port)
    "$HSCD" --listen "127.0.0.1:$port" --log-level warn --data-dir none \
        --exec "$EXEC_LOOP" \
        2>"$WORK/hscd-exec.log" &
    pid=$!; PIDS+=("$pid")
    wait_port "$port"
    run_stream stream-exec hscd-exec "$rep" "http://127.0.0.1:$port/v1/stream?q=bench" "$pid"
    stop_pid "$pid"
    # The machine's own price of a process per answer: the same shell loop, spawned serially.
    t0=$(date +%s.%N)
    for _ in $(seq 1 200); do /bin/sh -c "$EXEC_LOOP" >/dev/null; done
    t1=$(date +%s.%N)
    record stream-exec "sh-spawned-serially" "$rep" \
        "$(python3 -c "import json,sys; print(json.dumps({'scenario':'stream','answers':200,'failed':0,'answers_per_s':200/(float(sys.argv[2])-float(sys.argv[1]))}))" "$t0" "$t1")"
    port=$(free_port)
    "$HSCD" --listen "127.0.0.1:$port" --log-level warn --pool 2 --data-dir none \
        --exec "python3 $ROOT/bench/pool_worker.py" 2>"$WORK/hscd-pool.log" &
    pid=$!; PIDS+=("$pid")
    wait_port "$port"
    sleep 1 # the workers start
    run_stream stream-pool hscd-pool "$rep" "http://127.0.0.1:$port/v1/stream?q=bench" "$pid"
    stop_pid "$pid"
    port=$(free_port)
    python3 "$ROOT/bench/template_server.py" --server_port "$port" --max_gen_len 10 \
        --interval 0 >"$WORK/template.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    wait_port "$port"
    run_stream stream-demo python-template "$rep" "http://127.0.0.1:$port/bench%20question" "$pid"
    stop_pid "$pid"
}

echo "bench: results in $RESULTS"
for rep in $(seq 1 "$REPS"); do
    echo "== repetition $rep/$REPS =="
    for srv in $SERVERS; do
        run_fanout fanout-1k "$srv" "$rep" "$N1K" "$M1K" 0
        run_fanout fanout-10k "$srv" "$rep" "$N10K" "$M10K" 0
        run_fanout latency "$srv" "$rep" "$NLAT" "$MLAT" "$RLAT"
        for n in $SCALE_N; do
            run_fanout "scale-$n" "$srv" "$rep" "$n" 100 0
        done
        run_connect idle-10k "$srv" "$rep" "$NIDLE"
    done
    [ "$ONLY" = journal ] || run_streams "$rep"
    # The journal on the publish path: memory only, --fsync batch, --fsync always, at 1, 16 and
    # 64 publishers (bench/journal.sh); fan-out with and without it. BENCH_JOURNAL=0 skips both.
    if [ "${BENCH_JOURNAL:-1}" != 0 ]; then
        echo "== journal: publishes/s, memory vs batch vs always, rep $rep ==" >&2
        BUILD="$BUILD" BENCH_JSON=1 BENCH_SECONDS=$([ "$QUICK" = 1 ] && echo 1 || echo 5) \
            "$ROOT/bench/journal.sh" >"$WORK/journal.jsonl" || echo "bench: journal.sh FAILED" >&2
        while read -r line; do
            [ -n "$line" ] || continue
            case_name=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("journal-%s-%d" % (r["mode"], r["publishers"]))' "$line")
            record "$case_name" "hscd-journal" "$rep" "$line"
        done <"$WORK/journal.jsonl"
        echo "== journal: fan-out memory only vs --fsync batch, rep $rep ==" >&2
        run_fanout journal-fanout-1k hscd-none "$rep" "$N1K" "$M1K" 0
        run_fanout journal-fanout-1k hscd-batch "$rep" "$N1K" "$M1K" 0
    fi
done

# Restart with a large journal: time to answer /healthz and peak RSS, after SIGTERM and kill -9.
if [ "${BENCH_JOURNAL:-1}" != 0 ] && [ "$RESTART_BYTES" != 0 ]; then
    echo "== journal: restart with $RESTART_BYTES of events over ${BENCH_RESTART_CHANNELS:-10000} channels ==" >&2
    BUILD="$BUILD" BENCH_JSON=1 BENCH_RESTART_BYTES="$RESTART_BYTES" \
        "$ROOT/bench/journal_restart.sh" >"$WORK/restart.jsonl" \
        || echo "bench: journal_restart.sh FAILED" >&2
    while read -r line; do
        [ -n "$line" ] || continue
        stop=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["stop"])' "$line")
        record "journal-restart-$stop" "hscd-journal" 1 "$line"
        echo "  journal-restart-$stop: $line" >&2
    done <"$WORK/restart.jsonl"
fi

if [ "$ONLY" = journal ]; then
    python3 "$ROOT/bench/report.py" --results "$RESULTS" --chaos /dev/null --out "$OUT" \
        --hscd "$HSCD" --reps "$REPS" --quick "$QUICK" --journal-only
    echo "bench: wrote the journal's sections of $OUT/PERFORMANCE.md"
    exit 0
fi

[ "$H2" = 1 ] && run_h2_all

# The OpenAI-compatible front against /v1/stream on the same responders (docs/openai.md).
echo "== the OpenAI front against /v1/stream =="
OPENAI_JSON="$WORK/openai.json"
timeout 900 python3 "$ROOT/bench/openai_bench.py" --hscd "$HSCD" --bench "$BENCH" \
    -d "$STREAM_D" --rounds "$REPS" --json >"$OPENAI_JSON" \
    || { echo "bench: the OpenAI front's run FAILED" >&2; : >"$OPENAI_JSON"; }

[ "$CLUSTER" = 1 ] && run_cluster_all
[ "$TLS" = 1 ] && run_tls_all

CHAOS_LOG="$WORK/chaos.log"
if [ "$CHAOS_SECONDS" != 0 ]; then
    echo "== chaos, $CHAOS_SECONDS s (tests/integration/test_chaos.py) =="
    (cd "$ROOT/tests/integration" && HSCD="$HSCD" HSC="$BUILD/hsc" CHAOS_SECONDS="$CHAOS_SECONDS" \
        CHAOS_SUBSCRIBERS=${BENCH_CHAOS_SUBSCRIBERS:-16} CHAOS_ES=${BENCH_CHAOS_ES:-4} \
        CHAOS_CHANNELS=${BENCH_CHAOS_CHANNELS:-4} \
        timeout $((CHAOS_SECONDS * 3 + 120)) python3 -m unittest -v test_chaos) >"$CHAOS_LOG" 2>&1 \
        || echo "bench: the chaos run FAILED (see $CHAOS_LOG)" >&2
    grep -i "chaos:" "$CHAOS_LOG" || tail -5 "$CHAOS_LOG"
else
    : >"$CHAOS_LOG"
fi

python3 "$ROOT/bench/report.py" "${REPORT_ARGS[@]}" --chaos "$CHAOS_LOG" \
    --hscd-fsync "$HSCD_FSYNC" --openai "$OPENAI_JSON"
echo "bench: wrote $OUT/PERFORMANCE.md"
