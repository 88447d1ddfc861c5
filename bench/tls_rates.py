#!/usr/bin/env python3
"""Request and handshake rates for the TLS section of `make bench` (issue 18), against a server
scripts/bench.sh started: one JSON object per line on stdout, for bench.sh's record().

  handshakes --connect HOST:PORT --pid PID [--seconds S]
      `openssl s_time` for S seconds each: TLS 1.3 and 1.2, new sessions and resumed; one
      client process (the same for every server); the server's CPU per handshake from /proc.
  h2load --url URL --proto h2c|h2|h1|h1-tls --pid PID [--seconds S] [-c C] [-m M]
      nghttp2's h2load for S seconds (connections opened in that time): requests/s and the server's CPU per
      request. h2c is prior knowledge on cleartext; h2 is ALPN h2 over TLS; h1 and h1-tls are
      `h2load --h1` (HTTP/1.1 keep-alive, no pipelining).

CPU is user + system time of PID and every descendant (nginx: master and workers).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pid):
    total = 0.0
    for p in tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            pass
    return total


def handshakes(a):
    for version in ("tls1_3", "tls1_2"):
        for mode in ("new", "reuse"):
            c0, t0 = cpu_seconds(a.pid), time.monotonic()
            out = subprocess.run(["openssl", "s_time", "-connect", a.connect, "-" + version,
                                  "-" + mode, "-time", str(a.seconds)],
                                 capture_output=True, text=True, timeout=a.seconds * 4 + 30).stdout
            wall = time.monotonic() - t0
            cpu = cpu_seconds(a.pid) - c0
            m = re.search(r"(\d+) connections in [\d.]+s", out)
            n = int(m.group(1)) if m else 0
            r = {"scenario": "handshakes", "case": "tls-hs-%s-%s" % (version, mode),
                 "version": version.replace("_", "."), "mode": mode, "handshakes": n,
                 "seconds": wall, "handshakes_per_s": n / wall,
                 "server_cpu_s": cpu, "server_cpu_percent": 100 * cpu / wall}
            if n:
                r["server_cpu_us_per_handshake"] = cpu / n * 1e6
            else:
                r["error"] = "no handshakes: " + out[-200:]
            print(json.dumps(r), flush=True)


def h2load(a):
    args = ["h2load", "-D", str(a.seconds), "-c", str(a.clients),
            "-m", str(a.streams if a.proto in ("h2c", "h2") else 1), "-t", "1"]
    if a.proto.startswith("h1"):
        args.append("--h1")
    c0 = cpu_seconds(a.pid)
    out = subprocess.run(args + [a.url], capture_output=True, text=True,
                         timeout=a.seconds * 3 + 30).stdout
    cpu = cpu_seconds(a.pid) - c0
    r = {"scenario": "h2load", "case": "tls-h2load-%s-%s" % (a.path_name, a.proto),
         "proto": a.proto, "path": a.path_name, "clients": a.clients,
         "streams": a.streams if a.proto in ("h2c", "h2") else 1}
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s, ([\d.]+)([KMG]?B)/s", out)
    q = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    p = re.search(r"Application protocol: (\S+)", out)
    if not (m and q):
        r["error"] = "h2load: " + out[-300:]
        print(json.dumps(r), flush=True)
        return
    secs = float(m.group(1))
    done = int(q.group(3))
    r.update({"seconds": secs, "requests_per_s": float(m.group(2)), "requests": done,
              "succeeded": int(q.group(4)), "failed": int(q.group(5)) + int(q.group(6)),
              "status_2xx": int(st.group(1)) if st else None,
              "protocol": p.group(1) if p else None,
              "server_cpu_s": cpu})
    if done:
        r["server_cpu_us_per_request"] = cpu / done * 1e6
    # -D stops with requests in flight: their answers may be counted in the status codes.
    if r["failed"] or (st and sum(int(st.group(i)) for i in (2, 3, 4))):
        r["error"] = "not every request answered 2xx: %s" % (st.group(0) if st else q.group(0))
    print(json.dumps(r), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("handshakes")
    h.add_argument("--connect", required=True)
    h.add_argument("--pid", type=int, required=True)
    h.add_argument("--seconds", type=int, default=5)
    q = sub.add_parser("h2load")
    q.add_argument("--url", required=True)
    q.add_argument("--path-name", required=True)
    q.add_argument("--proto", choices=("h2c", "h2", "h1", "h1-tls"), required=True)
    q.add_argument("--pid", type=int, required=True)
    q.add_argument("--seconds", type=int, default=5)
    q.add_argument("-c", "--clients", type=int, default=16)
    q.add_argument("-m", "--streams", type=int, default=10)
    a = ap.parse_args()
    handshakes(a) if a.cmd == "handshakes" else h2load(a)


if __name__ == "__main__":
    sys.exit(main())
