"""Streamed answers on /v1/stream, seen from real clients.

Proves that:
- curl receives the answer piece by piece (GET ?q= and POST -d): the first piece is read while
  curl is still running and before the last piece exists;
- every piece is exactly `[i/N] «TEXT» → 回声 ✓\\n` for the decoded request text (non-ASCII, '+',
  escaped '&', emoji, a long POST body, a chunked POST body);
- the plain form is text/plain; charset=utf-8, chunked, one chunk per piece and the last chunk;
  with the streaming headers (Cache-Control: no-store, X-Accel-Buffering: no, X-Request-Id);
- the SSE form sends one event per piece (line breaks, CR and CRLF included, become several
  data lines and come back as LF; a text cannot inject an event) and a final `event: done` whose
  JSON counts pieces and bytes; each event's data is the piece exactly: a demo piece is a line,
  so its event ends with an empty `data:` line, and the events' data joined is the plain body;
- SSE answers are kept alive with `: keep-alive`, the very bytes channels send;
- HEAD answers the headers only, at once; HTTP/1.0 gets a close-delimited body ended by an
  orderly close; --max-gen-len 0 is a complete, empty answer.
A complete answer is recognised by its last chunk (SSE: done event; HTTP/1.0: FIN); the failed
forms (cut streams) are tested in test_cli.py (drain) and test_limits.py (slow readers).
"""

import json
import time
import unittest
import urllib.parse

from hscd import (
    SLOW,
    Curl,
    ServerTestCase,
    chunked_body,
    parse_sse,
    piece,
    pieces,
)

TEXT = "héllo wörld 你好 🚀"
KEEPALIVE = b": keep-alive\n\n"  # docs/api.md: the one spelling, answers and channels alike


class CurlStreaming(ServerTestCase):
    """curl -N receives the pieces as they are produced."""

    N = 4
    INTERVAL = "400ms"

    def check_streamed(self, curl, text):
        out, rc, err = curl.read_all()
        self.assertEqual(rc, 0, "curl failed: %s" % err)
        self.assertEqual(out.decode("utf-8"), "".join(pieces(self.N, text)))
        lines = curl.line_times()
        self.assertEqual(len(lines), self.N)
        t_first, first, first_running = lines[0]
        t_last, last, _ = lines[-1]
        self.assertEqual(first.decode("utf-8"), piece(1, self.N, text))
        # Structure, not timing: the read that delivered piece 1 did not also deliver the last
        # piece, and curl was still running then (the answer was not buffered up to the end).
        first_read = curl.reads[0][1].decode("utf-8", "replace")
        self.assertNotIn("[%d/%d]" % (self.N, self.N), first_read,
                         "the first read already held the last piece: not streamed")
        self.assertTrue(first_running, "curl had already exited when piece 1 was read")
        # Pieces are produced one --interval apart (3 x 400 ms between the first and the last);
        # a buffered answer would arrive all at once. Only a loose lower bound is asserted.
        self.assertGreater(t_last - t_first, 0.4,
                           "all pieces arrived within %.3f s: not streamed" % (t_last - t_first))
        # Pieces arrive in at least 3 separate reads.
        times = sorted({t for t, _, _ in lines})
        self.assertGreaterEqual(len(times), 3, "pieces arrived in %d reads" % len(times))

    def test_get_query_streams_piece_by_piece(self):
        srv = self.start("--max-gen-len", str(self.N), "--interval", self.INTERVAL)
        curl = Curl(srv.url("/v1/stream?q=" + urllib.parse.quote(TEXT)))
        self.check_streamed(curl, TEXT)

    def test_post_body_streams_piece_by_piece(self):
        srv = self.start("--max-gen-len", str(self.N), "--interval", self.INTERVAL)
        curl = Curl("--data-binary", TEXT, srv.url("/v1/stream"))
        self.check_streamed(curl, TEXT)

    def test_curl_sees_complete_answer_exit_0(self):
        # curl exits 0 only when the chunked body ended with the last chunk.
        srv = self.start("--max-gen-len", "2", "--interval", "10ms")
        out, rc, err = Curl("-d", "x", srv.url("/v1/stream")).read_all()
        self.assertEqual((rc, out.decode()), (0, "".join(pieces(2, "x"))), err)


class PlainForm(ServerTestCase):
    """The default text/plain chunked form, seen on a raw socket."""

    def setUp(self):
        self.srv = self.start("--max-gen-len", "5", "--interval", "50ms")

    def get(self, target, headers=(), method="GET", body=None, version="HTTP/1.1"):
        with self.srv.connect() as c:
            c.request(method, target, headers, body, version)
            return c.read_response(head_only=method == "HEAD")

    def check_answer(self, r, text, n=5):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        self.assertIsNone(r.header("Content-Length"))
        self.assertEqual(r.framing, "chunked")
        self.assertTrue(r.complete, "no last chunk: %r" % r)
        # one chunk per piece, each exactly the piece
        self.assertEqual([c.decode("utf-8") for c in r.chunks], pieces(n, text))

    def test_chunk_per_piece_and_last_chunk(self):
        r = self.get("/v1/stream?q=" + urllib.parse.quote(TEXT))
        self.check_answer(r, TEXT)

    def test_streaming_headers(self):
        r = self.get("/v1/stream?q=abc")
        self.check_answer(r, "abc")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("X-Accel-Buffering"), "no")
        self.assertRegex(r.header("X-Request-Id", ""), r"^\d+$")
        self.assertEqual(r.version, "HTTP/1.1")
        # two answers have two different request ids
        r2 = self.get("/v1/stream?q=abc")
        self.assertNotEqual(r.header("X-Request-Id"), r2.header("X-Request-Id"))

    def test_query_decoding(self):
        cases = [
            ("a+b", "a b"),  # '+' is a space in a query
            ("a%2Bb", "a+b"),
            ("x%26y%3Dz", "x&y=z"),
            (urllib.parse.quote("醒醒，Neo"), "醒醒，Neo"),
            (urllib.parse.quote("😀 emoji"), "😀 emoji"),
        ]
        for raw, text in cases:
            with self.subTest(raw=raw):
                self.check_answer(self.get("/v1/stream?q=" + raw), text)
        # q among other parameters
        self.check_answer(self.get("/v1/stream?lang=en&q=second&x=1"), "second")

    def test_post_body_is_the_text_as_is(self):
        text = "línea uno\ttab «quotes» & = + %41"
        self.check_answer(self.get("/v1/stream", method="POST", body=text), text)

    def test_post_long_body(self):
        text = "长" * 5000 + "end"  # ~15 KB: each chunk carries it whole
        r = self.get("/v1/stream", method="POST", body=text)
        self.check_answer(r, text)

    def test_post_chunked_request_body(self):
        text = "chunked request body ✓ " * 20
        data = text.encode("utf-8")
        with self.srv.connect() as c:
            c.request("POST", "/v1/stream", [("Transfer-Encoding", "chunked")],
                      chunked_body(data, 37))
            self.check_answer(c.read_response(), text)

    def test_post_chunked_with_extension_and_trailer(self):
        with self.srv.connect() as c:
            c.send(b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: y\r\n\r\n")
            self.check_answer(c.read_response(), "abcde")

    def test_big_trailer_after_pipelined_stream(self):
        # Trailer fields are appended to the request head after its pointers were taken; a big
        # one moves the storage (fuzz_request found it: a use after free in the router).
        trailer = b"X-Big: " + b"t" * 3000 + b"\r\n"
        with self.srv.connect() as c:
            c.send(b"GET /v1/stream?q=first HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"POST /v1/stream?x=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                   b"\r\n5\r\nhello\r\n0\r\n" + trailer + b"\r\n")
            self.check_answer(c.read_response(), "first")
            self.check_answer(c.read_response(), "hello")

    def test_accept_plain_is_plain(self):
        r = self.get("/v1/stream?q=p", [("Accept", "text/plain")])
        self.check_answer(r, "p")

    def test_max_gen_len_zero_is_empty_complete_answer(self):
        srv = self.start("--max-gen-len", "0")
        with srv.connect() as c:
            c.request("GET", "/v1/stream?q=x")
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.complete)
        self.assertEqual(r.chunks, [])


class SSEForm(ServerTestCase):
    """Accept: text/event-stream."""

    def setUp(self):
        self.srv = self.start("--max-gen-len", "4", "--interval", "30ms")

    def sse(self, target, accept="text/event-stream", method="GET", body=None):
        with self.srv.connect() as c:
            c.request(method, target, [("Accept", accept)], body)
            return c.read_response()

    def check_events(self, r, text, n=4):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "text/event-stream; charset=utf-8")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("X-Accel-Buffering"), "no")
        self.assertTrue(r.complete, r)
        events = parse_sse(r.body)
        expected = pieces(n, text)
        self.assertEqual(len(events), n + 1, events)
        for (etype, data), exp in zip(events, expected):
            self.assertEqual(etype, "message")
            self.assertEqual(data, exp.replace("\r\n", "\n").replace("\r", "\n"))
        etype, data = events[-1]
        self.assertEqual(etype, "done")
        done = json.loads(data)
        nbytes = sum(len(p.encode("utf-8")) for p in expected)
        self.assertEqual(done, {"pieces": n, "bytes": nbytes})
        # one chunk per event at most: no event is split over two chunks
        for ch in r.chunks:
            self.assertTrue(ch.endswith(b"\n\n"), "chunk does not end an event: %r" % ch)
        return events

    def test_events_and_done(self):
        self.check_events(self.sse("/v1/stream?q=" + urllib.parse.quote(TEXT)), TEXT)

    def test_post_sse(self):
        self.check_events(self.sse("/v1/stream", method="POST", body=TEXT), TEXT)

    def test_multiline_text_becomes_several_data_lines(self):
        text = "line one\nline two\r\nline three"
        r = self.sse("/v1/stream", method="POST", body=text)
        self.check_events(r, text)
        # no raw CR may leak into the stream (it would end a line early)
        self.assertNotIn(b"\r", r.body)
        self.assertIn(b"data: line two\n", r.body)

    def test_lone_cr_and_event_injection(self):
        for text in ["a\rb", "x\r", "\n", "data: evil\n\nevent: done\ndata: {}"]:
            with self.subTest(text=text):
                r = self.sse("/v1/stream", method="POST", body=text)
                events = self.check_events(r, text)
                self.assertEqual([t for t, _ in events].count("done"), 1)

    def test_accept_list_with_parameters(self):
        r = self.sse("/v1/stream?q=z", accept="text/html, text/event-stream;q=0.9")
        self.check_events(r, "z")

    def test_a_demo_piece_is_a_line_its_newline_an_empty_last_data_line(self):
        r = self.sse("/v1/stream?q=z")
        self.check_events(r, "z")
        # The keep-alive sent at once with the headers, then the first piece's event, byte-exact.
        self.assertEqual(r.chunks[0], KEEPALIVE)
        self.assertEqual(r.chunks[1], "data: [1/4] «z» → 回声 ✓\ndata: \n\n".encode("utf-8"))
        with self.srv.connect() as c:
            c.request("GET", "/v1/stream?q=z")
            plain = c.read_response()
        self.assertEqual("".join(d for t, d in parse_sse(r.body) if t == "message"),
                         plain.text())

    def test_keepalive_is_spelled_as_on_channels(self):
        srv = self.start("--max-gen-len", "2", "--interval", "700ms", "--keepalive", "200ms")
        with srv.connect(timeout=10) as c:
            c.request("GET", "/v1/stream?q=k", [("Accept", "text/event-stream")])
            r = c.read_response()
        self.assertTrue(r.complete, r)
        comments = [ch for ch in r.chunks if ch.startswith(b":")]
        self.assertGreaterEqual(len(comments), 2, r.chunks)  # one at once, more while silent
        self.assertEqual(set(comments), {KEEPALIVE})
        # A silent subscription on the same server gets the very same bytes.
        with srv.connect(timeout=10) as c:
            c.request("GET", "/v1/events?channel=k")
            self.assertEqual(c.read_response(head_only=True).status, 200)
            deadline = time.monotonic() + 5 * SLOW
            chunks = []
            while not any(ch.startswith(b": k") for ch in chunks):
                size = int(c.read_line(deadline), 16)
                chunks.append(c.read_exact(size + 2, deadline)[:-2])
        self.assertEqual(chunks[-1], KEEPALIVE)

    def test_max_gen_len_zero_done_only(self):
        srv = self.start("--max-gen-len", "0")
        with srv.connect() as c:
            c.request("GET", "/v1/stream?q=x", [("Accept", "text/event-stream")])
            r = c.read_response()
        self.assertTrue(r.complete)
        self.assertEqual(parse_sse(r.body), [("done", json.dumps({"pieces": 0, "bytes": 0},
                                                                 separators=(",", ":")))])


class HeadAndHttp10(ServerTestCase):

    def test_head_sends_headers_only_at_once(self):
        # 5 pieces 1 s apart: a HEAD must not wait for them.
        srv = self.start("--max-gen-len", "5", "--interval", "1s")
        with srv.connect(timeout=10) as c:
            t0 = time.monotonic()
            # HEAD then a pipelined GET /healthz: the second response must follow the HEAD
            # head directly (no body bytes in between).
            c.send(b"HEAD /v1/stream?q=h HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response(head_only=True)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
            self.assertEqual(r.header("Transfer-Encoding"), "chunked")
            h = c.read_response()
            self.assertEqual((h.status, h.body), (200, b"ok\n"))
            self.assertLess(time.monotonic() - t0, 3 * SLOW, "HEAD waited for the answer")

    def test_head_sse_headers(self):
        srv = self.start("--max-gen-len", "2", "--interval", "10ms")
        with srv.connect() as c:
            c.request("HEAD", "/v1/stream?q=h", [("Accept", "text/event-stream")])
            r = c.read_response(head_only=True)
            self.assertEqual(r.header("Content-Type"), "text/event-stream; charset=utf-8")
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")

    def test_http10_close_delimited_body(self):
        srv = self.start("--max-gen-len", "3", "--interval", "50ms")
        with srv.connect() as c:
            c.request("GET", "/v1/stream?q=" + urllib.parse.quote(TEXT), version="HTTP/1.0")
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.framing, "close")
        self.assertIsNone(r.header("Transfer-Encoding"))
        self.assertIsNone(r.header("Content-Length"))
        self.assertEqual((r.header("Connection") or "").lower(), "close")
        self.assertEqual(r.ended_by, "fin", "a complete HTTP/1.0 answer ends with an orderly close")
        self.assertEqual(r.text(), "".join(pieces(3, TEXT)))

    def test_http10_keep_alive_request_still_closes_stream(self):
        srv = self.start("--max-gen-len", "2", "--interval", "10ms")
        with srv.connect() as c:
            c.request("GET", "/v1/stream?q=k", [("Connection", "keep-alive")], version="HTTP/1.0")
            r = c.read_response()
        self.assertEqual(r.framing, "close")
        self.assertEqual(r.ended_by, "fin")
        self.assertEqual(r.text(), "".join(pieces(2, "k")))

    def test_http10_post(self):
        srv = self.start("--max-gen-len", "2", "--interval", "10ms")
        with srv.connect() as c:
            c.request("POST", "/v1/stream", body="ten", version="HTTP/1.0")
            r = c.read_response()
        self.assertEqual((r.ended_by, r.text()), ("fin", "".join(pieces(2, "ten"))))


if __name__ == "__main__":
    unittest.main()
