"""Request smuggling: message framing that two HTTP parsers could read differently.

hscd's llhttp is built without its strict mode (which would refuse raw UTF-8 in a query), so hscd
checks the framing itself (src/lib/http/framing.c): every line of a head and of a chunked body
ends in CRLF, chunk data is followed by CRLF, no obs-fold, one Transfer-Encoding that is exactly
`chunked`, none on HTTP/1.0. Anything else is 400 (501 for a coding hscd does not implement) and
the connection closes, since the bytes that follow cannot be trusted to start a request.

Proves that:
- sent straight to hscd, each ambiguous request of the battery below is refused and closes the
  connection, and the request hidden in it never reaches a route (hsc_requests_total and
  hsc_events_published_total on /metrics do not move);
- well-formed chunked bodies, extensions and trailers, and raw UTF-8 in a query, still work;
- behind a real front end (Debian's nginx as a reverse proxy with HTTP/1.1 keep-alive to hscd,
  started here on a free loopback port with its own temporary prefix, stopped by PID), nginx and
  hscd count the same requests for every case of the battery: no request is smuggled through.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from hscd import (
    HOST,
    SLOW,
    RawConn,
    ServerTestCase,
    assert_error_response,
    free_port,
    pieces,
    wait_for,
)

def smuggled(size=None):
    """The request a front end would take for body bytes: a publish that must never happen (the
    tests publish nothing else). With `size`, padded (an X-Pad field) to exactly that many bytes."""
    head = b"POST /v1/events?channel=smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n"
    body = b"\r\nsmuggled"
    if size is None:
        return head + body
    pad = size - len(head) - len(body) - len(b"X-Pad: \r\n")
    assert pad > 0, size
    return head + b"X-Pad: " + b"p" * pad + b"\r\n" + body


SMUGGLED = smuggled()


def chunked_head(target="/v1/stream", extra=b""):
    return (b"POST " + target.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra
            + b"Transfer-Encoding: chunked\r\n\r\n")


HIDDEN = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

# (name, bytes, status hscd answers). Each hides a second request (a publish to "smuggled" or a
# GET) that a parser reading the framing differently would see.
BATTERY = [
    # The two bytes after chunk data are not CRLF: lenient llhttp skips them unchecked.
    ("chunk data followed by XX", chunked_head() + b"3\r\nabcXX0\r\n\r\n" + SMUGGLED, 400),
    # A bare LF after chunk data: a front end that takes it for CRLF sees chunk "f0" hiding a
    # request; a parser that skips two bytes sees "0" (the last chunk) and the request after it.
    ("bare LF after chunk data",
     chunked_head() + b"2\r\nxx\nf0\r\n" + b"\r\n" + smuggled(0xf0 - 2) + b"\r\n0\r\n\r\n",
     400),
    ("bare CR after chunk data", chunked_head() + b"3\r\nabc\r0\r\n\r\n" + SMUGGLED, 400),
    ("bare LF after chunk size", chunked_head() + b"3\nabc\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("CR and junk after chunk size", chunked_head() + b"3\rXabc\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("bare LF after chunk extension",
     chunked_head() + b"3;a=b\nabc\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("bare LF after the last chunk", chunked_head() + b"0\n\r\n" + SMUGGLED, 400),
    ("0 CRLF LF: a bare LF ends the trailer section", chunked_head() + b"0\r\n\n" + SMUGGLED, 400),
    ("a trailer line ending in a bare LF",
     chunked_head() + b"0\r\nX-T: y\n\r\n" + SMUGGLED, 400),
    ("a trailer section ending in a bare LF",
     chunked_head() + b"0\r\nX-T: y\r\n\n" + SMUGGLED, 400),
    ("obs-fold in a trailer", chunked_head() + b"0\r\nX-T: y\r\n z\r\n\r\n" + SMUGGLED, 400),
    # Transfer-Encoding read strictly.
    ("folded Transfer-Encoding",
     b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n"
     b"\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("folded Transfer-Encoding with Content-Length",
     b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("Transfer-Encoding twice",
     chunked_head(extra=b"Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n" + SMUGGLED, 400),
    ("Transfer-Encoding gzip, then chunked",
     chunked_head(extra=b"Transfer-Encoding: gzip\r\n") + b"0\r\n\r\n" + SMUGGLED, 501),
    ("Transfer-Encoding: gzip, chunked",
     b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n"
     b"\r\n0\r\n\r\n" + SMUGGLED, 501),
    ("Transfer-Encoding: chunked, then empty",
     chunked_head()[:-2] + b"Transfer-Encoding: \r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("Content-Length and Transfer-Encoding",
     chunked_head(extra=b"Content-Length: %d\r\n" % (5 + len(SMUGGLED)))
     + b"0\r\n\r\n" + SMUGGLED, 400),
    ("HTTP/1.0 with Transfer-Encoding",
     b"POST /v1/stream HTTP/1.0\r\nConnection: keep-alive\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    # obs-fold and bare line ends in a head.
    ("obs-fold in a header",
     b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + HIDDEN, 400),
    ("obs-fold with a tab", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n" + HIDDEN,
     400),
    ("a request line ending in a bare LF", b"GET /healthz HTTP/1.1\nHost: x\r\n\r\n" + HIDDEN, 400),
    ("a head ending in a bare LF", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\n" + HIDDEN, 400),
    ("a bare CR in a head", b"GET /healthz HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n" + HIDDEN, 400),
]


def metrics(port, *names):
    """The values of counters on /metrics, read with one request (which counts itself)."""
    with RawConn(port) as c:
        c.request("GET", "/metrics")
        values = {}
        for line in c.read_response().body.decode().splitlines():
            name, _, value = line.partition(" ")
            values[name] = value
    return [int(float(values[n])) for n in names]


def metric(port, name):
    return metrics(port, name)[0]


def exchange(port, data, timeout=10, quiet=1.0):
    """Sends `data` on a fresh connection and reads until the peer closes, or for `quiet` seconds
    after the last bytes came (a proxy may keep the connection open), or `timeout`; returns
    everything received."""
    with socket.create_connection((HOST, port), timeout=timeout * SLOW) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # answered and closed before the end
        out = b""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            s.settimeout(quiet * SLOW if out else max(0.01, deadline - time.monotonic()))
            try:
                d = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not d:
                break
            out += d
        return out


def statuses(data):
    return [int(m) for m in re.findall(rb"^HTTP/1\.[01] (\d{3}) ", data, re.M)]


class Direct(ServerTestCase):
    """The battery sent straight to hscd."""

    def setUp(self):
        self.srv = self.start("--max-gen-len", "2", "--interval", "1ms")

    def test_battery_is_refused_and_nothing_is_smuggled(self):
        for name, data, status in BATTERY:
            with self.subTest(name), self.srv.connect() as c:
                before = metric(self.srv.port, "hsc_requests_total")
                c.send(data)
                r = c.read_response()
                assert_error_response(self, r, status, name)
                self.assertEqual((r.header("Connection") or "").lower(), "close", name)
                rest, how = c.read_eof(timeout=10)
                self.assertEqual(rest, b"", "%s: a second response %r" % (name, rest[:80]))
                self.assertIn(how, ("fin", "reset"))
                after = metric(self.srv.port, "hsc_requests_total")
                # The first /metrics counts itself; nothing else reached a route.
                self.assertEqual(after - before, 1, name)
        self.assertEqual(metric(self.srv.port, "hsc_events_published_total"), 0)

    def test_bytes_cut_anywhere_are_judged_the_same(self):
        # The checks keep their place across reads: the same bytes, one at a time.
        for name, data, status in BATTERY[:11]:
            with self.subTest(name), self.srv.connect() as c:
                for i in range(len(data)):
                    try:
                        c.sock.sendall(data[i:i + 1])
                    except OSError:
                        break  # answered and closed before the end
                r = c.read_response()
                self.assertEqual(r.status, status, name)
        self.assertEqual(metric(self.srv.port, "hsc_events_published_total"), 0)

    def test_well_formed_framing_still_works(self):
        for name, data in [
            ("chunks", chunked_head() + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            # (llhttp 8.1 takes one extension a chunk)
            ("extensions",
             chunked_head() + b"3;a=b\r\nabc\r\n2;x\r\nde\r\n0;end=\"1\"\r\n\r\n"),
            ("trailers", chunked_head() + b"5\r\nabcde\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n"),
            ("upper-case size", chunked_head() + b"A\r\nabcdeabcde\r\n0\r\n\r\n"),
            ("Chunked in capitals",
             chunked_head().replace(b"chunked", b"Chunked") + b"5\r\nabcde\r\n0\r\n\r\n"),
            ("empty lines before the request", b"\r\n\r\n" + chunked_head()
             + b"5\r\nabcde\r\n0\r\n\r\n"),
        ]:
            with self.subTest(name), self.srv.connect() as c:
                c.send(data)
                r = c.read_response()
                self.assertEqual(r.status, 200, (name, r))
                self.assertTrue(r.complete)
                c.request("GET", "/healthz")  # the connection is still in step
                self.assertEqual(c.read_response().body, b"ok\n", name)

    def test_chunk_sizes_cut_across_reads(self):
        body = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in (b"a" * 300, b"b" * 17, b"c"))
        data = chunked_head() + body + b"0\r\nX-T: y\r\n\r\n"
        text = "a" * 300 + "b" * 17 + "c"
        for step in (1, 2, 3, 7):
            with self.subTest(step=step), self.srv.connect() as c:
                for i in range(0, len(data), step):
                    c.sock.sendall(data[i:i + step])
                r = c.read_response()
                self.assertEqual(r.text(), "".join(pieces(2, text)))

    def test_raw_utf8_in_the_query_still_works(self):
        # What curl sends for `curl 'http://host/v1/stream?q=héllo'`: the bytes as typed.
        with self.srv.connect() as c:
            c.send("GET /v1/stream?q=héllo HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            r = c.read_response()
            self.assertEqual(r.text(), "".join(pieces(2, "héllo")))


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format hsc '$status "$request" upstream=$upstream_addr';
    access_log {prefix}/access.log hsc;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream hscd {{
        server {host}:{upstream};
        keepalive 4;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://hscd;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream off;
            proxy_buffering off;
        }}
    }}
}}
"""


class Nginx:
    """Debian's nginx as a reverse proxy in front of `upstream`, on a free loopback port, with
    its own temporary prefix. Stopped by PID."""

    def __init__(self, upstream):
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(self.binary, os.X_OK):
            raise AssertionError("nginx is not installed: run scripts/install-deps.sh")
        self.prefix = tempfile.mkdtemp(prefix="hsc-nginx-")
        self.port = free_port()
        conf = os.path.join(self.prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(prefix=self.prefix, host=HOST, port=self.port,
                                      upstream=upstream))
        self.proc = subprocess.Popen([self.binary, "-p", self.prefix, "-c", conf,
                                      "-e", os.path.join(self.prefix, "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        if not wait_for(self._listening, timeout=10) or self.proc.poll() is not None:
            log = self.log()
            self.stop()
            raise AssertionError("nginx did not start:\n%s" % log)

    def _listening(self):
        if self.proc.poll() is not None:
            return True
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def access_lines(self):
        try:
            with open(os.path.join(self.prefix, "access.log"), "rb") as f:
                return f.read().decode("latin-1").splitlines()
        except FileNotFoundError:
            return []

    def log(self):
        try:
            with open(os.path.join(self.prefix, "error.log"), "rb") as f:
                return f.read().decode("latin-1")[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc.stderr.close()
        shutil.rmtree(self.prefix, ignore_errors=True)


class ThroughNginx(ServerTestCase):
    """The battery sent to nginx in front of hscd: both see the same requests."""

    def setUp(self):
        self.srv = self.start("--max-gen-len", "2", "--interval", "1ms")
        self.nginx = Nginx(self.srv.port)
        self.addCleanup(self.nginx.stop)

    def forwarded(self, lines):
        """Requests nginx passed to hscd, from its access log lines."""
        return sum(1 for line in lines if not line.endswith("upstream=-"))

    def test_nginx_and_hscd_count_the_same_requests(self):
        cases = BATTERY + [
            ("a well-formed chunked request",
             chunked_head() + b"3\r\nabc\r\n0\r\n\r\n"
             + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", None),
        ]
        for name, data, _ in cases:
            with self.subTest(name):
                seen = len(self.nginx.access_lines())
                before = metrics(self.srv.port, *COUNTERS)
                out = exchange(self.nginx.port, data)
                # nginx writes its log line once the response is done: give it a moment.
                wait_for(lambda: len(self.nginx.access_lines()) >= seen + len(statuses(out)),
                         timeout=5)
                lines = self.nginx.access_lines()[seen:]
                after = metrics(self.srv.port, *COUNTERS)
                requests = after[0] - before[0] - 1  # the first /metrics counts itself
                published = after[1] - before[1]
                what = "%s: nginx logged %r, answered %r" % (name, lines, out[:200])
                self.assertEqual(requests, self.forwarded(lines), what)
                # The appended publish is a pipelined request of its own for a front end that
                # reads the first one's framing right: then nginx forwards it, as such.
                self.assertEqual(published, sum(1 for line in lines if "channel=smuggled" in line
                                                and not line.endswith("upstream=-")), what)


COUNTERS = ("hsc_requests_total", "hsc_events_published_total")


if __name__ == "__main__":
    unittest.main()
