#!/usr/bin/env python3
"""TLS cost, measured on hscd itself (issue 18): hsc-bench speaks no TLS yet, so this script
drives the clients.

  handshakes  `openssl s_time` for SECONDS each: TLS 1.3 and 1.2, new sessions and resumed;
              handshakes per second and hscd's CPU time per handshake (from /proc).
  fanout      N subscribers (Python asyncio, over TLS or cleartext), M events published flat
              out on a cleartext keep-alive connection; deliveries/s and hscd's CPU time per
              delivery, TLS next to cleartext.

Usage: flock /tmp/hsc-bench.lock bench/tls_bench.py [--hscd build/hscd] [--subscribers 200]
       [--events 500] [--seconds 5]
A test CA and certificate (EC P-256) are made in a temporary directory.
"""

import argparse
import asyncio
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def make_cert(d):
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench CA"], d)
    sh(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost"], d)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    sh(["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.crt", "-days", "2", "-extfile", "ext"], d)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, hscd, d, threads):
        self.plain, self.tls = free_port(), free_port()
        self.proc = subprocess.Popen(
            [hscd, "--listen", "127.0.0.1:%d" % self.plain, "--listen-tls",
             "127.0.0.1:%d" % self.tls, "--tls-cert", os.path.join(d, "srv.crt"), "--tls-key",
             os.path.join(d, "srv.key"), "--threads", str(threads), "--data-dir", "none",
             "--max-queue-bytes", "16m"],
            stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.tls), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("hscd did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def handshakes(srv, seconds):
    for version in ("-tls1_3", "-tls1_2"):
        for mode in ("-new", "-reuse"):
            c0 = cpu_seconds(srv.proc.pid)
            t0 = time.monotonic()
            out = subprocess.run(["openssl", "s_time", "-connect", "127.0.0.1:%d" % srv.tls,
                                  version, mode, "-time", str(seconds)],
                                 capture_output=True, text=True).stdout
            wall = time.monotonic() - t0
            cpu = cpu_seconds(srv.proc.pid) - c0
            m = re.search(r"(\d+) connections in [\d.]+s", out)
            n = int(m.group(1)) if m else 0
            print("handshakes %s %s: %d in %.1f s = %.0f/s (one s_time client); hscd CPU "
                  "%.0f us per handshake" % (version[1:], mode[1:], n, wall, n / wall,
                                             cpu / max(n, 1) * 1e6))


async def subscriber(port, ctx, events, counts, i, ready):
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost" if ctx else None,
        limit=1 << 20)
    writer.write(b"GET /v1/events?channel=bench HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    ready.release()
    got = 0
    while got < events:
        line = await reader.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            got += 1
    counts[i] = got
    writer.close()


def publish_all(port, events, size):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = b"x" * size
    for _ in range(events):
        conn.request("POST", "/v1/events?channel=bench", body=body)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit("publish: %d" % r.status)
    conn.close()


async def fanout(srv, tls, n, events, size, ca):
    ctx = ssl.create_default_context(cafile=ca) if tls else None
    port = srv.tls if tls else srv.plain
    counts = [0] * n
    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(subscriber(port, ctx, events, counts, i, ready))
             for i in range(n)]
    for _ in range(n):
        await ready.acquire()
    await asyncio.sleep(0.5)
    c0 = cpu_seconds(srv.proc.pid)
    t0 = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, publish_all, srv.plain, events, size)
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(srv.proc.pid) - c0
    total = sum(counts)
    print("fanout %-5s %d subscribers x %d events of %d B: %d delivered in %.2f s = %.0f/s; "
          "hscd CPU %.2f us per delivery" % ("tls" if tls else "plain", n, events, size, total,
                                             wall, total / wall, cpu / max(total, 1) * 1e6))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hscd", default=os.path.join(ROOT, "build", "hscd"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--subscribers", type=int, default=200)
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="hsc-tls-bench-")
    try:
        make_cert(d)
        srv = Server(a.hscd, d, a.threads)
        try:
            handshakes(srv, a.seconds)
            for tls in (False, True):
                asyncio.run(fanout(srv, tls, a.subscribers, a.events, a.size,
                                   os.path.join(d, "ca.crt")))
        finally:
            srv.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
