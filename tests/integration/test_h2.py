"""HTTP/2 (docs/http2.md): every route over prior-knowledge h2c with curl, stream-level checks with
nghttp (Debian's nghttp2-client), and the abuse patterns with a raw frame writer (h2raw.py), each
bounded, counted in /metrics, with a good client served meanwhile."""

import os
import re
import signal
import struct
import subprocess
import tempfile
import time
import urllib.parse

import h2raw
from h2raw import H2Conn, frame
from hscd import SLOW, Curl, ServerTestCase, pieces, wait_for

TEXT = "h2 text"


def curl2(*args, timeout=30):
    """curl --http2-prior-knowledge: (exit status, stdout bytes, stderr text)."""
    p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time",
                        str(int(timeout * SLOW))] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout * SLOW + 10)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def metric(srv, name):
    rc, out, err = curl2(srv.url("/metrics"))
    assert rc == 0, err
    m = re.search(r"^%s (\d+)$" % re.escape(name), out.decode(), re.M)
    assert m, "%s not in /metrics" % name
    return int(m.group(1))


class H2Case(ServerTestCase):
    def good_client(self, srv):
        """A well-behaved HTTP/2 client is served (while an abuse runs or just after)."""
        rc, out, err = curl2("-i", srv.url("/healthz"), timeout=10)
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith(b"HTTP/2 200"), out[:200])


class Routes(H2Case):
    """curl --http2-prior-knowledge on every kind of route."""

    def test_demo_page_and_head(self):
        srv = self.start()
        rc, out, err = curl2("-i", srv.url("/"))
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith(b"HTTP/2 200"), out[:100])
        self.assertIn(b"content-type: text/html", out)
        self.assertIn(b"<html", out.lower())
        self.assertNotIn(b"transfer-encoding", out.lower())
        self.assertNotIn(b"connection:", out.lower())
        rc, out, err = curl2("-I", srv.url("/"))
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith(b"HTTP/2 200"), out[:100])
        self.assertIn(b"content-length:", out)

    def test_stream_answer_piece_by_piece(self):
        srv = self.start("--max-gen-len", "4", "--interval", "300ms")
        curl = Curl("--http2-prior-knowledge", srv.url("/v1/stream?q=" + urllib.parse.quote(TEXT)))
        out, rc, err = curl.read_all()
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.decode(), "".join(pieces(4, TEXT)))
        lines = curl.line_times()
        self.assertGreater(lines[-1][0] - lines[0][0], 0.3, "all pieces at once: not streamed")
        self.assertTrue(lines[0][2], "curl had exited when piece 1 arrived")
        rc, out, err = curl2("--data-binary", TEXT, srv.url("/v1/stream"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.decode(), "".join(pieces(4, TEXT)))

    def test_channel_subscribe_publish_resume(self):
        srv = self.start()
        sub = Curl("--http2-prior-knowledge", srv.url("/v1/events?channel=news"))
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 1, 10 * SLOW))
        ids = []
        for text in ("one", "two", "three"):
            rc, out, err = curl2("--data-binary", text, srv.url("/v1/events?channel=news"))
            self.assertEqual(rc, 0, err)
            ids.append(re.search(rb'"id":"([^"]+)"', out).group(1).decode())
        time.sleep(0.3)
        srv.stop()  # the drain ends the subscription with a parting retry:
        out, rc, err = sub.read_all()
        self.assertEqual(rc, 0, err)
        text = out.decode()
        for i, t in zip(ids, ("one", "two", "three")):
            self.assertIn("id: %s\ndata: %s\n\n" % (i, t), text)
        self.assertTrue(text.rstrip("\n").split("\n")[-1].startswith("retry:"), text)

    def test_resume_with_last_event_id(self):
        srv = self.start()
        ids = []
        for text in ("a", "b", "c"):
            rc, out, err = curl2("--data-binary", text, srv.url("/v1/events?channel=r"))
            self.assertEqual(rc, 0, err)
            ids.append(re.search(rb'"id":"([^"]+)"', out).group(1).decode())
        rc, out, err = curl2("--max-time", "2", "-H", "Last-Event-ID: " + ids[0],
                             srv.url("/v1/events?channel=r"), timeout=2)
        self.assertEqual(rc, 28, err)  # the subscription goes on: curl's own timeout ends it
        text = out.decode()
        self.assertNotIn("data: a\n", text)
        self.assertIn("id: %s\ndata: b\n" % ids[1], text)
        self.assertIn("id: %s\ndata: c\n" % ids[2], text)

    def test_metrics_and_errors(self):
        srv = self.start("--max-body-bytes", "1k")
        rc, out, err = curl2(srv.url("/metrics"))
        self.assertEqual(rc, 0, err)
        self.assertIn(b"hsc_h2_connections_total", out)
        self.assertIn(b'hsc_h2_abuse_closed_total{reason="rapid_reset"} 0', out)
        cases = [
            (["-i", srv.url("/nope")], b"404", b"no such resource: /nope\n"),
            (["-i", "-X", "DELETE", srv.url("/healthz")], b"405", b"is not allowed here"),
            (["-i", srv.url("/v1/events?channel=bad%20name")], b"400", b"\n"),
            (["-i", "--data-binary", "x" * 5000, srv.url("/v1/stream")], b"413",
             b"larger than --max-body-bytes\n"),
            (["-i", "-H", "X-Big: " + "y" * 20000, srv.url("/healthz")], b"431", b"too large\n"),
        ]
        for args, status, reason in cases:
            rc, out, err = curl2(*args)
            self.assertEqual(rc, 0, err)
            self.assertTrue(out.startswith(b"HTTP/2 " + status), out[:300])
            head, _, body = out.partition(b"\r\n\r\n")
            self.assertIn(reason, body)
            self.assertEqual(body.count(b"\n"), 1, body)  # the one-line reason
        self.assertGreaterEqual(metric(srv, "hsc_h2_streams_total"), 6)
        self.good_client(srv)

    def test_no_http2_answers_505(self):
        srv = self.start("--no-http2")
        rc, out, err = curl2("-i", srv.url("/healthz"))
        self.assertNotEqual(rc, 0)
        with srv.connect() as c:  # the HTTP/1.1 parser answers the preface's request line
            c.send(h2raw.PREFACE)
            r = c.read_response()
            self.assertEqual(r.status, 505)
            self.assertIn(b"HTTP/1.1", r.body)
        r = subprocess.run(["curl", "-sS", "-i", srv.url("/healthz")], stdout=subprocess.PIPE)
        self.assertTrue(r.stdout.startswith(b"HTTP/1.1 200"))


class Streams(H2Case):
    """nghttp: many streams on one connection."""

    def test_ten_subscriptions_and_a_publish_on_one_connection(self):
        srv = self.start()
        out = tempfile.NamedTemporaryFile(prefix="nghttp-", delete=False)
        self.addCleanup(os.unlink, out.name)
        # Distinct URIs (nghttp asks once for each): every one also subscribes to "all".
        uris = [srv.url("/v1/events?channel=all&channel=s%d" % i) for i in range(10)]
        ng = subprocess.Popen(["nghttp", "-v"] + uris, stdout=out, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: ng.poll() is None and ng.kill())
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 10, 10 * SLOW))
        for ch in ("all", "s3"):
            rc, body, err = curl2("--data-binary", "hello-" + ch, srv.url("/v1/events?channel=" + ch))
            self.assertEqual(rc, 0, err)
        time.sleep(0.5)
        srv.stop()
        self.assertEqual(ng.wait(15 * SLOW), 0)
        text = open(out.name, "rb").read().decode("utf-8", "replace")
        self.assertEqual(text.count("data: hello-all"), 10, text[-3000:])
        self.assertEqual(text.count("data: hello-s3"), 1)
        streams = set(re.findall(r"recv HEADERS frame <[^>]*stream_id=(\d+)>", text))
        self.assertEqual(len(streams), 10, text[-3000:])
        self.assertIn("recv GOAWAY frame", text)  # the drain's notice and final GOAWAY

    def test_concurrent_answers_interleave(self):
        srv = self.start("--max-gen-len", "3", "--interval", "200ms")
        uris = [srv.url("/v1/stream?q=s%d" % i) for i in range(5)]
        t0 = time.monotonic()
        p = subprocess.run(["nghttp"] + uris, stdout=subprocess.PIPE, timeout=30 * SLOW)
        took = time.monotonic() - t0
        self.assertEqual(p.returncode, 0)
        for i in range(5):
            self.assertEqual(p.stdout.decode().count("«s%d»" % i), 3)
        self.assertLess(took, 5 * 0.6, "5 answers of 0.6 s did not run at once")


class Abuse(H2Case):
    """The known HTTP/2 abuse patterns: each bounded and counted, a good client served."""

    def abuse_count(self, srv, reason):
        return metric(srv, 'hsc_h2_abuse_closed_total{reason="%s"}' % reason)

    def assert_calm_goaway(self, c):
        g = c.goaway(10 * SLOW)
        self.assertIsNotNone(g, "no GOAWAY")
        self.assertEqual(g[1], h2raw.ENHANCE_YOUR_CALM)
        self.assertTrue(c.wait_eof(10 * SLOW), "the connection stayed open")

    def test_rapid_reset(self):
        srv = self.start()
        with H2Conn(srv.port) as c:
            batch = b""
            for i in range(3000):
                sid = 2 * i + 1
                batch += frame(h2raw.HEADERS, h2raw.END_HEADERS | h2raw.END_STREAM, sid,
                               h2raw.request_block("GET", "/v1/events?channel=rr"))
                batch += frame(h2raw.RST_STREAM, 0, sid, struct.pack(">I", h2raw.CANCEL))
            c.send(batch)
            self.good_client(srv)
            self.assert_calm_goaway(c)
        self.assertEqual(self.abuse_count(srv, "rapid_reset"), 1)
        self.assertGreaterEqual(metric(srv, "hsc_h2_resets_received_total"), 500)
        self.good_client(srv)

    def test_continuation_flood(self):
        srv = self.start()
        with H2Conn(srv.port) as c:
            c.send(frame(h2raw.HEADERS, 0, 1, h2raw.request_block("GET", "/healthz")))
            for i in range(5000):
                c.send(frame(h2raw.CONTINUATION, 0, 1, h2raw.literal("x-a", "b")))
                if c.closed:
                    break
            self.good_client(srv)
            self.assert_calm_goaway(c)
        self.assertEqual(self.abuse_count(srv, "continuation"), 1)

    def test_hpack_bomb(self):
        srv = self.start()
        with H2Conn(srv.port) as c:
            # One 4,000-byte field into the dynamic table, then 1-byte references to it.
            block = h2raw.request_block("GET", "/healthz")
            block += b"\x40" + h2raw.hpack_int(5, 7) + b"x-big" + h2raw.hpack_int(4000, 7) + \
                b"z" * 4000
            block += bytes([0x80 | 62]) * 1000
            c.send(frame(h2raw.HEADERS, h2raw.END_HEADERS | h2raw.END_STREAM, 1, block))
            self.assert_calm_goaway(c)
        self.assertEqual(self.abuse_count(srv, "headers"), 1)
        self.good_client(srv)

    def test_ping_and_settings_floods(self):
        srv = self.start()
        for kind, payload in (("ping", frame(h2raw.PING, 0, 0, b"12345678")),
                              ("settings", frame(h2raw.SETTINGS, 0, 0, b""))):
            with H2Conn(srv.port) as c:
                c.send(payload * 5000)
                self.good_client(srv)
                self.assert_calm_goaway(c)
            self.assertEqual(self.abuse_count(srv, kind), 1)

    def test_thousand_streams_refused_past_the_limit(self):
        srv = self.start("--h2-max-streams", "100")
        with H2Conn(srv.port) as c:
            sids = [c.request("GET", "/v1/events?channel=many") for _ in range(1000)]
            refused, answered = set(), set()

            def done(f):
                if f[0] == h2raw.RST_STREAM:
                    self.assertEqual(struct.unpack(">I", f[3])[0], h2raw.REFUSED_STREAM)
                    refused.add(f[2])
                elif f[0] == h2raw.HEADERS:
                    answered.add(f[2])
                return len(refused) + len(answered) == 1000
            _, last = c.frames_until(done, 20 * SLOW)
            self.assertIsNotNone(last, "refused %d answered %d" % (len(refused), len(answered)))
            self.assertEqual(len(answered), 100)
            self.assertEqual(answered, set(sids[:100]))
            self.assertEqual(metric(srv, "hsc_subscribers"), 100)
            # The connection still works: end one subscription, ask for something else.
            c.send(frame(h2raw.RST_STREAM, 0, sids[0], struct.pack(">I", h2raw.CANCEL)))
            self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 99, 10 * SLOW))
            sid = c.request("GET", "/healthz")
            _, f = c.frames_until(lambda f: f[2] == sid and f[1] & h2raw.END_STREAM, 10 * SLOW)
            self.assertIsNotNone(f)
            self.assertEqual(f[0], h2raw.DATA)
            self.assertEqual(f[3], b"ok\n")
        self.good_client(srv)

    def test_window_zero_subscriber_stalls_alone(self):
        srv = self.start()
        settings = [(h2raw.SETTINGS_INITIAL_WINDOW_SIZE, 0)]
        with H2Conn(srv.port, settings) as slow:
            s1 = slow.request("GET", "/v1/events?channel=w")
            s2 = slow.request("GET", "/v1/events?channel=w")
            sub = Curl("--http2-prior-knowledge", srv.url("/v1/events?channel=w"))
            self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 3, 10 * SLOW))
            for i in range(5):
                rc, _, err = curl2("--data-binary", "event %d" % i, srv.url("/v1/events?channel=w"))
                self.assertEqual(rc, 0, err)
            seen = slow.drain_frames(1.0 * SLOW)
            self.assertFalse([f for f in seen if f[0] == h2raw.DATA and f[3]],
                             "DATA past a closed window")
            # Open stream s2's window only: it gets its events, s1 stays stalled.
            slow.send(frame(h2raw.WINDOW_UPDATE, 0, s2, struct.pack(">I", 1 << 20)))
            got = b""
            deadline = time.monotonic() + 10 * SLOW
            while b"data: event 4" not in got and time.monotonic() < deadline:
                f = slow.read_frame(1.0)
                if f and f[0] == h2raw.DATA:
                    self.assertEqual(f[2], s2, "DATA on the stalled stream")
                    got += f[3]
            self.assertIn(b"data: event 0\n", got)
            self.assertIn(b"data: event 4\n", got)
            srv.stop()
            out, rc, err = sub.read_all()
            self.assertIn(b"data: event 4\n", out)  # the other connection was served
            del s1

    def test_closed_window_subscriber_dropped_like_a_slow_one(self):
        srv = self.start("--max-queue-bytes", "64k", "--idle-timeout", "30s")
        with H2Conn(srv.port, [(h2raw.SETTINGS_INITIAL_WINDOW_SIZE, 0)]) as slow:
            sid = slow.request("GET", "/v1/events?channel=slow")
            self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 1, 10 * SLOW))
            body = "x" * 1000
            for i in range(200):  # 200 KB: past the stream's mark and the backlog's bound
                rc, _, err = curl2("--data-binary", body, srv.url("/v1/events?channel=slow"))
                self.assertEqual(rc, 0, err)
                if metric(srv, "hsc_slow_subscribers_dropped_total") == 1:
                    break
            self.assertEqual(metric(srv, "hsc_slow_subscribers_dropped_total"), 1)
            _, f = slow.frames_until(lambda f: f[0] == h2raw.RST_STREAM and f[2] == sid, 5 * SLOW)
            self.assertIsNotNone(f, "no RST_STREAM for the dropped subscriber")
            self.assertEqual(struct.unpack(">I", f[3])[0], h2raw.CANCEL)
            # The connection goes on.
            sid2 = slow.request("HEAD", "/healthz")
            _, f = slow.frames_until(lambda f: f[2] == sid2 and f[1] & h2raw.END_STREAM, 5 * SLOW)
            self.assertIsNotNone(f)
        self.good_client(srv)

    def test_stalled_stream_reset_after_idle_timeout(self):
        srv = self.start("--idle-timeout", "1s")
        with H2Conn(srv.port, [(h2raw.SETTINGS_INITIAL_WINDOW_SIZE, 0)]) as slow:
            sid = slow.request("GET", "/v1/stream?q=stalled")
            t0 = time.monotonic()
            _, f = slow.frames_until(lambda f: f[0] == h2raw.RST_STREAM and f[2] == sid, 10 * SLOW)
            self.assertIsNotNone(f, "the stalled stream was not reset")
            self.assertGreater(time.monotonic() - t0, 0.9)
            self.assertEqual(struct.unpack(">I", f[3])[0], h2raw.CANCEL)

    def test_idle_connection_gets_goaway(self):
        srv = self.start("--idle-timeout", "1s")
        with H2Conn(srv.port) as c:
            sid = c.request("GET", "/healthz")
            _, f = c.frames_until(lambda f: f[2] == sid and f[1] & h2raw.END_STREAM, 5 * SLOW)
            self.assertIsNotNone(f)
            t0 = time.monotonic()
            g = c.goaway(5 * SLOW)
            self.assertEqual(g, (sid, h2raw.NO_ERROR))
            self.assertGreater(time.monotonic() - t0, 0.5)
            self.assertTrue(c.wait_eof(5 * SLOW))

    def test_preface_without_request_times_out(self):
        srv = self.start("--header-timeout", "1s")
        with H2Conn(srv.port) as c:
            g = c.goaway(5 * SLOW)
            self.assertIsNotNone(g)
            self.assertTrue(c.wait_eof(5 * SLOW))


class Drain(H2Case):
    """SIGTERM: a shutdown notice, the final GOAWAY, subscribers end with retry:, then close."""

    def test_drain_goaway_and_parting_retry(self):
        srv = self.start("--drain-timeout", "2s")
        with H2Conn(srv.port) as c:
            sid = c.request("GET", "/v1/events?channel=d")
            _, f = c.frames_until(lambda f: f[0] == h2raw.HEADERS, 5 * SLOW)
            self.assertIsNotNone(f)
            srv.send_signal(signal.SIGTERM)
            seen, end = c.frames_until(
                lambda f: f[2] == sid and f[1] & h2raw.END_STREAM, 10 * SLOW)
            self.assertIsNotNone(end, seen)
            goaways = [struct.unpack(">II", f[3][:8]) for f in seen if f[0] == h2raw.GOAWAY]
            self.assertTrue(goaways, "no GOAWAY before the end")
            self.assertEqual(goaways[0][0], 0x7FFFFFFF)  # the shutdown notice
            body = b"".join(f[3] for f in seen if f[0] == h2raw.DATA and f[2] == sid)
            self.assertRegex(body.decode(), r"retry: \d+\n\n$")
            seen += c.drain_frames(5 * SLOW)
            goaways = [struct.unpack(">II", f[3][:8]) for f in seen if f[0] == h2raw.GOAWAY]
            self.assertIn((sid, h2raw.NO_ERROR), goaways)  # the final GOAWAY: the last stream
            self.assertTrue(c.wait_eof(10 * SLOW))
        self.assertEqual(srv.wait(15 * SLOW), 0)

    def test_drain_closes_an_idle_connection_with_goaway(self):
        srv = self.start()
        with H2Conn(srv.port) as c:
            sid = c.request("GET", "/healthz")
            _, f = c.frames_until(lambda f: f[2] == sid and f[1] & h2raw.END_STREAM, 5 * SLOW)
            self.assertIsNotNone(f)
            srv.send_signal(signal.SIGTERM)
            self.assertEqual(c.goaway(5 * SLOW), (sid, h2raw.NO_ERROR))
            self.assertTrue(c.wait_eof(5 * SLOW))
        self.assertEqual(srv.wait(15 * SLOW), 0)
