"""hsc, the command-line client, against real servers: hscd, and a small Python SSE server that
is not hscd (http.server), to show `hsc listen` works against any endpoint.

The client binary comes from $HSC (set by ctest). Every subprocess is bounded by a timeout and
stopped by its own PID.
"""

import http.server
import json
import os
import re
import signal
import socketserver
import subprocess
import threading
import time
import unittest
import urllib.request

from hscd import HOST, SANITIZE, SLOW, Hscd, ServerTestCase, free_port, pieces, wait_for


def hsc_binary():
    path = os.environ.get("HSC", "")
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("HSC is not set to the hsc binary: run through ctest")
    return path


def run_hsc(args, input=None, timeout=20.0, env=None):
    e = dict(os.environ)
    e.pop("HSC_URL", None)
    if env:
        e.update(env)
    return subprocess.run([hsc_binary()] + args, input=input, capture_output=True,
                          timeout=timeout * SLOW, env=e)


def no_sanitizer_report(tc, stderr):
    tc.assertNotIn(b"Sanitizer", stderr, stderr.decode(errors="replace"))
    tc.assertNotIn(b"runtime error:", stderr, stderr.decode(errors="replace"))


class Listener:
    """`hsc listen` in the background; its stdout lines are collected by a thread."""

    def __init__(self, args):
        self.proc = subprocess.Popen([hsc_binary(), "listen"] + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = []
        self.err = b""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self._te = threading.Thread(target=self._read_err, daemon=True)
        self._te.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode())

    def _read_err(self):
        for line in self.proc.stderr:
            self.err += line

    def wait_lines(self, n, timeout=15.0):
        return wait_for(lambda: len(self.lines) >= n, timeout * SLOW)

    def stop(self, sig=signal.SIGINT, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("hsc listen did not stop on signal %d" % sig)
        self._t.join(5)
        self._te.join(5)
        return rc


def publish(port, channel, data, event=None):
    url = "http://%s:%d/v1/events?channel=%s" % (HOST, port, channel)
    if event:
        url += "&event=" + event
    with urllib.request.urlopen(urllib.request.Request(url, data=data.encode()), timeout=10) as r:
        return json.loads(r.read())


class Send(ServerTestCase):
    def setUp(self):
        self.srv = self.start("--max-gen-len", "3", "--interval", "20ms")
        self.url = "http://%s:%d" % (HOST, self.srv.port)

    def test_send_prints_the_answer(self):
        r = run_hsc(["send", "--url", self.url, "Wake up, Neo"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(), "".join(pieces(3, "Wake up, Neo")))
        no_sanitizer_report(self, r.stderr)

    def test_send_from_stdin_and_hsc_url(self):
        r = run_hsc(["send"], input="醒醒，Neo".encode(), env={"HSC_URL": self.url})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(), "".join(pieces(3, "醒醒，Neo")))

    def test_send_sse(self):
        r = run_hsc(["send", "--sse", "--url", self.url, "hi"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(), "".join(pieces(3, "hi")))

    def test_send_pieces_arrive_before_the_end(self):
        srv = self.start("--max-gen-len", "3", "--interval", "400ms")
        p = subprocess.Popen([hsc_binary(), "send", "--url", "http://%s:%d" % (HOST, srv.port),
                              "x"], stdout=subprocess.PIPE)
        try:
            first = p.stdout.readline().decode()
            self.assertEqual(first, pieces(3, "x")[0])
            self.assertIsNone(p.poll(), "the first piece must arrive while the answer runs")
        finally:
            self.assertEqual(p.wait(20 * SLOW), 0)
            p.stdout.close()

    def test_server_down_exits_3(self):
        port = free_port()
        r = run_hsc(["send", "--url", "http://%s:%d" % (HOST, port), "x"])
        self.assertEqual(r.returncode, 3)
        # hsc's words, naming the server and the system's reason; not curl's "Couldn't connect".
        self.assertEqual(r.stderr.decode(),
                         "hsc send: cannot connect to %s:%d: connection refused\n" % (HOST, port))

    def test_empty_text_is_a_usage_error(self):
        r = run_hsc(["send", "--url", self.url], input=b"")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"empty", r.stderr)

    def test_failed_answer_exits_1(self):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "responders",
                              "responder.py")
        srv = self.start("--exec", "python3 %s fail" % script)
        for extra in ([], ["--sse"]):
            with self.subTest(form=extra):
                r = run_hsc(["send", "--url", "http://%s:%d" % (HOST, srv.port)] + extra + ["x"])
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertEqual(r.stdout, b"one\ntwo\n")
                self.assertTrue(r.stderr.startswith(b"hsc send: "), r.stderr)

    def test_help_and_bad_flags(self):
        for cmd in (["--help"], ["send", "--help"], ["listen", "--help"], ["publish", "--help"]):
            r = run_hsc(cmd)
            self.assertEqual(r.returncode, 0)
            self.assertIn(b"Usage: hsc", r.stdout)
        self.assertIn(b"--last-event-id", run_hsc(["listen", "--help"]).stdout)
        for cmd, what in ((["frobnicate"], b"unknown command"),
                          (["send", "--bogus"], b"--bogus"),
                          (["listen", "--format", "xml", "-c", "a"], b"--format"),
                          (["listen"], b"nothing to listen to"),
                          (["publish", "-c", "a"], b"nothing to publish"),
                          (["publish", "x"], b"-c CHANNEL")):
            with self.subTest(cmd=cmd):
                r = run_hsc(cmd)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(what, r.stderr)
                # The hint names a command line that works: "hsc send --help", "hsc --help".
                hint = "hsc %s--help" % (cmd[0] + " " if cmd[0] != "frobnicate" else "")
                self.assertIn(("Try '%s'." % hint).encode(), r.stderr)


class ListenPublish(ServerTestCase):
    def setUp(self):
        self.srv = self.start("--retry", "100ms")
        self.url = "http://%s:%d" % (HOST, self.srv.port)

    def wait_subscribers(self, n):
        def count():
            with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("hsc_subscribers "):
                        return int(line.split()[1])
            return -1
        self.assertTrue(wait_for(lambda: count() >= n, 10 * SLOW), "no subscriber registered")

    def test_listen_formats_and_count(self):
        data = Listener(["--url", self.url, "-c", "news", "--count", "3", "-q"])
        js = Listener(["--url", self.url, "-c", "news", "--format", "json", "--count", "3"])
        raw = Listener(["--url", self.url, "-c", "news", "--format", "raw", "--count", "3"])
        self.wait_subscribers(3)
        ids = [publish(self.srv.port, "news", "one")["id"],
               publish(self.srv.port, "news", "two\nlines", event="upd")["id"],
               publish(self.srv.port, "news", "ünï")["id"]]
        for l in (data, js, raw):
            self.assertEqual(l.proc.wait(15 * SLOW), 0, l.err)
            l._t.join(5)
        self.assertEqual("".join(data.lines), "one\ntwo\nlines\nünï\n")
        self.assertEqual(data.err, b"", "-q prints no connection messages")
        objs = [json.loads(x) for x in js.lines]
        self.assertEqual(objs, [{"type": "message", "data": "one", "id": ids[0], "channel": "news"},
                                {"type": "upd", "data": "two\nlines", "id": ids[1],
                                 "channel": "news"},
                                {"type": "message", "data": "ünï", "id": ids[2],
                                 "channel": "news"}])
        self.assertIn(b"connected to", js.err)
        rawtext = "".join(raw.lines)
        self.assertIn("id: %s\ndata: two\ndata: lines\n" % ids[1], rawtext)
        self.assertTrue(rawtext.startswith("retry: "), rawtext[:40])

    def test_multi_channel_and_timeout(self):
        l = Listener(["--url", self.url, "-c", "a", "-c", "b", "--format", "json",
                      "--timeout", "%ds" % int(3 * SLOW)])
        self.wait_subscribers(1)
        publish(self.srv.port, "a", "1")
        publish(self.srv.port, "b", "2")
        t0 = time.monotonic()
        self.assertEqual(l.proc.wait(20 * SLOW), 0, l.err)
        l._t.join(5)
        self.assertEqual([json.loads(x)["data"] for x in l.lines], ["1", "2"])
        self.assertLess(time.monotonic() - t0, 15 * SLOW)

    def test_json_names_each_events_channel_and_recent_events(self):
        port = self.srv.port
        old = [publish(port, "a", "a0")["id"], publish(port, "b", "b0", event="upd")["id"],
               publish(port, "c", "c0")["id"]]
        # Several channels: hsc asks hscd to tag them (tag=channel) and prints each event's;
        # --history 2: the 2 newest of a and b first. --last-event-id earliest: all they hold.
        js = Listener(["--url", self.url, "-c", "a", "-c", "b", "--history", "2", "--format",
                       "json", "--count", "6", "-q"])
        data = Listener(["--url", self.url, "-c", "b", "-c", "a", "--last-event-id", "earliest",
                         "--count", "6", "-q"])
        one = Listener(["--url", self.url, "-c", "a", "--history", "1", "--format", "json",
                        "--count", "4", "-q"])
        # A resume that cannot be: the notice is about no one channel.
        gap = Listener(["--url", self.url, "-c", "a", "-c", "c", "--last-event-id", "garbage",
                        "--format", "json", "--count", "1", "-q"])
        self.wait_subscribers(4)
        new = [publish(port, "a", "1")["id"], publish(port, "b", "2", event="upd")["id"],
               publish(port, "a", "3")["id"], publish(port, "c", "4")["id"],
               publish(port, "a", "5")["id"]]
        for l in (js, data, one, gap):
            self.assertEqual(l.proc.wait(15 * SLOW), 0, l.err)
            l._t.join(5)

        def ev(type_, data_, id_, channel):
            return {"type": type_, "data": data_, "id": id_, "channel": channel}
        self.assertEqual([json.loads(x) for x in js.lines],
                         [ev("message", "a0", old[0], "a"), ev("upd", "b0", old[1], "b"),
                          ev("message", "1", new[0], "a"), ev("upd", "2", new[1], "b"),
                          ev("message", "3", new[2], "a"), ev("message", "5", new[4], "a")])
        self.assertEqual("".join(data.lines), "a0\nb0\n1\n2\n3\n5\n")
        self.assertEqual([json.loads(x) for x in one.lines],
                         [ev("message", "a0", old[0], "a"), ev("message", "1", new[0], "a"),
                          ev("message", "3", new[2], "a"), ev("message", "5", new[4], "a")])
        got = [json.loads(x) for x in gap.lines]
        self.assertEqual([(g["type"], g["channel"]) for g in got], [("hsc.gap", None),
                                                                   ("message", "a")])
        self.assertEqual(got[1]["id"], new[0])

    def test_ctrl_c_stops_cleanly(self):
        l = Listener(["--url", self.url, "-c", "x"])
        self.wait_subscribers(1)
        t0 = time.monotonic()
        self.assertEqual(l.stop(signal.SIGINT), 0)
        self.assertLess(time.monotonic() - t0, 2 * SLOW)
        no_sanitizer_report(self, l.err)

    def test_last_event_id_flag(self):
        ids = [publish(self.srv.port, "h", str(i))["id"] for i in range(5)]
        r = run_hsc(["listen", "--url", self.url, "-c", "h", "--last-event-id", ids[1],
                     "--count", "3", "-q"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(), "2\n3\n4\n")

    def test_publish_text_and_stdin(self):
        l = Listener(["--url", self.url, "-c", "logs", "--format", "json", "--count", "4", "-q"])
        self.wait_subscribers(1)
        r = run_hsc(["publish", "--url", self.url, "-c", "logs", "-v", "first"])
        self.assertEqual(r.returncode, 0, r.stderr)
        first_id = r.stdout.decode().strip()
        r = run_hsc(["publish", "--url", self.url, "-c", "logs", "-v", "--event", "line", "-"],
                    input=b"alpha\nbeta\r\ngamma")
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = r.stdout.decode().split()
        self.assertEqual(len(ids), 3)
        self.assertEqual(l.proc.wait(15 * SLOW), 0, l.err)
        l._t.join(5)
        got = [json.loads(x) for x in l.lines]
        self.assertEqual([g["data"] for g in got], ["first", "alpha", "beta", "gamma"])
        self.assertEqual([g["id"] for g in got], [first_id] + ids)
        self.assertEqual([g["type"] for g in got], ["message", "line", "line", "line"])

    def test_publish_joins_words_as_send_does(self):
        l = Listener(["--url", self.url, "-c", "words", "--count", "1", "-q"])
        self.wait_subscribers(1)
        r = run_hsc(["publish", "--url", self.url, "-c", "words", "hello", "world"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(l.proc.wait(15 * SLOW), 0, l.err)
        l._t.join(5)
        self.assertEqual(l.lines, ["hello world\n"])
        # "-" is stdin only on its own.
        r = run_hsc(["publish", "--url", self.url, "-c", "words", "-", "x"])
        self.assertEqual(r.returncode, 2, r.stderr)

    def interrupt(self, p, sig=signal.SIGINT):
        """Sends `sig` to `p` and returns its exit status and stderr (bounded; killed by PID
        when it does not stop)."""
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=5 * SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate(timeout=10)
            raise AssertionError("hsc did not stop on signal %d" % sig)
        no_sanitizer_report(self, err)
        return p.returncode, err

    def test_ctrl_c_while_publish_reads_stdin_exits_130(self):
        p = subprocess.Popen([hsc_binary(), "publish", "--url", self.url, "-c", "c", "-v", "-"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        p.stdin.write(b"first\n")
        p.stdin.flush()
        self.assertTrue(p.stdout.readline().strip(), "the first line was not published")
        rc, err = self.interrupt(p)  # hsc is back in getline(), waiting for the next line
        self.assertEqual(rc, 130, err)

    def test_ctrl_c_while_send_reads_stdin_exits_130(self):
        p = subprocess.Popen([hsc_binary(), "send", "--url", self.url], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5 * SLOW)  # hsc waits for the text on stdin
        rc, err = self.interrupt(p)
        self.assertEqual(rc, 130, err)

    def test_publish_refused_lines_are_reported_and_the_rest_published(self):
        r = run_hsc(["publish", "--url", self.url, "-c", "z", "-v", "-"],
                    input=b"good\n\xff\xfe bad\nalso good\n")
        self.assertEqual(r.returncode, 4)
        self.assertIn(b"hsc publish: line 2: HTTP 400: event data is not valid UTF-8", r.stderr)
        self.assertEqual(r.stderr.count(b"\n"), 1, r.stderr)
        self.assertEqual(len(r.stdout.split()), 2)

    def test_bad_channel_exits_4_with_the_reason(self):
        r = run_hsc(["listen", "--url", self.url, "-c", "bad name!", "-q"])
        self.assertEqual(r.returncode, 4)
        self.assertIn(b"HTTP 400: bad channel name", r.stderr)
        r = run_hsc(["publish", "--url", self.url, "-c", "bad name!", "x"])
        self.assertEqual(r.returncode, 4)

    def test_not_an_event_stream_exits_5(self):
        r = run_hsc(["listen", "-q", self.url + "/healthz"], timeout=10)
        self.assertEqual(r.returncode, 5)
        self.assertIn(b"not an event stream", r.stderr)

    def test_publish_server_down_exits_3(self):
        port = free_port()
        r = run_hsc(["publish", "--url", "http://%s:%d" % (HOST, port), "-c", "a", "x"])
        self.assertEqual(r.returncode, 3)
        self.assertEqual(r.stderr.decode(),
                         "hsc publish: cannot connect to %s:%d: connection refused\n"
                         % (HOST, port))

    def test_listen_server_down_says_why_in_hsc_words(self):
        port = free_port()
        r = run_hsc(["listen", "--url", "http://%s:%d" % (HOST, port), "-c", "a",
                     "--timeout", "1s"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("hsc listen: cannot subscribe (cannot connect to %s:%d: connection "
                      "refused); retrying in " % (HOST, port), r.stderr.decode())


class Restart(unittest.TestCase):
    """`hsc listen` across an hscd restart: it reconnects by itself and, as the new run's history
    covers everything published since, loses nothing."""

    def test_listen_survives_a_restart(self):
        port = free_port()
        listen = "%s:%d" % (HOST, port)
        srv = Hscd("--retry", "100ms", listen=listen).start()
        try:
            l = Listener(["--url", "http://" + listen, "-c", "r", "--format", "json"])
            time.sleep(0.5 * SLOW)
            for i in range(3):
                publish(port, "r", "before-%d" % i)
            self.assertTrue(l.wait_lines(3), l.lines)
            self.assertEqual(srv.stop(), 0)
            time.sleep(0.3)
            srv = Hscd("--retry", "100ms", listen=listen).start()
            for i in range(3):
                publish(port, "r", "after-%d" % i)
            self.assertTrue(l.wait_lines(7, timeout=30), (l.lines, l.err))
            self.assertEqual(l.stop(), 0)
            got = [json.loads(x) for x in l.lines]
            datas = [g["data"] for g in got if g["type"] == "message"]
            self.assertEqual(datas, ["before-0", "before-1", "before-2",
                                     "after-0", "after-1", "after-2"])
            gaps = [json.loads(g["data"]) for g in got if g["type"] == "hsc.gap"]
            self.assertEqual([g["reason"] for g in gaps], ["epoch"])
            self.assertIn(b"reconnecting", l.err)
        finally:
            if srv.running():
                srv.stop()


class CApi(unittest.TestCase):
    """examples/ticker.c, a program on include/hsc/client.h, follows a channel across a restart
    and stops itself after COUNT events. hscd's hsc.gap notice (the restart lost history) is
    shown, but it is not one of the COUNT: the ticker waits for a real third event."""

    def test_ticker_follows_a_channel_across_a_restart(self):
        ticker = os.environ.get("HSC_TICKER", "")
        self.assertTrue(ticker and os.access(ticker, os.X_OK), "HSC_TICKER is not set")
        port = free_port()
        listen = "%s:%d" % (HOST, port)
        srv = Hscd("--retry", "100ms", listen=listen).start()
        p = subprocess.Popen([ticker, "http://" + listen, "tick", "3"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            time.sleep(0.5 * SLOW)
            publish(port, "tick", "one")
            publish(port, "tick", "two")
            time.sleep(0.3 * SLOW)
            self.assertEqual(srv.stop(), 0)
            srv = Hscd("--retry", "100ms", listen=listen).start()
            publish(port, "tick", "three")
            out, err = p.communicate(timeout=30 * SLOW)
            self.assertEqual(p.returncode, 0, err)
            lines = out.decode().splitlines()
            self.assertEqual([l.split(" ", 1)[1] for l in lines],
                             ["message: one", "message: two", "hsc.gap: " + lines[2].split(": ", 1)[1],
                              "message: three"])
            self.assertIn('"reason":"epoch"', lines[2])
            self.assertNotEqual(lines[0].split()[0], lines[3].split()[0])
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=10)
            if srv.running():
                srv.stop()


# ---- a server that is not hscd ------------------------------------------------------------------


# U+0000 in each field: an event type and data keep it (WHATWG HTML 9.2.6), an id holding it is
# ignored. "done\0" is a type of its own.
NUL_WIRE = (b"id: 1\nevent: x\0y\ndata: a\0b\n\n"
            b"id: 2\0\nevent: done\0\ndata: \0\n\n")
NUL_EVENTS = [{"type": "x\u0000y", "data": "a\u0000b", "id": "1", "channel": None},
              {"type": "done\u0000", "data": "\u0000", "id": "1", "channel": None}]


class ForeignSSE(http.server.BaseHTTPRequestHandler):
    """Serves /stream: 3 events per connection, numbered on from the client's Last-Event-ID,
    written in awkward pieces (CRLF, CR, a comment, a BOM, a character cut across writes, a bad
    byte), then closes the connection. /text streams plain text the same awkward way. /nul sends
    NUL_WIRE: fields holding U+0000. /flaky sends one event with retry: 400, then answers 503."""

    protocol_version = "HTTP/1.0"
    seen_ids = []
    flaky_hits = 0

    def log_message(self, *a):
        pass

    def do_POST(self):
        """A stand-in for /v1/stream whose answer cuts characters across writes and carries a
        bad byte; the body ends when the connection closes (HTTP/1.0)."""
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith("/nothing/"):
            return  # the connection closes without an answer
        self.send_response(200)
        if self.path.startswith("/cut/"):
            # 100 bytes announced, 8 sent, then the connection closes.
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"partial\n")
            return
        if self.headers.get("Accept") == "text/event-stream":
            # `hsc send --sse`: a "done" type followed by a NUL is another type, not "done".
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b"data: hi\n\nevent: done\0\ndata:\n\n")
            return
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        for part in (b"caf", b"\xc3", b"\xa9 ", b"\xff", b" \xe2\x9c", b"\x93\n"):
            self.wfile.write(part)
            self.wfile.flush()
            time.sleep(0.02)

    def do_GET(self):
        if self.path == "/text":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"not events\n")
            return
        if self.path == "/flaky":
            ForeignSSE.flaky_hits += 1
            if ForeignSSE.flaky_hits > 1:
                self.send_response(503)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"down\n")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b"retry: 400\ndata: x\n\n")
            return
        if self.path == "/cutsse":
            # An event stream announcing more than it sends: cut by the close.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"retry: 50\ndata: x\n\n")
            return
        if self.path == "/nul":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(NUL_WIRE)
            return
        last = self.headers.get("Last-Event-ID")
        ForeignSSE.seen_ids.append(last)
        start = int(last) + 1 if last else 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        parts = [b"\xef\xbb\xbfretry: 50\r\n: hello\r\n\r\n"] if start == 1 else [b"retry: 50\n"]
        for n in range(start, start + 3):
            parts += [b"id: %d\r" % n, b"data: caf\xc3", b"\xa9 %d\n" % n, b"data:x\xff\r\n\r\n"]
        try:
            for part in parts:
                self.wfile.write(part)
                self.wfile.flush()
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped at its --count: expected


class Foreign(unittest.TestCase):
    def setUp(self):
        ForeignSSE.seen_ids = []
        ForeignSSE.flaky_hits = 0
        self.httpd = socketserver.ThreadingTCPServer((HOST, 0), ForeignSSE)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.t.start()

    def tearDown(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def test_listen_any_sse_endpoint_and_resume(self):
        r = run_hsc(["listen", "--format", "json", "--count", "7", "-q",
                     "http://%s:%d/stream" % (HOST, self.port)], timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = [json.loads(x) for x in r.stdout.decode().splitlines()]
        self.assertEqual([g["id"] for g in got], [str(i) for i in range(1, 8)])
        self.assertEqual(got[0]["data"], "café 1\nx\ufffd")
        self.assertEqual(ForeignSSE.seen_ids[:3], [None, "3", "6"])
        no_sanitizer_report(self, r.stderr)

    def test_listen_stdin(self):
        wire = (b"\xef\xbb\xbfdata: a\r\n\r\nevent: t\rdata: b\rid: 7\r\r: c\n"
                b"data: \xe2\x9c\x93\n\ndata: unterminated")
        r = run_hsc(["listen", "--format", "json", "-"], input=wire)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = [json.loads(x) for x in r.stdout.decode().splitlines()]
        self.assertEqual(got, [{"type": "message", "data": "a", "id": "", "channel": None},
                               {"type": "t", "data": "b", "id": "7", "channel": None},
                               {"type": "message", "data": "\u2713", "id": "7",
                                "channel": None}])

    def test_listen_stdin_with_channel_tags(self):
        # hscd's tag=channel stream, saved: each tag names the channel of the events after it
        # (one that is not a channel name unnames it); tags are neither printed nor counted.
        wire = (b"retry: 2000\n: hsc mxd5xpne\n\n"
                b"event: hsc.channel\ndata: news\n\nid: e-1\ndata: x\n\n"
                b"event: upd\nid: e-2\ndata: y\n\n"
                b"event: hsc.channel\ndata: a@b/c\n\nid: e-3\ndata: z\n\n"
                b"event: hsc.channel\ndata: not a name\n\nid: e-4\ndata: w\n\n")
        r = run_hsc(["listen", "--format", "json", "-"], input=wire)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = [json.loads(x) for x in r.stdout.decode().splitlines()]
        self.assertEqual(got, [{"type": "message", "data": "x", "id": "e-1", "channel": "news"},
                               {"type": "upd", "data": "y", "id": "e-2", "channel": "news"},
                               {"type": "message", "data": "z", "id": "e-3", "channel": "a@b/c"},
                               {"type": "message", "data": "w", "id": "e-4", "channel": None}])
        r = run_hsc(["listen", "--count", "2", "-"], input=wire)
        self.assertEqual((r.returncode, r.stdout), (0, b"x\ny\n"))

    def test_listen_json_keeps_nul_in_type_and_data(self):
        for how, args, inp in (("stdin", ["-"], NUL_WIRE),
                               ("http", ["--count", "2", "-q",
                                         "http://%s:%d/nul" % (HOST, self.port)], None)):
            with self.subTest(how):
                r = run_hsc(["listen", "--format", "json"] + args, input=inp, timeout=20)
                self.assertEqual(r.returncode, 0, r.stderr)
                lines = r.stdout.splitlines()
                self.assertEqual([json.loads(x) for x in lines], NUL_EVENTS)
                self.assertIn(b'"type":"x\\u0000y"', lines[0])  # escaped, never cut at the NUL
                no_sanitizer_report(self, r.stderr)

    def test_send_sse_done_type_is_exact(self):
        r = run_hsc(["send", "--sse", "--url", "http://%s:%d" % (HOST, self.port), "x"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout, b"hi")
        self.assertIn(b"without its 'done' event", r.stderr)

    def test_reconnection_waits(self):
        """After a stream: retry: plus up to half again. While the server answers 503: equal
        jitter, each wait in [backoff / 2, backoff], the backoff doubling from retry:."""
        r = run_hsc(["listen", "--timeout", "3s", "--format", "json",
                     "http://%s:%d/flaky" % (HOST, self.port)], timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        err = r.stderr.decode()
        again = [float(x) for x in re.findall(r"reconnecting in ([0-9.]+) s", err)]
        self.assertEqual(len(again), 1, err)
        self.assertTrue(0.4 - 0.05 <= again[0] <= 0.6 + 0.05, err)
        waits = [float(x) for x in re.findall(r"HTTP 503: down\); retrying in ([0-9.]+) s", err)]
        self.assertGreaterEqual(len(waits), 2, err)
        for k, w in enumerate(waits):
            backoff = min(0.4 * 2 ** k, 30.0)
            self.assertTrue(backoff / 2 - 0.05 <= w <= backoff + 0.05, (k, w, err))
        no_sanitizer_report(self, r.stderr)

    def test_max_line_says_the_accepted_range(self):
        for bad in ("10", "63", "17m", "1x", "-5"):
            with self.subTest(bad=bad):
                r = run_hsc(["listen", "--max-line", bad, "-"], input=b"")
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertRegex(r.stderr.decode(), r"--max-line: .*\b64 bytes to 16m\b")
        for good in ("64", "16m", "1k"):
            with self.subTest(good=good):
                r = run_hsc(["listen", "--max-line", good, "-"], input=b"data: a\n\n")
                self.assertEqual((r.returncode, r.stdout), (0, b"a\n"), r.stderr)

    def test_listen_stdin_line_too_long(self):
        r = run_hsc(["listen", "--max-line", "1k", "-"], input=b"data: " + b"x" * 5000 + b"\n\n")
        self.assertEqual(r.returncode, 5)
        self.assertIn(b"longer than --max-line", r.stderr)

    def test_send_text_is_repaired_and_never_cut(self):
        p = subprocess.Popen([hsc_binary(), "send", "--url", "http://%s:%d" % (HOST, self.port),
                              "x"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=20 * SLOW)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out.decode("utf-8"), "caf\u00e9 \ufffd \u2713\n")

    def test_not_an_event_stream(self):
        r = run_hsc(["listen", "-q", "http://%s:%d/text" % (HOST, self.port)], timeout=10)
        self.assertEqual(r.returncode, 5)

    def test_transfer_failures_in_hsc_words(self):
        """curl's wording ("Transferred a partial file", "Empty reply from server") never
        reaches the user: each failure says what happened, and the exit status is the
        documented one."""
        base = "http://%s:%d" % (HOST, self.port)
        r = run_hsc(["send", "--url", base + "/cut", "x"])
        self.assertEqual((r.returncode, r.stdout), (1, b"partial\n"), r.stderr)
        self.assertEqual(r.stderr, b"hsc send: the server closed the stream before it ended\n")
        r = run_hsc(["send", "--url", base + "/nothing", "x"])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(r.stderr.decode(), "hsc send: %s:%d closed the connection without "
                         "answering\n" % (HOST, self.port))
        r = run_hsc(["listen", "--count", "2", base + "/cutsse"])
        self.assertEqual((r.returncode, r.stdout), (0, b"x\nx\n"), r.stderr)
        self.assertIn(b"hsc listen: disconnected (the server closed the stream before it "
                      b"ended); reconnecting in ", r.stderr)


if __name__ == "__main__":
    unittest.main()
