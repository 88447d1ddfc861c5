"""Shutdown without a reconnect storm: on SIGTERM hscd ends its subscribers spread over time
(about one per millisecond per thread, within 3/4 of --drain-timeout) rather than all at once,
and tells each, with a last `retry:` line, to come back after that window plus jitter. A
subscription attempted while it drains gets 503 with Retry-After.

Whatever their number (1, 2, 3 or 1,000 on one thread), every subscriber gets its parting
`retry:` and the last chunk, and hscd exits 0 long before --drain-timeout: the spread never
leaves a subscriber waiting for the drain timeout to cut it.
"""

import selectors
import signal
import socket
import threading
import time
import unittest

from hscd import HOST, SLOW, ProtocolError, RawConn, ServerTestCase, assert_error_response

N = 400


class Drain(ServerTestCase):
    def open_subscribers(self, srv, n):
        socks = []
        for i in range(n):
            s = socket.create_connection((HOST, srv.port), timeout=10)
            s.sendall(b"GET /v1/events?channel=d%d HTTP/1.1\r\nHost: x\r\n\r\n" % (i % 7))
            socks.append(s)
        # every one has its head and preamble (registered)
        for s in socks:
            buf = b""
            while b"\r\n\r\n" not in buf or b": hsc " not in buf:
                chunk = s.recv(4096)
                self.assertTrue(chunk, "subscriber closed early")
                buf += chunk
            s.setblocking(False)
        return socks

    def test_subscribers_are_ended_spread_out_and_told_when_to_come_back(self):
        srv = self.start("--threads", "2", "--drain-timeout", "4s", "--retry", "1s")
        socks = self.open_subscribers(srv, N)
        sel = selectors.DefaultSelector()
        states = []
        for s in socks:
            st = {"data": b"", "closed": None}
            states.append(st)
            sel.register(s, selectors.EVENT_READ, st)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        # A new subscription during the drain is refused (503) or finds the listener closed. The
        # signal is asynchronous: one that reached a worker before it learned of SIGTERM is
        # served, then drained like the others (a parting retry:, the stream ended).
        # Probed from a thread, so that the close times of the others are read as they happen.
        late = {}

        def probe():
            try:
                with RawConn(srv.port, timeout=10 * SLOW) as c:
                    c.request("GET", "/v1/events?channel=late")
                    late["r"] = c.read_response()
            except (ConnectionError, OSError, ProtocolError):
                late["r"] = None  # the listener closed first

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        deadline = t0 + 20 * SLOW
        open_count = N
        while open_count and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                st = key.data
                try:
                    chunk = key.fileobj.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    chunk = b""
                if chunk:
                    st["data"] += chunk
                else:
                    st["closed"] = time.monotonic() - t0
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    open_count -= 1
        self.assertEqual(open_count, 0, "subscribers still open after the drain")
        prober.join(15 * SLOW)
        self.assertIn("r", late, "the late subscription got no answer")
        r = late["r"]
        if r is not None and r.status == 200:
            self.assertTrue(r.complete, r)
            self.assertEqual(r.body.count(b"retry: "), 2, r)  # preamble and parting
        elif r is not None:
            assert_error_response(self, r, 503)
            self.assertIsNotNone(r.header("Retry-After"))
        self.assertEqual(srv.wait(15 * SLOW), 0)
        closes, retries = [], []
        for st in states:
            closes.append(st["closed"])
            body = st["data"]
            lines = [l for l in body.split(b"\n") if b"retry: " in l]
            # The parting advice (the preamble's retry: was read before SIGTERM).
            self.assertEqual(len(lines), 1, body[-200:])
            retries.append(int(lines[-1].split(b"retry: ")[1].split(b"\r")[0]))
        spread = max(closes) - min(closes)
        # 200 subscribers per thread at about 1 per ms: a window of about 200 ms; ends all at
        # once would take a few ms.
        self.assertGreater(spread, 0.1, "subscribers ended within %.3f s: not spread" % spread)
        self.assertGreaterEqual(min(retries), 1000)
        self.assertGreater(len(set(retries)), N // 4, "retry: values are not jittered")
        # Each is told to come back after the window: on average the first ended wait longer.
        order = sorted(zip(closes, retries))
        first, last = order[: N // 4], order[-N // 4:]
        self.assertGreater(sum(r for _, r in first) / len(first),
                           sum(r for _, r in last) / len(last))


    def read_until_closed(self, socks, deadline):
        """Reads every socket until the server closes it; returns, per socket, the bytes read
        after the preamble, the time of the close (from now) and how it closed."""
        sel = selectors.DefaultSelector()
        states = []
        for s in socks:
            st = {"data": b"", "closed": None, "how": None}
            states.append(st)
            sel.register(s, selectors.EVENT_READ, st)
        t0 = time.monotonic()
        open_count = len(socks)
        while open_count and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                st = key.data
                try:
                    chunk = key.fileobj.recv(65536)
                    how = "fin"
                except ConnectionResetError:
                    chunk, how = b"", "reset"
                except BlockingIOError:
                    continue
                if chunk:
                    st["data"] += chunk
                else:
                    st["closed"], st["how"] = time.monotonic() - t0, how
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    open_count -= 1
        sel.close()
        for s in socks:
            s.close()
        return states

    def drain(self, n):
        """n subscribers on one thread, then SIGTERM: each ends cleanly and hscd exits soon.
        Returns the close times (seconds after the signal)."""
        drain_timeout = 10 * SLOW
        srv = self.start("--threads", "1", "--drain-timeout", "%ds" % drain_timeout,
                         "--retry", "1s")
        socks = self.open_subscribers(srv, n)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        states = self.read_until_closed(socks, t0 + drain_timeout + 5 * SLOW)
        rc = srv.wait(drain_timeout + 5 * SLOW)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.describe())
        # The window is about 1 ms per subscriber (n ms here); the drain timeout is far longer.
        bound = n / 1000 + 2 * SLOW
        self.assertLess(took, bound, "hscd took %.3f s to exit\n%s" % (took, srv.describe()))
        self.assertNotIn("--drain-timeout reached", srv.log())
        for i, st in enumerate(states):
            self.assertIsNotNone(st["closed"], "subscriber %d still open" % i)
            self.assertEqual(st["how"], "fin", "subscriber %d: %r" % (i, st))
            body = st["data"]
            # The parting advice, then the last chunk: a complete chunked body.
            self.assertRegex(body, rb"\A[0-9a-f]+\r\nretry: \d+\n\n\r\n0\r\n\r\n\Z",
                             "subscriber %d: %r" % (i, body[-200:]))
        return [st["closed"] for st in states]

    def test_one_subscriber_ends_at_once(self):
        self.drain(1)

    def test_two_subscribers_end_at_once(self):
        self.drain(2)

    def test_three_subscribers_end_at_once(self):
        self.drain(3)

    def test_a_thousand_subscribers_on_one_thread_end_spread_out(self):
        closes = self.drain(1000)
        # A window of about one second, one tick every 10 ms: not all in one tick.
        spread = max(closes) - min(closes)
        self.assertGreater(spread, 0.3, "1,000 subscribers ended within %.3f s" % spread)
        buckets = {round(c / 0.01) for c in closes}
        self.assertGreater(len(buckets), 10, "1,000 subscribers ended in %d ticks" % len(buckets))


if __name__ == "__main__":
    unittest.main()
