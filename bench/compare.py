#!/usr/bin/env python3
"""Two hscd builds side by side on this machine: is a change a regression?

    bench/compare.py --a OLD/hscd --b NEW/hscd [--bench build/hsc-bench] [--reps 5]

Runs the same hsc-bench scenarios against each binary, alternating A and B in every repetition
(so that a noisy neighbour hurts both alike), each server a fresh process on 127.0.0.1 stopped by
its PID. Prints the median of each measure for A and B and the ratio B/A; `make bench` compares
hscd with its peers, this compares hscd with itself. Scenarios:

  fanout-1k    1,000 subscribers, 200 events flat out: deliveries/s, server CPU per delivery
  fanout-10k   10,000 subscribers, 50 events flat out: the same
  stream-demo  the built-in demo at --interval 0, 20 clients: answers/s
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def start(hscd, extra):
    port = free_port()
    # Memory only (--data-dir none, for a build that has the journal): the two builds compared
    # on the same footing, and no data directory left behind.
    help_text = subprocess.run([hscd, "--help"], capture_output=True).stdout
    memory = ["--data-dir", "none"] if b"--data-dir" in help_text else []
    p = subprocess.Popen([hscd, "--listen", f"127.0.0.1:{port}", "--log-level", "warn",
                          *memory, *extra],
                         stderr=subprocess.DEVNULL)
    wait_port(port)
    time.sleep(0.3)
    return p, port


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def bench(args, cmd):
    out = subprocess.run([args.bench, *cmd, "--json"], capture_output=True, text=True,
                         timeout=600)
    try:
        return json.loads(out.stdout)
    except ValueError:
        return {"error": out.stderr.strip()[-300:]}


def fanout(args, hscd, n, m):
    p, port = start(hscd, ["--max-connections", "15000"])
    try:
        url = f"http://127.0.0.1:{port}/v1/events?channel={{ch}}"
        r = bench(args, ["fanout", "--sub-url", url, "--pub-url", url, "-n", str(n), "-m", str(m),
                         "-r", "0", "-s", "64", "--pid", str(p.pid)])
    finally:
        stop(p)
    if "error" in r or r.get("lost", 1) != 0:
        return {"failed": 1}
    return {"deliveries/s": r["deliveries_per_s"],
            "cpu us/delivery": r.get("server_usage", {}).get("cpu_us_per_delivery", 0),
            "p99 ms": r["latency"]["p99_ms"]}


def stream(args, hscd):
    p, port = start(hscd, ["--interval", "0", "--max-gen-len", "10", "--legacy-get"])
    try:
        r = bench(args, ["stream", "--url", f"http://127.0.0.1:{port}/bench%20question",
                         "-c", "20", "-d", str(args.stream_seconds), "-k", "10",
                         "--pid", str(p.pid)])
    finally:
        stop(p)
    if "error" in r:
        return {"failed": 1}
    return {"answers/s": r["answers_per_s"], "first piece p50 ms": r["first_piece"]["p50_ms"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="the hscd to compare against (before)")
    ap.add_argument("--b", required=True, help="the hscd under test (after)")
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "hsc-bench"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--stream-seconds", type=int, default=3)
    ap.add_argument("--json", help="also write every measurement to this file")
    args = ap.parse_args()
    scenarios = [("fanout-1k", lambda h: fanout(args, h, 1000, 200)),
                 ("fanout-10k", lambda h: fanout(args, h, 10000, 50)),
                 ("stream-demo", lambda h: stream(args, h))]
    got = {}  # (scenario, side) -> list of result dicts
    for rep in range(args.reps):
        for name, fn in scenarios:
            order = ("a", "b") if rep % 2 == 0 else ("b", "a")
            for side in order:
                r = fn(getattr(args, side))
                got.setdefault((name, side), []).append(r)
                print(f"rep {rep + 1}/{args.reps} {name} {side}: {r}", file=sys.stderr, flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({f"{k[0]}/{k[1]}": v for k, v in got.items()}, f, indent=1)
    print(f"| scenario | measure | A (median of {args.reps}) | B (median) | B/A |")
    print("|---|---|---:|---:|---:|")
    failed = 0
    for name, _ in scenarios:
        a = [r for r in got[(name, "a")] if "failed" not in r]
        b = [r for r in got[(name, "b")] if "failed" not in r]
        failed += 2 * args.reps - len(a) - len(b)
        if not a or not b:
            print(f"| {name} | (failed) | | | |")
            continue
        for key in a[0]:
            ma = statistics.median(r[key] for r in a)
            mb = statistics.median(r[key] for r in b)
            ratio = mb / ma if ma else float("nan")
            print(f"| {name} | {key} | {ma:,.2f} | {mb:,.2f} | {ratio:.3f} |")
    if failed:
        print(f"{failed} run(s) failed or lost events", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
