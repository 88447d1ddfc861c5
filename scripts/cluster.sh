#!/usr/bin/env bash
# `make cluster`: one redis-server and three hscd nodes sharing it (docs/cluster.md), all on
# loopback with free ports and a temp directory; prints their URLs and runs until Ctrl-C, then
# stops exactly the processes it started, by PID, and removes the directory.
#
#   scripts/cluster.sh                 # uses build/hscd
#   HSCD=build-asan/hscd NODES=5 scripts/cluster.sh -- --history 1000   # hscd flags after --
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hscd="${HSCD:-$root/build/hscd}"
nodes="${NODES:-3}"
[ "${1:-}" = "--" ] && shift
if [ ! -x "$hscd" ]; then
    echo "cluster: $hscd is not built (make build, or set HSCD)" >&2
    exit 1
fi
command -v redis-server >/dev/null || { echo "cluster: redis-server is missing (scripts/install-deps.sh)" >&2; exit 1; }

dir="$(mktemp -d -t hsc-cluster.XXXXXX)"
pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap stop EXIT
trap 'echo; echo "cluster: stopping"; exit 0' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rport="$(free_port)"
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize no >"$dir/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    redis-cli -h 127.0.0.1 -p "$rport" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -h 127.0.0.1 -p "$rport" ping >/dev/null || { cat "$dir/redis.log" >&2; exit 1; }

urls=()
for i in $(seq "$nodes"); do
    log="$dir/hscd-$i.log"
    "$hscd" --listen 127.0.0.1:0 --redis "redis://127.0.0.1:$rport" "$@" >"$log" 2>&1 &
    pids+=($!)
    url=""
    for _ in $(seq 200); do
        url="$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | cut -d' ' -f3 || true)"
        [ -n "$url" ] && break
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$url" ] || { echo "cluster: node $i did not start:" >&2; cat "$log" >&2; exit 1; }
    urls+=("$url")
done

echo "redis   redis://127.0.0.1:$rport   (pid ${pids[0]}, no persistence)"
for i in "${!urls[@]}"; do
    echo "node $((i + 1))  ${urls[$i]}   (pid ${pids[$((i + 1))]}, log $dir/hscd-$((i + 1)).log)"
done
echo
echo "try:  curl -N '${urls[1]}/v1/events?channel=demo' &"
echo "      curl -d hello '${urls[0]}/v1/events?channel=demo'"
echo "Ctrl-C stops them all."
while :; do
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "cluster: process $pid exited; stopping the others" >&2
            exit 1
        fi
    done
    sleep 1
done
