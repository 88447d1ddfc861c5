"""The demo page (web/) in a real browser: headless Chromium from Debian's `chromium` package
(scripts/install-deps.sh), driven by the npm `playwright-core` package (tests/js, installed by
scripts/install-js.sh) through tests/js/browser.mjs, which runs one JSON command per line that this
file sends. Between two browser steps the test acts on the server side: it publishes, cuts a TCP
proxy, restarts hscd, looks at a responder's process. docs/browser.md describes what is observed.

Proves that:
- two pages (two browser contexts) in one room exchange messages both ways: each sees both
  messages once, in order, with the same ids, the sender's name and the exact text (HTML in a
  message is shown as text); a screenshot of the page after the exchange and an answer is
  written to tests/artifacts/demo.png;
- the ask box shows the answer piece by piece: #answer holds a proper, growing prefix of the
  demo answer while #state says "streaming…", before it says "complete" with the whole answer;
- the Stop button ends the answer ("stopped") and hscd kills the --exec responder: its PID is
  gone (reaped) within a bounded time, and the answer stops growing;
- when the page's connection is cut (FIN, then RST) by a proxy between the browser and hscd, the
  events published meanwhile (to nobody: every publish answer says 0 subscribers) are shown once
  each, in order, after Chromium reconnects by itself with Last-Event-ID = the last id shown; no
  gap notice;
- HTTP/1.1 and seven EventSources on one page: Chromium opens six connections to the origin;
  the seventh stays CONNECTING (no error, no events: hscd counts six subscribers and a publish to
  its channel reaches nobody), and so does a plain fetch() to that origin, until one of the six
  is closed; the late seventh does not get what was published while it waited. One EventSource
  with seven `channel=` parameters receives the events of all seven, in publish order. The six
  are shared by every tab of the browser: the demo page in another tab holds one of them (four
  more open, a fifth waits until that tab is closed);
- hscd stopped and started again on the same port: the page (same document, no reload) goes
  to "reconnecting", comes back "live" by itself, shows the epoch notice
  (li.notice[data-reason=epoch]), and chat works again with ids of the new epoch (each start
  there has a data directory of its own); with the same data directory, after kill -9, both
  pages come back by themselves and show every message once, no notice, the same epoch;
- the npm `eventsource` client subscribed to the room receives the messages sent from the page,
  with the same ids and the page's JSON ({"name", "text"});
- cross-origin (pages served by a small Python server on other loopback ports): a page of an
  origin given to --cors-origin subscribes (EventSource), publishes (a preflighted JSON fetch)
  and asks /v1/stream, reading every answer; a page of another origin reads nothing (its
  EventSource fails, its fetches reject, a preflighted publish is never sent), though a simple
  no-cors POST still publishes (CORS is not access control: docs/security.md). Credentials as
  documented: without --cors-credentials the page's hsc_token cookie authorizes nothing
  cross-origin (a withCredentials EventSource fails even though the cookie is valid; a token in
  the query or the Authorization header works); with it, the allowed origin's credentialed
  EventSource and fetch work with the cookie alone, and the other origin still reads nothing.
- a tab opened after messages were sent shows the room's recent messages (what --history keeps,
  typed and untyped, with the same ids and none of another room), then live ones, each once, and
  no notice; the page asks with lastEventId=earliest, and when Chromium reconnects by itself its
  Last-Event-ID wins over that (the cut test above sees the same URL with the header).
Missing Chromium, node or playwright-core is a failure, never a skip. The browser (every process
of it) is killed in each test's cleanup, and each test asserts that the pages had no uncaught
JavaScript error.
"""

import glob
import http.server
import json
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from hscd import HOST, SLOW, Hscd, ServerTestCase, free_port, pieces, wait_for
from test_channels import Publisher, metric, split_id
from test_eventsource import JS_DIR, CuttableProxy, EsClient
from test_exec import alive, responder

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DRIVER = os.path.join(JS_DIR, "browser.mjs")
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")


def prerequisites():
    """node, Chromium and playwright-core, or an AssertionError saying how to install them."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise AssertionError("node is not installed: run scripts/install-deps.sh")
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError("%s is missing: run scripts/install-deps.sh (Debian package "
                             "chromium)" % CHROMIUM)
    if not os.path.isfile(os.path.join(JS_DIR, "node_modules", "playwright-core",
                                       "package.json")):
        raise AssertionError("%s/node_modules has no playwright-core: run scripts/install-js.sh"
                             % JS_DIR)
    return node


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def proc_pgid(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[2])


def live_pids(match):
    """PIDs of live (not zombie) processes for which match(pid) is true."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid() and match(int(name)) and alive(int(name)):
            out.append(int(name))
    return out


class BrowserError(AssertionError):
    pass


class Browser:
    """tests/js/browser.mjs as a subprocess: commands out on its stdin, JSON lines back.

    The node process gets HOME and TMPDIR in a directory of its own, so every Chromium process
    (Playwright's profile, crashpad's database) names that directory on its command line: the
    cleanup kills exactly those processes (and Chromium's process group) by PID, whatever state
    the driver is in."""

    def __init__(self, chromium_args=()):
        node = prerequisites()
        self.dir = tempfile.mkdtemp(prefix="hsc-browser-")
        env = dict(os.environ, HOME=self.dir, TMPDIR=self.dir)
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [node, DRIVER, "--timeout", str(int(150 * SLOW)), "--executable", CHROMIUM]
            + [x for a in chromium_args for x in ("--arg", a)],
            cwd=JS_DIR, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, start_new_session=True)
        self.replies = queue.Queue()
        self.log = []  # every line that is not a reply: console, pageerror, crash
        self.next_id = 1
        self.chromium_pgid = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.version = self._reply(30 * SLOW, "ready")["version"]
        except BaseException:
            self.close()
            raise
        # Chromium runs as a child of node, in a process group of its own (Playwright detaches it).
        for pid in live_pids(lambda p: self.dir.encode() in proc_cmdline(p)):
            if b"--type=" not in proc_cmdline(pid) and b"crashpad" not in proc_cmdline(pid):
                self.chromium_pgid = proc_pgid(pid)

    def _read(self):
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                self.log.append({"t": "bad", "line": raw.decode("utf-8", "replace")})
                continue
            if msg.get("t") in ("reply", "ready"):
                self.replies.put(msg)
            else:
                self.log.append(msg)
        self.replies.put({"t": "eof"})

    def stderr_text(self):
        if self.stderr.closed:  # after close(): what it kept
            return self.stderr_final
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def describe(self):
        lines = [json.dumps(x, ensure_ascii=False)[:400] for x in self.log[-40:]]
        return "--- browser.mjs (Chromium %s) output ---\n%s\n--- its stderr ---\n%s" % (
            getattr(self, "version", "?"), "\n".join(lines), self.stderr_text()[-4000:])

    def _reply(self, timeout, kind, cid=None):
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.replies.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise BrowserError("no %s from browser.mjs within %.0f s\n%s"
                                   % (kind, timeout, self.describe())) from None
            if msg["t"] == "eof":
                raise BrowserError("browser.mjs exited (status %s) waiting for %s\n%s"
                                   % (self.proc.wait(10), kind, self.describe()))
            if msg["t"] == kind and (cid is None or msg.get("id") == cid):
                return msg

    def call(self, op, timeout=10, **kw):
        """Runs one command; its value, or BrowserError. `timeout` (seconds, scaled) bounds the
        command in the browser; the reply is awaited a little longer."""
        cid = self.next_id
        self.next_id += 1
        kw.update(id=cid, op=op, ms=int(timeout * SLOW * 1000))
        self.proc.stdin.write((json.dumps(kw) + "\n").encode("utf-8"))
        self.proc.stdin.flush()
        msg = self._reply(timeout * SLOW + 15, "reply", cid)
        if not msg["ok"]:
            raise BrowserError("%s %s: %s" % (op, json.dumps(
                {k: v for k, v in kw.items() if k not in ("id", "op", "ms")},
                ensure_ascii=False)[:300], msg["error"]))
        return msg["value"]

    def open(self, page, url, context=None):
        return self.call("open", 30, page=page, url=url, context=context or page)

    def goto(self, page, url):
        return self.call("goto", 30, page=page, url=url)

    def fill(self, page, sel, value):
        return self.call("fill", page=page, sel=sel, value=value)

    def click(self, page, sel):
        return self.call("click", page=page, sel=sel)

    def eval(self, page, fn, arg=None):
        return self.call("eval", page=page, fn=fn, arg=arg)

    def wait(self, page, fn, arg=None, timeout=10, what=None):
        """Polls fn(arg) in the page until it is truthy (at most `timeout` seconds, scaled);
        returns that value. Fails with `what` and the browser's output otherwise."""
        try:
            return self.call("wait", timeout, page=page, fn=fn, arg=arg)
        except BrowserError as e:
            raise BrowserError("%s\n%s" % (what or "wait failed", e)) from None

    def screenshot(self, page, path):
        return self.call("screenshot", 20, page=page, path=path)

    def page_errors(self):
        return [x for x in list(self.log) if x.get("t") in ("pageerror", "crash")]

    def processes(self):
        """Live processes of this browser (node excluded)."""
        return live_pids(lambda p: self.dir.encode() in proc_cmdline(p)
                         or (self.chromium_pgid is not None and proc_pgid(p) == self.chromium_pgid))

    def close(self):
        """Closes the browser (the quit command, then SIGKILL by PID for whatever is left);
        returns the PIDs that were still alive after all that (an empty list)."""
        try:
            try:
                if self.proc.poll() is None:
                    self.proc.stdin.write(b'{"id":0,"op":"quit"}\n')
                    self.proc.stdin.flush()
                self.proc.stdin.close()
            except OSError:
                pass
            if self.proc.poll() is None:
                try:
                    self.proc.wait(15 * SLOW)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            for pid in self.processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_for(lambda: not self.processes(), 10)
            return self.processes()
        finally:
            self._reader.join(10)
            self.proc.stdout.close()
            self.stderr_final = self.stderr_text()  # for describe() when the test has failed
            self.stderr.close()
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- what the tests ask the page -----------------------------------------------------------

MESSAGES = """() => [...document.querySelectorAll('#messages li.msg')].map(li => ({
  id: li.dataset.id, who: li.querySelector('.who').textContent,
  text: li.querySelector('.text').textContent, mine: li.classList.contains('mine'),
  html: li.querySelector('.text').innerHTML}))"""
COUNT_AT_LEAST = "(n) => document.querySelectorAll('#messages li.msg').length >= n"
LIVE = "() => document.getElementById('conn').dataset.state === 'live'"
CONN = "() => document.getElementById('conn').dataset.state"
# Once the page has finished sending: {error: ""} when the POST succeeded (the input is cleared).
SENT = """() => { const $ = (id) => document.getElementById(id);
  const error = $('say-error').textContent;
  return !$('send').disabled && ($('text').value === '' || error !== '') && {error}; }"""
ASK_STATE = """() => ({state: document.getElementById('state').textContent,
  answer: document.getElementById('answer').textContent,
  stop: document.getElementById('stop').disabled,
  meta: document.getElementById('ask-meta').textContent})"""
# Records every change of #state, #answer and #conn's data-state, with its time.
RECORD = """() => {
  const $ = (id) => document.getElementById(id);
  window.__snaps = [];
  const rec = () => window.__snaps.push({t: performance.now(), state: $('state').textContent,
    answer: $('answer').textContent, conn: $('conn').dataset.state});
  const mo = new MutationObserver(rec);
  for (const id of ['state', 'answer', 'conn'])
    mo.observe($(id), {childList: true, characterData: true, subtree: true, attributes: true});
  rec();
  return true;
}"""
SNAPS = "() => window.__snaps"


def chat_body(name, text):
    """A chat message as the page publishes it (web/app.js: JSON.stringify({name, text}))."""
    return json.dumps({"name": name, "text": text}, ensure_ascii=False, separators=(",", ":"))


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise AssertionError("%s is not a PNG: %r" % (path, head))
    return struct.unpack(">II", head[16:24])


class PageServer:
    """A blank HTML page on a loopback port of its own: the origin of a cross-origin page
    (http://127.0.0.1:PORT, another origin than hscd's). Python's http.server, in a thread."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<!doctype html><meta charset=utf-8><title>a page</title>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = "http://%s:%d" % (HOST, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


# An EventSource named `name` on `url`; window.__got[name] collects its data and errors.
OPEN_ES = """({name, url, creds}) => {
  window.__es = window.__es || {}; window.__got = window.__got || {};
  const es = new EventSource(url, {withCredentials: creds});
  window.__es[name] = es; window.__got[name] = [];
  es.onmessage = (e) => window.__got[name].push(e.data);
  es.onerror = () => window.__got[name].push('error:' + es.readyState);
  return true;
}"""
# fetch(url, init): {status, type, body} when the page may read the answer, {error} otherwise.
FETCH = """async ({url, init}) => {
  try {
    const r = await fetch(url, init);
    return {status: r.status, type: r.type, body: await r.text()};
  } catch (e) { return {error: e.name}; }
}"""


class BrowserCase(ServerTestCase):

    def run(self, result=None):
        self._browsers = []
        before = len(result.failures) + len(result.errors) if result is not None else 0
        ret = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            for b in self._browsers:
                sys.stderr.write("\n[%s]\n%s\n" % (self.id(), b.describe()))
            sys.stderr.flush()
        return ret

    def browser(self):
        """A new browser, closed (every process killed) when the test ends, before the servers
        are stopped; the test fails if a page had an uncaught error or a process survived."""
        b = Browser()
        self._browsers.append(b)
        self.addCleanup(self._close_browser, b)
        return b

    def _close_browser(self, b):
        errors = b.page_errors()
        left = b.close()
        self.assertEqual(left, [], "browser processes left after the cleanup")
        self.assertEqual(errors, [], "uncaught errors in the pages")

    def page_url(self, port, room, name):
        return "http://%s:%d/?%s" % (HOST, port, urllib.parse.urlencode({"room": room,
                                                                            "name": name}))

    def join(self, b, page, port, room, name, context=None):
        """Opens the demo page in `room` as `name` and waits until its EventSource is live."""
        self.assertEqual(b.open(page, self.page_url(port, room, name), context), 200)
        b.wait(page, LIVE, timeout=10, what="%s's page never went live" % name)
        self.assertEqual(b.eval(page, "() => document.getElementById('name').value"), name)
        self.assertEqual(b.eval(page, "() => document.getElementById('room').value"), room)

    def say(self, b, page, text):
        """Types `text` in the page and clicks Send; waits until the POST has succeeded."""
        b.fill(page, "#text", text)
        b.click(page, "#send")
        res = b.wait(page, SENT, timeout=10, what="the page did not finish sending %r" % text)
        self.assertEqual(res, {"error": ""}, "the page could not send %r" % text)

    def messages(self, b, page, n, timeout=10):
        """The page's messages once it shows at least `n`."""
        b.wait(page, COUNT_AT_LEAST, n, timeout=timeout,
               what="the page shows fewer than %d messages: %r" % (n, b.eval(page, MESSAGES)))
        return b.eval(page, MESSAGES)

    def subscribers(self, srv, n, timeout=10):
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == n, timeout),
                        "hsc_subscribers is %s, expected %d" % (metric(srv, "hsc_subscribers"), n))


class Chat(BrowserCase):

    def test_two_pages_exchange_messages_both_ways_and_a_screenshot(self):
        srv = self.start("--max-gen-len", "3", "--interval", "50ms")
        b = self.browser()
        self.join(b, "alice", srv.port, "room-1", "alice")
        self.join(b, "bob", srv.port, "room-1", "bob")
        self.subscribers(srv, 2)
        text_a = "hello bob, <b>not bold</b> & 你好 🚀"
        text_b = "hi alice"
        self.say(b, "alice", text_a)
        self.messages(b, "bob", 1)
        self.say(b, "bob", text_b)
        seen = {p: self.messages(b, p, 2) for p in ("alice", "bob")}
        for page, msgs in seen.items():
            self.assertEqual([(m["who"], m["text"]) for m in msgs],
                             [("alice", text_a), ("bob", text_b)], page)
            self.assertEqual([m["mine"] for m in msgs], [page == "alice", page == "bob"], page)
            self.assertNotIn("<b>", msgs[0]["html"], "a message's HTML was interpreted")
        ids = [m["id"] for m in seen["alice"]]
        self.assertEqual(ids, [m["id"] for m in seen["bob"]])
        self.assertLess(split_id(ids[0])[1], split_id(ids[1])[1])
        time.sleep(0.3 * SLOW)  # nothing more arrives (each message once)
        for page in ("alice", "bob"):
            self.assertEqual(len(b.eval(page, MESSAGES)), 2, page)

        # f: the page after the exchange, with an answer, as a test artifact.
        b.click("alice", "#go")
        b.wait("alice", "() => document.getElementById('state').textContent === 'complete'",
               timeout=10, what="the answer did not complete")
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, "demo.png")
        if os.path.exists(path):
            os.unlink(path)
        self.assertEqual(b.screenshot("alice", path), path)
        width, height = png_size(path)
        self.assertEqual(width, 1000)  # the viewport's width (browser.mjs)
        self.assertGreaterEqual(height, 400)
        self.assertGreater(os.path.getsize(path), 10000)
        sys.stderr.write("[artifact] %s (%dx%d, Chromium %s)\n" % (path, width, height, b.version))

    def test_the_chat_survives_kill9_and_a_restart(self):
        # The journal (docs/internals/journal.md): hscd killed with SIGKILL and started again on
        # the same port and data directory; both pages reconnect by themselves with their last
        # id and see every message once, with no notice (no hsc.gap).
        data = tempfile.mkdtemp(prefix="hsc-journal-browser-")
        self.addCleanup(shutil.rmtree, data, True)
        listen = "%s:%d" % (HOST, free_port())

        def launch():
            s = Hscd("--data-dir", data, "--retry", "300ms", listen=listen)
            self._servers.append(s)
            self.addCleanup(lambda: s._kill() if s.running() else None)
            return s.start()

        srv = launch()
        b = self.browser()
        self.join(b, "alice", srv.port, "room-k9", "alice")
        self.join(b, "bob", srv.port, "room-k9", "bob")
        self.subscribers(srv, 2)
        self.say(b, "alice", "before the crash")
        self.say(b, "bob", "me too")
        for page in ("alice", "bob"):
            self.messages(b, page, 2)
        srv.send_signal(signal.SIGKILL)
        srv.wait(10 * SLOW)
        srv = launch()
        self.subscribers(srv, 2, timeout=30)
        for page in ("alice", "bob"):
            b.wait(page, LIVE, timeout=20, what="%s's page did not come back" % page)
        pub = Publisher(srv)
        self.addCleanup(pub.close)
        pub.publish("room-k9", chat_body("zoe", "after the restart"), event="chat")
        self.say(b, "alice", "still here")
        want = ["before the crash", "me too", "after the restart", "still here"]
        seen = {page: self.messages(b, page, 4) for page in ("alice", "bob")}
        time.sleep(0.3 * SLOW)  # nothing more arrives (each message once)
        for page in ("alice", "bob"):
            msgs = b.eval(page, MESSAGES)
            self.assertEqual([m["text"] for m in msgs], want, page)
            seqs = [split_id(m["id"])[1] for m in msgs]
            self.assertEqual(seqs, sorted(set(seqs)), page)
            self.assertEqual(len({split_id(m["id"])[0] for m in msgs}), 1, "the epoch changed")
            self.assertEqual(b.eval(page, "() => document.querySelectorAll('li.notice').length"),
                             0, "%s's page showed a notice: a gap after the restart" % page)
        self.assertEqual([m["id"] for m in seen["alice"]], [m["id"] for m in seen["bob"]])
        self.stop_clean(srv)

    def test_a_new_tab_shows_the_recent_messages(self):
        srv = self.start("--history", "4")
        b = self.browser()
        self.join(b, "alice", srv.port, "recent", "alice")
        for t in ("one", "two", "three"):
            self.say(b, "alice", t)
        pub = Publisher(srv)
        self.addCleanup(pub.close)
        pub.publish("recent", "four")  # untyped, as curl -d or hsc publish sends it
        pub.publish("recent", chat_body("zoe", "five"), event="chat")
        pub.publish("other-room", chat_body("zoe", "not here"), event="chat")
        shown_a = self.messages(b, "alice", 5)
        self.assertEqual([m["text"] for m in shown_a], ["one", "two", "three", "four", "five"])
        # A tab opened now shows what the room still holds (--history 4: the last four), in
        # order, with the same ids; then it is live like the first one, each message once.
        self.join(b, "bob", srv.port, "recent", "bob")
        shown_b = self.messages(b, "bob", 4)

        def key(msgs):
            return [(m["id"], m["who"], m["text"]) for m in msgs]
        self.assertEqual(key(shown_b), key(shown_a[1:]))
        self.say(b, "bob", "hi, I just came")
        shown_a = self.messages(b, "alice", 6)
        shown_b = self.messages(b, "bob", 5)
        time.sleep(0.3 * SLOW)  # nothing more arrives
        shown_a, shown_b = b.eval("alice", MESSAGES), b.eval("bob", MESSAGES)
        self.assertEqual(len(shown_a), 6)
        self.assertEqual(key(shown_b), key(shown_a[1:]))
        self.assertEqual(shown_b[-1]["text"], "hi, I just came")
        self.assertTrue(shown_b[-1]["mine"])
        for page in ("alice", "bob"):
            self.assertEqual(b.eval(page, "() => document.querySelectorAll('li.notice').length"),
                             0, "an explicit 'earliest' is not a resume: no notice")
        # Its last id is the newest message's: a reconnection resumes after it.
        self.assertEqual(b.eval("bob", "() => window.hscChat.lastId"), shown_b[-1]["id"])

    def test_npm_eventsource_client_receives_what_the_page_sends(self):
        srv = self.start()
        texts = ["one", "héllo wörld 🚀", 'quotes " and \\ backslash']
        es = EsClient(srv.url("/v1/events?channel=mixed"), types=["chat"],
                      until=chat_body("gina", texts[-1]), timeout=60)
        self.addCleanup(es.close)
        self.assertTrue(wait_for(lambda: es.of("open"), 20), "no open: %r" % es.lines)
        self.subscribers(srv, 1)
        b = self.browser()
        self.join(b, "gina", srv.port, "mixed", "gina")
        self.subscribers(srv, 2)
        for t in texts:
            self.say(b, "gina", t)
        shown = self.messages(b, "gina", 3)
        rc, err = es.wait_exit()
        self.assertEqual(rc, 0, "es_client: %s %r" % (err, es.lines))
        evs = es.events()
        self.assertEqual([e["type"] for e in evs], ["chat"] * 3)
        self.assertEqual([json.loads(e["data"]) for e in evs],
                         [{"name": "gina", "text": t} for t in texts])
        self.assertEqual([e["id"] for e in evs], [m["id"] for m in shown])
        self.assertEqual([m["text"] for m in shown], texts)


class Ask(BrowserCase):

    def test_answer_arrives_piece_by_piece_then_completes(self):
        n, interval = 6, 0.25
        srv = self.start("--max-gen-len", str(n), "--interval", "250ms")
        b = self.browser()
        self.join(b, "p", srv.port, "ask", "asker")
        self.assertEqual(b.eval("p", ASK_STATE)["state"], "idle")
        text = "Wake up, Neo — 你好"
        full = "".join(pieces(n, text))
        b.eval("p", RECORD)
        b.fill("p", "#q", text)
        b.click("p", "#go")
        # Seen live: part of the answer while it streams.
        part = b.wait("p", """() => { const s = document.getElementById('state').textContent,
            a = document.getElementById('answer').textContent;
            return a.length > 0 && {state: s, answer: a}; }""", timeout=10,
                      what="no piece of the answer appeared")
        self.assertEqual(part["state"], "streaming…", part)
        self.assertTrue(full.startswith(part["answer"]) and part["answer"] != full, part)
        b.wait("p", "() => document.getElementById('state').textContent !== 'streaming…'",
               timeout=20, what="the answer did not end")
        final = b.eval("p", ASK_STATE)
        self.assertEqual(final["state"], "complete", final)
        self.assertEqual(final["answer"], full)
        self.assertTrue(final["stop"], "Stop is still enabled after the answer")
        self.assertRegex(final["meta"], r"^first piece after \d+ ms, \d+ ms in all$")
        # Every state the page went through: growing prefixes while "streaming…", then complete.
        snaps = b.eval("p", SNAPS)
        partial = [s for s in snaps if s["state"] == "streaming…" and s["answer"]
                   and s["answer"] != full]
        lengths = sorted({len(s["answer"]) for s in partial})
        self.assertGreaterEqual(len(lengths), n - 2, "too few intermediate states: %r" % partial)
        for s in partial:
            self.assertTrue(full.startswith(s["answer"]), s)
        done = [s for s in snaps if s["state"] == "complete"]
        self.assertTrue(done and done[0]["answer"] == full, done[:1])
        self.assertGreaterEqual(done[0]["t"] - partial[0]["t"], (n - 2) * interval * 1000 * 0.8,
                                "the pieces did not arrive over time: %r" % snaps)
        self.assertEqual([s["state"] for s in snaps if s["state"] not in
                          ("idle", "streaming…", "complete")], [])

    def test_stop_kills_the_responder(self):
        pid_dir = tempfile.mkdtemp(prefix="hsc-browser-pids-")
        self.addCleanup(shutil.rmtree, pid_dir, True)
        # exec: python is hscd's own child, so hscd reaps it and its PID disappears.
        srv = self.start("--exec", responder("pieces", 300, 100, pid_dir=pid_dir, exec_=True))
        self.addCleanup(self._kill_responders, pid_dir)
        b = self.browser()
        self.join(b, "p", srv.port, "stop", "stopper")
        b.fill("p", "#q", "stop me")
        b.click("p", "#go")
        b.wait("p", "() => document.getElementById('answer').textContent.includes('piece 3/300')",
               timeout=15, what="the responder's pieces did not arrive")
        pid_files = wait_for(lambda: glob.glob(os.path.join(pid_dir, "*.pid")), 10)
        self.assertEqual(len(pid_files), 1, pid_files)
        with open(pid_files[0]) as f:
            pid = int(f.read().split()[0])
        self.assertTrue(alive(pid), "the responder ended before Stop")
        self.assertEqual(b.eval("p", ASK_STATE)["state"], "streaming…")
        self.assertFalse(b.eval("p", ASK_STATE)["stop"], "Stop is disabled while streaming")
        b.click("p", "#stop")
        st = b.wait("p", """() => document.getElementById('state').textContent !== 'streaming…'
                    && document.getElementById('state').textContent""", timeout=5,
                    what="#state did not change after Stop")
        self.assertEqual(st, "stopped")
        t0 = time.monotonic()

        def gone():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False
        self.assertTrue(wait_for(gone, 5, step=0.01),
                        "the responder (pid %d) is still there 5 s after Stop: %r"
                        % (pid, proc_cmdline(pid)))
        took = time.monotonic() - t0
        answer = b.eval("p", ASK_STATE)["answer"]
        self.assertIn("piece 3/300", answer)
        self.assertNotIn("piece 300/300", answer)
        time.sleep(0.3 * SLOW)
        after = b.eval("p", ASK_STATE)
        self.assertEqual(after["answer"], answer, "the answer grew after Stop")
        self.assertEqual(after["state"], "stopped")
        self.assertTrue(after["stop"], "Stop is still enabled")
        sys.stderr.write("[numbers] responder gone %.0f ms after the page said stopped\n"
                         % (took * 1000))

    def _kill_responders(self, pid_dir):
        for path in glob.glob(os.path.join(pid_dir, "*.pid")):
            with open(path) as f:
                for pid in [int(x) for x in f.read().split()]:
                    if alive(pid) and pid_dir.encode() in proc_cmdline(pid):
                        os.kill(pid, signal.SIGKILL)


class Connection(BrowserCase):

    def test_dropped_connection_resumes_every_message_once(self):
        # --retry 1s (3 s under ASan): Chromium waits that long (plus up to 50 %) before it
        # reconnects, time to publish meanwhile; each publish answer proves nobody was there.
        srv = self.start("--retry", "%dms" % int(1000 * SLOW))
        proxy = CuttableProxy(srv.port)
        proxy.start()
        self.addCleanup(proxy.stop)
        b = self.browser()
        self.join(b, "p", proxy.port, "blip", "carol")
        self.subscribers(srv, 1)
        pub = Publisher(srv)
        self.addCleanup(pub.close)
        expected = []  # (id, text)

        def publish(text):
            ans = pub.publish("blip", chat_body("dave", text), event="chat")
            expected.append((ans["id"], text))
            return ans

        for i in range(2):
            publish("before-%d" % i)
        self.messages(b, "p", 2)
        for rnd, rst in enumerate((False, True)):
            last_shown = b.eval("p", MESSAGES)[-1]["id"]
            n_heads = len(proxy.heads)
            proxy.cut(rst=rst)
            self.subscribers(srv, 0, timeout=5)
            b.wait("p", "() => document.getElementById('conn').dataset.state === 'reconnecting'",
                   timeout=5, what="the page did not notice the cut (round %d)" % rnd)
            for i in range(5):
                ans = publish("cut%d-%d" % (rnd, i))
                self.assertEqual(ans["subscribers"], 0, "published while the page was connected")
            self.messages(b, "p", len(expected), timeout=15)
            b.wait("p", LIVE, timeout=10, what="the page is not live again (round %d)" % rnd)
            # Chromium reconnected by itself, with the last id the page had shown.
            events = [h for h in proxy.heads[n_heads:] if h.startswith("GET /v1/events?")]
            self.assertEqual(len(events), 1, proxy.heads[n_heads:])
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in events[0].split("\r\n")[1:])}
            self.assertEqual(headers.get("last-event-id"), last_shown, events[0])
            # The same URL, which asks for the room's recent messages: the header wins.
            self.assertIn("&lastEventId=earliest ", events[0], events[0])
        time.sleep(0.3 * SLOW)
        shown = b.eval("p", MESSAGES)
        ids = [m["id"] for m in shown]
        self.assertEqual(len(ids), len(set(ids)), "duplicates: %r" % ids)
        self.assertEqual([(m["id"], m["text"]) for m in shown], expected)
        self.assertEqual(b.eval("p", "() => document.querySelectorAll('li.notice').length"), 0)
        self.assertEqual(b.eval("p", "() => window.hscChat.lastId"), expected[-1][0])
        self.assertIsNone(proxy.error)

    def test_more_than_six_event_sources_and_one_for_seven_channels(self):
        srv = self.start()
        b = self.browser()
        # A page of the same origin that holds no connection of its own (the demo page's
        # EventSource would be one of the six).
        self.assertEqual(b.open("p", srv.url("/healthz")), 200)
        chans = ["c%d" % i for i in range(1, 8)]
        b.eval("p", """(chans) => {
          window.__es = []; window.__got = {};
          for (const ch of chans) {
            const es = new EventSource('/v1/events?channel=' + ch);
            window.__got[ch] = [];
            es.onmessage = (e) => window.__got[ch].push(e.data);
            es.onerror = () => window.__got[ch].push('error:' + es.readyState);
            window.__es.push(es);
          }
          return true;
        }""", chans)
        states = "() => window.__es.map((es) => es.readyState)"
        b.wait("p", "() => (%s)().filter((s) => s === 1).length >= 6" % states, timeout=10,
               what="six EventSources did not open: %r" % b.eval("p", states))
        self.subscribers(srv, 6)
        time.sleep(1.0 * SLOW)  # the seventh waits: no error, no timeout
        self.assertEqual(b.eval("p", states), [1, 1, 1, 1, 1, 1, 0])
        self.assertEqual(metric(srv, "hsc_subscribers"), 6)
        pub = Publisher(srv)
        self.addCleanup(pub.close)
        reached = [pub.publish(ch, "to-" + ch)["subscribers"] for ch in chans]
        self.assertEqual(reached, [1, 1, 1, 1, 1, 1, 0])
        got = "() => window.__got"
        b.wait("p", "() => Object.values(window.__got).filter((g) => g.length > 0).length >= 6",
               timeout=10, what="the six open EventSources did not all get their event")
        time.sleep(0.3 * SLOW)
        self.assertEqual(b.eval("p", got),
                         dict({ch: ["to-" + ch] for ch in chans[:6]}, c7=[]))
        # A fetch() to the origin waits too: the six connections are all there is.
        fetched = b.eval("p", """async () => {
          const ac = new AbortController();
          const timer = setTimeout(() => ac.abort(), 1500);
          try { await fetch('/healthz', {signal: ac.signal, cache: 'no-store'}); return 'done'; }
          catch (e) { return e.name; } finally { clearTimeout(timer); }
        }""")
        self.assertEqual(fetched, "AbortError", "a seventh request to the origin was not held")
        # Closing one lets the seventh connect; it does not get what it missed.
        b.eval("p", "() => { window.__es[0].close(); return true; }")
        b.wait("p", "() => window.__es[6].readyState === 1", timeout=10,
               what="the seventh did not connect once one of the six closed")
        self.subscribers(srv, 6)
        self.assertEqual(pub.publish("c7", "late-c7")["subscribers"], 1)
        b.wait("p", "() => window.__got.c7.length > 0", timeout=10, what="c7 got nothing")
        time.sleep(0.2 * SLOW)
        self.assertEqual(b.eval("p", "() => window.__got.c7"), ["late-c7"])

        # One EventSource, seven channels: one connection, every event.
        b.eval("p", "() => { for (const es of window.__es) es.close(); return true; }")
        self.subscribers(srv, 0)
        b.eval("p", """(chans) => {
          window.__multi = [];
          const q = chans.map((c) => 'channel=' + encodeURIComponent(c)).join('&');
          const es = new EventSource('/v1/events?' + q);
          es.onmessage = (e) => window.__multi.push([e.lastEventId, e.data]);
          window.__one = es;
          return true;
        }""", chans)
        b.wait("p", "() => window.__one.readyState === 1", timeout=10,
               what="the seven-channel EventSource did not open")
        self.subscribers(srv, 1)
        sent = [(pub.publish(ch, "multi-" + ch)["id"], "multi-" + ch) for ch in chans]
        multi = b.wait("p", "() => window.__multi.length >= 7 && window.__multi", timeout=10,
                       what="the seven-channel EventSource did not get seven events")
        time.sleep(0.2 * SLOW)
        self.assertEqual([tuple(x) for x in b.eval("p", "() => window.__multi")], sent)
        self.assertEqual(len(multi), 7)

        # The six are per browser (profile), not per page: a demo page in another tab of the
        # same browser holds one of them with its EventSource.
        self.join(b, "demo", srv.port, "lobby", "tab", context="p")
        self.subscribers(srv, 2)
        b.eval("p", """() => {
          window.__more = [];
          for (let i = 1; i <= 5; i++)
            window.__more.push(new EventSource('/v1/events?channel=d' + i));
          return true;
        }""")
        more = "() => window.__more.map((es) => es.readyState)"
        b.wait("p", "() => (%s)().filter((s) => s === 1).length >= 4" % more, timeout=10,
               what="four more EventSources did not open: %r" % b.eval("p", more))
        self.subscribers(srv, 6)
        time.sleep(0.5 * SLOW)
        self.assertEqual(b.eval("p", more), [1, 1, 1, 1, 0])
        # Closing the demo tab frees its connection for the waiting one.
        b.call("close", page="demo")
        b.wait("p", "() => window.__more[4].readyState === 1", timeout=10,
               what="the fifth did not connect once the demo tab was closed")
        self.subscribers(srv, 6)

    def test_restart_on_the_same_port_reconnects_with_an_epoch_notice(self):
        args = ("--drain-timeout", "1s", "--retry", "300ms")
        srv = self.start(*args)
        port = srv.port
        b = self.browser()
        self.join(b, "p", port, "restart", "erin")
        self.say(b, "p", "before the restart")
        before = self.messages(b, "p", 1)
        b.eval("p", "() => { window.__sameDocument = true; return true; }")
        b.eval("p", RECORD)
        self.stop_clean(srv)
        b.wait("p", "() => document.getElementById('conn').dataset.state !== 'live'", timeout=10,
               what="the page did not notice that hscd stopped")
        srv2 = self.start(*args, listen="%s:%d" % (HOST, port))
        notice = b.wait("p", """() => { const n = document.querySelector(
              '#messages li.notice[data-reason=epoch]');
            return n && document.getElementById('conn').dataset.state === 'live'
              && n.textContent; }""", timeout=20,
                        what="no epoch notice, or not live again: %r" % b.eval("p", CONN))
        self.assertIn("server restarted", notice)
        self.assertTrue(b.eval("p", "() => window.__sameDocument === true"), "the page reloaded")
        conns = [s["conn"] for s in b.eval("p", SNAPS)]
        self.assertIn("reconnecting", conns)
        self.assertEqual(conns[-1], "live")
        self.say(b, "p", "after the restart")
        after = self.messages(b, "p", 2)
        self.assertEqual([m["text"] for m in after],
                         ["before the restart", "after the restart"])
        self.assertEqual(after[0]["id"], before[0]["id"])
        self.assertNotEqual(split_id(after[1]["id"])[0], split_id(before[0]["id"])[0],
                            "the new message's id is not of a new epoch")
        self.assertEqual(b.eval("p", "() => document.querySelectorAll('li.notice').length"), 1)
        self.assertEqual(metric(srv2, "hsc_subscribers"), 1)


class CrossOrigin(BrowserCase):
    """Pages of other origins than hscd's, with and without --cors-credentials."""

    TOKEN = "cookie-s3cret"

    def setup_pages(self, *args):
        """hscd allowing one origin (args added), and a browser with two blank pages in one
        context (one cookie jar): "ok" on the allowed origin, "evil" on another."""
        ok, evil = PageServer(), PageServer()
        self.addCleanup(evil.close)
        self.addCleanup(ok.close)
        srv = self.start("--cors-origin", ok.origin, "--subscribe-token", self.TOKEN,
                         "--publish-token", self.TOKEN, "--max-gen-len", "3",
                         "--interval", "20ms", *args)
        b = self.browser()
        self.assertEqual(b.open("ok", ok.origin + "/", context="p"), 200)
        self.assertEqual(b.open("evil", evil.origin + "/", context="p"), 200)
        return srv, b

    def es(self, b, page, name, url, creds=False):
        b.eval(page, OPEN_ES, {"name": name, "url": url, "creds": creds})

    def es_state(self, b, page, name, state):
        """Waits until EventSource `name` is OPEN (1) or CLOSED (2, it failed)."""
        b.wait(page, "(a) => window.__es[a.name].readyState === a.state",
               {"name": name, "state": state}, timeout=10,
               what="%s's EventSource %s is not in state %d: %r" % (
                   page, name, state, b.eval(page, "() => window.__got")))

    def fetch(self, b, page, url, **init):
        return b.eval(page, FETCH, {"url": url, "init": init})

    def set_cookie(self, b, page):
        # The hsc_token cookie of the page's host (127.0.0.1): a browser sends it to hscd's port
        # too, when a request carries credentials (cookies ignore ports; same site).
        b.eval(page, "(t) => { document.cookie = 'hsc_token=' + t + '; path=/; SameSite=Strict';"
                     " return document.cookie; }", self.TOKEN)

    def test_allowed_origin_works_without_credentials_others_read_nothing(self):
        srv, b = self.setup_pages()
        api = srv.url("/v1/events?channel=x")
        auth = {"Authorization": "Bearer " + self.TOKEN}

        # The allowed origin: subscribe (token in the query), publish (a preflighted JSON fetch
        # with the token in a header), ask; every answer readable.
        self.es(b, "ok", "sub", api + "&access_token=" + self.TOKEN)
        self.es_state(b, "ok", "sub", 1)
        r = self.fetch(b, "ok", api, method="POST", body='{"n":1}',
                       headers=dict(auth, **{"Content-Type": "application/json"}))
        self.assertEqual(r.get("status"), 200, r)
        self.assertEqual(json.loads(r["body"])["subscribers"], 1, r)
        b.wait("ok", "() => window.__got.sub.length > 0", timeout=10, what="no event on ok")
        self.assertEqual(b.eval("ok", "() => window.__got.sub"), ['{"n":1}'])
        r = self.fetch(b, "ok", srv.url("/v1/stream"), method="POST", body="cors")
        self.assertEqual(r.get("status"), 200, r)
        self.assertEqual(r["body"], "".join(pieces(3, "cors")))

        # Credentials are not allowed: the valid hsc_token cookie does not make a cross-origin
        # EventSource work, with credentials (hscd accepts the cookie, the browser refuses the
        # answer) or without (no cookie is sent: 401).
        self.set_cookie(b, "ok")
        self.es(b, "ok", "cookie", srv.url("/v1/events?channel=y"), creds=True)
        self.es(b, "ok", "nocookie", srv.url("/v1/events?channel=y"))
        self.es_state(b, "ok", "cookie", 2)
        self.es_state(b, "ok", "nocookie", 2)
        # A credentialed publish: its preflight is not allowed credentials, so it is not sent.
        published = metric(srv, "hsc_events_published_total")
        r = self.fetch(b, "ok", api, method="POST", body='{"n":0}', credentials="include",
                       headers={"Content-Type": "application/json"})
        self.assertEqual(r, {"error": "TypeError"}, "a credentialed fetch was allowed")

        # Another origin reads nothing, even with the token.
        self.es(b, "evil", "sub", api + "&access_token=" + self.TOKEN)
        self.es_state(b, "evil", "sub", 2)
        r = self.fetch(b, "evil", api, method="POST", body='{"n":2}',
                       headers=dict(auth, **{"Content-Type": "application/json"}))
        self.assertEqual(r, {"error": "TypeError"})
        r = self.fetch(b, "evil", srv.url("/v1/stream"), method="POST", body="cors")
        self.assertEqual(r, {"error": "TypeError"})
        self.assertEqual(metric(srv, "hsc_events_published_total"), published,
                         "a refused preflight still published")
        # What CORS does not do: a simple request (no preflight) is sent, only its answer is
        # hidden. Here the token in the query authorizes it; without a token it would be open.
        r = self.fetch(b, "evil", api + "&access_token=" + self.TOKEN, method="POST",
                       body="simple", mode="no-cors")
        self.assertEqual(r, {"status": 0, "type": "opaque", "body": ""})
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_events_published_total")
                                 == published + 1, 5))
        b.wait("ok", "() => window.__got.sub.length > 1", timeout=10, what="no event on ok")
        self.assertEqual(b.eval("ok", "() => window.__got.sub"), ['{"n":1}', "simple"])
        self.assertEqual(b.eval("evil", "() => window.__got.sub"), ["error:2"])

    def test_cors_credentials_lets_the_allowed_origin_use_its_cookie(self):
        srv, b = self.setup_pages("--cors-credentials")
        api = srv.url("/v1/events?channel=x")
        self.set_cookie(b, "ok")

        # The cookie alone: a credentialed EventSource and fetch.
        self.es(b, "ok", "cookie", api, creds=True)
        self.es_state(b, "ok", "cookie", 1)
        r = self.fetch(b, "ok", api, method="POST", body='{"n":1}', credentials="include",
                       headers={"Content-Type": "application/json"})
        self.assertEqual(r.get("status"), 200, r)
        self.assertEqual(json.loads(r["body"])["subscribers"], 1, r)
        b.wait("ok", "() => window.__got.cookie.length > 0", timeout=10, what="no event")
        self.assertEqual(b.eval("ok", "() => window.__got.cookie"), ['{"n":1}'])
        # Without credentials no cookie goes: 401, which the page may read.
        self.es(b, "ok", "nocookie", api)
        self.es_state(b, "ok", "nocookie", 2)
        r = self.fetch(b, "ok", api, method="POST", body="x")
        self.assertEqual(r.get("status"), 401, r)

        # The other origin, with the same cookie jar: its credentialed requests carry the cookie,
        # but it reads nothing and its preflighted publish is never sent.
        published = metric(srv, "hsc_events_published_total")
        self.es(b, "evil", "cookie", api, creds=True)
        self.es_state(b, "evil", "cookie", 2)
        r = self.fetch(b, "evil", api, method="POST", body='{"n":2}', credentials="include",
                       headers={"Content-Type": "application/json"})
        self.assertEqual(r, {"error": "TypeError"})
        self.assertEqual(metric(srv, "hsc_events_published_total"), published)
        self.assertEqual(b.eval("evil", "() => window.__got.cookie"), ["error:2"])
        self.assertEqual(b.eval("ok", "() => window.__got.cookie"), ['{"n":1}'])


if __name__ == "__main__":
    unittest.main()
