"""Abuse: hscd under hostile or broken clients keeps serving a well-behaved one, and its memory
comes back near the baseline afterwards.

Each test starts hscd, warms it up, measures its RSS, runs a well-behaved client in a thread
(GET /healthz and a streamed answer, over and over, each must succeed), does the abuse, stops
the good client, and checks that it never failed and that RSS returns within RSS_SLACK_KB of
the baseline (not under ASan, whose quarantine keeps freed memory on purpose).

Covered here: slowloris, a thousand idle connections, header and body floods, a connection
flood past --max-connections, pipelined garbage, path traversal against the static files,
100,000 publishes to distinct channels, a responder flooding a client that never reads, 50
subscribers pipelining 256 KiB each behind their never-ending response, then leaving.
Elsewhere: invalid UTF-8 and newline injection in publishes, and a subscriber that never reads
(test_channels.py); slow bodies and the 503 details (test_limits.py).
"""

import os
import random
import socket
import struct
import sys
import threading
import time
import unittest

from hscd import (
    HOST,
    SANITIZE,
    SLOW,
    RawConn,
    ServerTestCase,
    assert_error_response,
    rss_kb,
    wait_for,
)

RSS_SLACK_KB = 6 * 1024


def children(pid):
    """The PIDs of a process's children (all threads)."""
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except FileNotFoundError:
        pass
    return out


class GoodClient(threading.Thread):
    """Asks /healthz and a short streamed answer, each on a fresh connection, until stopped."""

    def __init__(self, port, stream=True):
        super().__init__(daemon=True)
        self.port = port
        self.stream = stream
        self.halt = threading.Event()
        self.served = 0
        self.failures = []

    def run(self):
        while not self.halt.is_set():
            try:
                with RawConn(self.port, timeout=10 * SLOW) as c:
                    c.request("GET", "/healthz")
                    r = c.read_response()
                    if r.status != 200 or r.body != b"ok\n":
                        self.failures.append("healthz: %r" % r)
                    if self.stream:
                        c.request("GET", "/v1/stream?q=hi")
                        r = c.read_response()
                        if r.status != 200 or not r.complete:
                            self.failures.append("stream: %r" % r)
                self.served += 1
            except Exception as e:  # reported by the test
                self.failures.append(repr(e))
            time.sleep(0.02)

    def stop(self):
        self.halt.set()
        self.join(30)


class Abuse(ServerTestCase):
    ARGS = ("--threads", "2", "--max-gen-len", "3", "--interval", "1ms")

    def begin(self, *args, stream=True):
        srv = self.start(*(self.ARGS + args))
        for _ in range(30):  # warm up: allocator arenas, buffers
            with RawConn(srv.port) as c:
                c.request("GET", "/v1/stream?q=warm" if stream else "/healthz")
                c.read_response()
        time.sleep(0.3)
        base = rss_kb(srv.proc.pid)
        good = GoodClient(srv.port, stream)
        good.start()
        self.addCleanup(good.stop)
        return srv, base, good

    def end(self, srv, base, good):
        time.sleep(0.3)
        good.stop()
        self.assertEqual(good.failures, [], "the well-behaved client was not served")
        self.assertGreater(good.served, 0)
        if SANITIZE:
            return
        ok = wait_for(lambda: rss_kb(srv.proc.pid) <= base + RSS_SLACK_KB, timeout=15, step=0.2)
        self.assertTrue(ok, "RSS %d KiB did not come back near the baseline %d KiB"
                        % (rss_kb(srv.proc.pid), base))

    def test_slowloris(self):
        srv, base, good = self.begin("--header-timeout", "2s")
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
        socks = [socket.create_connection((HOST, srv.port), timeout=10) for _ in range(200)]
        for s in socks:
            s.setblocking(False)
        ended = set()
        t0 = time.monotonic()
        i = 0
        while len(ended) < len(socks) and time.monotonic() - t0 < 20 * SLOW:
            for k, s in enumerate(socks):  # one byte a second each
                if k in ended:
                    continue
                try:
                    s.send(head[i:i + 1])
                    data = s.recv(4096)
                    if data == b"" or data.startswith(b"HTTP/1.1 408"):
                        ended.add(k)
                except BlockingIOError:
                    pass
                except OSError:
                    ended.add(k)
            i = min(i + 1, len(head) - 1)
            time.sleep(1)
        for s in socks:
            s.close()
        self.assertEqual(len(ended), len(socks), "slowloris connections were not cut")
        self.assertLess(time.monotonic() - t0, 15 * SLOW)
        self.end(srv, base, good)

    def test_a_thousand_idle_connections(self):
        srv, base, good = self.begin("--header-timeout", "2s")
        socks = [socket.create_connection((HOST, srv.port), timeout=10) for _ in range(1000)]
        closed = 0
        for s in socks:
            s.settimeout(10 * SLOW)
            try:
                data = s.recv(4096)  # the server closes it (408 or nothing)
                if data == b"" or data.startswith(b"HTTP/1.1 408"):
                    closed += 1
            except OSError:
                closed += 1
            s.close()
        self.assertEqual(closed, 1000)
        self.end(srv, base, good)

    def test_header_and_body_floods(self):
        srv, base, good = self.begin("--max-body-bytes", "64k")
        big_header = "x" * 20000
        for _ in range(100):
            with RawConn(srv.port) as c:
                c.request("GET", "/healthz", [("X-Flood", big_header)])
                assert_error_response(self, c.read_response(), 431)
        for _ in range(50):  # many headers
            with RawConn(srv.port) as c:
                c.request("GET", "/healthz", [("X-H%d" % k, "v" * 100) for k in range(300)])
                self.assertIn(c.read_response().status, (431, 400))
        for _ in range(20):  # a declared huge body is refused before it is sent
            with RawConn(srv.port) as c:
                c.send(b"POST /v1/events?channel=f HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 1000000000\r\n\r\n")
                assert_error_response(self, c.read_response(), 413)
        for _ in range(20):  # a chunked body that never ends
            with RawConn(srv.port) as c:
                c.send(b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                try:
                    for _ in range(64):
                        c.send(b"1000\r\n" + b"z" * 4096 + b"\r\n")
                except OSError:
                    pass  # the server answered 413 and closed
                try:
                    r = c.read_response()
                    self.assertEqual(r.status, 413)
                except (OSError, AssertionError):
                    pass  # reset while we were still sending: refused all the same
        self.end(srv, base, good)

    def test_connection_flood_past_max_connections(self):
        srv, base, good = self.begin("--max-connections", "100")
        flood = []
        refused = 0
        for _ in range(400):
            try:
                flood.append(socket.create_connection((HOST, srv.port), timeout=5))
            except OSError:
                refused += 1
        got503 = 0
        for s in flood:
            s.settimeout(0.05)
            try:
                if s.recv(64).startswith(b"HTTP/1.1 503"):
                    got503 += 1
            except OSError:
                pass
        self.assertGreater(got503 + refused, 0, "no connection was refused past the cap")
        for s in flood:
            s.close()
        # While the flood held every slot, the good client was refused too (the cap is for
        # everyone). Once it is gone, service recovers: from then on, no failure.
        self.assertTrue(wait_for(lambda: self._served(srv), timeout=10, step=0.1))
        time.sleep(0.2)
        del good.failures[:]
        time.sleep(1)
        self.end(srv, base, good)

    def _served(self, srv):
        try:
            with RawConn(srv.port, timeout=5) as c:
                c.request("GET", "/healthz")
                return c.read_response().status == 200
        except (OSError, AssertionError):
            return False

    def test_pipelined_garbage(self):
        srv, base, good = self.begin()
        rng = random.Random(7)
        for k in range(200):
            with RawConn(srv.port) as c:
                junk = bytes(rng.randrange(256) for _ in range(2048))
                statuses = []
                try:
                    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3 + junk)
                    while len(statuses) < 4:
                        statuses.append(c.read_response().status)
                except (OSError, AssertionError):
                    pass  # closed after the error response
                self.assertEqual(statuses[:3], [200, 200, 200], (k, statuses))
                self.assertTrue(len(statuses) == 3 or statuses[3] == 400, (k, statuses))
        self.end(srv, base, good)

    def test_path_traversal(self):
        srv, base, good = self.begin()
        for target in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc",
                       "//etc/passwd", "/web/../CMakeLists.txt", "/index.html/../../README.md",
                       "/%2e%2e%5c%2e%2e%5cwindows", "/.git/config", "/app.js%00.html",
                       "/./index.html", "/static/..;/x"):
            with RawConn(srv.port) as c:
                c.request("GET", target)
                r = c.read_response()
                self.assertIn(r.status, (400, 404), target)
                for leak in (b"root:", b"cmake_minimum_required", b"[core]"):
                    self.assertNotIn(leak, r.body, target)
        self.end(srv, base, good)

    def test_100000_publishes_to_distinct_channels(self):
        # With no per-client limit (--channel-create-rate 0; test_squat.py has the limit), the
        # table stays within --max-channels by dropping the least recently used idle channels.
        srv, base, good = self.begin("--max-channels", "2000", "--history-age", "1s",
                                     "--channel-create-rate", "0")
        ok = full = peak = 0
        batch = 500
        with RawConn(srv.port, timeout=30 * SLOW) as c:
            for b in range(100000 // batch):
                c.send(b"".join(
                    b"POST /v1/events?channel=flood-%d HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 5\r\n\r\nhello" % (b * batch + k) for k in range(batch)))
                for _ in range(batch):
                    r = c.read_response()
                    if r.status == 200:
                        ok += 1
                    elif r.status == 503:
                        full += 1
                    else:
                        self.fail("unexpected %r" % r)
                if b % 20 == 0:
                    peak = max(peak, rss_kb(srv.proc.pid))
        if not SANITIZE:
            self.assertLess(peak, base + 64 * 1024, "memory not bounded")
        self.assertEqual(ok + full, 100000)
        self.assertEqual(full, 0, "a publish was refused: idle channels make room")
        m = {}
        with RawConn(srv.port) as c:
            c.request("GET", "/metrics")
            for line in c.read_response().body.decode().splitlines():
                if line and not line.startswith("#"):
                    m[line.split()[0]] = int(float(line.split()[1]))
        self.assertLessEqual(m["hsc_channels"], 2000)
        # Room was made by eviction; how many depends on the speed of the run, since the sweep
        # also frees channels whose one event aged past --history-age 1s (a slow run, ASan).
        self.assertGreater(m["hsc_channels_evicted_total"], 0)
        # Their history ages out; the channels are freed.
        self.assertTrue(wait_for(lambda: self._channels(srv) == 0, timeout=15, step=0.2),
                        "channels were not freed")
        sys.stderr.write("abuse: 100000 publishes to distinct channels: %d accepted, %d refused, "
                         "%d idle channels evicted (--max-channels 2000); RSS baseline %d KiB, "
                         "peak %d KiB, after %d KiB\n"
                         % (ok, full, m["hsc_channels_evicted_total"], base, peak,
                            rss_kb(srv.proc.pid)))
        self.end(srv, base, good)

    def _channels(self, srv):
        with RawConn(srv.port) as c:
            c.request("GET", "/metrics")
            for line in c.read_response().body.decode().splitlines():
                if line.startswith("hsc_channels "):
                    return int(float(line.split()[1]))
        return -1

    def test_pipelined_bytes_behind_subscriptions_hide_no_disconnect(self):
        # 50 subscribers each pipeline 256 KiB behind their GET (a never-ending response). hscd
        # keeps reading them (and drops what cannot be answered before the response ends), so
        # memory stays near that of idle subscribers, and their leaving is seen at once.
        srv, base, good = self.begin()
        n, extra = 50, 256 * 1024
        socks = []
        for k in range(n):
            s = socket.create_connection((HOST, srv.port), timeout=10 * SLOW)
            socks.append(s)
            head = b"GET /v1/events?channel=pipe-%d HTTP/1.1\r\nHost: x\r\n\r\n" % k
            pipelined = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % (b"p" * 1000)
            data = head + pipelined * (extra // len(pipelined) + 1)
            s.settimeout(5 * SLOW)
            try:
                s.sendall(data)
            except socket.timeout:
                self.fail("hscd stopped reading subscriber %d for good" % k)
            s.settimeout(10 * SLOW)
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200 "), k)
        self.assertTrue(wait_for(lambda: self._metric(srv, "hsc_subscribers") == n, timeout=10))
        time.sleep(2.5)  # past the moment pipelined bytes are given up on
        held = rss_kb(srv.proc.pid)
        if not SANITIZE:
            # Idle subscribers cost a few KiB each; the pipelined bytes (12.5 MiB) are gone.
            self.assertLess(held - base, n * 48, "%d KiB for %d subscribers" % (held - base, n))
        good.stop()
        for k, s in enumerate(socks):
            if k % 2:  # a reset
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        t0 = time.monotonic()
        gone = wait_for(lambda: (self._metric(srv, "hsc_connections"),
                                 self._metric(srv, "hsc_subscribers")) == (1, 0), timeout=5)
        self.assertTrue(gone, "still %d connections, %d subscribers after the clients left"
                        % (self._metric(srv, "hsc_connections"),
                           self._metric(srv, "hsc_subscribers")))
        sys.stderr.write("abuse: 50 subscribers with 256 KiB pipelined each: RSS baseline %d KiB, "
                         "with them %d KiB, all gone %.2f s after they left\n"
                         % (base, held, time.monotonic() - t0))
        self.end(srv, base, good)

    def _metric(self, srv, name):
        with RawConn(srv.port) as c:
            c.request("GET", "/metrics")
            for line in c.read_response().body.decode().splitlines():
                if line.startswith(name + " "):
                    return int(float(line.split()[1]))
        return -1

    def test_responder_flooding_a_client_that_never_reads(self):
        # The good client asks /healthz only: every answer of this responder is endless.
        srv, base, good = self.begin("--exec", "yes flood", "--idle-timeout", "2s",
                                     "--max-queue-bytes", "256k", stream=False)
        s = socket.create_connection((HOST, srv.port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        peak = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3 * SLOW:  # never read; watch memory
            if not SANITIZE:
                peak = max(peak, rss_kb(srv.proc.pid))
            time.sleep(0.1)
        if not SANITIZE:
            self.assertLess(peak, base + 32 * 1024, "memory grew with the flood")
        # The stalled client is dropped and the responder killed.
        self.assertTrue(wait_for(lambda: not children(srv.proc.pid), timeout=20, step=0.2),
                        "the responder is still running: %r" % children(srv.proc.pid))
        s.close()
        self.end(srv, base, good)


if __name__ == "__main__":
    unittest.main()
