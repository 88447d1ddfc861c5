"""Resource limits and misbehaving clients.

Proves that:
- slowloris: a client sending its request head one byte every 0.3 s gets 408 (or a close) after
  --header-timeout, while a normal client is served meanwhile; a client that connects and sends
  nothing is closed too;
- an idle keep-alive connection is closed after --idle-timeout, an active one is not;
- --max-connections: past the cap the extra connection gets 503 with Retry-After and is closed,
  and once the others close, new connections are served again;
- a client that stops reading a long stream is dropped once --max-queue-bytes would be exceeded
  (the body is cut without its last chunk), others are served meanwhile, and hscd exits 0;
  with small pieces the stream pauses (backpressure) and resumes without losing a piece;
- clients that disconnect (FIN or RST) mid-stream do not disturb the server.
Every test ends with SIGTERM and asserts exit status 0 (no leak under ASan).
"""

import http.client
import select
import socket
import threading
import time
import unittest
import urllib.parse

from hscd import (
    HOST,
    SLOW,
    RawConn,
    ServerTestCase,
    assert_error_response,
    piece,
    pieces,
    wait_for,
)


class NormalClient(threading.Thread):
    """Runs short stream requests in a loop on fresh connections until stopped; records
    results."""

    def __init__(self, port, text="normal"):
        super().__init__(daemon=True)
        self.port, self.text = port, text
        self.stop = threading.Event()
        self.ok = 0
        self.errors = []

    def run(self):
        while not self.stop.is_set() and len(self.errors) < 5:
            try:
                with RawConn(self.port, timeout=10) as c:
                    c.request("GET", "/v1/stream?q=" + urllib.parse.quote(self.text))
                    r = c.read_response()
                    if r.status != 200 or not r.complete or r.text() != "".join(
                            pieces(3, self.text)):
                        self.errors.append(repr(r))
                    else:
                        self.ok += 1
            except Exception as e:
                self.errors.append(repr(e))
            time.sleep(0.05)


class Slowloris(ServerTestCase):

    def test_slow_head_gets_408_while_others_are_served(self):
        srv = self.start("--header-timeout", "1s", "--max-gen-len", "3", "--interval", "50ms")
        normal = NormalClient(srv.port)
        head = b"GET /v1/stream?q=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n\r\n"
        sock = socket.create_connection((HOST, srv.port), timeout=10 * SLOW)
        got, ended = b"", None
        try:
            normal.start()
            t0 = time.monotonic()
            deadline = t0 + 10 * SLOW
            i = 0
            while time.monotonic() < deadline and i < len(head):
                ready, _, _ = select.select([sock], [], [], 0.3)
                if ready:
                    try:
                        data = sock.recv(4096)
                    except ConnectionResetError:
                        ended = "reset"
                        break
                    if not data:
                        ended = "fin"
                        break
                    got += data
                    continue
                try:
                    sock.send(head[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    ended = "send failed"
                    break
                i += 1
            elapsed = time.monotonic() - t0
        finally:
            sock.close()
            normal.stop.set()
            normal.join(timeout=30 * SLOW)
        self.assertLess(i, len(head), "the whole slow head was accepted (%d bytes)" % i)
        self.assertTrue(ended is not None or got, "the server neither answered nor closed")
        if got:
            self.assertTrue(got.startswith(b"HTTP/1.1 408 "), got)
        # Not before the timeout (minus scheduling slack), and well within a few seconds.
        self.assertGreater(elapsed, 0.7, "closed before --header-timeout")
        self.assertLess(elapsed, 1 + 4 * SLOW)
        self.assertEqual(normal.errors, [])
        self.assertGreaterEqual(normal.ok, 3, "the normal client was not served meanwhile")

    def test_408_response_is_well_formed(self):
        srv = self.start("--header-timeout", "500ms")
        with srv.connect() as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head never ends
            r = c.read_response(timeout=10)
            assert_error_response(self, r, 408)
            self.assertEqual((r.header("Connection") or "").lower(), "close")
            self.assertIn(c.wait_closed(timeout=10), ("fin", "reset"))

    def test_silent_connection_is_closed(self):
        srv = self.start("--header-timeout", "500ms")
        with srv.connect() as c:
            t0 = time.monotonic()
            data, how = c.read_eof(timeout=10)
            self.assertGreater(time.monotonic() - t0, 0.3)
            self.assertIn(how, ("fin", "reset"))
            self.assertEqual(data, b"", "unexpected bytes for a silent connection")
        # the server is fine afterwards
        with srv.connect() as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")


class IdleTimeout(ServerTestCase):

    def test_idle_keep_alive_connection_is_closed(self):
        srv = self.start("--idle-timeout", "1s")
        with srv.connect() as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")
            t0 = time.monotonic()
            data, how = c.read_eof(timeout=10)
            elapsed = time.monotonic() - t0
        self.assertEqual(data, b"")
        self.assertIn(how, ("fin", "reset"))
        self.assertGreater(elapsed, 0.7, "closed before --idle-timeout")
        self.assertLess(elapsed, 1 + 4 * SLOW)

    def test_active_connection_is_kept(self):
        srv = self.start("--idle-timeout", "1s", "--max-gen-len", "2", "--interval", "10ms")
        with srv.connect() as c:
            t0 = time.monotonic()
            n = 0
            while time.monotonic() - t0 < 2.5:  # longer than the timeout, in short gaps
                c.request("GET", "/v1/stream?q=%d" % n)
                self.assertEqual(c.read_response().text(), "".join(pieces(2, str(n))))
                n += 1
                time.sleep(0.4)
            self.assertIsNone(c.eof)

    def test_long_stream_is_not_cut_by_idle_timeout(self):
        # A response in progress is not idle: 5 pieces over 2 s with --idle-timeout 1s.
        srv = self.start("--idle-timeout", "1s", "--max-gen-len", "5", "--interval", "500ms")
        with srv.connect() as c:
            c.request("GET", "/v1/stream?q=long")
            r = c.read_response(timeout=20)
        self.assertTrue(r.complete, r)
        self.assertEqual(r.text(), "".join(pieces(5, "long")))


class BodyStall(ServerTestCase):

    def test_stalled_body_gets_408(self):
        srv = self.start("--idle-timeout", "1s")
        with srv.connect() as c:
            c.send(b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            t0 = time.monotonic()
            r = c.read_response(timeout=10)
            elapsed = time.monotonic() - t0
            assert_error_response(self, r, 408)
            self.assertIn(c.wait_closed(timeout=10), ("fin", "reset"))
        self.assertGreater(elapsed, 0.7)
        self.assertLess(elapsed, 1 + 4 * SLOW)


class ConnectionCap(ServerTestCase):

    def test_503_past_max_connections_then_recovers(self):
        srv = self.start("--max-connections", "10", "--threads", "2")
        conns = []
        try:
            for _ in range(10):
                c = srv.connect()
                conns.append(c)
                c.request("GET", "/healthz")  # answered: the connection is counted
                self.assertEqual(c.read_response().body, b"ok\n")
            with srv.connect() as extra:
                r = extra.read_response(timeout=10)  # sent at once, without a request
                assert_error_response(self, r, 503)
                self.assertRegex(r.header("Retry-After", ""), r"^\d+$")
                self.assertEqual((r.header("Connection") or "").lower(), "close")
                self.assertIn(extra.wait_closed(timeout=10), ("fin", "reset"))
            # one that sends a request also gets the 503, as a complete response
            with srv.connect() as extra:
                extra.request("GET", "/healthz")
                r = extra.read_response(timeout=10)
                self.assertEqual(r.status, 503)
            # the 10 are still served
            for c in conns:
                c.request("GET", "/healthz")
                self.assertEqual(c.read_response().body, b"ok\n")
        finally:
            for c in conns:
                c.close()

        def served():
            try:
                with srv.connect(timeout=5) as c:
                    c.request("GET", "/healthz")
                    return c.read_response(timeout=5).status == 200
            except (OSError, AssertionError):
                return False

        self.assertTrue(wait_for(served, timeout=5, step=0.1), "no recovery after the cap")
        # and the full capacity is back: 10 at once again
        conns = [srv.connect() for _ in range(9)]
        try:
            for c in conns:
                c.request("GET", "/healthz")
                self.assertEqual(c.read_response().body, b"ok\n")
        finally:
            for c in conns:
                c.close()

    def test_idle_sockets_count_too(self):
        # Connected sockets that have sent nothing count. One thread: one accept queue, so the
        # server accepts in connect order and the 6th is the one over the cap.
        srv = self.start("--max-connections", "5", "--threads", "1")
        socks = [socket.create_connection((HOST, srv.port), timeout=10 * SLOW) for _ in range(5)]
        try:
            with srv.connect() as c:
                c.request("GET", "/healthz")
                r = c.read_response(timeout=10)
                assert_error_response(self, r, 503)
            for s in socks:  # none of the first five got anything
                s.setblocking(False)
                with self.assertRaises(BlockingIOError):
                    s.recv(1)
        finally:
            for s in socks:
                s.close()


class SlowReader(ServerTestCase):

    def test_client_that_stops_reading_is_dropped(self):
        # Each piece carries a 100 KB text: more than --max-queue-bytes 64k can hold once the
        # socket buffers are full, so the server must drop the connection instead of queueing.
        srv = self.start("--max-queue-bytes", "64k", "--max-gen-len", "1000000",
                         "--interval", "1ms", "--drain-timeout", "2s")
        text = "x" * 100_000
        stalled = RawConn(srv.port, rcvbuf=8192)
        try:
            stalled.request("POST", "/v1/stream", body=text)
            time.sleep(1.0)  # read nothing meanwhile
            # others are served
            with srv.connect() as c:
                c.request("GET", "/healthz")
                self.assertEqual(c.read_response().body, b"ok\n")
            conn = http.client.HTTPConnection(HOST, srv.port, timeout=10 * SLOW)
            try:
                conn.request("GET", "/v1/stream?q=other")
                resp = conn.getresponse()
                for i in range(1, 4):
                    self.assertEqual(resp.readline().decode(), piece(i, 1000000, "other"))
            finally:
                conn.close()
            # the stalled client finds the stream cut: bounded data, then the end, no last chunk
            r = stalled.read_response(timeout=20)
        finally:
            stalled.close()
        self.assertEqual(r.status, 200)
        self.assertFalse(r.complete, "the answer of a client that did not read completed?")
        self.assertLess(len(r.body), 64 << 20)
        for i, ch in enumerate(r.chunks, 1):
            self.assertEqual(ch.decode("utf-8"), piece(i, 1000000, text))

    def test_http10_client_that_stops_reading_gets_a_reset(self):
        # docs/api.md: a close-delimited (HTTP/1.0) answer that fails ends with a reset, since an
        # orderly close means "complete" to the client.
        srv = self.start("--max-queue-bytes", "64k", "--max-gen-len", "1000000",
                         "--interval", "1ms")
        with RawConn(srv.port, rcvbuf=8192) as c:
            c.request("POST", "/v1/stream", body="x" * 100_000, version="HTTP/1.0")
            time.sleep(1.0)
            data, how = c.read_eof(timeout=20)
        self.assertIn(b"HTTP/1.1 200 ", data[:20])
        self.assertEqual(how, "reset", "the dropped HTTP/1.0 answer ended with an orderly close "
                                      "(after %d bytes, ending %r)" % (len(data), data[-20:]))

    def test_paused_stream_resumes_without_loss(self):
        # Small pieces: the server pauses the stream when the client's queue is full and
        # resumes when it drains. The client stalls 2 s, then reads everything.
        n = 1000
        text = "y" * 8000  # 8 MB in all: more than the socket buffers hold
        srv = self.start("--max-queue-bytes", "64k", "--max-gen-len", str(n),
                         "--interval", "1ms")
        with RawConn(srv.port, timeout=60, rcvbuf=8192) as c:
            c.request("GET", "/v1/stream?q=" + text)
            time.sleep(2.0)
            with srv.connect() as other:
                other.request("GET", "/healthz")
                self.assertEqual(other.read_response().body, b"ok\n")
            r = c.read_response(timeout=60)
        self.assertTrue(r.complete, r)
        self.assertEqual(len(r.chunks), n)
        for i, ch in enumerate(r.chunks, 1):
            self.assertTrue(ch.startswith(b"[%d/%d] " % (i, n)), ch[:20])


    def test_burst_at_interval_0_pauses_and_resumes_without_loss(self):
        # --interval 0: the demo writes its pieces in bursts (corked, one writev each) as long as
        # the client's queue takes them, pauses, and goes on when it drains.
        n = 2000
        srv = self.start("--max-queue-bytes", "64k", "--max-gen-len", str(n), "--interval", "0")
        with RawConn(srv.port, timeout=60, rcvbuf=8192) as c:
            c.request("GET", "/v1/stream?q=" + "z" * 4000)
            time.sleep(1.0)
            with srv.connect() as other:
                other.request("GET", "/v1/stream?q=other")
                r2 = other.read_response()
            r = c.read_response(timeout=60)
        self.assertTrue(r2.complete, r2)
        self.assertEqual([ch.decode() for ch in r2.chunks], pieces(n, "other"))
        self.assertTrue(r.complete, r)
        self.assertEqual(len(r.chunks), n)
        for i, ch in enumerate(r.chunks, 1):
            self.assertEqual(ch.decode(), piece(i, n, "z" * 4000))

    def test_big_pieces_at_interval_0_to_a_stalled_reader_are_dropped(self):
        # One piece larger than the cork's batch goes out uncorked: a reader that stops reading
        # is dropped at --max-queue-bytes as without the burst.
        srv = self.start("--max-queue-bytes", "64k", "--max-gen-len", "1000000",
                         "--interval", "0", "--drain-timeout", "2s")
        with RawConn(srv.port, rcvbuf=8192) as stalled:
            stalled.request("POST", "/v1/stream", body="x" * 100_000)
            time.sleep(1.0)
            with srv.connect() as c:
                c.request("GET", "/healthz")
                self.assertEqual(c.read_response().body, b"ok\n")
            r = stalled.read_response(timeout=20)
        self.assertEqual(r.status, 200)
        self.assertFalse(r.complete)
        self.assertGreater(len(r.chunks), 0, "the big pieces were not written at all")
        self.assertLess(len(r.body), 64 << 20)
        for i, ch in enumerate(r.chunks, 1):
            self.assertEqual(ch.decode("utf-8"), piece(i, 1000000, "x" * 100_000))

    def test_stalled_reader_of_a_paused_stream_is_dropped_after_idle_timeout(self):
        # Small pieces: backpressure pauses the stream instead of overflowing the queue. A client
        # that then reads nothing for --idle-timeout is disconnected, so it cannot hold its
        # connection slot forever; a patient client (the test above) is not.
        srv = self.start("--max-queue-bytes", "64k", "--max-gen-len", "100000",
                         "--interval", "1ms", "--idle-timeout", "1s", "--log-level", "info")
        with RawConn(srv.port, timeout=30, rcvbuf=8192) as c:
            c.request("GET", "/v1/stream?q=" + "w" * 8000)
            time.sleep(1.0 + 3 * SLOW)  # paused, then past the idle timeout
            with srv.connect() as other:
                other.request("GET", "/healthz")
                self.assertEqual(other.read_response().body, b"ok\n")
            r = c.read_response(timeout=30)
        self.assertEqual(r.status, 200)
        self.assertFalse(r.complete, "a reader stalled past --idle-timeout got a complete answer")
        self.assertLess(len(r.chunks), 100000)
        self.assertIn("read nothing for --idle-timeout", srv.log())

    def test_sigterm_with_a_paused_stream(self):
        # A stream paused by backpressure is cut at --drain-timeout; hscd exits 0.
        srv = self.start("--max-queue-bytes", "64k", "--max-gen-len", "100000",
                         "--interval", "1ms", "--drain-timeout", "500ms")
        with RawConn(srv.port, rcvbuf=8192) as c:
            c.request("GET", "/v1/stream?q=" + "z" * 8000)
            time.sleep(1.5)  # buffers full, stream paused
            t0 = time.monotonic()
            rc = srv.stop(timeout=10)
            self.assertEqual(rc, 0, srv.describe())
            self.assertLess(time.monotonic() - t0, 0.5 + 3 * SLOW)
            r = c.read_response(timeout=30)
        self.assertFalse(r.complete)


class Disconnects(ServerTestCase):

    def test_disconnect_mid_stream(self):
        srv = self.start("--max-gen-len", "10", "--interval", "100ms")
        for how in ("fin", "reset", "fin", "reset"):
            c = srv.connect()
            c.request("GET", "/v1/stream?q=" + how)
            r_head = c.read_line(time.monotonic() + 10 * SLOW)
            self.assertTrue(r_head.startswith(b"HTTP/1.1 200"))
            time.sleep(0.15)  # a piece or two
            if how == "fin":
                c.close()
            else:
                c.reset()
        # mid-headers and mid-request-body disconnects too
        c = srv.connect()
        c.send(b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        c.reset()
        c = srv.connect()
        c.send(b"GET /v1/stream?q=x HTTP/1.1\r\nHo")
        c.close()
        # the server keeps serving
        with srv.connect() as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")
            c.request("GET", "/v1/stream?q=after")
            self.assertEqual(c.read_response().text(), "".join(pieces(10, "after")))

    def test_many_disconnects_at_random_points(self):
        srv = self.start("--max-gen-len", "20", "--interval", "10ms", "--threads", "2")
        errors = []

        def client(k):
            try:
                with srv.connect() as c:
                    c.request("GET", "/v1/stream?q=c%d" % k,
                              [("Accept", "text/event-stream")] if k % 2 else [])
                    time.sleep((k % 7) * 0.02)
                    if k % 3 == 0:
                        c.reset()
            except Exception as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30 * SLOW)
        self.assertEqual(errors, [])
        with srv.connect() as c:
            c.request("GET", "/v1/stream?q=still")
            self.assertTrue(c.read_response().complete)


if __name__ == "__main__":
    unittest.main()
