"""The pool responder (--pool N --exec CMD): long-lived workers over the framed protocol of
docs/responder-protocol.md, seen from real clients, from the workers' side and from /proc.

Most tests run tests/integration/pool_workers/worker.py (its docstring lists the commands: the
first word of the request text says what the worker does). With `--dir DIR` each worker writes
DIR/<pid>.pid at start and logs every frame it receives to DIR/<pid>.frames (JSON lines with a
CLOCK_MONOTONIC time, comparable with this process's time.monotonic()). Under /bin/sh -c, the
python worker is the child of the shell hscd starts, so these PIDs are hscd's grandchildren. This
host's PID 1 may not reap orphans, so a process counts as gone when /proc has no entry or a
zombie. After every test, once hscd has exited, no worker recorded by the test may still run.

Proves that:
- the shipped examples (worker.py, upper-worker.sh) answer right in the plain and SSE forms;
- workers start with hscd, before any request (N of them, never more; at most N threads), and
  persist: 20 sequential requests are served by the same PIDs; each worker is a process group;
- 100 concurrent clients through a pool of 4 each get exactly their own answer, and every
  request text reaches a worker exactly once;
- --queue: with one busy worker, 2 requests wait (FIFO), the next gets 503 with Retry-After,
  the waiting ones complete afterwards; a queued request whose client leaves never reaches a
  worker;
- a worker that crashes mid-answer fails that answer (chunked body cut; SSE `event: error` with
  "the pool worker crashed (exit status 3)"), and is restarted (new PID) with a doubling
  backoff; half a UTF-8 character held back for an answer that then fails (crash, protocol
  error, timeout) does not leak into the next answer, SSE or plain;
- protocol garbage (bad header, unknown type, header too long, payload too large, negative
  length) and a frame outside a request fail the answer and restart the worker; a request that
  arrives while the broken worker is being killed waits for its replacement; an `error` frame
  fails the answer with its reason and keeps the worker; a request that cannot be sent (a text
  over the 1 MiB frame limit) fails its answer at once, reaches no worker, and the worker serves
  the next one (a text of exactly 1 MiB is answered);
- a client that leaves mid-answer (FIN or RST, plain or SSE) makes hscd send `cancel` within
  ~1 s; pieces the worker sends after it (even a worker that ignores the cancel) never reach the
  next request, which the same worker serves normally;
- --responder-timeout fails a hung answer with the timeout reason, the worker is killed (SIGKILL
  after --kill-grace if it ignores SIGTERM, whether or not a shell sits between hscd and it) and
  restarted;
- SIGTERM: idle workers get EOF and exit, hscd exits 0 at once; a busy worker finishes its answer
  first; a request still queued is failed (never completed) by --drain-timeout; workers that
  ignore EOF (and SIGTERM) are killed after --drain-timeout (+ --kill-grace), shell or not; no
  worker is left;
- the meta frame: every field of docs/responders.md (request_id = X-Request-Id, method, path,
  raw query, remote_ip, remote_port, content_length, content_type for SSE vs plain,
  server_software) plus remote_addr (IP:PORT), with the values an exec responder gets in its
  environment for the same request; a query is passed whole (60000 bytes under
  --max-header-bytes 65535), one over --max-header-bytes gets 431 and reaches no worker; worker
  stderr is logged with the worker or the request id;
- payloads are binary safe (newlines, frame-like text, NUL, CR LF, 300 KB pieces, frames
  dribbled one byte at a time): one chunk per piece, verbatim; an empty piece sends no chunk;
  the request text (newlines, frame-like lines) reaches the worker verbatim;
- UTF-8 characters split across piece frames arrive whole in the SSE form (verbatim in plain);
- a worker flooding 64 KB pieces to a client that does not read is paused: hscd's RSS stays
  within a few MB over --max-queue-bytes and the worker is not ahead by more than the buffers.
"""

import json
import os
import re
import shlex
import shutil
import signal
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
    wait_for,
    rss_kb,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "pool_workers", "worker.py")
EXAMPLES = os.path.join(ROOT, "examples", "responders")
KEEPALIVE = b": keep-alive\n\n"  # docs/api.md: the one spelling, answers and channels alike


# ---- /proc -------------------------------------------------------------------------------------


def proc_stat(pid):
    """(state, ppid, pgrp) of `pid`, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def wait_gone(pids, timeout):
    """Seconds until none of `pids` is alive; fails after `timeout` (not scaled here)."""
    t0 = time.monotonic()
    while any(alive(p) for p in pids):
        if time.monotonic() - t0 > timeout:
            raise AssertionError("still alive after %.1f s: %s" % (
                timeout, [(p, proc_stat(p)) for p in pids if alive(p)]))
        time.sleep(0.01)
    return time.monotonic() - t0


# ---- clients -----------------------------------------------------------------------------------


def hexargs(pieces):
    return " ".join(p.hex() if p else "-" for p in pieces)


class Stream(StreamRequest):
    """StreamRequest plus the pool tests' readers."""

    def next_data_chunk(self, timeout=10):
        """The next chunk that is not an SSE keep-alive comment."""
        while True:
            ch = self.next_chunk(timeout)
            if ch != KEEPALIVE:
                return ch

    def read_all(self, timeout=20):
        deadline = time.monotonic() + timeout * SLOW
        while self.next_chunk(timeout=max(0.01, deadline - time.monotonic()) / SLOW) is not None:
            pass
        return self

    def body(self):
        return b"".join(self.chunks)

    def data_chunks(self):
        return [ch for ch in self.chunks if ch != KEEPALIVE]

    def events(self):
        return parse_sse(self.body())


def done_event(pieces):
    return ("done", json.dumps({"pieces": len(pieces), "bytes": sum(len(p) for p in pieces)},
                               separators=(",", ":")))


# ---- the test case -----------------------------------------------------------------------------


class PoolCase(ServerTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hsc-pool-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        # Registered before any server: runs after the servers have been stopped.
        self.addCleanup(self.no_worker_left)

    def worker_cmd(self, *opts, exec_=False):
        """The --exec command line; with `exec_`, the shell execs python (no shell between)."""
        return ("exec " if exec_ else "") + " ".join(shlex.quote(a) for a in
                                                     ["python3", "-S", WORKER, "--dir", self.dir]
                                                     + list(opts))

    def start_pool(self, n, *args, opts=(), threads=1, exec_=False):
        """hscd --pool n --exec worker.py; `threads` None leaves --threads at its default."""
        targs = ["--threads", str(threads)] if threads is not None else []
        return self.start("--pool", str(n), *targs, "--exec", self.worker_cmd(*opts, exec_=exec_),
                          "--log-level", "info", *args)

    def reset_dir(self):
        """Between two servers in one test: stops the ones still running (a failed subtest may
        have left one), checks that no worker is left, then forgets their files."""
        for srv in self._servers:
            if srv.returncode is None and srv.proc is not None:
                self.stop_clean(srv)
        self.no_worker_left()
        for f in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, f))

    def pids(self):
        """Every worker PID recorded so far (started ones, not only live ones)."""
        return sorted(int(f[:-4]) for f in os.listdir(self.dir) if f.endswith(".pid"))

    def live_pids(self):
        return [p for p in self.pids() if alive(p)]

    def wait_workers(self, n, timeout=10):
        """Waits until n workers are alive; returns their PIDs."""
        ok = wait_for(lambda: len(self.live_pids()) == n, timeout=timeout, step=0.02)
        self.assertTrue(ok, "%d live workers, expected %d: %s" % (
            len(self.live_pids()), n, self.pids()))
        return self.live_pids()

    def frames(self, pid):
        try:
            with open(os.path.join(self.dir, "%d.frames" % pid)) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def requests_seen(self, pid):
        return [f["payload"] for f in self.frames(pid) if f["ev"] == "request"]

    def no_worker_left(self):
        """After hscd's exit no worker of this test runs; kills (by PID) any that does, so that
        one failure leaves nothing behind."""
        left = []
        for pid in self.pids():
            if alive(pid) and self.dir.encode() in cmdline(pid):
                left.append((pid, proc_stat(pid)))
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.assertEqual(left, [], "workers still running after hscd exited")

    def wait_exits(self, srv, n, timeout=5):
        """Waits until hscd has logged the exit of `n` workers in all (it has reaped them)."""
        self.assertTrue(wait_for(lambda: srv.log().count(") exited (") >= n, timeout=timeout),
                        "fewer than %d worker exits logged\n%s" % (n, srv.describe()))

    def wait_log(self, srv, needle, timeout=5):
        self.assertTrue(wait_for(lambda: needle in srv.log(), timeout=timeout),
                        "%r not in the log\n%s" % (needle, srv.describe()))

    def ask(self, srv, text, sse=False, post=False, timeout=20):
        with Stream(srv, text, sse=sse, post=post) as s:
            s.read_all(timeout=timeout)
        return s

    def ask_pid(self, srv, tag="x", sse=False):
        """Sends `pid TAG`; asserts a complete answer; returns the worker's PID."""
        s = self.ask(srv, "pid " + tag, sse=sse)
        if sse:
            ev = s.events()
            self.assertEqual(len(ev), 2, ev)
            self.assertEqual(ev[1][0], "done", ev)
            data = ev[0][1]
        else:
            self.assertTrue(s.complete, s.chunks)
            data = s.body().decode()
        self.assertRegex(data, r"^pid=\d+ tag=%s\n$" % tag)
        return int(data.split()[0][4:])

    def assert_ok(self, s, pieces):
        """A complete plain answer made of `pieces` (bytes), one chunk each."""
        self.assertEqual(s.head.status, 200)
        self.assertTrue(s.complete, "answer cut: %r" % s.chunks)
        self.assertEqual(s.chunks, pieces)

    def assert_cut(self, s, pieces):
        """A failed plain answer: `pieces` then the connection closes without the last chunk."""
        self.assertEqual(s.head.status, 200)
        self.assertFalse(s.complete, "a failed answer ended with the last chunk: %r" % s.chunks)
        self.assertIn(s.ended_by, ("fin", "reset"))
        self.assertEqual(s.chunks, pieces)


# ---- tests -------------------------------------------------------------------------------------


class Examples(PoolCase):
    """The shipped example workers."""

    def test_example_worker_py(self):
        srv = self.start("--pool", "2", "--exec",
                         "python3 " + shlex.quote(os.path.join(EXAMPLES, "worker.py")))
        for text, sse, post in (("héllo wörld 你好", False, False), ("sse ✓", True, False),
                                ("posted text", False, True)):
            with self.subTest(text=text):
                expected = [("%d/5 %s ✓\n" % (i, text)).encode() for i in range(1, 6)]
                s = self.ask(srv, text, sse=sse, post=post)
                self.assertEqual(s.head.status, 200)
                if sse:
                    self.assertEqual(s.head.header("Content-Type"),
                                     "text/event-stream; charset=utf-8")
                    self.assertTrue(s.complete)
                    self.assertEqual(s.events(), [("message", p.decode()) for p in expected]
                                     + [done_event(expected)])
                else:
                    self.assertEqual(s.head.header("Content-Type"), "text/plain; charset=utf-8")
                    self.assert_ok(s, expected)

    def test_example_upper_worker_sh(self):
        srv = self.start("--pool", "1", "--threads", "1", "--exec",
                         "bash " + shlex.quote(os.path.join(EXAMPLES, "upper-worker.sh")))
        for i in range(4):  # one shell worker, several requests in turn
            s = self.ask(srv, "hello pool %d" % i)
            self.assert_ok(s, [b"HELLO POOL %d" % i])
        s = self.ask(srv, "shout it", sse=True)
        self.assertTrue(s.complete)
        self.assertEqual(s.events(), [("message", "SHOUT IT"), done_event([b"SHOUT IT"])])
        s = self.ask(srv, "posted body", post=True)
        self.assert_ok(s, [b"POSTED BODY"])


class Lifecycle(PoolCase):
    """Workers start with hscd, before any request, and serve many requests each."""

    def test_workers_start_once_and_persist(self):
        srv = self.start_pool(3)
        hpid = srv.proc.pid
        pids = self.wait_workers(3)  # no request sent yet
        time.sleep(0.2)
        self.assertEqual(self.pids(), pids, "more workers than --pool started")
        # each one a shell child of hscd, leading its own process group
        shells = [int(x) for x in re.findall(
            r"pool worker \d+: pid (\d+) started", srv.log())]
        self.assertEqual(len(shells), 3, srv.log())
        for sh in shells:
            st = proc_stat(sh)
            self.assertIsNotNone(st)
            self.assertEqual((st[1], st[2]), (hpid, sh), "worker %d: ppid/pgrp %s" % (sh, st))
        for pid in pids:
            self.assertIn(proc_stat(pid)[1], shells)
        served = []
        with srv.connect() as c:  # 10 on one keep-alive connection
            for i in range(10):
                c.request("GET", "/v1/stream?q=" + urllib.parse.quote("pid k%d" % i))
                r = c.read_response()
                self.assertTrue(r.complete, r)
                served.append(int(r.text().split()[0][4:]))
        for i in range(10):  # and 10 on connections of their own, plain and SSE
            served.append(self.ask_pid(srv, "n%d" % i, sse=bool(i % 2)))
        self.assertEqual(len(served), 20)
        self.assertLessEqual(set(served), set(pids))
        self.assertEqual(self.pids(), pids, "a worker was restarted or added")
        self.assertEqual(self.live_pids(), pids)
        seen = sum(len(self.requests_seen(p)) for p in pids)
        self.assertEqual(seen, 20)
        for p in pids:
            self.assertEqual([f["ev"] for f in self.frames(p)].count("start"), 1)

    def test_threads_are_bounded_by_the_pool(self):
        # --pool N runs min(--threads, N) loops and exactly N workers, spread over the loops.
        for pool, threads, loops in ((2, 4, 2), (4, 2, 2), (3, 1, 1)):
            with self.subTest(pool=pool, threads=threads):
                self.reset_dir()
                srv = self.start_pool(pool, threads=threads)
                self.assertIn("(%d thread%s)" % (loops, "s" if loops > 1 else ""), srv.log())
                self.assertEqual(len(self.wait_workers(pool)), pool)
                time.sleep(0.2)
                self.assertEqual(len(self.pids()), pool)
                idx = sorted(int(x) for x in re.findall(r"pool worker (\d+): pid \d+ started",
                                                         srv.log()))
                self.assertEqual(idx, list(range(pool)))
                self.stop_clean(srv)


class Concurrency(PoolCase):

    def test_100_concurrent_clients_get_their_own_answers(self):
        srv = self.start_pool(4, "--queue", "400", threads=None)
        pids = self.wait_workers(4)
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
                        conn.request("POST", "/v1/stream", hs, body="echo " + texts[i])
                    else:
                        conn.request("GET", "/v1/stream?q=" + urllib.parse.quote(
                            "echo " + texts[i]), hs)
                    r = conn.read_response(timeout=60)
                finally:
                    conn.close()
                if sse:
                    ev = parse_sse(r.body)
                    ok = r.complete and ev and ev[-1][0] == "done"
                    results[i] = "".join(d for t, d in ev[:-1]) if ok else repr(r)
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
        # every text reached exactly one worker, once; the pool is still the same 4 processes
        seen = sorted(r for p in pids for r in self.requests_seen(p))
        self.assertEqual(seen, sorted("echo " + t for t in texts))
        used = [p for p in pids if self.requests_seen(p)]
        self.assertEqual(len(used), 4, "requests per worker: %s" % [
            len(self.requests_seen(p)) for p in pids])
        self.assertEqual(self.pids(), pids)


class Admission(PoolCase):
    """--pool 1 --threads 1 --queue 2: one runs, two wait, the next gets 503."""

    def test_queue_then_503_then_drain(self):
        srv = self.start_pool(1, "--queue", "2", "--keepalive", "200ms")
        (pid,) = self.wait_workers(1)
        streams = []
        try:
            a = Stream(srv, "gate")
            streams.append(a)
            self.assertEqual(a.next_chunk(), b"started pid=%d\n" % pid)
            b = Stream(srv, "pid B")
            c = Stream(srv, "pid C", sse=True)
            streams += [b, c]
            self.assertEqual(b.read_head().status, 200)
            self.assertEqual(c.read_head().status, 200)
            time.sleep(0.3)
            self.assertEqual(self.requests_seen(pid), ["gate"], "a queued request reached "
                             "the busy worker")
            for sse in (False, True):  # past the queue
                with RawConn(srv.port) as d:
                    d.request("GET", "/v1/stream?q=pid+D", SSE if sse else [])
                    r = d.read_response()
                    assert_error_response(self, r, 503)
                    self.assertRegex(r.header("Retry-After", ""), r"^\d+$")
            # the waiting SSE client gets comments, nothing else
            self.assertEqual(c.next_chunk(timeout=5), KEEPALIVE)
            self.assertEqual(c.next_chunk(timeout=5), KEEPALIVE)
            self.assertEqual(c.chunks, [KEEPALIVE] * len(c.chunks))
            open(os.path.join(self.dir, "go"), "w").close()
            for s in streams:
                s.read_all()
            self.assert_ok(a, [b"started pid=%d\n" % pid, b"released\n"])
            self.assert_ok(b, [b"pid=%d tag=B\n" % pid])
            self.assertTrue(c.complete)
            self.assertEqual(c.events(), [("message", "pid=%d tag=C\n" % pid),
                                          done_event([b"pid=%d tag=C\n" % pid])])
        finally:
            for s in streams:
                s.conn.close()
        self.assertEqual(self.requests_seen(pid), ["gate", "pid B", "pid C"])  # FIFO
        self.assertEqual(self.ask_pid(srv, "E"), pid)  # and the queue is free again

    def test_queued_request_whose_client_left_never_reaches_the_worker(self):
        srv = self.start_pool(1, "--queue", "4")
        (pid,) = self.wait_workers(1)
        with Stream(srv, "gate") as a:
            self.assertEqual(a.next_chunk(), b"started pid=%d\n" % pid)
            b = Stream(srv, "pid B")
            self.assertEqual(b.read_head().status, 200)
            b.conn.close()
            time.sleep(0.5)
            with Stream(srv, "pid C") as c:
                self.assertEqual(c.read_head().status, 200)
                open(os.path.join(self.dir, "go"), "w").close()
                a.read_all()
                c.read_all()
                self.assert_ok(c, [b"pid=%d tag=C\n" % pid])
            self.assert_ok(a, [b"started pid=%d\n" % pid, b"released\n"])
        self.assertEqual(self.requests_seen(pid), ["gate", "pid C"])
        self.assertNotIn("cancel", [f["ev"] for f in self.frames(pid)])


class Crashes(PoolCase):
    """A worker that dies mid-answer fails that answer and is restarted."""

    def test_crash_fails_the_answer_and_the_worker_restarts(self):
        srv = self.start_pool(1)
        (p1,) = self.wait_workers(1)
        self.assertEqual(self.ask_pid(srv, "a"), p1)
        s = self.ask(srv, "crash")
        self.assert_cut(s, [b"before crash\n"])
        # the next request waits for the restarted worker and is served by it
        t0 = time.monotonic()
        p2 = self.ask_pid(srv, "b")
        self.assertNotEqual(p2, p1)
        self.assertLess(time.monotonic() - t0, 0.1 + 2 * SLOW)
        self.assertFalse(alive(p1))
        self.assertIn("restart in 100 ms", srv.log())
        # SSE: the reason as an error event; the worker died young: the backoff doubles
        s = self.ask(srv, "crash", sse=True)
        self.assertTrue(s.complete)
        self.assertEqual(s.events(), [("message", "before crash\n"),
                                      ("error", "the pool worker crashed (exit status 3)")])
        p3 = self.ask_pid(srv, "c")
        self.assertNotIn(p3, (p1, p2))
        self.assertIn("restart in 200 ms", srv.log())
        s = self.ask(srv, "crash 7", sse=True)
        self.assertEqual(s.events()[-1], ("error", "the pool worker crashed (exit status 7)"))
        p4 = self.ask_pid(srv, "d")
        self.assertIn("restart in 400 ms", srv.log())
        self.assertEqual(self.live_pids(), [p4])
        self.assertEqual(self.requests_seen(p4), ["pid d"])

    def test_half_character_of_a_failed_answer_does_not_leak(self):
        # The SSE form holds back an incomplete UTF-8 character until its rest comes; here the
        # answer fails first (crash, protocol error, timeout). The next answer, served by the
        # restarted worker, must be exactly its own, in either form.
        reasons = {"crash": "the pool worker crashed (exit status 3)",
                   "garbage": "the pool worker broke the responder protocol",
                   "hang": "the responder timed out after 1000 ms"}
        for how in ("crash", "garbage", "hang"):
            self.reset_dir()
            srv = self.start_pool(1, "--responder-timeout", "1s", "--kill-grace", "200ms")
            self.wait_workers(1)
            for k, sse in enumerate((True, False)):
                with self.subTest(how=how, next_sse=sse):
                    s = self.ask(srv, "crashchar " + how, sse=True)
                    self.assertTrue(s.complete)
                    self.assertEqual(s.events(), [("message", "x"), ("error", reasons[how])])
                    # only once hscd has seen the old worker exit (see
                    # test_request_right_after_a_protocol_error_waits_for_the_new_worker)
                    self.wait_exits(srv, k + 1)
                    s = self.ask(srv, "hex 414243", sse=sse)
                    self.assertTrue(s.complete)
                    body = s.body()
                    self.assertNotIn(b"\xe4\xbd", body, "bytes of the failed answer leaked "
                                     "into the next one: %r" % body)
                    if sse:
                        self.assertEqual(parse_sse(body), [("message", "ABC"),
                                                           done_event([b"ABC"])])
                    else:
                        self.assert_ok(s, [b"ABC"])
            self.stop_clean(srv)


class Protocol(PoolCase):
    """Garbage from a worker fails the answer and restarts the worker; error frames fail it."""

    def test_garbage_fails_the_answer_and_restarts(self):
        srv = self.start_pool(1)
        prev = self.wait_workers(1)[0]
        for i, kind in enumerate(("header", "type", "long", "size", "negative")):
            with self.subTest(kind=kind):
                sse = bool(i % 2)
                s = self.ask(srv, "garbage " + kind, sse=sse)
                if sse:
                    self.assertTrue(s.complete)
                    self.assertEqual(s.events(), [
                        ("message", "before garbage\n"),
                        ("error", "the pool worker broke the responder protocol")])
                else:
                    self.assert_cut(s, [b"before garbage\n"])
                self.wait_exits(srv, i + 1)
                pid = self.ask_pid(srv, kind)
                self.assertNotEqual(pid, prev)
                prev = pid
        self.assertEqual(srv.log().count("protocol error"), 5, srv.log())
        for what in ("bad frame header", "frame header too long"):
            self.assertIn("protocol error: " + what, srv.log())

    def test_request_right_after_a_protocol_error_waits_for_the_new_worker(self):
        # hscd kills a worker that broke the protocol (SIGTERM, SIGKILL after --kill-grace).
        # A request arriving before that worker has exited must not be handed to it: it must
        # wait for the restarted worker. The worker here ignores SIGTERM, which makes the window
        # 1 s long (with a worker that dies at once the window is a few ms, but a request sent
        # right after the failed answer still often lands in it).
        srv = self.start_pool(1, "--kill-grace", "1s", "--drain-timeout", "1s",
                              opts=["--ignore-term"], exec_=True)
        (p1,) = self.wait_workers(1)
        s = self.ask(srv, "garbage header")
        self.assert_cut(s, [b"before garbage\n"])
        with Stream(srv, "pid after") as s2:
            s2.read_head()
            time.sleep(0.3)
            handed = srv.log().count("to pool worker 0 (pid %d)" % p1)
            self.assertEqual(handed, 1, "a request was handed to the worker being killed "
                             "(pid %d)" % p1)
            try:
                s2.read_all(timeout=5)
            except OSError as e:
                self.fail("the next request hung (%r)" % e)
        self.assertTrue(s2.complete, "the next request failed: %r" % s2.chunks)
        p2 = int(s2.body().split()[0][4:])
        self.assertNotEqual(p2, p1)

    def test_frame_outside_a_request_restarts_the_worker(self):
        srv = self.start_pool(1)
        (p1,) = self.wait_workers(1)
        s = self.ask(srv, "unsolicited")
        self.assert_ok(s, [b"ok\n"])
        self.wait_log(srv, "protocol error: a frame while no request is running")
        self.wait_exits(srv, 1)
        p2 = self.ask_pid(srv, "next")
        self.assertNotEqual(p2, p1)

    def test_error_frame_fails_the_answer_and_keeps_the_worker(self):
        srv = self.start_pool(1)
        (pid,) = self.wait_workers(1)
        reason = b"model exploded\nbadly"
        s = self.ask(srv, "fail " + reason.hex())
        self.assert_cut(s, [b"partial\n"])
        s = self.ask(srv, "fail " + reason.hex(), sse=True)
        self.assertTrue(s.complete)
        self.assertEqual(s.events(), [("message", "partial\n"),
                                      ("error", "the responder failed: model exploded badly")])
        self.assertEqual(self.ask_pid(srv, "after"), pid)
        self.assertEqual(self.pids(), [pid])


    def test_request_that_cannot_be_sent_fails_its_answer(self):
        # A request whose frames cannot be handed to a worker (out of memory, a write error, or
        # here a text over the protocol's 1 MiB frame limit, which takes the same path) fails
        # its answer at once, instead of waiting for --responder-timeout; the worker never sees
        # it and serves the next one.
        srv = self.start_pool(1, "--max-body-bytes", "2m", "--responder-timeout", "60s")
        (pid,) = self.wait_workers(1)
        limit = 1024 * 1024
        reason = ("the request text is larger than the pool protocol's %d-byte frame limit"
                  % limit)
        too_big = "echo " + "x" * (limit - 4)
        t0 = time.monotonic()
        s = self.ask(srv, too_big, post=True, timeout=10)
        self.assert_cut(s, [])
        s = self.ask(srv, too_big, sse=True, post=True, timeout=10)
        self.assertTrue(s.complete)
        self.assertEqual(s.events(), [("error", reason)])
        self.assertLess(time.monotonic() - t0, 10 * SLOW)
        self.wait_log(srv, "failed after 0 piece(s): " + reason)
        self.assertEqual(self.requests_seen(pid), [])
        at_limit = "echo " + "y" * (limit - 5)  # exactly 1 MiB: sent, answered
        s = self.ask(srv, at_limit, post=True)
        self.assertTrue(s.complete)
        self.assertEqual(s.body(), b"y" * (limit - 5))
        self.assertEqual(self.ask_pid(srv, "after"), pid)


class Cancellation(PoolCase):
    """A client that leaves: the worker gets `cancel`, and nothing of that answer leaks."""

    def test_client_gone_sends_cancel_and_nothing_leaks(self):
        srv = self.start_pool(1)
        (pid,) = self.wait_workers(1)
        version = hscd_version()
        cases = [("stale", "fin", False), ("stubborn", "reset", True), ("error", "fin", True),
                 ("end", "reset", False)]
        for after, how, sse in cases:
            with self.subTest(after=after, how=how, sse=sse):
                s = Stream(srv, "slow 20 40 " + after, sse=sse)
                try:
                    for i in (1, 2):
                        ch = s.next_data_chunk()
                        self.assertIn(b"slow %d/20 pid=%d" % (i, pid), ch)
                finally:
                    t_gone = time.monotonic()
                    if how == "reset":
                        s.conn.reset()
                    else:
                        s.conn.close()
                # the next request, sent at once, waits for the worker's end and gets only
                # its own answer
                tag = "after-" + after
                s2 = self.ask(srv, "pid " + tag, sse=sse)
                want = "pid=%d tag=%s\n" % (pid, tag)
                if sse:
                    self.assertEqual(s2.events(), [("message", want),
                                                   done_event([want.encode()])])
                else:
                    self.assert_ok(s2, [want.encode()])
                fr = self.frames(pid)
                evs = [f["ev"] for f in fr]
                cancels = [f for f in fr if f["ev"] == "cancel"]
                self.assertTrue(cancels, evs)
                dt = cancels[-1]["t"] - t_gone
                self.assertLess(dt, 1.0 * SLOW, "cancel %.2f s after the client left" % dt)
                self.assertGreater(dt, -0.05)
                # the order the worker saw: request, cancel, then the next meta/request
                i = max(k for k, f in enumerate(fr) if f["ev"] == "request"
                        and f["payload"].startswith("slow"))
                self.assertEqual([f["ev"] for f in fr[i:]],
                                 ["request", "cancel", "cancelled"]
                                 + (["stubborn done"] if after == "stubborn" else [])
                                 + ["meta", "request"], fr[i:])
                if after == "stubborn":
                    done_t = fr[i + 3]["t"]
                    self.assertGreater(fr[i + 4]["t"], done_t,
                                       "next request sent before the worker's end")
        self.assertEqual(self.pids(), [pid], "cancellation restarted the worker")
        self.assertEqual(srv.log().count("client gone, cancelling on pool worker 0"), 4)


class Timeouts(PoolCase):

    def test_timeout_fails_and_the_worker_is_replaced(self):
        srv = self.start_pool(1, "--responder-timeout", "1s", "--kill-grace", "300ms")
        (p1,) = self.wait_workers(1)
        with Stream(srv, "hang") as s:
            self.assertEqual(s.next_chunk(), b"hanging\n")
            t0 = time.monotonic()
            s.read_all()
            elapsed = time.monotonic() - t0
        self.assert_cut(s, [b"hanging\n"])
        self.assertGreater(elapsed, 0.7)
        self.assertLess(elapsed, 1 + 2 * SLOW)
        wait_gone([p1], 1.0 * SLOW)
        p2 = self.ask_pid(srv, "b")
        self.assertNotEqual(p2, p1)
        with Stream(srv, "hang", sse=True) as s:
            s.read_all()
        self.assertTrue(s.complete)
        self.assertEqual(s.events(), [("message", "hanging\n"),
                                      ("error", "the responder timed out after 1000 ms")])
        wait_gone([p2], 1.0 * SLOW)
        p3 = self.ask_pid(srv, "c")
        self.assertNotIn(p3, (p1, p2))
        self.assertEqual(self.live_pids(), [p3])

    def test_timeout_of_a_worker_that_ignores_sigterm(self):
        # SIGKILL to the process group after --kill-grace. With `exec`, the worker is hscd's
        # child; without, it is the child of the shell, which SIGTERM ends at once.
        for exec_ in (True, False):
            with self.subTest(exec_=exec_):
                self.reset_dir()
                srv = self.start_pool(1, "--responder-timeout", "1s", "--kill-grace", "300ms",
                                      exec_=exec_)
                (p1,) = self.wait_workers(1)
                with Stream(srv, "hangterm", sse=True) as s:
                    s.read_all()
                self.assertTrue(s.complete)
                self.assertEqual(s.events(), [("message", "hanging\n"),
                                              ("error", "the responder timed out after 1000 ms")])
                gone = wait_gone([p1], 2.0 * SLOW)
                self.assertGreater(gone, 0.15, "gone before --kill-grace: SIGTERM not ignored?")
                p2 = self.ask_pid(srv, "next")
                self.assertNotEqual(p2, p1)
                self.assertEqual(self.live_pids(), [p2])
                self.stop_clean(srv)


class Shutdown(PoolCase):
    """SIGTERM: workers get EOF; the stubborn ones are killed; nothing is left."""

    def shells(self, srv):
        return [int(x) for x in re.findall(r"pool worker \d+: pid (\d+) started", srv.log())]

    def test_idle_workers_get_eof_and_exit(self):
        srv = self.start_pool(3, threads=2)
        pids = self.wait_workers(3)
        self.assertIn(self.ask_pid(srv, "x"), pids)
        shells = self.shells(srv)
        t0 = time.monotonic()
        rc = srv.stop(timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.describe())
        self.assertLess(elapsed, 1.5 * SLOW, "idle workers delayed the exit (--drain-timeout "
                        "is 5 s)")
        self.assertEqual([p for p in pids + shells if alive(p)], [])
        for p in pids:
            self.assertEqual(self.frames(p)[-1]["ev"], "eof", self.frames(p))

    def test_busy_worker_finishes_then_exits(self):
        srv = self.start_pool(2)
        pids = self.wait_workers(2)
        with Stream(srv, "gate") as a:
            self.assertTrue(a.next_chunk().startswith(b"started"))
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            time.sleep(0.4)
            self.assertTrue(srv.running())
            open(os.path.join(self.dir, "go"), "w").close()
            a.read_all()
            self.assertTrue(a.complete, a.chunks)
            self.assertEqual(a.data_chunks()[-1], b"released\n")
        rc = srv.wait(5 * SLOW)
        self.assertEqual(rc, 0, srv.describe())
        self.assertLess(time.monotonic() - t0, 3 * SLOW)
        self.assertEqual([p for p in pids if alive(p)], [])
        for p in pids:
            self.assertEqual(self.frames(p)[-1]["ev"], "eof")

    def test_queued_request_at_shutdown(self):
        # A request queued behind a busy worker when SIGTERM comes: hscd does not dispatch
        # while draining (like --exec), so it ends as a failure (never as a complete answer)
        # once --drain-timeout expires; the busy one completes; hscd exits 0.
        srv = self.start_pool(1, "--drain-timeout", "1500ms")
        (pid,) = self.wait_workers(1)
        with Stream(srv, "gate") as a, Stream(srv, "pid B") as b:
            self.assertTrue(a.next_chunk().startswith(b"started"))
            self.assertEqual(b.read_head().status, 200)
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            open(os.path.join(self.dir, "go"), "w").close()
            a.read_all()
            self.assert_ok(a, [b"started pid=%d\n" % pid, b"released\n"])
            b.read_all()
            self.assertEqual(b.head.status, 200)
            self.assertFalse(b.complete, "a queued answer that was not served ended complete")
            self.assertLess(time.monotonic() - t0, 1.5 + 2 * SLOW)
        self.assertEqual(srv.wait(5 * SLOW), 0, srv.describe())
        self.assertFalse(alive(pid))

    def test_workers_ignoring_eof_are_killed_after_the_drain_timeout(self):
        cases = [(["--ignore-eof"], True, 0.9, 1.0), (["--ignore-eof"], False, 0.9, 1.0),
                 (["--ignore-eof", "--ignore-term"], True, 1.2, 1.3),
                 (["--ignore-eof", "--ignore-term"], False, 1.2, 1.3)]
        for opts, exec_, low, high in cases:
            with self.subTest(opts=opts, exec_=exec_):
                self.reset_dir()
                srv = self.start_pool(2, "--drain-timeout", "1s", "--kill-grace", "300ms",
                                      opts=opts, exec_=exec_)
                pids = self.wait_workers(2)
                shells = self.shells(srv)
                self.assertEqual(len(shells), 2)
                t0 = time.monotonic()
                rc = srv.stop(timeout=10)
                elapsed = time.monotonic() - t0
                self.assertEqual(rc, 0, srv.describe())
                for p in pids:
                    self.assertIn("eof", [f["ev"] for f in self.frames(p)])
                self.assertEqual([(p, proc_stat(p)) for p in pids + shells if alive(p)], [],
                                 "workers left after hscd's exit")
                self.assertGreater(elapsed, low, "exited before the drain timeout (+ grace)")
                self.assertLess(elapsed, high + 1.5 * SLOW)


class Metadata(PoolCase):

    def test_meta_frame(self):
        srv = self.start_pool(1)
        (pid,) = self.wait_workers(1)
        version = hscd_version()
        cases = [
            ("GET", True, "q=meta&x=1%202&y=%E2%9C%93", "text/event-stream"),
            ("POST", False, "", "text/plain"),
            ("GET", False, "q=meta", "text/plain"),
            ("POST", True, "", "text/event-stream"),
        ]
        for method, sse, query, ctype in cases:
            with self.subTest(method=method, sse=sse):
                s = Stream(srv, "meta", sse=sse, post=method == "POST", query=query)
                with s:
                    port = s.conn.sock.getsockname()[1]
                    s.read_all()
                self.assertTrue(s.complete)
                data = "".join(d for t, d in s.events()[:-1]) if sse else s.body().decode()
                meta = dict(line.split("=", 1) for line in data.splitlines())
                expected = dict(zip((k for _, k in REQUEST_FIELDS), request_fields(
                    s.rid, method, query, port, "meta", sse, version)))
                expected["remote_addr"] = "127.0.0.1:%d" % port  # the first version's field
                self.assertEqual(meta["content_type"], ctype)
                self.assertEqual(meta, expected)
        fr = [f["ev"] for f in self.frames(pid) if f["ev"] != "start"]
        self.assertEqual(fr, ["meta", "request"] * 4)

    def meta_of(self, srv, query, sse=False):
        """The meta frame the worker got for GET /v1/stream?`query` (its text: "meta"), as a
        dict, with the client's port and the request id."""
        s = Stream(srv, "meta", sse=sse, query=query)
        with s:
            port = s.conn.sock.getsockname()[1]
            s.read_all()
        self.assertTrue(s.complete, s.chunks[:3])
        data = "".join(d for t, d in s.events()[:-1]) if sse else s.body().decode()
        return dict(line.split("=", 1) for line in data.splitlines()), port, s.rid

    def test_same_fields_as_exec(self):
        # One request shape to an exec responder (its environment) and to a pool worker (its
        # meta frame): each field of docs/responders.md has the same value in both.
        version = hscd_version()
        query = "q=meta&x=1%202&y=%E2%9C%93"
        exec_srv = self.start("--exec", "python3 -S %s env" % shlex.quote(
            os.path.join(HERE, "responders", "responder.py")))
        with Stream(exec_srv, "meta", sse=True, query=query) as s:
            exec_port = s.conn.sock.getsockname()[1]
            s.read_all()
        self.assertTrue(s.complete)
        env = json.loads("".join(d for t, d in s.events()[:-1]))
        exec_rid = s.rid
        pool_srv = self.start_pool(1)
        self.wait_workers(1)
        meta, pool_port, pool_rid = self.meta_of(pool_srv, query, sse=True)
        exec_expected = request_fields(exec_rid, "GET", query, exec_port, "meta", True, version)
        pool_expected = request_fields(pool_rid, "GET", query, pool_port, "meta", True, version)
        for (var, key), want_exec, want_pool in zip(REQUEST_FIELDS, exec_expected, pool_expected):
            with self.subTest(field=var):
                self.assertEqual(env[var], want_exec)
                self.assertEqual(meta[key], want_pool)

    def test_long_query_is_passed_whole(self):
        # Up to what --max-header-bytes lets in (65535 at most), the query reaches the worker
        # byte for byte; it used to be cut at 512 bytes.
        srv = self.start_pool(1, "--max-header-bytes", "65535")
        self.wait_workers(1)
        for size in (513, 12000, 60000):
            with self.subTest(size=size):
                query = "q=meta&pad=" + "%41b" * ((size - 11) // 4)
                query += "x" * (size - len(query))
                meta, port, rid = self.meta_of(srv, query)
                self.assertEqual(len(meta["query"]), size)
                self.assertEqual(meta["query"], query)
                self.assertEqual(meta["request_id"], rid)

    def test_query_over_the_head_limit_is_refused(self):
        srv = self.start_pool(1)
        (pid,) = self.wait_workers(1)
        with RawConn(srv.port) as c:
            c.request("GET", "/v1/stream?q=meta&pad=" + "x" * 17000)
            r = c.read_response()
        assert_error_response(self, r, 431)
        self.assertEqual(r.body, b"request line and headers are too large\n")
        self.assertEqual(self.requests_seen(pid), [])
        meta, _, _ = self.meta_of(srv, "q=meta")  # the worker serves the next request
        self.assertEqual(meta["query"], "q=meta")

    def test_stderr_is_logged(self):
        srv = self.start_pool(1, opts=["--hello"])
        (pid,) = self.wait_workers(1)
        self.wait_log(srv, "pool worker 0: stderr: hello from %d" % pid)
        with Stream(srv, "stderr note-1234") as s:
            s.read_all()
        self.assert_ok(s, [b"logged\n"])
        self.wait_log(srv, "req %s: stderr: note-1234" % s.rid)


class Payloads(PoolCase):
    """Pieces are bytes: delivered verbatim, one chunk each."""

    PIECES = [b"line one\nline two\n", b"piece 5\n", b"end 0\n", b"error 3\nabc", b"",
              b"\x00nul\x00", b"\r\n", b"tab\there", b"meta 0\ncancel 0\n",
              "ünïcödé ✓ 你好 😀\n".encode(), b"x" * 1 + b"\n"]

    def test_pieces_are_binary_safe(self):
        srv = self.start_pool(1)
        self.wait_workers(1)
        big = bytes(range(256)) * 1200  # 300 KB, bigger than any read buffer
        pieces = self.PIECES + [big, b"last\n"]
        text = "hex " + hexargs(pieces)
        sent = [p for p in pieces if p]  # an empty piece sends nothing
        s = self.ask(srv, text, post=True)
        self.assert_ok(s, sent)
        # the SSE form: one event per piece, line ends normalised to LF (text pieces only)
        tpieces = [p for p in self.PIECES if b"\x00" not in p]
        s = self.ask(srv, "hex " + hexargs(tpieces), sse=True, post=True)
        self.assertTrue(s.complete)
        want = [p.decode().replace("\r\n", "\n") for p in tpieces if p]
        ev = s.events()
        self.assertEqual([d for t, d in ev[:-1]], want)
        self.assertEqual(ev[-1], done_event([p for p in tpieces if p]))

    def test_request_text_is_binary_safe(self):
        srv = self.start_pool(1)
        (pid,) = self.wait_workers(1)
        text = "line one\npiece 5\nend 0\n\ncancel 0\n\ttab ✓ 你好\r\nlast"
        s = self.ask(srv, "echo " + text, post=True)
        self.assertTrue(s.complete)
        self.assertEqual(s.body().decode(), text)
        self.assertEqual(self.requests_seen(pid), ["echo " + text])

    def test_frames_dribbled_byte_by_byte(self):
        srv = self.start_pool(1)
        self.wait_workers(1)
        pieces = [b"piece 5\n", b"ab", b"\n\n", b"end 0\n"]
        s = self.ask(srv, "dribble " + hexargs(pieces))
        self.assert_ok(s, pieces)

    def test_utf8_split_across_pieces(self):
        srv = self.start_pool(1)
        self.wait_workers(1)
        # one character split across two frames
        pieces = [b"a\xe4\xbd", b"\xa0b"]
        s = self.ask(srv, "hex " + hexargs(pieces), sse=True)
        self.assertTrue(s.complete)
        for ch in s.chunks:
            ch.decode("utf-8")  # every event is valid UTF-8 on its own
        self.assertEqual([d for t, d in s.events()[:-1]], ["a", "你b"])
        self.assertEqual(s.events()[-1][0], "done")
        s = self.ask(srv, "hex " + hexargs(pieces))
        self.assert_ok(s, pieces)  # the plain form passes the bytes as they come
        self.assertEqual(s.body().decode(), "a你b")
        # every character cut into single bytes
        text = "aé你😀b".encode()
        s = self.ask(srv, "hex " + hexargs([bytes([c]) for c in text]), sse=True)
        self.assertTrue(s.complete)
        for ch in s.chunks:
            ch.decode("utf-8")
        self.assertEqual([d for t, d in s.events()[:-1]], ["a", "é", "你", "😀", "b"])
        done = json.loads(s.events()[-1][1])
        self.assertEqual(done["bytes"], len(text))


class Backpressure(PoolCase):

    def test_flood_to_a_client_that_does_not_read(self):
        srv = self.start_pool(1, "--max-queue-bytes", "1m")
        (pid,) = self.wait_workers(1)
        hpid = srv.proc.pid
        self.ask_pid(srv, "warm")
        time.sleep(0.3)
        base = peak = rss_kb(hpid)
        got = 0
        with Stream(srv, "flood", rcvbuf=16384, timeout=20) as s:
            s.read_head()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:  # phase 1: read nothing
                peak = max(peak, rss_kb(hpid))
                time.sleep(0.05)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.0:  # phase 2: read slowly, 16 KB every 20 ms
                s.conn.sock.settimeout(5 * SLOW)
                data = s.conn.sock.recv(16384)
                self.assertTrue(data, "the slow reader was disconnected after %d bytes" % got)
                got += len(data)
                peak = max(peak, rss_kb(hpid))
                time.sleep(0.02)
            got += len(s.conn.buf)
            t_gone = time.monotonic()
            s.conn.close()
        grew = (peak - base) / 1024
        limit = 1 + (8 if SLOW == 1 else 40)  # --max-queue-bytes + slack (ASan: more)
        self.assertLess(grew, limit, "hscd's RSS grew by %.1f MB (%d KB -> %d KB) while a "
                        "worker flooded a client that did not read" % (grew, base, peak))
        self.assertGreater(got, 100_000, "the slow reader got only %d bytes" % got)
        # the worker was paused, not drained into memory: it is not far ahead of the client
        stopped = wait_for(lambda: [f for f in self.frames(pid) if f["ev"] == "flood stopped"],
                           timeout=3)
        self.assertTrue(stopped, "the flooding worker did not see the cancel")
        cancel = [f for f in self.frames(pid) if f["ev"] == "cancel"][-1]
        self.assertLess(cancel["t"] - t_gone, 1.0 * SLOW)
        ahead = stopped[-1]["pieces"] * 65536 - got
        self.assertLess(ahead, 8 << 20, "the worker wrote %d bytes more than the client read"
                        % ahead)
        # and the same worker serves the next request normally
        self.assertEqual(self.ask_pid(srv, "after"), pid)


if __name__ == "__main__":
    unittest.main()
