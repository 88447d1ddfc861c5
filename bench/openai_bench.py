#!/usr/bin/env python3
"""The OpenAI framing against /v1/stream on the same responder: hscd's CPU per piece, answers per
second and time to the first piece (docs/openai.md, PERFORMANCE.md).

    python3 bench/openai_bench.py [--hscd build/hscd] [--bench build/hsc-bench]
                                  [-k PIECES] [-c CLIENTS] [-d SECONDS] [--rounds N] [--json]

For each responder (the demo with --interval 0, all pieces at once: the framing's worst case,
nothing else to do; the demo with a piece every millisecond, as a model streams: one write per
piece; a --pool of Python workers sending K pieces at once) it starts one hscd on 127.0.0.1 (one thread), and runs `hsc-bench stream` against
/v1/stream (Server-Sent Events, the form closest to OpenAI's) and /v1/chat/completions
(stream: true) with the same text, alternating ROUNDS times so that drift hits both alike.
CPU is hscd's own (utime + stime of its PID, from hsc-bench --pid), divided by the pieces
delivered. The responder's processes are not counted: the framing is hscd's cost.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
WORKER = r'''
import sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
K = int(sys.argv[1])
while True:
    head = inp.readline()
    if not head:
        sys.exit(0)
    kind, n = head.split()
    payload = inp.read(int(n))
    if kind != b"request":
        continue
    frames = [b"piece %d\n" % len(p) + p for p in
              (("[%d/%d] %s\n" % (i, K, payload.decode())).encode() for i in range(1, K + 1))]
    out.write(b"".join(frames) + b"end 0\n")
    out.flush()
'''


def start_hscd(hscd, args):
    log = tempfile.TemporaryFile()
    p = subprocess.Popen([hscd, "--listen", "127.0.0.1:0", "--threads", "1", "--data-dir", "none"]
                         + args,
                         stderr=log, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log.seek(0)
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log.read())
        if m:
            return p, int(m.group(1))
        time.sleep(0.05)
    p.kill()
    raise SystemExit("hscd did not start")


def run_bench(bench, port, path, body, header, k, c, d, pid):
    args = [bench, "stream", "--url", "http://127.0.0.1:%d%s" % (port, path), "-c", str(c),
            "-d", str(d), "-k", str(k), "--pid", str(pid), "--body", body, "--json"]
    if header:
        args += ["--header", header]
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE).stdout
    r = json.loads(out)
    if r["failed"]:
        raise SystemExit("%s: %d answers failed" % (path, r["failed"]))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hscd", default=os.path.join(ROOT, "build", "hscd"))
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "hsc-bench"))
    ap.add_argument("-k", type=int, default=50, help="pieces per answer")
    ap.add_argument("-c", type=int, default=8, help="concurrent clients")
    ap.add_argument("-d", type=float, default=3, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()

    text = "user: Wake up, Neo"
    forms = [
        ("/v1/stream (SSE)", "/v1/stream", text, "Accept: text/event-stream"),
        ("/v1/chat/completions", "/v1/chat/completions",
         json.dumps({"model": "m", "stream": True,
                     "messages": [{"role": "user", "content": "Wake up, Neo"}]}), None),
    ]
    worker = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    worker.write(WORKER)
    worker.close()
    responders = [
        ("demo", ["--interval", "0", "--max-gen-len", str(o.k)]),
        ("demo, 1 ms apart", ["--interval", "1ms", "--max-gen-len", str(o.k)]),
        ("pool", ["--pool", "2", "--exec", "python3 %s %d" % (worker.name, o.k)]),
    ]
    results = []
    try:
        for rname, args in responders:
            p, port = start_hscd(o.hscd, args)
            try:
                time.sleep(0.5)  # pool workers start
                runs = {f[0]: [] for f in forms}
                for _ in range(o.rounds):
                    for label, path, body, header in forms:
                        r = run_bench(o.bench, port, path, body, header, o.k, o.c, o.d, p.pid)
                        runs[label].append(r)
                for label, _, _, _ in forms:
                    rs = runs[label]
                    pieces = [r["answers"] * o.k for r in rs]
                    cpu_us = [r["server_usage"]["cpu_s"] * 1e6 / n for r, n in zip(rs, pieces)]
                    results.append({
                        "responder": rname, "endpoint": label, "pieces": o.k, "rounds": o.rounds,
                        "answers_per_s": statistics.median(r["answers_per_s"] for r in rs),
                        "first_piece_p50_ms": statistics.median(
                            r["first_piece"]["p50_ms"] for r in rs),
                        "cpu_us_per_piece": statistics.median(cpu_us),
                        "mean_answer_bytes": statistics.median(r["mean_answer_bytes"] for r in rs),
                    })
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
    finally:
        os.unlink(worker.name)
    if o.json:
        print(json.dumps(results, indent=1))
        return
    print("%d pieces per answer, %d clients, %g s x %d rounds, hscd on one thread\n"
          % (o.k, o.c, o.d, o.rounds))
    print("| responder | endpoint | answers/s | first piece p50 | hscd CPU per piece | bytes/answer |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    base = {}
    for r in results:
        if r["endpoint"].startswith("/v1/stream"):
            base[r["responder"]] = r["cpu_us_per_piece"]
        extra = ""
        if not r["endpoint"].startswith("/v1/stream"):
            extra = " (%+.0f %%)" % (100 * (r["cpu_us_per_piece"] / base[r["responder"]] - 1))
        print("| %s | %s | %.0f | %.2f ms | %.2f µs%s | %.0f |"
              % (r["responder"], r["endpoint"], r["answers_per_s"], r["first_piece_p50_ms"],
                 r["cpu_us_per_piece"], extra, r["mean_answer_bytes"]))


if __name__ == "__main__":
    sys.exit(main())
