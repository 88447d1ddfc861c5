"""The --exec responder: one process per request, seen from real clients and from /proc.

The responders run here are tests/integration/responders/responder.py (one behaviour per mode; see
its docstring), small inline shell commands, and the shipped examples/responders/. With
`--pid-dir`, a responder writes its PID to DIR/<request id>.pid, so a test can follow the process
of a request (found through the X-Request-Id header) in /proc. Under /bin/sh -c, a python
responder is the child of the shell (dash does not exec the last command), so these PIDs are
grandchildren of hscd: checking them proves that kills reach the whole process group. This host's
PID 1 does not reap orphans, so a process counts as gone when /proc has no entry or a zombie.
Responder processes a test leaves alive (after a failure) are SIGKILLed by PID from its pid files
before hscd is stopped, so that a failing test neither leaks processes nor hangs the shutdown.

Proves that:
- pieces written to stdout reach the client as they are written (a chunk per read of the pipe,
  the first one while the process still runs), stdin carries the request text and then EOF, HEAD
  and rejected texts start no process, the examples count.py and shout.sh work;
- exit status 3, death by SIGKILL and --responder-timeout fail the answer: the chunked body is cut
  without its last chunk; SSE ends with `event: error` and the reason; a timed-out process group is
  gone, also when it ignores SIGTERM and when the shell has exited but a child still holds stdout;
- a responder that never reads a 200 KB text does not hang the answer or the server;
- SSE: one event per piece, `done` with the counts, UTF-8 characters cut across writes arrive
  whole, `: keep-alive` comments while the responder is silent (at once, then every --keepalive);
- a client that leaves mid-answer (FIN or RST) gets its process group killed within ~1 s, SIGTERM
  ignored or not, grandchildren included, also after the shell itself has exited; a connected
  client that reads nothing (for longer than --idle-timeout) is not cancelled;
- stderr lines are logged with the request id; the CGI-like environment is right: the fields
  of docs/responders.md, a query passed whole (60000 bytes under --max-header-bytes 65535), one
  over --max-header-bytes refused with 431 before any process starts;
- a responder that floods a slow reader is paused (hscd's RSS stays bounded, the reader is not
  dropped) and is killed when the reader leaves;
- --max-processes/--queue: queued requests wait (SSE ones with keep-alive comments) without a
  process, the next one gets 503 with Retry-After, and the queue drains when slots free up;
- after 200 requests mixing completions, failures, kills and timeouts no child process, zombie or
  responder is left and hscd's fd count is back to its baseline; 100 concurrent clients each get
  exactly their own answer.
"""

import json
import os
import shlex
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import unittest
import urllib.parse

from hscd import (
    REQUEST_FIELDS,
    SSE,
    StreamRequest,
    SLOW,
    ProtocolError,
    RawConn,
    ServerTestCase,
    assert_error_response,
    hscd_version,
    parse_sse,
    request_fields,
    run_hscd,
    wait_for,
    rss_kb,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESPONDER = os.path.join(HERE, "responders", "responder.py")
EXAMPLES = os.path.join(ROOT, "examples", "responders")
KEEPALIVE = b": keep-alive\n\n"  # docs/api.md: the one spelling, answers and channels alike


def responder(mode, *args, pid_dir=None, exec_=False):
    """The --exec command line running responder.py in `mode`."""
    argv = ["python3", "-S", RESPONDER]
    if pid_dir is not None:
        argv += ["--pid-dir", pid_dir]
    argv += [mode] + [str(a) for a in args]
    return ("exec " if exec_ else "") + " ".join(shlex.quote(a) for a in argv)


# ---- /proc -------------------------------------------------------------------------------------


def proc_stat(pid):
    """(state, ppid) of `pid`, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[1])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def children(ppid):
    """[(pid, state)] of the processes whose parent is `ppid`."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None and st[1] == ppid:
                out.append((int(name), st[0]))
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def live_processes_with_arg(token, exclude=()):
    """PIDs of live processes (but `exclude`) whose command line contains `token`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (os.getpid(),) + tuple(exclude):
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if token.encode() in cmdline and alive(int(name)):
            out.append(int(name))
    return out


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def read_pids(pid_dir, rid, timeout=10):
    """The PIDs the responder of request `rid` wrote (waits for the file, bounded)."""
    path = os.path.join(pid_dir, "%s.pid" % rid)

    def get():
        try:
            with open(path) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return None

    pids = wait_for(get, timeout=timeout, step=0.01)
    if not pids:
        raise AssertionError("no pid file %s within %.0f s" % (path, timeout * SLOW))
    return pids


def wait_gone(pids, timeout):
    """Seconds until none of `pids` is alive; fails after `timeout` (not scaled here)."""
    t0 = time.monotonic()
    while any(alive(p) for p in pids):
        if time.monotonic() - t0 > timeout:
            raise AssertionError("still alive after %.1f s: %s" % (
                timeout, [(p, proc_stat(p)) for p in pids if alive(p)]))
        time.sleep(0.01)
    return time.monotonic() - t0


# ---- an incremental client ---------------------------------------------------------------------


class Stream(StreamRequest):
    """StreamRequest plus the exec tests' readers."""

    def read_all(self, timeout=20):
        """Reads to the end of the body; fails when it has not ended after `timeout` (scaled)."""
        deadline = time.monotonic() + timeout * SLOW
        try:
            while self.next_chunk(max(0.01, deadline - time.monotonic()) / SLOW) is not None:
                pass
        except socket.timeout:
            raise AssertionError(
                "the answer did not end within %.1f s of the request; chunks so far: %r"
                % (time.monotonic() - self.sent, self.chunks[:10])) from None
        return self

    def body(self):
        return b"".join(self.chunks)

    def events(self):
        return parse_sse(self.body())

    def data_chunks(self):
        return [ch for ch in self.chunks if ch != KEEPALIVE]


class ExecCase(ServerTestCase):
    def setUp(self):
        self._dirs = []

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="hsc-exec-")
        self._dirs.append(d)
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def start_exec(self, cmd, *args):
        srv = self.start("--exec", cmd, *args)
        # Runs before the server is stopped (cleanups run last-in first-out).
        self.addCleanup(self.kill_leftovers, srv)
        return srv

    def kill_leftovers(self, srv):
        """SIGKILLs, by PID, the responder processes of this test that hscd failed to end, so
        that one failure does not leave processes behind or keep hscd from exiting. Only PIDs
        from the test's pid files whose command line is still one of ours."""
        for d in self._dirs:
            for f in os.listdir(d):
                if not f.endswith(".pid"):
                    continue
                with open(os.path.join(d, f)) as fh:
                    pids = [int(x) for x in fh.read().split()]
                for pid in pids:
                    cl = cmdline(pid)
                    if alive(pid) and (d.encode() in cl or cl.startswith(b"sleep\0")):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass

    def wait_log_re(self, srv, pattern, timeout=5):
        self.assertTrue(wait_for(lambda: re.search(pattern, srv.log()), timeout=timeout),
                        "/%s/ not in the log\n%s" % (pattern, srv.describe()))

    def wait_log(self, srv, needle, timeout=5):
        self.assertTrue(wait_for(lambda: needle in srv.log(), timeout=timeout),
                        "%r not in the log\n%s" % (needle, srv.describe()))


# ---- tests -------------------------------------------------------------------------------------


class Streaming(ExecCase):
    """Pieces reach the client as the process writes them; stdin is the text then EOF."""

    def test_pieces_arrive_while_the_process_runs(self):
        d = self.tmpdir()
        srv = self.start_exec(responder("pieces", 5, 100, pid_dir=d))
        text = "héllo wörld 你好"
        with Stream(srv, text) as s:
            r = s.read_head()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
            self.assertEqual(r.header("Transfer-Encoding"), "chunked")
            self.assertRegex(r.header("X-Request-Id", ""), r"^\d+$")
            first = s.next_chunk()
            pid = read_pids(d, s.rid)[0]
            self.assertTrue(alive(pid), "piece 1 arrived only after the process had ended")
            s.read_all()
        self.assertEqual(first, ("piece 1/5: %s\n" % text).encode())
        self.assertTrue(s.complete, "no last chunk after exit status 0")
        expected = ["piece %d/5: %s\n" % (i, text) for i in range(1, 6)]
        self.assertEqual(s.body().decode(), "".join(expected))
        # One chunk per read of the pipe: with 100 ms between the writes, that is one chunk per
        # piece (a loaded machine may merge two, never cut one).
        self.assertGreaterEqual(len(s.chunks), 4, s.chunks)
        for ch in s.chunks:
            self.assertTrue(ch.endswith(b"\n"), "a piece was split across chunks: %r" % s.chunks)
        spread = s.times[-1] - s.times[0]
        self.assertGreater(spread, 0.3, "5 pieces 100 ms apart arrived within %.3f s" % spread)

    def test_post_body_is_stdin_then_eof(self):
        # `env` reads stdin to EOF before answering: an answer at all proves the EOF.
        srv = self.start_exec(responder("env"))
        text = "line one\nline two\r\n  spaces, ünïcödé, 🚀, tab\t" + "z" * 5000
        with Stream(srv, text, post=True) as s:
            s.read_all()
        self.assertTrue(s.complete)
        self.assertEqual(json.loads(s.body())["text"], text)

    def test_head_and_bad_texts_start_no_process(self):
        d = self.tmpdir()
        srv = self.start_exec(responder("pieces", 1, 0, pid_dir=d))
        with RawConn(srv.port) as c:
            c.request("HEAD", "/v1/stream?q=x")
            r = c.read_response(head_only=True)
            self.assertEqual(r.status, 200)
            for target in ("/v1/stream?q=", "/v1/stream?q=%FF", "/v1/stream"):
                c.request("GET", target)
                assert_error_response(self, c.read_response(), 400, target)
            c.request("GET", "/v1/stream?q=after")
            r = c.read_response()
            self.assertEqual(r.body, b"piece 1/1: after\n")
        # only the last request ran a process
        self.assertEqual(os.listdir(d), ["%s.pid" % r.header("X-Request-Id")])

    def test_example_count_py(self):
        srv = self.start_exec("python3 " + shlex.quote(os.path.join(EXAMPLES, "count.py")))
        with Stream(srv, "Wake up, Neo", post=True) as s:
            s.read_all()
        self.assertTrue(s.complete)
        self.assertEqual(s.body().decode(),
                         "".join("%d/5 Wake up, Neo ✓\n" % i for i in range(1, 6)))
        self.assertGreaterEqual(len(s.chunks), 3, "count.py's pieces came in %d chunk(s)"
                                % len(s.chunks))
        self.wait_log(srv, "req %s: stderr: request %s from 127.0.0.1" % (s.rid, s.rid))

    def test_example_shout_sh(self):
        srv = self.start_exec("sh " + shlex.quote(os.path.join(EXAMPLES, "shout.sh")))
        with Stream(srv, "wake up, neo") as s:
            s.read_all()
        self.assertTrue(s.complete)
        self.assertEqual(s.body().decode(), "WAKE UP, NEO \n")
        self.assertGreaterEqual(len(s.chunks), 3)
        self.assertGreater(s.times[-1] - s.times[0], 0.3)


class Failures(ExecCase):
    """Non-zero exit, a signal, a timeout: the chunked answer is cut without its last chunk."""

    def check_cut(self, s, body):
        self.assertEqual(s.head.status, 200)
        self.assertFalse(s.complete, "a failed answer ended with the last chunk")
        self.assertIn(s.ended_by, ("fin", "reset"))
        self.assertEqual(s.body(), body)

    def test_exit_status_3_midway(self):
        srv = self.start_exec(responder("fail"))
        with Stream(srv, "x") as s:
            s.read_all()
        self.check_cut(s, b"one\ntwo\n")
        self.wait_log_re(srv, r"req %s: failed after [12] piece\(s\): the responder exited with "
                         r"status 3\n" % s.rid)

    def test_killed_by_signal(self):
        srv = self.start_exec("printf 'one\\n'; sleep 0.1; kill -9 $$; echo never")
        with Stream(srv, "x") as s:
            s.read_all()
        self.check_cut(s, b"one\n")
        self.wait_log(srv, "the responder was killed by signal 9")

    def test_timeout_kills_the_process(self):
        d = self.tmpdir()
        srv = self.start_exec(responder("hang", pid_dir=d), "--responder-timeout", "1s")
        t0 = time.monotonic()
        with Stream(srv, "x") as s:
            s.next_chunk()
            pid = read_pids(d, s.rid)[0]
            s.read_all(timeout=5)
            elapsed = time.monotonic() - t0
        self.check_cut(s, b"started\n")
        self.assertGreater(elapsed, 0.9, "cut before --responder-timeout")
        self.assertLess(elapsed, 1 + 2 * SLOW)
        wait_gone([pid], 1.0 * SLOW)
        self.wait_log(srv, "the responder timed out after 1000 ms")

    def test_timeout_of_a_process_that_ignores_sigterm(self):
        d = self.tmpdir()
        srv = self.start_exec(responder("stubborn", pid_dir=d), "--responder-timeout", "1s",
                              "--kill-grace", "300ms")
        with Stream(srv, "x") as s:
            s.next_chunk()
            pid = read_pids(d, s.rid)[0]
            s.read_all(timeout=5)
        self.check_cut(s, b"started\n")
        wait_gone([pid], 1.0 * SLOW)
        self.wait_log(srv, "the responder timed out after 1000 ms")

    def test_timeout_applies_after_the_shell_has_exited(self):
        # The shell exits at once, a background child keeps stdout open: the answer is not over
        # (no EOF yet), so --responder-timeout must still end it and kill the group.
        d = self.tmpdir()
        srv = self.start_exec("sleep 30 & echo $! > %s/$HSC_REQUEST_ID.pid; echo hi"
                              % shlex.quote(d), "--responder-timeout", "1s")
        t0 = time.monotonic()
        with Stream(srv, "x") as s:
            self.assertEqual(s.next_chunk(), b"hi\n")
            pid = read_pids(d, s.rid)[0]
            s.read_all(timeout=5)
            elapsed = time.monotonic() - t0
        self.check_cut(s, b"hi\n")
        self.assertLess(elapsed, 1 + 2 * SLOW)
        wait_gone([pid], 1.0 * SLOW)
        self.wait_log(srv, "the responder timed out after 1000 ms")

    def test_responder_that_never_reads_a_large_text(self):
        # 200 KB is more than a pipe holds: hscd's write to stdin cannot complete. The answer
        # must end (complete or cleanly failed) and the server stay healthy.
        text = "n" * 200_000
        for cmd in (responder("noread"), responder("noread", 500)):
            with self.subTest(cmd=cmd):
                srv = self.start_exec(cmd)
                for sse in (False, True):
                    t0 = time.monotonic()
                    with Stream(srv, text, post=True, sse=sse) as s:
                        s.read_all(timeout=10)
                    self.assertLess(time.monotonic() - t0, 5 * SLOW)
                    if sse:
                        events = s.events()
                        self.assertIn(events[-1][0], ("done", "error"), events)
                        if events[-1][0] == "done":
                            self.assertEqual(events[:-1], [("message", "did not read\n")])
                    elif s.complete:
                        self.assertEqual(s.body(), b"did not read\n")
                    else:
                        self.assertIn(s.ended_by, ("fin", "reset"))
                with RawConn(srv.port) as c:
                    c.request("GET", "/healthz")
                    self.assertEqual(c.read_response().body, b"ok\n")
                    c.request("GET", "/v1/stream?q=again")
                    r = c.read_response()
                    self.assertEqual((r.status, r.body), (200, b"did not read\n"))


class ServerSentEvents(ExecCase):
    """The SSE form: events per piece, done, error with the reason, whole UTF-8 characters,
    keep-alive comments."""

    def test_pieces_then_done(self):
        srv = self.start_exec(responder("pieces", 3, 100))
        with Stream(srv, "héllo", sse=True) as s:
            r = s.read_head()
            self.assertEqual(r.header("Content-Type"), "text/event-stream; charset=utf-8")
            s.read_all()
        self.assertTrue(s.complete)
        self.assertEqual(s.chunks[0], KEEPALIVE, "no comment right after the headers")
        pieces = ["piece %d/3: héllo\n" % i for i in range(1, 4)]
        events = s.events()
        messages = [d for t, d in events if t == "message"]
        # one event per read: one per piece, unless a loaded machine merged two
        self.assertGreaterEqual(len(messages), 2, events)
        self.assertEqual("".join(messages), "".join(pieces))
        self.assertEqual(events[:-1], [("message", m) for m in messages])
        self.assertEqual(events[-1][0], "done")
        self.assertEqual(json.loads(events[-1][1]),
                         {"pieces": len(messages), "bytes": sum(len(p.encode()) for p in pieces)})

    def test_error_events_carry_the_reason(self):
        cases = [
            ("fail", [], "the responder exited with status 3", ["one\n", "two\n"]),
            ("exec python3 -c 'import os,sys; print(\"one\", flush=True); "
             "os.kill(os.getpid(), 9)'", [], "the responder was killed by signal 9", ["one\n"]),
            ("hang", ["--responder-timeout", "1s"], "the responder timed out after 1000 ms",
             ["started\n"]),
        ]
        for cmd, args, reason, data in cases:
            with self.subTest(reason=reason):
                srv = self.start_exec(cmd if " " in cmd else responder(cmd), *args)
                with Stream(srv, "x", sse=True) as s:
                    s.read_all()
                self.assertTrue(s.complete, "an SSE error should end the stream properly")
                events = s.events()
                self.assertEqual(events[-1], ("error", reason), events)
                self.assertEqual([t for t, d in events[:-1]], ["message"] * (len(events) - 1))
                self.assertEqual("".join(d for t, d in events[:-1]), "".join(data))

    def test_utf8_characters_cut_across_writes_arrive_whole(self):
        srv = self.start_exec(responder("utf8"))
        with Stream(srv, "x", sse=True) as s:
            s.read_all()
        self.assertTrue(s.complete)
        for ch in s.chunks:
            ch.decode("utf-8")  # every event is valid UTF-8 on its own
        events = s.events()
        self.assertEqual(events[-1][0], "done")
        data = [d for t, d in events[:-1]]
        self.assertEqual("".join(data), "a醒b🚀cé")
        self.assertGreaterEqual(len(data), 3, "the writes were not sent as they came: %r" % data)
        self.assertNotIn("\ufffd", "".join(data))
        # the plain form passes the bytes through as they are
        with Stream(srv, "x") as s:
            s.read_all()
        self.assertTrue(s.complete)
        self.assertEqual(s.body().decode("utf-8"), "a醒b🚀cé")

    def test_character_cut_at_the_end(self):
        # The process exits 0 with half a character pending: the answer still completes; the
        # cut byte is not silently turned into something else.
        srv = self.start_exec(responder("cutend"))
        with Stream(srv, "x", sse=True) as s:
            s.read_all()
        self.assertTrue(s.complete)
        body = s.body()
        self.assertIn(b"event: done\n", body)
        text = body.decode("utf-8", "replace")
        self.assertIn("data: ok", text)

    def test_keepalive_comments_while_silent(self):
        srv = self.start_exec(responder("silent", 1500), "--keepalive", "300ms")
        with Stream(srv, "x", sse=True) as s:
            s.read_head()
            s.read_all()
        self.assertTrue(s.complete)
        first_data = next(i for i, ch in enumerate(s.chunks) if ch != KEEPALIVE)
        comments = s.chunks[:first_data]
        self.assertGreaterEqual(len(comments), 3, "comments before the piece: %d" % len(comments))
        self.assertLess(s.times[0] - s.head.head_time, 0.3 * SLOW, "no comment at once")
        gaps = [b - a for a, b in zip(s.times, s.times[1:first_data])]
        self.assertLess(max(gaps, default=0), 0.3 + 0.4 * SLOW, gaps)
        self.assertEqual(s.events(), [("message", "after silence\n"),
                                      ("done", '{"pieces":1,"bytes":14}')])

    def test_default_keepalive_sends_one_comment_first(self):
        srv = self.start_exec(responder("silent", 1000))
        with Stream(srv, "x", sse=True) as s:
            s.read_all()
        self.assertEqual(s.chunks[0], KEEPALIVE)
        self.assertNotEqual(s.chunks[1], KEEPALIVE, "a comment before --keepalive's 15 s")


class Cancellation(ExecCase):
    """A client that leaves stops its process group; one that only waits is never cancelled."""

    def test_client_gone_kills_the_process_group(self):
        d = self.tmpdir()
        srv = self.start_exec(responder("grandchild", pid_dir=d))
        for how in ("fin", "reset", "fin"):
            with self.subTest(how=how):
                s = Stream(srv, "x")
                self.addCleanup(s.conn.close)
                self.assertEqual(s.next_chunk(), b"started\n")
                pids = read_pids(d, s.rid)
                self.assertEqual(len(pids), 2)
                self.assertTrue(all(alive(p) for p in pids))
                if how == "fin":
                    s.conn.close()
                else:
                    s.conn.reset()
                took = wait_gone(pids, 1.0 * SLOW)
                self.assertLess(took, 1.0 * SLOW)
        self.assertTrue(wait_for(lambda: children(srv.proc.pid) == [], timeout=5),
                        children(srv.proc.pid))

    def test_client_gone_kills_a_process_that_ignores_sigterm(self):
        d = self.tmpdir()
        srv = self.start_exec(responder("stubborn", pid_dir=d), "--kill-grace", "500ms")
        s = Stream(srv, "x", sse=True)
        self.addCleanup(s.conn.close)
        self.assertEqual(s.next_chunk(), KEEPALIVE)
        self.assertEqual(s.next_chunk(), b"data: started\ndata: \n\n")
        pid = read_pids(d, s.rid)[0]
        s.conn.reset()
        took = wait_gone([pid], 1.0 * SLOW + 0.5)
        self.assertGreater(took, 0.3, "ended before --kill-grace, though it ignores SIGTERM")
        self.assertLess(took, 1.0 * SLOW)

    def test_client_gone_after_the_shell_has_exited(self):
        # The shell exits at once; its background child still holds stdout (the answer goes
        # on). When the client leaves, that child is in the process group and must be stopped.
        d = self.tmpdir()
        srv = self.start_exec("sleep 30 & echo $! > %s/$HSC_REQUEST_ID.pid; echo hi"
                              % shlex.quote(d))
        s = Stream(srv, "x")
        self.addCleanup(s.conn.close)
        self.assertEqual(s.next_chunk(), b"hi\n")
        pid = read_pids(d, s.rid)[0]
        time.sleep(0.2)
        s.conn.close()
        wait_gone([pid], 1.0 * SLOW)

    def test_idle_connected_client_is_not_cancelled(self):
        # The responder is silent for 3 s; the client sends its request and reads nothing
        # meanwhile. --idle-timeout 1s: the wait for a silent responder is not idleness either.
        d = self.tmpdir()
        srv = self.start_exec(responder("silent", 3000, pid_dir=d), "--idle-timeout", "1s",
                              "--log-level", "info")
        with Stream(srv, "x") as s:
            time.sleep(3.5)
            s.read_all()
        self.assertTrue(s.complete, "the answer of a waiting client was cut: %r" % s.chunks)
        self.assertEqual(s.body(), b"after silence\n")
        self.assertNotIn("client gone", srv.log())


class Logging(ExecCase):
    """stderr lines reach the log with the request id; the environment is CGI-like."""

    def test_stderr_is_logged_with_the_request_id(self):
        srv = self.start_exec(responder("stderr"))
        with Stream(srv, "tëxt") as s:
            s.read_all()
        self.assertTrue(s.complete)
        self.assertEqual(s.body(), b"ok\n")
        self.wait_log(srv, "req %s: stderr: first stderr line for tëxt\n" % s.rid)
        self.wait_log(srv, "req %s: stderr: second stderr line, no newline at the end\n" % s.rid)

    def test_environment(self):
        saved = {k: os.environ.get(k) for k in ("EXEC_TEST_INHERITED", "HSC_TEST_PRIVATE")}

        def restore():
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        self.addCleanup(restore)
        os.environ["EXEC_TEST_INHERITED"] = "yes"
        os.environ["HSC_TEST_PRIVATE"] = "secret"
        srv = self.start_exec(responder("env"))
        restore()
        rc, out, _ = run_hscd(["--version"])
        version = out.split()[-1]

        text = "héllo w"
        with RawConn(srv.port) as c:
            port = c.sock.getsockname()[1]
            c.request("GET", "/v1/stream?q=h%C3%A9llo+w&x=1")
            r = c.read_response()
            env = json.loads(r.body)
            self.assertEqual(env, {
                "HSC_REQUEST_ID": r.header("X-Request-Id"),
                "REQUEST_METHOD": "GET",
                "PATH_INFO": "/v1/stream",
                "QUERY_STRING": "q=h%C3%A9llo+w&x=1",
                "REMOTE_ADDR": "127.0.0.1",
                "REMOTE_PORT": str(port),
                "CONTENT_LENGTH": str(len(text.encode())),
                "HSC_CONTENT_TYPE": "text/plain",
                "SERVER_SOFTWARE": "hsc/" + version,
                "hsc_vars": ["HSC_CONTENT_TYPE", "HSC_REQUEST_ID"],
                "inherited": "yes",
                "text": text,
            })
            first_id = r.header("X-Request-Id")
            body = "POSTed ✓"
            c.request("POST", "/v1/stream", SSE, body=body)
            r = c.read_response()
            events = parse_sse(r.body)
            self.assertEqual(events[-1][0], "done")
            env = json.loads("".join(d for t, d in events[:-1]))
        self.assertNotEqual(r.header("X-Request-Id"), first_id)
        self.assertEqual(env["HSC_REQUEST_ID"], r.header("X-Request-Id"))
        self.assertEqual(env["REQUEST_METHOD"], "POST")
        self.assertEqual(env["QUERY_STRING"], "")
        self.assertEqual(env["REMOTE_PORT"], str(port))
        self.assertEqual(env["CONTENT_LENGTH"], str(len(body.encode())))
        self.assertEqual(env["HSC_CONTENT_TYPE"], "text/event-stream")
        self.assertEqual(env["text"], body)


class Request(ExecCase):
    """What the program learns about its request is docs/responders.md's list, nothing cut."""

    def env_of(self, srv, query):
        with RawConn(srv.port) as c:
            port = c.sock.getsockname()[1]
            c.request("GET", "/v1/stream?" + query)
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.complete, r)
        return json.loads(r.body), port, r.header("X-Request-Id")

    def test_long_query_is_passed_whole(self):
        # Up to what --max-header-bytes lets in (65535 at most); QUERY_STRING used to vanish
        # past about 4 KiB.
        version = hscd_version()
        srv = self.start_exec(responder("env"), "--max-header-bytes", "65535")
        for size in (513, 5000, 60000):
            with self.subTest(size=size):
                query = "q=t&pad=" + "%41b" * ((size - 8) // 4)
                query += "x" * (size - len(query))
                env, port, rid = self.env_of(srv, query)
                self.assertEqual(len(env["QUERY_STRING"]), size)
                want = request_fields(rid, "GET", query, port, "t", False, version)
                self.assertEqual({var: env[var] for var, _ in REQUEST_FIELDS},
                                 {var: v for (var, _), v in zip(REQUEST_FIELDS, want)})

    def test_query_over_the_head_limit_is_refused(self):
        d = self.tmpdir()
        srv = self.start_exec(responder("env", pid_dir=d))
        with RawConn(srv.port) as c:
            c.request("GET", "/v1/stream?q=t&pad=" + "x" * 17000)
            r = c.read_response()
        assert_error_response(self, r, 431)
        self.assertEqual(r.body, b"request line and headers are too large\n")
        self.assertEqual(os.listdir(d), [], "a process was started")
        env, _, _ = self.env_of(srv, "q=t")
        self.assertEqual(env["QUERY_STRING"], "q=t")


class Backpressure(ExecCase):
    """A responder that floods a slow reader is paused: hscd's memory stays bounded."""

    def test_flood_to_a_slow_reader(self):
        d = self.tmpdir()
        srv = self.start_exec(responder("flood", pid_dir=d), "--threads", "1",
                              "--max-queue-bytes", "1m")
        pid = srv.proc.pid
        # warm up (first spawn, buffers), then the baseline
        with Stream(srv, "w") as s:
            s.next_chunk()
        time.sleep(0.3)
        base = rss_kb(pid)
        peak = base
        with Stream(srv, "x", rcvbuf=16384, timeout=20) as s:
            s.read_head()
            rpid = read_pids(d, s.rid)[0]
            time.sleep(1.5)  # phase 1: read nothing
            peak = max(peak, rss_kb(pid))
            got = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:  # phase 2: 16 KB every 20 ms
                s.conn.sock.settimeout(5 * SLOW)
                data = s.conn.sock.recv(16384)
                self.assertTrue(data, "the slow reader was disconnected after %d bytes" % got)
                got += len(data)
                peak = max(peak, rss_kb(pid))
                time.sleep(0.02)
            self.assertTrue(alive(rpid))
            s.conn.close()
        grew = (peak - base) / 1024
        limit = 1 + (8 if SLOW == 1 else 24)  # --max-queue-bytes + slack (ASan: more)
        self.assertLess(grew, limit, "hscd's RSS grew by %.1f MB (%d KB -> %d KB) while a "
                        "responder flooded a slow reader" % (grew, base, peak))
        self.assertGreater(got, 100_000, "the slow reader got only %d bytes" % got)
        wait_gone([rpid], 1.0 * SLOW)


class Admission(ExecCase):
    """--max-processes 2 --queue 2 with one thread: 2 run, 2 wait, the next gets 503."""

    def test_queue_then_503_then_drain(self):
        d, gate = self.tmpdir(), self.tmpdir()
        srv = self.start_exec(responder("gate", gate, pid_dir=d), "--threads", "1",
                              "--max-processes", "2", "--queue", "2", "--keepalive", "200ms")
        hpid = srv.proc.pid
        streams = []
        try:
            for i in range(2):  # running
                s = Stream(srv, "run%d" % i)
                streams.append(s)
                self.assertEqual(s.next_chunk(), b"started\n")
            for sse in (True, False):  # queued
                s = Stream(srv, "queued", sse=sse)
                streams.append(s)
                self.assertEqual(s.read_head().status, 200)
            time.sleep(0.7)
            self.assertEqual(len(children(hpid)), 2, children(hpid))
            self.assertEqual(len(os.listdir(d)), 2, "a queued request has a process")
            for sse in (False, True):  # past the queue
                with RawConn(srv.port) as c:
                    c.request("GET", "/v1/stream?q=extra", SSE if sse else [])
                    r = c.read_response()
                    assert_error_response(self, r, 503)
                    self.assertRegex(r.header("Retry-After", ""), r"^\d+$")
            # the queued SSE stream got comments while waiting, nothing else
            q = streams[2]
            while len(q.chunks) < 3:
                self.assertEqual(q.next_chunk(timeout=5), KEEPALIVE)
            open(os.path.join(gate, "go"), "w").close()
            for s in streams:
                s.read_all()
            for s in streams[:2] + streams[3:]:
                self.assertTrue(s.complete)
                self.assertEqual(s.body(), b"started\nreleased\n")
            self.assertTrue(q.complete)
            events = q.events()
            self.assertEqual("".join(d for t, d in events[:-1]), "started\nreleased\n")
            self.assertEqual(events[-1][0], "done")
            self.assertEqual(json.loads(events[-1][1])["bytes"], 17)
        finally:
            for s in streams:
                s.conn.close()
        self.assertEqual(len(os.listdir(d)), 4)
        # and the slots are free again
        with Stream(srv, "later") as s:
            s.read_all()
        self.assertEqual((s.head.status, s.complete), (200, True))


class Hygiene(ExecCase):
    """No zombie, no leaked fd, no stray process after many requests; 100 concurrent clients
    each get their own answer."""

    def test_no_zombies_no_fd_leaks(self):
        d = self.tmpdir()
        # The timeout must fail the hanging requests, never a slow start of an "ok" one: 20
        # Python responders start at once, next to other test processes (Chromium) on 2 cores.
        srv = self.start_exec(responder("bytext", pid_dir=d, exec_=True), "--threads", "2",
                              "--responder-timeout", "%dms" % (3000 * SLOW),
                              "--kill-grace", "200ms")
        hpid = srv.proc.pid
        for _ in range(2):  # warm up both threads' first spawns
            with Stream(srv, "ok warm") as s:
                s.read_all()
        time.sleep(0.3)
        base_fds = fd_count(hpid)
        total = 200
        errors, lock = [], threading.Lock()
        outcome = {}

        def one(i):
            kind = ["ok", "ok", "fail", "kill", "timeout"][i % 5]
            word = {"kill": "hang", "timeout": "hang"}.get(kind, kind)
            with Stream(srv, "%s %d" % (word, i), sse=bool(i % 2)) as s:
                if kind == "kill":
                    while s.next_chunk() not in (None, b"started\n", b"data: started\ndata: \n\n"):
                        pass
                    if i % 3:
                        s.conn.reset()
                    else:
                        s.conn.close()
                    return kind, True
                s.read_all(timeout=10)
                if i % 2:
                    ev = s.events()
                    ok = ev and ev[-1][0] == ("done" if kind == "ok" else "error")
                else:
                    ok = s.complete == (kind == "ok")
                return kind, ok

        todo = list(range(total))

        def worker():
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                try:
                    kind, ok = one(i)
                    with lock:
                        outcome[i] = (kind, ok)
                except Exception as e:
                    with lock:
                        errors.append("%d: %r" % (i, e))

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60 * SLOW)
        self.assertEqual(errors, [])
        self.assertEqual(len(outcome), total)
        self.assertEqual([i for i, (k, ok) in outcome.items() if not ok], [])

        kids = wait_for(lambda: not children(hpid), timeout=5)
        self.assertTrue(kids, "hscd's children left: %s" % children(hpid))
        self.assertTrue(wait_for(lambda: fd_count(hpid) <= base_fds, timeout=5),
                        "hscd has %d fds, %d before\n%s" % (
                            fd_count(hpid), base_fds, os.listdir("/proc/%d/fd" % hpid)))
        self.assertEqual(fd_count(hpid), base_fds)
        pids = [p for f in os.listdir(d) for p in read_pids(d, f[:-4])]
        self.assertEqual(len(pids), total + 2)  # every request ran a process
        self.assertEqual([p for p in pids if alive(p)], [])
        left = live_processes_with_arg(d, exclude=(hpid,))
        self.assertEqual(left, [], [(p, proc_stat(p), cmdline(p)) for p in left])
        with Stream(srv, "ok after") as s:
            s.read_all()
        self.assertEqual(s.body(), b"ok: ok after\n")

    def test_100_concurrent_clients_get_their_own_answers(self):
        srv = self.start_exec(responder("echo3"))
        n = 100
        scripts = ["client", "клиент", "客户端", "😀 emoji", "عميل"]
        texts = ["%s #%d %s" % (scripts[i % len(scripts)], i, "✓" * (i % 4)) for i in range(n)]
        results = [None] * n
        barrier = threading.Barrier(n)

        def client(i):
            try:
                conn = RawConn(srv.port, timeout=60)
                try:
                    barrier.wait(timeout=30 * SLOW)
                    sse = i % 3 == 0
                    hs = list(SSE) if sse else []
                    if i % 2:
                        conn.request("POST", "/v1/stream", hs, body=texts[i])
                    else:
                        conn.request("GET", "/v1/stream?q=" + urllib.parse.quote(texts[i]), hs)
                    r = conn.read_response(timeout=60)
                finally:
                    conn.close()
                if sse:
                    ev = parse_sse(r.body)
                    ok = r.complete and ev[-1][0] == "done"
                    results[i] = ("".join(d for t, d in ev[:-1]) if ok else repr(r))
                else:
                    results[i] = r.body.decode("utf-8") if r.complete else repr(r)
            except Exception as e:
                results[i] = repr(e)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90 * SLOW)
        wrong = [(i, texts[i], results[i]) for i in range(n) if results[i] != texts[i]]
        self.assertEqual(wrong, [])
        self.assertTrue(wait_for(lambda: not children(srv.proc.pid), timeout=5))


if __name__ == "__main__":
    unittest.main()
