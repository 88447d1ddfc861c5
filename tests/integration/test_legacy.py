"""Compatibility with the Python HTTP-Stream-Communicator template.

Proves that:
- `hscd --legacy-get --server_ip 127.0.0.1 --server_port PORT --max_gen_len 10` serves the
  template's client unchanged: http.client, GET "/" + urllib.parse.quote("醒醒，Neo"), the
  response read with resp.read(1) byte by byte and decoded incrementally, gives 10 pieces echoing
  醒醒，Neo, the first arriving before the last;
- the template's flags mean what the modern ones mean (--server_ip/--server_port = --listen,
  --max_gen_len = --max-gen-len): same answers, byte for byte;
- examples/streamclient.py (the README's template client) reaches a server on another port
  through HSC_PORT, as the README says;
- with --legacy-get the regular routes keep priority; without it GET /<text> is a 404; a bad
  escape in the path is a 400.
"""

import codecs
import http.client
import os
import subprocess
import sys
import time
import unittest
import urllib.parse

from hscd import (
    HOST,
    SLOW,
    Hscd,
    RawConn,
    ServerTestCase,
    assert_error_response,
    free_port,
    pieces,
)

QUESTION = "醒醒，Neo"


def template_client(port, question, timeout=30.0):
    """The template's client: GET /<quoted question>, read(1) until b"", incremental UTF-8.
    Returns (status, [(time, decoded text so far appended)], full text)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout * SLOW)
    conn.request("GET", "/" + urllib.parse.quote(question))
    resp = conn.getresponse()
    decoder = codecs.getincrementaldecoder("utf-8")()
    out, events = [], []
    limit = 1 << 20  # bounded: the answer is a few hundred bytes
    for _ in range(limit):
        b = resp.read(1)
        if b == b"":
            break
        s = decoder.decode(b)  # "" while a multi-byte character is incomplete
        if s:
            out.append(s)
            events.append((time.monotonic(), s))
    else:
        raise AssertionError("more than %d bytes" % limit)
    out.append(decoder.decode(b"", final=True))
    status = resp.status
    conn.close()
    return status, events, "".join(out)


class Legacy(ServerTestCase):

    def start_template_server(self, *extra):
        """hscd with the template's flags on a port found free; retried once if taken."""
        for attempt in range(2):
            port = free_port()
            args = ["--legacy-get", "--server_ip", HOST, "--server_port", str(port),
                    "--max_gen_len", "10", *extra]
            s = Hscd(*args, listen=None)
            self._servers.append(s)
            try:
                s.start()
            except AssertionError:
                if attempt == 0 and s.returncode == 1:
                    continue  # the port was taken in between: try another one
                raise
            self.addCleanup(self.stop_clean, s)
            self.assertEqual(s.port, port, "hscd listens on another port than --server_port")
            return s
        raise AssertionError("unreachable")

    def test_template_client(self):
        srv = self.start_template_server("--interval", "100ms")
        status, events, text = template_client(srv.port, QUESTION)
        self.assertEqual(status, 200)
        self.assertEqual(text, "".join(pieces(10, QUESTION)))
        got = text.splitlines(keepends=True)
        self.assertEqual(len(got), 10)
        for i, line in enumerate(got, 1):
            self.assertIn("«%s»" % QUESTION, line)
            self.assertTrue(line.startswith("[%d/10]" % i), line)
        # Streamed: the first piece was complete well before the last one.
        acc, t_first = "", None
        for t, s in events:
            acc += s
            if t_first is None and "\n" in acc:
                t_first = t  # when piece 1 was complete
        self.assertGreater(events[-1][0] - t_first, 0.4)

    def test_example_client_takes_its_port_from_hsc_port(self):
        srv = self.start_template_server("--interval", "10ms")
        self.assertNotEqual(srv.port, 8000)
        client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                              "streamclient.py")
        p = subprocess.run([sys.executable, client, QUESTION], capture_output=True,
                           env=dict(os.environ, HSC_PORT=str(srv.port)), timeout=30 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode("utf-8"), "".join(pieces(10, QUESTION)))

    def test_template_flags_equal_modern_flags(self):
        """Same answers from `--server_ip/--server_port/--max_gen_len` and `--listen/--max-gen-len`
        (except Date and X-Request-Id)."""
        legacy = self.start_template_server("--interval", "10ms")
        modern = self.start("--legacy-get", "--max-gen-len", "10", "--interval", "10ms")

        def answer(port, target):
            with RawConn(port) as c:
                c.request("GET", target)
                r = c.read_response()
            heads = [(k, v) for k, v in r.headers if k not in ("Date", "X-Request-Id")]
            return r.status, heads, r.chunks, r.complete

        for target in ["/" + urllib.parse.quote(QUESTION), "/v1/stream?q=abc", "/healthz",
                       "/%ZZ"]:
            with self.subTest(target=target):
                a, b = answer(legacy.port, target), answer(modern.port, target)
                self.assertEqual(a, b)
        self.assertEqual(len(answer(legacy.port, "/x")[2]), 10)

    def test_server_port_overrides_listen_port_half(self):
        # --server_port replaces the port half of --listen (and port 0 picks a free port).
        srv = self.start("--server_port", "0", "--max_gen_len", "3", "--legacy-get",
                         "--interval", "1ms")
        with srv.connect() as c:
            c.request("GET", "/hi")
            r = c.read_response()
        self.assertEqual(r.text(), "".join(pieces(3, "hi")))
        srv2 = self.start("--server_ip", HOST, "--server_port", "0", listen=None)
        with srv2.connect() as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")

    def test_routes_keep_priority(self):
        srv = self.start("--legacy-get", "--max-gen-len", "2", "--interval", "1ms")
        with srv.connect() as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")
            c.request("GET", "/v1/stream?q=x")
            self.assertEqual(c.read_response().text(), "".join(pieces(2, "x")))
            c.request("GET", "/")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertIn(b"<html", r.body.lower())
            # '+' in a path is a plus, not a space (only %20 is a space)
            c.request("GET", "/a+b%20c")
            self.assertEqual(c.read_response().text(), "".join(pieces(2, "a+b c")))
            # a path with a query: the text is the path only
            c.request("GET", "/abc?q=zzz")
            self.assertEqual(c.read_response().text(), "".join(pieces(2, "abc")))
            # HEAD of a legacy answer: headers only
            c.request("HEAD", "/abc")
            r = c.read_response(head_only=True)
            self.assertEqual((r.status, r.header("Transfer-Encoding")), (200, "chunked"))
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")
            # a bad escape or invalid UTF-8 in the path: 400, connection kept
            for target in ("/%ZZ", "/abc%", "/%FF%FE"):
                c.request("GET", target)
                assert_error_response(self, c.read_response(), 400, target)
            # POST to a legacy path is not a legacy answer
            c.request("POST", "/abc", body="x")
            self.assertEqual(c.read_response().status, 404)

    def test_without_legacy_get_text_path_is_404(self):
        srv = self.start("--max-gen-len", "2")
        with srv.connect() as c:
            c.request("GET", "/" + urllib.parse.quote(QUESTION))
            r = c.read_response()
        assert_error_response(self, r, 404)


if __name__ == "__main__":
    unittest.main()
