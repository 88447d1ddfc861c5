"""Channels of events on /v1/events (docs/api.md, "Channels of events"), seen from real clients.

Proves that:
- curl subscribes and publishes; the publish answer is JSON with the event's id, the channel and
  the number of subscribers it was queued for; ids are EPOCH-SEQ with SEQ growing by one per
  published event, across channels;
- a subscription stream is text/event-stream with Cache-Control: no-store and
  X-Accel-Buffering: no, chunked on HTTP/1.1 and close-delimited on HTTP/1.0; it starts with a
  `retry:` line in [--retry, 1.5 x --retry] (jittered: streams differ) and a comment right after
  the headers, then a comment every --keepalive while silent; a quiet stream is not cut by
  --idle-timeout;
- a multi-channel subscription receives the events of its channels only, once each, ids
  increasing; a resume merges the missed events of all its channels in id order;
- Last-Event-ID and lastEventId= resume exactly (the header wins), from the oldest event history
  holds, and with nothing to replay; the `hsc.gap` event (no id) says `epoch` after a restart,
  `unknown` for malformed, future or later-run ids, `expired` when --history, --history-age
  evicted what was missed, and `replayed` counts what follows it;
- lastEventId=earliest (query or header) and history=N replay what the channels hold (all, or
  the N newest across them, in id order; curl and http.client), then live events, with no
  hsc.gap and no resume counted; a real id wins over both; a bad history= or tag= is a one-line
  400; tag=channel puts an hsc.channel event (no id) before each run of one channel's events
  (curl, HTTP/1.0); while two publishers run flat out, subscriptions asking for recent events,
  tagged, each receive a contiguous run of what was published, under the right tags;
- a publish body with CR, LF, CRLF or forged fields arrives as ONE event with the exact data
  (line ends normalised to LF);
- bad input gets a one-line 400 (names, types, UTF-8, channel counts, percent-encoding), 413
  (--max-event-bytes, --max-body-bytes), 503 + Retry-After (--max-channels, all channels with
  subscribers), 405 with Allow,
  and nothing is published (no event reaches a subscriber, the published counter and the id
  sequence do not move);
- CORS with --cors-origin (exact origins, repeated flag, `*`), the OPTIONS preflight, and no
  CORS headers without the flag; no Access-Control-Allow-Credentials unless --cors-credentials,
  and then only for exact origins (test_browser.py shows what a browser does with them);
- /metrics counters and gauges move: published, delivered, bytes out, history, resumes and
  misses, subscribers back to 0, channels freed once they have no subscribers and no history;
- a subscriber that never reads (small SO_RCVBUF) is dropped and counted while 100 others get
  every event of a large burst; 1,000 subscribers x 1,000 events all arrive in order;
- a subscriber that disconnects and resumes over and over while two publishers run flat out
  receives exactly every event, in order, without a duplicate;
- hscd's RSS returns near its baseline (+8 MB) after 10,000 subscribers connect and leave
  (HSC_RSS_SUBSCRIBERS overrides the count; not asserted under ASan, whose quarantine keeps
  freed memory).
Every test ends with SIGTERM and asserts exit status 0 (no leak under ASan).
"""

import collections
import http.client
import json
import os
import random
import re
import select
import selectors
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

from hscd import (
    HOST,
    SANITIZE,
    SLOW,
    Curl,
    ProtocolError,
    RawConn,
    Response,
    ServerTestCase,
    assert_error_response,
    make_request,
    wait_for,
    rss_kb,
)

ID_RE = re.compile(r"^([0-9a-z]+)-(0|[1-9][0-9]*)$")

Event = collections.namedtuple("Event", "type id data")


def split_id(event_id):
    """(epoch str, seq int) of an id EPOCH-SEQ; fails on anything else."""
    m = ID_RE.match(event_id or "")
    if not m:
        raise AssertionError("not an EPOCH-SEQ id: %r" % (event_id,))
    return m.group(1), int(m.group(2))


def base36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, d = divmod(n, 36)
        out = digits[d] + out
        if n == 0:
            return out


def seq_of(event_id):
    return split_id(event_id)[1]


def q(s):
    return urllib.parse.quote(s, safe="")


def events_target(channels, last_event_id=None, extra=None):
    parts = ["channel=" + q(c) for c in channels]
    if last_event_id is not None:
        parts.append("lastEventId=" + q(last_event_id))
    if extra:
        parts.append(extra)
    return "/v1/events?" + "&".join(parts)


def publish_target(channel, event=None):
    t = "/v1/events?channel=" + q(channel)
    if event is not None:
        t += "&event=" + q(event)
    return t


# ---- an incremental SSE reader -----------------------------------------------------------------


class SseParser:
    """Parses an event stream fed in arbitrary pieces, per the SSE spec (CR, LF or CRLF line
    ends; data lines joined with LF; a block without data is not dispatched). Every dispatched
    event is an Event(type, id, data) where id is the block's own `id:` field or None. With
    `record`, `items` keeps the order of ("retry", int), ("comment", str, time) and ("event",
    Event) as they came."""

    def __init__(self, on_event=None, record=True):
        self.events = []
        self.on_event = on_event or self.events.append
        self.record = record
        self.items = []
        self._pending = b""
        self._type = None
        self._id = None
        self._data = None

    def feed(self, data):
        if self._pending:
            data = self._pending + data
        if b"\r" in data:
            keep_cr = data.endswith(b"\r")
            if keep_cr:
                data = data[:-1]
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                data += b"\r"
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if not line:
                if self._data is not None:
                    ev = Event(self._type or "message", self._id, "\n".join(self._data))
                    if self.record:
                        self.items.append(("event", ev))
                    self.on_event(ev)
                self._type, self._id, self._data = None, None, None
                continue
            text = line.decode("utf-8")  # strict: the server must send valid UTF-8
            if text[0] == ":":
                if self.record:
                    self.items.append(("comment", text[1:], time.monotonic()))
                continue
            field, _, value = text.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if field == "data":
                if self._data is None:
                    self._data = [value]
                else:
                    self._data.append(value)
            elif field == "event":
                self._type = value
            elif field == "id":
                self._id = value
            elif field == "retry":
                if self.record:
                    self.items.append(("retry", int(value) if value.isdigit() else value))
            else:
                raise ProtocolError("unknown SSE field %r" % line)


class HttpStream:
    """An HTTP/1.x response read incrementally: the head, then the body (chunked or
    close-delimited) handed to `parser.feed` as it comes."""

    def __init__(self, parser):
        self.parser = parser
        self.head = None
        self.chunked = False
        self.last_chunk = False
        self._buf = b""
        self._size = None  # None: a size line is next; >0: data bytes left; 0: CRLF next

    def feed(self, data):
        if self.head is None:
            self._buf += data
            i = self._buf.find(b"\r\n\r\n")
            if i < 0:
                if len(self._buf) > 65536:
                    raise ProtocolError("response head over 64 KiB: %r" % self._buf[:200])
                return
            head, data, self._buf = self._buf[:i], self._buf[i + 4:], b""
            self.head = parse_head(head)
            te = (self.head.header("Transfer-Encoding") or "").lower()
            self.chunked = te == "chunked"
            self.head.framing = "chunked" if self.chunked else "close"
            if not data:
                return
        if self.chunked:
            data = self._dechunk(data)
        if data:
            self.parser.feed(data)

    def _dechunk(self, data):
        buf = self._buf + data if self._buf else data
        out, pos, n = [], 0, len(buf)
        while pos < n and not self.last_chunk:
            if self._size is None:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    if n - pos > 1024:
                        raise ProtocolError("bad chunk size line %r" % buf[pos:pos + 40])
                    break
                size = int(buf[pos:i].split(b";")[0], 16)
                pos = i + 2
                if size == 0:
                    self.last_chunk = True
                    break
                self._size = size
            elif self._size > 0:
                take = min(self._size, n - pos)
                out.append(buf[pos:pos + take])
                pos += take
                self._size -= take
            else:
                if n - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF: %r" % buf[pos:pos + 10])
                pos += 2
                self._size = None
        self._buf = buf[pos:]
        return b"".join(out)


def parse_head(head):
    lines = head.split(b"\r\n")
    m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise ProtocolError("bad status line %r" % lines[0])
    r = Response()
    r.version = m.group(1).decode()
    r.status = int(m.group(2))
    r.reason = (m.group(3) or b"").decode("latin-1")
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolError("bad header line %r" % line)
        r.headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    r.head_time = time.monotonic()
    return r


class Sub:
    """One subscription on a connection of its own, read with blocking, bounded steps."""

    def __init__(self, srv, channels, last_event_id=None, query_id=None, headers=(),
                 version="HTTP/1.1", rcvbuf=None, timeout=10, target=None, record=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.timeout = timeout * SLOW
        self.sock.settimeout(self.timeout)
        self.sock.connect((HOST, srv.port))
        hs = list(headers)
        if last_event_id is not None:
            hs.append(("Last-Event-ID", last_event_id))
        if target is None:
            target = events_target(channels, query_id)
        self.sock.sendall(make_request("GET", target, hs, version=version))
        self.parser = SseParser(record=record)
        self.http = HttpStream(self.parser)
        self.eof = None
        self.sent = time.monotonic()

    @property
    def events(self):
        return self.parser.events

    def messages(self):
        """The events that are not the server's own (hsc.*)."""
        return [e for e in self.parser.events if not e.type.startswith("hsc.")]

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout * SLOW)

    def pump(self, deadline, soft=False):
        """One recv; False at EOF. At `deadline`: raises socket.timeout, or with `soft` returns
        True without having read."""
        if self.eof is not None:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if soft:
                return True
            raise socket.timeout("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 17)
        except socket.timeout:
            if soft:
                return True
            raise
        except ConnectionResetError:
            self.eof = "reset"
            return False
        if not data:
            self.eof = "fin"
            return False
        self.http.feed(data)
        return True

    def head(self, timeout=None):
        deadline = self._deadline(timeout)
        while self.http.head is None:
            if not self.pump(deadline):
                raise ProtocolError("connection closed (%s) before the response head" % self.eof)
        return self.http.head

    def wait(self, predicate, timeout=None, what="condition"):
        deadline = self._deadline(timeout)
        while not predicate():
            try:
                if not self.pump(deadline):
                    raise AssertionError("stream ended (%s) before %s; events so far: %r"
                                         % (self.eof, what, self.events[-5:]))
            except socket.timeout:
                raise AssertionError("timed out waiting for %s; events so far (%d): %r"
                                     % (what, len(self.events), self.events[-5:]))

    def wait_events(self, n, timeout=None):
        """Reads until at least n events were dispatched; returns the first n."""
        self.wait(lambda: len(self.events) >= n, timeout, "%d events" % n)
        return self.events[:n]

    def listen(self, seconds):
        """Reads for `seconds` (not scaled) whatever comes; False once the stream ended."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.pump(deadline, soft=True):
                return False
        return True

    def read_to_end(self, timeout=None):
        deadline = self._deadline(timeout)
        while self.pump(deadline):
            pass
        return self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Publisher:
    """Publishes over one keep-alive connection (reopened when the server closes it)."""

    def __init__(self, srv, timeout=10):
        self.port = srv.port
        self.timeout = timeout
        self.conn = None

    def post(self, target, body, headers=()):
        if self.conn is None:
            self.conn = RawConn(self.port, timeout=self.timeout)
        hs = [("Content-Type", "text/plain; charset=utf-8")] + list(headers)
        self.conn.request("POST", target, hs, body=body)
        r = self.conn.read_response()
        if (r.header("Connection") or "").lower() == "close" or r.framing == "close" \
                or self.conn.eof is not None:
            self.close()
        return r

    def publish(self, channel, data, event=None):
        """Publishes and returns the parsed JSON answer; fails on anything but 200."""
        r = self.post(publish_target(channel, event), data)
        if r.status != 200:
            raise AssertionError("publish to %r failed: %r" % (channel, r))
        return json.loads(r.body.decode("utf-8"))

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class FlatOutPublisher(threading.Thread):
    """Publishes to `channel` as fast as one keep-alive connection allows, for `duration`
    seconds or `limit` events, the i-th with data `data_of(i)`. Records (id, data) in order."""

    def __init__(self, srv, channel, data_of, duration, limit):
        super().__init__(daemon=True)
        self.pub = Publisher(srv)
        self.channel, self.data_of = channel, data_of
        self.duration, self.limit = duration, limit
        self.sent = []  # [(id, data)]
        self.error = None
        self.done = threading.Event()
        self.halt = threading.Event()

    def run(self):
        try:
            end = time.monotonic() + self.duration
            i = 0
            while i < self.limit and time.monotonic() < end and not self.halt.is_set():
                data = self.data_of(i)
                ans = self.pub.publish(self.channel, data)
                self.sent.append((ans["id"], data))
                i += 1
        except Exception as e:  # reported by the test
            self.error = repr(e)
        finally:
            self.pub.close()
            self.done.set()


def request(srv, method, target, headers=(), body=None, version="HTTP/1.1", timeout=10):
    """One request on a fresh connection; the whole response."""
    with RawConn(srv.port, timeout=timeout) as c:
        c.request(method, target, headers, body=body, version=version)
        return c.read_response()


def metrics(srv):
    """/metrics as {name: value} (label sets kept in the name)."""
    r = request(srv, "GET", "/metrics")
    if r.status != 200:
        raise AssertionError("/metrics: %r" % r)
    out = {}
    for line in r.text().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?)\s+(\S+)", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def metric(srv, name):
    m = metrics(srv)
    if name not in m:
        raise AssertionError("/metrics has no %s: %s" % (name, sorted(m)))
    return m[name]


def sys_print(msg):
    """Measurements for the log (ctest -V shows them)."""
    sys.stderr.write("[numbers] %s\n" % msg)
    sys.stderr.flush()


# ---- many subscribers at once (selectors, no threads) ------------------------------------------


class OrderChecker:
    """Checks each event as it comes: type message, data == expect(i), ids strictly increasing
    with one epoch. Keeps counts, not events."""

    def __init__(self, expect):
        self.expect = expect
        self.count = 0
        self.last_seq = -1
        self.epoch = None
        self.error = None
        self.last_id = None

    def __call__(self, ev):
        if self.error is None:
            want = self.expect(self.count)
            if ev.type != "message" or ev.data != want:
                self.error = "event %d: got %r, want data %r" % (self.count, ev[:2] + (
                    ev.data[:60],), want[:60])
            else:
                epoch, seq = split_id(ev.id)
                if seq <= self.last_seq or (self.epoch is not None and epoch != self.epoch):
                    self.error = "event %d: id %s after seq %d" % (self.count, ev.id,
                                                                   self.last_seq)
                self.epoch, self.last_seq, self.last_id = epoch, seq, ev.id
        self.count += 1


class Member:
    def __init__(self, index, sock, on_event):
        self.index = index
        self.sock = sock
        self.parser = SseParser(on_event, record=False)
        self.http = HttpStream(self.parser)
        self.eof = None


class Crowd:
    """Many subscriptions read by one selector loop."""

    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.members = []

    def add(self, n, target_of, on_event_of=lambda i: (lambda ev: None), rcvbuf=None,
            batch=200, timeout=30):
        """Opens n subscriptions (batch by batch, each batch's heads read before the next) and
        returns them; fails unless every head is 200."""
        new = []
        for start in range(0, n, batch):
            part = []
            for i in range(start, min(n, start + batch)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if rcvbuf is not None:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                s.settimeout(10 * SLOW)
                s.connect((HOST, self.port))
                s.sendall(make_request("GET", target_of(i), ()))
                s.setblocking(False)
                m = Member(len(self.members), s, on_event_of(i))
                self.members.append(m)
                self.sel.register(s, selectors.EVENT_READ, m)
                part.append(m)
            self.pump(lambda: all(m.http.head is not None or m.eof for m in part), timeout)
            for m in part:
                if m.http.head is None or m.http.head.status != 200:
                    raise AssertionError("subscriber %d: no 200 head (%s, eof %s)" % (
                        m.index, m.http.head and m.http.head.status, m.eof))
            new += part
        return new

    def pump(self, until, timeout):
        """Reads from every member until `until()` is true; False after `timeout` (scaled)."""
        deadline = time.monotonic() + timeout * SLOW
        while not until():
            if time.monotonic() > deadline:
                return False
            if not self.sel.get_map():
                return until()
            for key, _ in self.sel.select(timeout=0.2):
                m = key.data
                try:
                    data = m.sock.recv(1 << 18)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    data, m.eof = b"", "reset"
                if not data:
                    m.eof = m.eof or "fin"
                    self.sel.unregister(m.sock)
                    continue
                m.http.feed(data)
        return True

    def close(self, members=None, reset_every=0):
        for k, m in enumerate(self.members if members is None else members):
            try:
                self.sel.unregister(m.sock)
            except (KeyError, ValueError):
                pass
            if reset_every and k % reset_every == 0:
                try:
                    m.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
            m.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        self.sel.close()


# ---- the tests ---------------------------------------------------------------------------------


class ChannelTestCase(ServerTestCase):

    def sub(self, srv, channels, **kw):
        s = Sub(srv, channels, **kw)
        self.addCleanup(s.close)
        return s

    def subscribed(self, srv, channels, **kw):
        """A subscription whose head (200) has arrived: it is registered."""
        s = self.sub(srv, channels, **kw)
        h = s.head()
        self.assertEqual(h.status, 200, h)
        return s

    def publisher(self, srv):
        p = Publisher(srv)
        self.addCleanup(p.close)
        return p

    def assert_gap(self, ev, reason, requested, epoch, replayed):
        self.assertEqual(ev.type, "hsc.gap", ev)
        self.assertIsNone(ev.id, "the hsc.gap event must not carry an id: %r" % (ev,))
        info = json.loads(ev.data)
        self.assertEqual(info.get("reason"), reason, ev.data)
        if requested.isascii() and requested.isprintable() and len(requested) <= 64:
            self.assertEqual(info.get("requested"), requested, ev.data)
        else:  # shown sanitised (hscd: '?' for other bytes, at most 64)
            self.assertIsInstance(info.get("requested"), str, ev.data)
        self.assertEqual(info.get("epoch"), epoch, ev.data)
        self.assertEqual(info.get("replayed"), replayed, ev.data)


def read_pipe(proc, until, timeout):
    """Reads a subprocess's stdout until `until(bytes so far)` or EOF or `timeout` (scaled)."""
    fd, buf = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout * SLOW
    while not until(buf):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                break
            buf += data
    return buf


def run(args, timeout=30):
    """Runs a client to completion; its stdout. Fails on a non-zero exit status."""
    p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout * SLOW)
    if p.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (args, p.returncode, p.stderr))
    return p.stdout


class CurlClients(ChannelTestCase):

    def test_curl_subscribes_and_publishes(self):
        srv = self.start()
        curl = Curl("-i", srv.url("/v1/events?channel=news"))

        def stop_curl():
            if curl.proc.poll() is None:
                curl.proc.kill()
            curl.proc.wait(10)
            curl.proc.stdout.close()
            curl.proc.stderr.close()
        self.addCleanup(stop_curl)
        # The head and the stream's start arrive before any event exists.
        buf = read_pipe(curl.proc, lambda b: b"\r\n\r\n" in b, 10)
        self.assertIn(b"\r\n\r\n", buf, "curl got no head: %r" % buf)
        head, body = buf.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"content-type: text/event-stream", head.lower())
        sent = []
        for text in ("hello", "second line\nthird", "héllo 你好 🚀"):
            out = run(["curl", "-sS", "--max-time", str(int(10 * SLOW)), "--data-binary", text,
                       srv.url("/v1/events?channel=news")])
            ans = json.loads(out)
            self.assertEqual(ans["channel"], "news")
            self.assertEqual(ans["subscribers"], 1)
            sent.append((ans["id"], text))
        parser = SseParser()
        parser.feed(body)
        deadline = time.monotonic() + 10 * SLOW
        while len(parser.events) < 3 and time.monotonic() < deadline:
            more = read_pipe(curl.proc, lambda b: len(b) > 0, 0.5)
            if curl.proc.poll() is not None and not more:
                break
            parser.feed(more)
        self.assertEqual([(e.id, e.data) for e in parser.events], sent)
        self.assertEqual({e.type for e in parser.events}, {"message"})

    def test_curl_publish_refused(self):
        srv = self.start()
        out = run(["curl", "-sS", "--max-time", str(int(10 * SLOW)), "-o", "/dev/null",
                   "-w", "%{http_code}", "-d", "x", srv.url("/v1/events?channel=bad%20name")])
        self.assertEqual(out, b"400")


class Subscribe(ChannelTestCase):

    def test_headers(self):
        srv = self.start()
        s = self.subscribed(srv, ["news"])
        h = s.head()
        self.assertEqual(h.version, "HTTP/1.1")
        self.assertEqual(h.header("Content-Type"), "text/event-stream; charset=utf-8")
        self.assertEqual(h.header("Cache-Control"), "no-store")
        self.assertEqual(h.header("X-Accel-Buffering"), "no")
        self.assertEqual((h.header("Transfer-Encoding") or "").lower(), "chunked")
        self.assertIsNone(h.header("Content-Length"))
        self.assertIsNone(h.header("Access-Control-Allow-Origin"))

    def test_retry_first_then_comment_right_after_headers(self):
        srv = self.start("--retry", "2s")  # --keepalive stays at its 15 s default
        s = self.subscribed(srv, ["news"])
        t_head = s.http.head.head_time
        s.wait(lambda: len([i for i in s.parser.items if i[0] == "comment"]) >= 1, 5,
               "the first comment")
        items = s.parser.items
        self.assertEqual(items[0][0], "retry", items)
        self.assertIsInstance(items[0][1], int, items)
        self.assertTrue(2000 <= items[0][1] <= 3000, "retry %r not in [2000, 3000]" % items[0][1])
        self.assertEqual(items[1][0], "comment", items)
        self.assertLess(items[1][2] - t_head, 1.0 * SLOW,
                        "the first comment came %.2f s after the head" % (items[1][2] - t_head))

    def test_retry_is_jittered(self):
        srv = self.start("--retry", "1s")
        values = []
        for _ in range(12):
            with Sub(srv, ["j"]) as s:
                s.wait(lambda: any(i[0] == "retry" for i in s.parser.items), 5, "retry:")
                values.append([i[1] for i in s.parser.items if i[0] == "retry"][0])
        for v in values:
            self.assertTrue(1000 <= v <= 1500, "retry %r not in [1000, 1500]: %r" % (v, values))
        self.assertGreater(len(set(values)), 1, "12 streams got the same retry: %r" % values)

    def test_keepalive_comments_while_silent(self):
        srv = self.start("--keepalive", "300ms")
        s = self.subscribed(srv, ["quiet"])
        t0 = time.monotonic()
        s.listen(2.0)
        comments = [i for i in s.parser.items if i[0] == "comment"]
        self.assertEqual(s.events, [])
        # The first comment right after the head, then one every ~300 ms: 2 s hold 4 to 8.
        self.assertGreaterEqual(len(comments), 4, comments)
        self.assertLessEqual(len(comments), 9, comments)
        self.assertLess(comments[0][2] - t0, 0.3, comments)
        gaps = [b[2] - a[2] for a, b in zip(comments[1:], comments[2:])]
        for g in gaps:
            self.assertGreater(g, 0.15, "keep-alive comments %.3f s apart: %r" % (g, gaps))
        self.assertIsNone(s.eof)

    def test_quiet_subscription_outlives_idle_timeout(self):
        srv = self.start("--idle-timeout", "1s", "--keepalive", "10s")
        s = self.subscribed(srv, ["quiet"])
        self.assertTrue(s.listen(2.5), "the quiet stream was closed (%s)" % s.eof)
        ans = self.publisher(srv).publish("quiet", "still here")
        self.assertEqual(ans["subscribers"], 1)
        self.assertEqual(s.wait_events(1)[0].data, "still here")

    def test_http10_subscriber_gets_close_delimited_stream(self):
        srv = self.start()
        s = self.sub(srv, ["old"], version="HTTP/1.0")
        h = s.head()
        self.assertEqual(h.status, 200, h)
        self.assertIsNone(h.header("Transfer-Encoding"))
        self.assertIsNone(h.header("Content-Length"))
        self.assertEqual(h.header("Content-Type"), "text/event-stream; charset=utf-8")
        p = self.publisher(srv)
        sent = [p.publish("old", "line %d\nsecond" % i)["id"] for i in range(3)]
        evs = s.wait_events(3)
        self.assertEqual([e.id for e in evs], sent)
        self.assertEqual([e.data for e in evs], ["line %d\nsecond" % i for i in range(3)])

    def test_publish_answer_and_ids(self):
        srv = self.start()
        p = self.publisher(srv)
        a0 = p.publish("lonely", "x")
        self.assertEqual(set(a0), {"id", "channel", "subscribers"}, a0)
        self.assertEqual(a0["channel"], "lonely")
        self.assertEqual(a0["subscribers"], 0)
        epoch, seq0 = split_id(a0["id"])
        r = p.post(publish_target("lonely"), "y")
        self.assertEqual(r.status, 200)
        self.assertIn("json", r.header("Content-Type", ""))
        self.assertEqual(seq_of(json.loads(r.body)["id"]), seq0 + 1)
        s1 = self.subscribed(srv, ["room"])
        s2 = self.subscribed(srv, ["room", "other"])
        self.subscribed(srv, ["other"])
        a = p.publish("room", "to two")
        self.assertEqual((a["channel"], a["subscribers"]), ("room", 2))
        self.assertEqual(split_id(a["id"]), (epoch, seq0 + 2))
        b = p.publish("other", "to two as well")
        self.assertEqual(b["subscribers"], 2)
        self.assertEqual(seq_of(b["id"]), seq0 + 3)  # one sequence across channels
        self.assertEqual([(e.id, e.data) for e in s1.wait_events(1)], [(a["id"], "to two")])
        self.assertEqual([e.id for e in s2.wait_events(2)], [a["id"], b["id"]])
        # Percent-encoded and plain spellings of a name are the same channel.
        s3 = self.subscribed(srv, ["room:1/a@b"], target="/v1/events?channel=room:1/a@b")
        c = p.publish("room:1/a@b", "spelled")  # sent as room%3A1%2Fa%40b
        self.assertEqual(c["channel"], "room:1/a@b")
        self.assertEqual(c["subscribers"], 1)
        self.assertEqual(s3.wait_events(1)[0].id, c["id"])

    def test_event_type_and_default_message(self):
        srv = self.start()
        s = self.subscribed(srv, ["typed"])
        p = self.publisher(srv)
        a = p.publish("typed", "one", event="update")
        b = p.publish("typed", "two")
        t64 = "a-b_c.d:" * 8
        c = p.publish("typed", "three", event=t64)
        evs = s.wait_events(3)
        self.assertEqual(evs, [Event("update", a["id"], "one"), Event("message", b["id"], "two"),
                               Event(t64, c["id"], "three")])

    def test_six_subscribers_get_every_event_once(self):
        srv = self.start("--threads", "2")
        subs = [self.subscribed(srv, ["fan"]) for _ in range(6)]
        p = self.publisher(srv)
        ids = [p.publish("fan", "e%d" % i)["id"] for i in range(50)]
        for s in subs:
            self.assertEqual([e.id for e in s.wait_events(50)], ids)
            s.listen(0.1)
            self.assertEqual(len(s.events), 50)


class MultiChannel(ChannelTestCase):

    def test_events_of_subscribed_channels_only_ids_increasing(self):
        srv = self.start("--threads", "2")
        s = self.subscribed(srv, ["a", "b", "a"])  # a twice: counts once, delivered once
        p = self.publisher(srv)
        want = []
        for i in range(30):
            for ch in ("a", "b", "c"):
                ans = p.publish(ch, "%s%d" % (ch, i))
                self.assertEqual(ans["subscribers"], 0 if ch == "c" else 1, ans)
                if ch != "c":
                    want.append((ans["id"], "%s%d" % (ch, i)))
        evs = s.wait_events(60)
        s.listen(0.2)
        self.assertEqual([(e.id, e.data) for e in s.events], want)
        seqs = [seq_of(e.id) for e in s.events]
        self.assertEqual(seqs, sorted(set(seqs)), "ids not strictly increasing")
        self.assertEqual(len(evs), 60)

    def test_resume_merges_missed_events_of_all_channels(self):
        srv = self.start()
        p = self.publisher(srv)
        s = self.subscribed(srv, ["x", "y"])
        first = [p.publish(ch, ch + "0")["id"] for ch in ("x", "y")]
        self.assertEqual([e.id for e in s.wait_events(2)], first)
        s.close()
        before = metrics(srv)
        missed = []
        for i in range(1, 8):
            for ch in ("y", "z", "x"):
                ans = p.publish(ch, "%s%d" % (ch, i))
                if ch != "z":
                    missed.append((ans["id"], "%s%d" % (ch, i)))
        r = self.subscribed(srv, ["x", "y"], last_event_id=first[-1])
        r.wait_events(len(missed))
        live = p.publish("x", "live")
        evs = r.wait_events(len(missed) + 1)
        r.listen(0.2)
        self.assertEqual([(e.id, e.data) for e in r.events], missed + [(live["id"], "live")])
        after = metrics(srv)
        self.assertEqual(after["hsc_resumes_total"] - before["hsc_resumes_total"], 1)
        self.assertEqual(after["hsc_resumes_missed_total"], before["hsc_resumes_missed_total"])
        self.assertEqual(len(evs), len(missed) + 1)

    def test_max_subscription_channels(self):
        srv = self.start()  # default 16
        names = ["c%d" % i for i in range(17)]
        with Sub(srv, names[:16]) as s:
            self.assertEqual(s.head().status, 200)
        r = request(srv, "GET", events_target(names))
        assert_error_response(self, r, 400, "17 channels")
        srv2 = self.start("--max-subscription-channels", "3")
        with Sub(srv2, ["a", "b", "c", "a", "b"]) as s:  # 3 distinct
            self.assertEqual(s.head().status, 200)
        r = request(srv2, "GET", events_target(["a", "b", "c", "d"]))
        assert_error_response(self, r, 400, "4 channels over 3")


class Resume(ChannelTestCase):

    def publish_n(self, p, channel, n, prefix="e"):
        return [(p.publish(channel, "%s%d" % (prefix, i))["id"], "%s%d" % (prefix, i))
                for i in range(n)]

    def test_last_event_id_header_resumes_exactly_then_live(self):
        srv = self.start()
        p = self.publisher(srv)
        sent = self.publish_n(p, "r", 10)
        before = metrics(srv)
        s = self.subscribed(srv, ["r"], last_event_id=sent[3][0])
        s.wait_events(6)
        live = p.publish("r", "live")
        s.wait_events(7)
        s.listen(0.2)
        self.assertEqual([(e.id, e.data) for e in s.events], sent[4:] + [(live["id"], "live")])
        after = metrics(srv)
        self.assertEqual(after["hsc_resumes_total"] - before["hsc_resumes_total"], 1)

    def test_query_last_event_id_and_header_precedence(self):
        srv = self.start()
        p = self.publisher(srv)
        sent = self.publish_n(p, "r", 10)
        s = self.subscribed(srv, ["r"], query_id=sent[2][0])
        s.wait_events(7)
        s.listen(0.2)
        self.assertEqual([(e.id, e.data) for e in s.events], sent[3:])
        # Both: the header wins.
        s = self.subscribed(srv, ["r"], query_id=sent[2][0], last_event_id=sent[6][0])
        s.wait_events(3)
        s.listen(0.2)
        self.assertEqual([(e.id, e.data) for e in s.events], sent[7:])
        # An empty lastEventId= means none: live events only, no gap notice.
        s = self.subscribed(srv, ["r"], target="/v1/events?channel=r&lastEventId=")
        s.listen(0.2)
        live = p.publish("r", "live")
        s.wait_events(1)
        s.listen(0.2)
        self.assertEqual([(e.id, e.data) for e in s.events], [(live["id"], "live")])

    def test_resume_from_newest_replays_nothing(self):
        srv = self.start()
        p = self.publisher(srv)
        self.publish_n(p, "r", 3)
        # From an id newer than the channel's newest event (published to another channel),
        # then from the channel's newest event itself.
        last = p.publish("elsewhere", "not mine")["id"]
        for _ in range(2):
            s = self.subscribed(srv, ["r"], last_event_id=last)
            s.listen(0.3)
            self.assertEqual(s.events, [], "resume from %s" % last)
            live = p.publish("r", "live after " + last)
            self.assertEqual([(e.id, e.data) for e in s.wait_events(1)],
                             [(live["id"], "live after " + last)])
            s.close()
            last = live["id"]

    def test_resume_on_a_channel_that_has_no_history(self):
        srv = self.start()
        p = self.publisher(srv)
        a = p.publish("busy", "x")
        s = self.subscribed(srv, ["empty"], last_event_id=a["id"])
        s.listen(0.3)
        self.assertEqual(s.events, [])
        live = p.publish("empty", "first")
        self.assertEqual(s.wait_events(1)[0].id, live["id"])

    def test_gap_epoch_after_restart(self):
        srv1 = self.start()
        old = self.publisher(srv1).publish("news", "from the first run")["id"]
        self.stop_clean(srv1)
        srv2 = self.start()
        p = self.publisher(srv2)
        sent = self.publish_n(p, "news", 4)
        epoch2 = split_id(sent[0][0])[0]
        self.assertNotEqual(split_id(old)[0], epoch2)
        before = metrics(srv2)
        s = self.subscribed(srv2, ["news"], last_event_id=old)
        evs = s.wait_events(5)
        self.assert_gap(evs[0], "epoch", old, epoch2, 4)
        self.assertEqual([(e.id, e.data) for e in evs[1:]], sent)
        live = p.publish("news", "live")
        self.assertEqual(s.wait_events(6)[5].id, live["id"])
        after = metrics(srv2)
        self.assertEqual(after["hsc_resumes_missed_total"] - before["hsc_resumes_missed_total"],
                         1)
        self.assertEqual(after["hsc_resumes_total"], before["hsc_resumes_total"])
        # An id from an (invented) earlier run, a day before, is an epoch gap too.
        earlier = "%s-5" % base36(int(epoch2, 36) - 86400 * 1000)
        s = self.subscribed(srv2, ["news"], query_id=earlier)
        evs = s.wait_events(6)
        self.assert_gap(evs[0], "epoch", earlier, epoch2, 5)
        self.assertEqual([e.id for e in evs[1:]], [i for i, _ in sent] + [live["id"]])

    def test_gap_unknown_for_malformed_future_and_later_ids(self):
        srv = self.start()
        p = self.publisher(srv)
        sent = self.publish_n(p, "u", 3)
        epoch, seq = split_id(sent[-1][0])
        bad = ["garbage", "-5", epoch, epoch + "-", epoch + "-007", epoch + "-1x",
               epoch + "-" + "9" * 30, "%s-%d" % (epoch, seq + 1000), "zzzzzzzzzzz-1",
               epoch + "-1-2", " %s-1" % epoch, "héllo", "1-5", "x" * 200]
        if epoch.upper() != epoch:
            bad.append(epoch.upper() + "-1")
        for k, last in enumerate(bad):
            with self.subTest(last_event_id=last):
                use_query = k % 2 == 1 or not last.isascii() or last != last.strip()
                s = self.subscribed(srv, ["u"], **(
                    {"query_id": last} if use_query else {"last_event_id": last}))
                gap = s.wait_events(1)[0]
                self.assert_gap(gap, "unknown", last, epoch, 0)
                s.listen(0.1)
                self.assertEqual(len(s.events), 1, "history replayed after unknown: %r"
                                 % s.events)
                live = p.publish("u", "live %d" % k)
                self.assertEqual(s.wait_events(2)[1], Event("message", live["id"], "live %d" % k))
                s.close()

    def test_gap_expired_by_count(self):
        srv = self.start("--history", "5")
        p = self.publisher(srv)
        sent = self.publish_n(p, "h", 20)
        epoch = split_id(sent[0][0])[0]
        self.assertEqual(metric(srv, "hsc_history_events"), 5)
        before = metrics(srv)
        s = self.subscribed(srv, ["h"], last_event_id=sent[0][0])
        evs = s.wait_events(6)
        self.assert_gap(evs[0], "expired", sent[0][0], epoch, 5)
        self.assertEqual([(e.id, e.data) for e in evs[1:]], sent[15:])
        after = metrics(srv)
        self.assertEqual(after["hsc_resumes_missed_total"] - before["hsc_resumes_missed_total"],
                         1)
        # Just before the oldest event held (the newest evicted one): exact, no notice.
        s2 = self.subscribed(srv, ["h"], last_event_id=sent[14][0])
        s2.wait_events(5)
        live = p.publish("h", "live")  # evicts e15: s2 has it already
        for sub in (s, s2):
            sub.wait(lambda: sub.events[-1].data == "live", None, "the live event")
            sub.listen(0.2)
        self.assertEqual(s.events[6:], [Event("message", live["id"], "live")])
        self.assertEqual([(e.id, e.data) for e in s2.events], sent[15:] + [(live["id"], "live")])
        self.assertEqual(metric(srv, "hsc_resumes_total") - after["hsc_resumes_total"], 1)
        # Now e15 is gone: from e14 is a gap again.
        s3 = self.subscribed(srv, ["h"], last_event_id=sent[14][0])
        evs = s3.wait_events(6)
        self.assert_gap(evs[0], "expired", sent[14][0], epoch, 5)
        self.assertEqual([e.id for e in evs[1:]], [i for i, _ in sent[16:]] + [live["id"]])

    def test_gap_expired_by_bytes(self):
        srv = self.start("--history", "1000", "--history-bytes", "4k")
        p = self.publisher(srv)
        sent = self.publish_n(p, "hb", 1, prefix="x" * 1000)
        sent += [(p.publish("hb", "%04d" % i + "y" * 996)["id"], "%04d" % i + "y" * 996)
                 for i in range(10)]
        epoch = split_id(sent[0][0])[0]
        s = self.subscribed(srv, ["hb"], last_event_id=sent[0][0])
        gap = s.wait_events(1)[0]
        self.assertEqual(gap.type, "hsc.gap", gap)
        n = json.loads(gap.data)["replayed"]
        self.assertTrue(1 <= n <= 4, "4 KiB of history holds 1 to 4 events of 1 KB, not %d" % n)
        self.assert_gap(gap, "expired", sent[0][0], epoch, n)
        evs = s.wait_events(1 + n)
        s.listen(0.2)
        self.assertEqual([(e.id, e.data) for e in evs[1:]], sent[-n:])
        self.assertEqual(len(s.events), 1 + n)
        self.assertLessEqual(metric(srv, "hsc_history_bytes"), 4096)

    def test_gap_expired_by_age(self):
        srv = self.start("--history-age", "500ms")
        p = self.publisher(srv)
        sent = self.publish_n(p, "ha", 3)
        epoch = split_id(sent[0][0])[0]
        time.sleep(1.0)
        fresh = p.publish("ha", "fresh")
        s = self.subscribed(srv, ["ha"], last_event_id=sent[0][0])
        evs = s.wait_events(2)
        self.assert_gap(evs[0], "expired", sent[0][0], epoch, 1)
        self.assertEqual(evs[1], Event("message", fresh["id"], "fresh"))

    def test_history_zero_keeps_nothing(self):
        srv = self.start("--history", "0")
        p = self.publisher(srv)
        sent = self.publish_n(p, "h0", 3)
        self.assertEqual(metric(srv, "hsc_history_events"), 0)
        s = self.subscribed(srv, ["h0"], last_event_id=sent[0][0])
        gap = s.wait_events(1)[0]
        self.assert_gap(gap, "expired", sent[0][0], split_id(sent[0][0])[0], 0)
        live = p.publish("h0", "live")
        self.assertEqual(s.wait_events(2)[1].id, live["id"])


INJECTIONS = [
    ("cr", "a\rb", "a\nb"),
    ("lf", "a\nb", "a\nb"),
    ("crlf", "a\r\nb", "a\nb"),
    ("forged", "\n\nevent: x\nid: 9\ndata: y", "\n\nevent: x\nid: 9\ndata: y"),
    ("forged crlf", "x\r\n\r\nevent: x\r\nid: 9\r\ndata: y\r\n\r\n",
     "x\n\nevent: x\nid: 9\ndata: y\n\n"),
    ("forged cr", "x\r\revent: x\rid: 9\rretry: 1\r\r", "x\n\nevent: x\nid: 9\nretry: 1\n\n"),
    ("lf cr", "a\n\rb", "a\n\nb"),
    ("trailing lf", "end\n", "end\n"),
    ("only breaks", "\r\n\n\r", "\n\n\n"),
    ("empty", "", ""),
    ("comment-like", ": not a comment", ": not a comment"),
    ("field-like", "data: d\nid: 1\nevent: e", "data: d\nid: 1\nevent: e"),
    ("leading space", "  two spaces", "  two spaces"),
    ("utf8", "héllo\r\n你好 🚀", "héllo\n你好 🚀"),
    ("nul", "a\x00b", "a\x00b"),
]


class Injection(ChannelTestCase):

    def test_line_breaks_make_one_event_with_exact_data(self):
        srv = self.start()
        s = self.subscribed(srv, ["inj"])
        p = self.publisher(srv)
        want = []
        for name, body, data in INJECTIONS:
            ans = p.publish("inj", body.encode("utf-8"))
            want.append(Event("message", ans["id"], data))
        end = p.publish("inj", "end")
        want.append(Event("message", end["id"], "end"))
        s.wait_events(len(want))
        s.listen(0.2)
        for got, exp, case in zip(s.events, want, INJECTIONS + [("end", "", "")]):
            self.assertEqual(got, exp, "case %r" % case[0])
        self.assertEqual(len(s.events), len(want), s.events[len(want):])
        self.assertNotIn("9", [e.id for e in s.events])
        self.assertNotIn("x", [e.type for e in s.events])
        retries = [i for i in s.parser.items if i[0] == "retry"]
        self.assertEqual(len(retries), 1, "a forged retry: line reached the client: %r" % retries)

    def test_forged_fields_through_event_type_are_refused(self):
        srv = self.start()
        for t in ("a\nb", "a\rb", "x\r\nid: 9"):
            r = request(srv, "POST", "/v1/events?channel=c&event=" + q(t), body="d")
            assert_error_response(self, r, 400, "type %r" % t)


class BadInput(ChannelTestCase):

    def assert_nothing_published(self, srv, s, before, seen=0):
        s.listen(0.2)
        self.assertEqual(s.events[seen:], [], "a refused publish reached the subscriber")
        after = metrics(srv)
        self.assertEqual(after["hsc_events_published_total"],
                         before["hsc_events_published_total"])

    def test_bad_publishes_are_400_and_publish_nothing(self):
        srv = self.start()
        p = self.publisher(srv)
        first = p.publish("ok", "first")
        s = self.subscribed(srv, ["ok", "c", "a", "b"])
        before = metrics(srv)
        cases = [
            ("no channel", "/v1/events", b"d"),
            ("no channel, other param", "/v1/events?event=x", b"d"),
            ("empty name", "/v1/events?channel=", b"d"),
            ("space", "/v1/events?channel=a%20b", b"d"),
            ("plus is a space", "/v1/events?channel=a+b", b"d"),
            ("non-ASCII", "/v1/events?channel=" + q("é"), b"d"),
            ("comma", "/v1/events?channel=a,b", b"d"),
            ("slash ok but percent sign not", "/v1/events?channel=a%25b", b"d"),
            ("NUL", "/v1/events?channel=a%00b", b"d"),
            ("NUL at the end", "/v1/events?channel=a%00", b"d"),
            ("LF", "/v1/events?channel=a%0Ab", b"d"),
            ("129 bytes", "/v1/events?channel=" + "n" * 129, b"d"),
            ("bad percent-encoding", "/v1/events?channel=%zz", b"d"),
            ("cut percent-encoding", "/v1/events?channel=ab%4", b"d"),
            ("two channels", "/v1/events?channel=a&channel=b", b"d"),
            ("empty type", "/v1/events?channel=c&event=", b"d"),
            ("type with space", "/v1/events?channel=c&event=a%20b", b"d"),
            ("type with slash", "/v1/events?channel=c&event=a/b", b"d"),
            ("type with @", "/v1/events?channel=c&event=a@b", b"d"),
            ("type 65 bytes", "/v1/events?channel=c&event=" + "t" * 65, b"d"),
            ("type hsc.gap", "/v1/events?channel=c&event=hsc.gap", b"d"),
            ("type hsc.x", "/v1/events?channel=c&event=hsc.x", b"d"),
            ("type non-ASCII", "/v1/events?channel=c&event=" + q("ü"), b"d"),
            ("type with NUL", "/v1/events?channel=c&event=up%00x", b"d"),
            ("invalid UTF-8", "/v1/events?channel=c", b"ok \xff\xfe"),
            ("cut UTF-8", "/v1/events?channel=c", b"euro \xe2\x82"),
            ("overlong UTF-8", "/v1/events?channel=c", b"\xc0\xaf"),
            ("surrogate", "/v1/events?channel=c", b"\xed\xa0\x80"),
            ("above U+10FFFF", "/v1/events?channel=c", b"\xf4\x90\x80\x80"),
            ("Latin-1", "/v1/events?channel=c", "héllo".encode("latin-1")),
        ]
        for what, target, body in cases:
            with self.subTest(what):
                r = request(srv, "POST", target, [("Content-Type", "text/plain")], body=body)
                assert_error_response(self, r, 400, what)
        self.assert_nothing_published(srv, s, before)
        # The id sequence did not move either.
        nxt = p.publish("ok", "next")
        self.assertEqual(seq_of(nxt["id"]), seq_of(first["id"]) + 1)
        self.assertEqual(s.wait_events(1)[0].id, nxt["id"])

    def test_bad_subscriptions_are_400(self):
        srv = self.start()
        cases = [
            ("no channel", "/v1/events"),
            ("no channel, lastEventId only", "/v1/events?lastEventId=x"),
            ("empty name", "/v1/events?channel="),
            ("one empty among good", "/v1/events?channel=a&channel="),
            ("space", "/v1/events?channel=a%20b"),
            ("NUL", "/v1/events?channel=a%00b"),
            ("non-ASCII", "/v1/events?channel=" + q("ü")),
            ("129 bytes", "/v1/events?channel=" + "n" * 129),
            ("bad percent-encoding", "/v1/events?channel=%g1"),
        ]
        for what, target in cases:
            with self.subTest(what):
                # A wrongly accepted subscription is a stream that never ends: wait briefly.
                assert_error_response(self, request(srv, "GET", target, timeout=3), 400, what)
        with Sub(srv, ["n" * 128]) as s:
            self.assertEqual(s.head().status, 200, "a 128-byte name is valid")
        with Sub(srv, ["A-Za-z0-9-_.:@/"]) as s:
            self.assertEqual(s.head().status, 200, "every allowed character")
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 0, 5),
                        "hsc_subscribers did not return to 0")

    def test_128_byte_name_publishes(self):
        srv = self.start()
        name = "n" * 128
        s = self.subscribed(srv, [name])
        ans = self.publisher(srv).publish(name, "long name")
        self.assertEqual(ans["channel"], name)
        self.assertEqual(s.wait_events(1)[0].id, ans["id"])

    def test_max_event_bytes_413(self):
        srv = self.start("--max-event-bytes", "1k")
        s = self.subscribed(srv, ["big"])
        p = self.publisher(srv)
        ok = p.publish("big", "x" * 1024)
        self.assertEqual(s.wait_events(1)[0].data, "x" * 1024)
        before = metrics(srv)
        for body in ("x" * 1025, "x" * 5000, "é" * 513):
            r = request(srv, "POST", publish_target("big"), body=body)
            assert_error_response(self, r, 413, "%d bytes" % len(body.encode()))
        self.assert_nothing_published(srv, s, before, seen=1)
        nxt = p.publish("big", "small")
        self.assertEqual(seq_of(nxt["id"]), seq_of(ok["id"]) + 1)

    def test_max_body_bytes_413(self):
        srv = self.start("--max-body-bytes", "2k")
        s = self.subscribed(srv, ["big"])
        before = metrics(srv)
        r = request(srv, "POST", publish_target("big"), body="y" * 3000)
        assert_error_response(self, r, 413)
        self.assert_nothing_published(srv, s, before)

    def test_max_channels_503(self):
        # Only channels with subscribers hold their place: past --max-channels an idle one would
        # make room (test_squat.py); here both have subscribers, so a third is refused.
        srv = self.start("--max-channels", "2")
        p = self.publisher(srv)
        self.subscribed(srv, ["one"])
        p.publish("one", "1")
        s = self.subscribed(srv, ["two"])
        before = metrics(srv)
        self.assertEqual(before["hsc_channels"], 2)
        r = request(srv, "POST", publish_target("three"), body="3")
        assert_error_response(self, r, 503, "publish to a third channel")
        self.assertRegex(r.header("Retry-After", ""), r"^\d+$")
        r = request(srv, "GET", events_target(["three"]))
        assert_error_response(self, r, 503, "subscribe to a third channel")
        self.assertRegex(r.header("Retry-After", ""), r"^\d+$")
        after = metrics(srv)
        self.assertEqual(after["hsc_events_published_total"], before["hsc_events_published_total"])
        self.assertEqual(after["hsc_channels"], 2)
        # Existing channels still work.
        ans = p.publish("two", "still fine")
        self.assertEqual(s.wait_events(1)[0].id, ans["id"])

    def test_405_with_allow(self):
        srv = self.start()
        for method in ("PUT", "DELETE", "PATCH"):
            r = request(srv, method, "/v1/events?channel=x", body="d")
            assert_error_response(self, r, 405, method)
            allow = {m.strip() for m in r.header("Allow", "").split(",")}
            self.assertTrue({"GET", "POST", "OPTIONS"} <= allow, r.header("Allow"))


class Cors(ChannelTestCase):

    PREFLIGHT = [("Access-Control-Request-Method", "POST"),
                 ("Access-Control-Request-Headers", "content-type, last-event-id")]

    def test_no_cors_headers_without_the_flag(self):
        srv = self.start()
        origin = [("Origin", "https://app.example")]
        with Sub(srv, ["c"], headers=origin) as s:
            h = s.head()
        r = request(srv, "POST", publish_target("c"), origin, body="x")
        pre = request(srv, "OPTIONS", publish_target("c"), origin + self.PREFLIGHT)
        for resp in (h, r, pre):
            self.assertEqual([k for k, _ in resp.headers if k.lower().startswith("access-control")],
                             [], resp)

    def test_exact_origins(self):
        srv = self.start("--cors-origin", "https://app.example,https://b.example",
                         "--cors-origin", "http://localhost:3000", "--max-gen-len", "1",
                         "--interval", "10ms")
        for origin in ("https://app.example", "https://b.example", "http://localhost:3000"):
            with self.subTest(origin):
                with Sub(srv, ["c"], headers=[("Origin", origin)]) as s:
                    h = s.head()
                self.assertEqual(h.header("Access-Control-Allow-Origin"), origin)
                self.assertIn("origin", [v.strip().lower() for v in
                                         ",".join(h.header_list("Vary")).split(",")])
                r = request(srv, "POST", publish_target("c"), [("Origin", origin)], body="x")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("Access-Control-Allow-Origin"), origin)
                r2 = request(srv, "GET", "/v1/stream?q=hi", [("Origin", origin)])
                self.assertEqual(r2.header("Access-Control-Allow-Origin"), origin)
                # docs/security.md: --cors-origin alone does not allow credentials.
                for resp in (h, r, r2):
                    self.assertIsNone(resp.header("Access-Control-Allow-Credentials"), resp)
        published = metric(srv, "hsc_events_published_total")
        pre = request(srv, "OPTIONS", publish_target("c"),
                      [("Origin", "https://app.example")] + self.PREFLIGHT)
        self.assertEqual(pre.status, 204, pre)
        self.assertEqual(pre.header("Access-Control-Allow-Origin"), "https://app.example")
        self.assertEqual(pre.header("Access-Control-Allow-Methods"), "GET, POST, OPTIONS")
        allowed = {v.strip().lower() for v in pre.header("Access-Control-Allow-Headers",
                                                         "").split(",")}
        self.assertTrue({"content-type", "last-event-id"} <= allowed, pre.headers)
        self.assertEqual(pre.header("Access-Control-Max-Age"), "600")
        self.assertIsNone(pre.header("Access-Control-Allow-Credentials"), pre)
        self.assertEqual(metric(srv, "hsc_events_published_total"), published,
                         "a preflight published")
        for origin in ("https://evil.example", "https://app.example.evil", "null",
                       "http://app.example"):
            with self.subTest(origin):
                with Sub(srv, ["c"], headers=[("Origin", origin)]) as s:
                    self.assertIsNone(s.head().header("Access-Control-Allow-Origin"))
                pre = request(srv, "OPTIONS", publish_target("c"),
                              [("Origin", origin)] + self.PREFLIGHT)
                self.assertIsNone(pre.header("Access-Control-Allow-Origin"), pre)

    def test_credentials_only_with_the_flag_and_only_for_exact_origins(self):
        srv = self.start("--cors-origin", "https://app.example,*", "--cors-credentials")
        origin = [("Origin", "https://app.example")]
        with Sub(srv, ["c"], headers=origin) as s:
            h = s.head()
        r = request(srv, "POST", publish_target("c"), origin, body="x")
        pre = request(srv, "OPTIONS", publish_target("c"), origin + self.PREFLIGHT)
        for resp in (h, r, pre):
            self.assertEqual(resp.header("Access-Control-Allow-Origin"), "https://app.example")
            self.assertEqual(resp.header("Access-Control-Allow-Credentials"), "true", resp)
        # Another origin, allowed through "*": never with credentials.
        other = [("Origin", "https://other.example")]
        with Sub(srv, ["c"], headers=other) as s:
            h = s.head()
        pre = request(srv, "OPTIONS", publish_target("c"), other + self.PREFLIGHT)
        for resp in (h, pre):
            self.assertEqual(resp.header("Access-Control-Allow-Origin"), "*", resp)
            self.assertIsNone(resp.header("Access-Control-Allow-Credentials"), resp)

    def test_any_origin(self):
        srv = self.start("--cors-origin", "*")
        origin = "https://whoever.example"
        with Sub(srv, ["c"], headers=[("Origin", origin)]) as s:
            h = s.head()
        self.assertIn(h.header("Access-Control-Allow-Origin"), ("*", origin))
        r = request(srv, "POST", publish_target("c"), [("Origin", origin)], body="x")
        self.assertIn(r.header("Access-Control-Allow-Origin"), ("*", origin))
        pre = request(srv, "OPTIONS", publish_target("c"), [("Origin", origin)] + self.PREFLIGHT)
        self.assertEqual(pre.status, 204, pre)
        self.assertIn(pre.header("Access-Control-Allow-Origin"), ("*", origin))
        self.assertEqual(pre.header("Access-Control-Allow-Methods"), "GET, POST, OPTIONS")
        self.assertEqual(pre.header("Access-Control-Max-Age"), "600")
        for resp in (h, r, pre):
            self.assertIsNone(resp.header("Access-Control-Allow-Credentials"), resp)


class Metrics(ChannelTestCase):

    def test_counters_and_gauges_move(self):
        srv = self.start("--history", "10")
        m0 = metrics(srv)
        for name in ("hsc_connections", "hsc_subscribers", "hsc_channels", "hsc_history_events",
                     "hsc_history_bytes", "hsc_events_published_total",
                     "hsc_events_delivered_total", "hsc_bytes_out_total", "hsc_resumes_total",
                     "hsc_resumes_missed_total", "hsc_slow_subscribers_dropped_total",
                     "hsc_requests_total"):
            self.assertIn(name, m0)
        self.assertEqual(m0["hsc_subscribers"], 0)
        self.assertEqual(m0["hsc_channels"], 0)
        subs = [self.subscribed(srv, ["m"]) for _ in range(3)]
        subs.append(self.subscribed(srv, ["m", "n"]))
        m1 = metrics(srv)
        self.assertEqual(m1["hsc_subscribers"], 4)
        self.assertEqual(m1["hsc_channels"], 2)
        self.assertGreaterEqual(m1["hsc_connections"], 4)
        p = self.publisher(srv)
        for i in range(12):
            p.publish("m", "event %d" % i)
        p.publish("n", "one for n")
        for s in subs[:3]:
            s.wait_events(12)
        subs[3].wait_events(13)
        # A worker counts a delivery just after its write: the client may read the event and
        # ask /metrics (answered by another worker) a moment before the count moves.
        delivered = 4 * 12 + 1
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_events_delivered_total") -
                                 m1["hsc_events_delivered_total"] == delivered, 5),
                        "hsc_events_delivered_total did not move by %d" % delivered)
        m2 = metrics(srv)
        self.assertEqual(m2["hsc_events_published_total"] - m1["hsc_events_published_total"], 13)
        self.assertEqual(m2["hsc_events_delivered_total"] - m1["hsc_events_delivered_total"],
                         delivered)
        self.assertGreater(m2["hsc_bytes_out_total"], m1["hsc_bytes_out_total"] + 13 * 4 * 20)
        self.assertEqual(m2["hsc_history_events"], 10 + 1)
        self.assertGreater(m2["hsc_history_bytes"], 11 * 10)
        self.assertGreater(m2["hsc_requests_total"], m1["hsc_requests_total"])
        for s in subs:
            s.close()
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 0, 5),
                        "hsc_subscribers stays at %s" % metric(srv, "hsc_subscribers"))
        self.assertEqual(metric(srv, "hsc_channels"), 2, "channels with history are kept")

    def test_channels_without_subscribers_or_history_are_freed(self):
        srv = self.start("--history-age", "500ms")
        subs = [self.subscribed(srv, ["free%d" % i]) for i in range(5)]
        self.publisher(srv).publish("free0", "kept a moment")
        self.assertEqual(metric(srv, "hsc_channels"), 5)
        for s in subs:
            s.reset()
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_channels") <= 1, 5),
                        "channels left: %s" % metric(srv, "hsc_channels"))
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_channels") == 0, 10),
                        "a channel whose history expired stays: %s" % metric(srv, "hsc_channels"))
        self.assertEqual(metric(srv, "hsc_history_events"), 0)


class SlowSubscriber(ChannelTestCase):

    def test_stalled_subscriber_dropped_while_100_others_get_everything(self):
        srv = self.start("--max-queue-bytes", "256k", "--threads", "2", "--history", "0")
        payload = lambda i: "%06d:" % i + "z" * 4000  # noqa: E731
        # The stalled one: a tiny receive buffer, never read after the request.
        stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(10 * SLOW)
        stalled.connect((HOST, srv.port))
        self.addCleanup(stalled.close)
        stalled.sendall(make_request("GET", events_target(["burst"]), ()))
        with Crowd(srv.port) as crowd:
            checkers = [OrderChecker(payload) for _ in range(100)]
            crowd.add(100, lambda i: events_target(["burst"]), lambda i: checkers[i])
            self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 101, 5))
            p = self.publisher(srv)
            sent, t0, dropped_at = 0, time.monotonic(), None
            # Batches of 16 x 4 KB, each read by the 100 before the next: they stay far below
            # --max-queue-bytes, the stalled one's queue only grows. Bounded at 32 MB.
            while sent < 8192:
                for _ in range(16):
                    ans = p.publish("burst", payload(sent))
                    sent += 1
                ok = crowd.pump(lambda: all(c.count >= sent or c.error for c in checkers), 20)
                self.assertTrue(ok, "the 100 readers fell behind: %s" % sorted(
                    c.count for c in checkers)[:5])
                if dropped_at is None and metric(srv, "hsc_slow_subscribers_dropped_total") >= 1:
                    dropped_at = sent
                if dropped_at is not None and sent >= dropped_at + 64:
                    break
            elapsed = time.monotonic() - t0
            self.assertIsNotNone(dropped_at, "the stalled subscriber was never dropped (%d "
                                 "events of 4 KB published)" % sent)
            self.assertEqual(ans["subscribers"], 100, "the last publish still counted the "
                             "stalled subscriber")
            for i, c in enumerate(checkers):
                self.assertIsNone(c.error, "subscriber %d: %s" % (i, c.error))
                self.assertEqual(c.count, sent, "subscriber %d" % i)
            self.assertTrue(all(m.eof is None for m in crowd.members), "a reader was cut")
            m = metrics(srv)
            self.assertEqual(m["hsc_slow_subscribers_dropped_total"], 1)
            self.assertEqual(m["hsc_subscribers"], 100)
            sys_print("slow subscriber dropped after %d x 4 KB events; %d events to 100 readers "
                      "in %.2f s" % (dropped_at, sent, elapsed))
        # The stalled one's stream was cut: no last chunk, then the connection ended.
        stalled.settimeout(10 * SLOW)
        data, t_end = b"", time.monotonic() + 10 * SLOW
        ended = None
        while time.monotonic() < t_end:
            try:
                chunk = stalled.recv(1 << 16)
            except ConnectionResetError:
                ended = "reset"
                break
            if not chunk:
                ended = "fin"
                break
            data += chunk
        self.assertIsNotNone(ended, "the stalled connection was not closed")
        self.assertFalse(data.endswith(b"\r\n0\r\n\r\n"), "a dropped stream must not end "
                         "with the last chunk")
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 0, 5))


class Load(ChannelTestCase):

    def test_1000_subscribers_x_1000_events_in_order(self):
        srv = self.start("--threads", "2")
        n_subs, n_events = 1000, 1000
        checkers = [OrderChecker(str) for _ in range(n_subs)]
        with Crowd(srv.port) as crowd:
            t0 = time.monotonic()
            crowd.add(n_subs, lambda i: events_target(["load"]), lambda i: checkers[i])
            t_conn = time.monotonic() - t0
            self.assertEqual(metric(srv, "hsc_subscribers"), n_subs)
            before = metrics(srv)
            pub = FlatOutPublisher(srv, "load", str, 120 * SLOW, n_events)
            t1 = time.monotonic()
            pub.start()
            done = crowd.pump(lambda: all(c.count >= n_events or c.error for c in checkers),
                              90)
            t_recv = time.monotonic() - t1
            pub.join(30 * SLOW)
            self.assertIsNone(pub.error)
            self.assertEqual(len(pub.sent), n_events)
            errors = [(i, c.error) for i, c in enumerate(checkers) if c.error]
            self.assertEqual(errors[:5], [])
            counts = collections.Counter(c.count for c in checkers)
            self.assertTrue(done, "not every subscriber got %d events: counts %r" % (
                n_events, counts.most_common(5)))
            crowd.pump(lambda: False, 0.3 / SLOW)  # and nothing more comes
            counts = collections.Counter(c.count for c in checkers)
            self.assertEqual(counts, {n_events: n_subs})
            last_id = pub.sent[-1][0]
            self.assertEqual({c.last_id for c in checkers}, {last_id})
            first_seq = seq_of(pub.sent[0][0])
            self.assertEqual([seq_of(i) for i, _ in pub.sent],
                             list(range(first_seq, first_seq + n_events)))
            self.assertTrue(all(m.eof is None for m in crowd.members))
            m = metrics(srv)
            self.assertEqual(m["hsc_events_published_total"] - before["hsc_events_published_total"],
                             n_events)
            self.assertEqual(m["hsc_events_delivered_total"] - before["hsc_events_delivered_total"],
                             n_events * n_subs)
            self.assertEqual(m["hsc_slow_subscribers_dropped_total"], 0)
            sys_print("1000 subscribers connected in %.2f s; 1000 x 1000 events received in "
                      "%.2f s" % (t_conn, t_recv))
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 0, 10))

    def test_rss_returns_near_baseline_after_subscribers_leave(self):
        n = int(os.environ.get("HSC_RSS_SUBSCRIBERS", "10000"))
        # n // 5 + 50 channels made by one address: no per-client creation limit here.
        srv = self.start("--threads", "2", "--max-connections", str(n + 100),
                         "--channel-create-rate", "0")
        pid = srv.proc.pid
        p = self.publisher(srv)
        # Warm up: a first small crowd comes and goes, so that one-time allocations are made.
        with Crowd(srv.port) as crowd:
            crowd.add(200, lambda i: events_target(["warm%d" % (i % 20)]))
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 0, 10))
        time.sleep(0.3)
        base = rss_kb(pid)
        t0 = time.monotonic()
        with Crowd(srv.port) as crowd:
            # n subscribers on n/5 quiet channels and 50 busy ones that get one event each.
            crowd.add(n, lambda i: events_target(
                ["quiet%d" % (i % (n // 5)), "busy%d" % (i % 50)]))
            self.assertEqual(metric(srv, "hsc_subscribers"), n)
            for b in range(50):
                self.assertEqual(p.publish("busy%d" % b, "hello %d" % b)["subscribers"], n // 50)
            crowd.pump(lambda: False, 0.5 / SLOW)
            peak = rss_kb(pid)
            m = metrics(srv)
            self.assertEqual(m["hsc_channels"], n // 5 + 50)
            crowd.close(reset_every=2)  # half leave with RST, half with FIN
        t_cycle = time.monotonic() - t0
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 0, 20),
                        "subscribers left: %s" % metric(srv, "hsc_subscribers"))
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_channels") == 50, 10),
                        "channels: %s (want the 50 with history)" % metric(srv, "hsc_channels"))
        # hscd gives freed memory back once a second (its sweep): allow a few.
        if not SANITIZE:
            wait_for(lambda: rss_kb(pid) < base + 8 * 1024, 3)
        after = rss_kb(pid)
        sys_print("RSS with %d subscribers (%.1f s): baseline %d kB, peak %d kB, after %d kB"
                  % (n, t_cycle, base, peak, after))
        if not SANITIZE:  # ASan keeps freed memory in quarantine: RSS says nothing there
            self.assertLess(after, base + 8 * 1024,
                            "RSS %d kB after the crowd left, baseline %d kB (peak %d kB)"
                            % (after, base, peak))


class ResumeRace(ChannelTestCase):

    def test_reconnecting_subscriber_gets_everything_once_in_order(self):
        srv = self.start("--threads", "2", "--history", "100000", "--history-bytes", "64m",
                         "--retry", "100ms")
        rng = random.Random(20240604)
        sub = self.subscribed(srv, ["ra", "rb"])
        pubs = [FlatOutPublisher(srv, "ra", "a-{}".format, 3.0, 50000),
                FlatOutPublisher(srv, "rb", "b-{}".format, 3.0, 50000)]
        for pb in pubs:
            pb.start()
        received, gaps, connections, last = [], [], 1, None
        resets, partial_cuts = 0, 0
        deadline = time.monotonic() + 60 * SLOW

        def take(events):
            nonlocal last
            for e in events:
                if e.type.startswith("hsc."):
                    gaps.append(e)
                else:
                    received.append((e.id, e.data))
                    last = e.id
        try:
            while not all(pb.done.is_set() for pb in pubs):
                self.assertLess(time.monotonic(), deadline, "the race did not settle")
                # Read up to a random number of events for a random moment (at least one event
                # on the first connection), keep those, forget the rest, reconnect from the
                # last one kept.
                n_max = rng.choice([1, 2, 5, 20, 100, 1000])
                t_end = time.monotonic() + rng.uniform(0.0, 0.03)
                while len(sub.events) < n_max and (time.monotonic() < t_end or last is None):
                    self.assertLess(time.monotonic(), deadline, "no events")
                    if not sub.pump(time.monotonic() + 0.05, soft=True):
                        break
                if len(sub.events) > n_max or sub.parser._data is not None:
                    partial_cuts += 1
                take(sub.events[:n_max])
                if last is None:
                    continue
                if rng.random() < 0.5:
                    sub.reset()
                    resets += 1
                else:
                    sub.close()
                if rng.random() < 0.5:
                    sub = Sub(srv, ["ra", "rb"], last_event_id=last)
                else:
                    sub = Sub(srv, ["ra", "rb"], query_id=last)
                self.addCleanup(sub.close)
                connections += 1
            # The publishers are done: the last connection catches up to the newest event.
            final = max((pb.sent[-1][0] for pb in pubs if pb.sent), key=seq_of)
            if last != final:
                sub.wait(lambda: any(e.id == final for e in sub.events[-3:]), 30,
                         "the newest event %s" % final)
            sub.listen(0.2)
            take(sub.events)
        finally:
            for pb in pubs:
                pb.halt.set()
                pb.join(10 * SLOW)
        for pb in pubs:
            self.assertIsNone(pb.error)
        published = sorted(pubs[0].sent + pubs[1].sent, key=lambda e: seq_of(e[0]))
        self.assertEqual(gaps, [])
        self.assertGreater(connections, 20)
        ids = [i for i, _ in received]
        self.assertEqual(len(ids), len(set(ids)), "duplicates: %d" % (len(ids) - len(set(ids))))
        if received != published:
            missing = set(published) - set(received)
            extra = set(received) - set(published)
            out_of_order = [k for k in range(1, len(ids)) if seq_of(ids[k]) <= seq_of(ids[k - 1])]
            self.fail("received %d events, published %d: %d missing (e.g. %r), %d unexpected, "
                      "%d out of order (first at %r)"
                      % (len(received), len(published), len(missing), sorted(missing)[:3],
                         len(extra), len(out_of_order), out_of_order[:3]))
        sys_print("resume race: %d events from 2 flat-out publishers over %d connections "
                  "(%d reset, %d cut mid-stream)" % (len(published), connections, resets,
                                                     partial_cuts))


def tagged(events):
    """(channel, event) for each event of a tag=channel stream: the channel of the last
    hsc.channel tag before it (None before any), as an EventSource client keeps it."""
    out, channel = [], None
    for e in events:
        if e.type == "hsc.channel":
            if e.id is not None:
                raise AssertionError("a channel tag must not carry an id: %r" % (e,))
            channel = e.data
        else:
            out.append((channel, e))
    return out


class RecentEvents(ChannelTestCase):
    """lastEventId=earliest, history=N and tag=channel (docs/api.md, "Recent events" and
    "Which channel")."""

    def curl_stream(self, srv, target, headers=()):
        """What curl receives from `target` in one second (then it gives up: status 28)."""
        args = ["curl", "-sSN", "--max-time", str(1 * SLOW)]
        for h in headers:
            args += ["-H", h]
        p = subprocess.run(args + [srv.url(target)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20 * SLOW)
        self.assertEqual(p.returncode, 28, p.stderr)  # still streaming when --max-time hit
        parser = SseParser()
        parser.feed(p.stdout)
        return parser.events

    def test_earliest_and_history_with_curl_and_http_client(self):
        srv = self.start("--history", "5")
        p = self.publisher(srv)
        sent = {"r": [], "s": []}
        for i in range(7):
            for ch in ("r", "s", "t"):
                ans = p.publish(ch, "%s%d" % (ch, i), event="upd" if ch == "s" else None)
                if ch in sent:
                    sent[ch].append((ans["id"], "%s%d" % (ch, i)))
        before = metrics(srv)
        # curl: everything r still holds (5 of 7), in the query or as Last-Event-ID.
        for headers, target in (((), "/v1/events?channel=r&lastEventId=earliest"),
                                (("Last-Event-ID: earliest",), "/v1/events?channel=r")):
            evs = self.curl_stream(srv, target, headers)
            self.assertEqual([(e.type, e.id, e.data) for e in evs],
                             [("message", i, d) for i, d in sent["r"][2:]], target)
        # curl: the 4 newest of r and s together, in id order, types kept.
        evs = self.curl_stream(srv, "/v1/events?channel=s&channel=r&history=4")
        both = sorted(sent["r"] + sent["s"], key=lambda e: seq_of(e[0]))
        self.assertEqual([(e.id, e.data) for e in evs], both[-4:])
        self.assertEqual([e.type for e in evs], ["message", "upd", "message", "upd"])
        # http.client: history=3 of r, then a live event once, nothing else, no hsc.gap.
        conn = http.client.HTTPConnection(HOST, srv.port, timeout=10 * SLOW)
        self.addCleanup(conn.close)
        conn.request("GET", "/v1/events?channel=r&history=3")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.getheader("Content-Type"), "text/event-stream; charset=utf-8")
        parser = SseParser()
        while len(parser.events) < 3:
            parser.feed(resp.read1(65536))
        live = p.publish("r", "live")
        while len(parser.events) < 4:
            parser.feed(resp.read1(65536))
        self.assertEqual([(e.id, e.data) for e in parser.events],
                         sent["r"][4:] + [(live["id"], "live")])
        # Explicit requests are not resumes: no hsc.gap (history did evict r0 and r1), and the
        # resume counters do not move.
        after = metrics(srv)
        for name in ("hsc_resumes_total", "hsc_resumes_missed_total"):
            self.assertEqual(after[name], before[name], name)
        # A real id wins over both: a resume after it.
        s = self.subscribed(srv, ["r"], last_event_id=sent["r"][5][0],
                            target="/v1/events?channel=r&history=5&lastEventId=earliest")
        s.wait_events(2)
        s.listen(0.2)
        self.assertEqual([(e.id, e.data) for e in s.events],
                         [sent["r"][6], (live["id"], "live")])
        self.assertEqual(metrics(srv)["hsc_resumes_total"], before["hsc_resumes_total"] + 1)

    def test_bad_history_or_tag_is_400_and_history_0_is_live(self):
        srv = self.start("--history", "5")
        for extra, reason in (("history=6", b"bad history: use history=N, N from 0 to 5 "
                                            b"(--history)\n"),
                              ("history=abc", b"bad history"), ("history=-1", b"bad history"),
                              ("history=", b"bad history"), ("history=2.5", b"bad history"),
                              ("tag=name", b"bad tag: the only one is tag=channel\n"),
                              ("tag=", b"bad tag")):
            with self.subTest(extra):
                r = request(srv, "GET", events_target(["a"], extra=extra))
                assert_error_response(self, r, 400, extra)
                self.assertTrue(r.body.startswith(reason), r.body)
        p = self.publisher(srv)
        p.publish("a", "old")
        s = self.subscribed(srv, ["a"], target="/v1/events?channel=a&history=0")
        s.listen(0.2)
        self.assertEqual(s.events, [])
        live = p.publish("a", "new")
        self.assertEqual([(e.id, e.data) for e in s.wait_events(1)], [(live["id"], "new")])

    def test_tags_name_each_events_channel_curl_and_http10(self):
        srv = self.start()
        p = self.publisher(srv)
        sent = [(ch, p.publish(ch, "%s%d" % (ch, i), event="upd" if i % 2 else None))
                for i, ch in enumerate(["a", "a", "b", "c", "a", "b", "b"])]
        mine = [(ch, a["id"]) for ch, a in sent if ch != "c"]
        # curl, everything (earliest) of a and b, tagged.
        evs = self.curl_stream(srv, "/v1/events?channel=a&channel=b&lastEventId=earliest"
                                    "&tag=channel")
        self.assertEqual([(ch, e.id) for ch, e in tagged(evs)], mine)
        # A tag only where the channel changes.
        self.assertEqual([e.data for e in evs if e.type == "hsc.channel"], ["a", "b", "a", "b"])
        # HTTP/1.0 (close-delimited): the same stream; live events too.
        s = self.subscribed(srv, ["b", "a"], version="HTTP/1.0",
                            target="/v1/events?channel=b&channel=a&history=2&tag=channel")
        s.wait_events(3)  # the tag of b, b5 and b6
        live = [("a", p.publish("a", "x")["id"]), ("c", p.publish("c", "x")["id"]),
                ("b", p.publish("b", "x")["id"])]
        s.wait_events(7)
        s.listen(0.2)
        self.assertEqual([(ch, e.id) for ch, e in tagged(s.events)],
                         mine[-2:] + [live[0], live[2]])
        self.assertEqual(len(s.events), 7)  # tags: b (replay), a, b
        self.assertEqual(s.eof, None)
        self.assertFalse(s.http.chunked)
        # Without tag=channel nothing changes.
        evs = self.curl_stream(srv, "/v1/events?channel=a&channel=b&history=3")
        self.assertEqual([e.type for e in evs if e.type.startswith("hsc.")], [])

    def test_recent_and_tagged_while_publishers_run_flat_out(self):
        """Subscriptions asking for recent events, tagged, while two publishers run flat out
        on two threads: each receives a contiguous run of what was published to its channels,
        from the replay through the live events, with no gap and no duplicate, each event
        under its own channel's tag."""
        srv = self.start("--threads", "2", "--history", "100000", "--history-bytes", "64m")
        pubs = [FlatOutPublisher(srv, "fa", "a-{}".format, 2.0, 30000),
                FlatOutPublisher(srv, "fb", "b-{}".format, 2.0, 30000)]
        for pb in pubs:
            pb.start()
        subs = []
        try:
            for extra in ("history=50", "history=1", "lastEventId=earliest", "history=1000"):
                time.sleep(0.2)
                subs.append((extra, self.subscribed(
                    srv, [], target="/v1/events?channel=fa&channel=fb&tag=channel&" + extra)))
        finally:
            for pb in pubs:
                pb.join(30 * SLOW)
        for pb in pubs:
            self.assertIsNone(pb.error)
        published = sorted([("fa",) + e for e in pubs[0].sent] +
                           [("fb",) + e for e in pubs[1].sent], key=lambda e: seq_of(e[1]))
        final = published[-1][1]
        for extra, s in subs:
            with self.subTest(extra):
                s.wait(lambda: any(e.id == final for e in s.events[-3:]), 30,
                       "the newest event %s" % final)
                s.listen(0.2)
                got = [(ch, e.id, e.data) for ch, e in tagged(s.events)]
                self.assertEqual([e.type for e in s.events if e.type == "hsc.gap"], [])
                self.assertGreater(len(got), 0)
                start = next((k for k, e in enumerate(published) if e[1] == got[0][1]), None)
                self.assertIsNotNone(start, "not published: %r" % (got[0],))
                if extra == "lastEventId=earliest":
                    self.assertEqual(start, 0)
                if got != published[start:]:
                    ids = [e[1] for e in got]
                    self.fail("%s: received %d events from %s, published %d from there; "
                              "%d duplicates" % (extra, len(got), got[0][1],
                                                 len(published) - start,
                                                 len(ids) - len(set(ids))))
        sys_print("recent events: %d published on 2 channels, 4 subscriptions asking for "
                  "recent events, tagged" % len(published))


if __name__ == "__main__":
    unittest.main()
