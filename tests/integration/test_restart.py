"""Restarts that refuse no one (docs/operations.md, "Restart without refusing anyone").

Proves that:
- SIGUSR2 starts a successor hscd with the same arguments and the same listening sockets; once
  it has them it stops the old one, which drains: clients making a new connection per request
  all through two hand-overs in a row see no refused connection and no failed request, and
  answers streaming during the hand-over finish;
- subscribers resume with nothing lost: a publisher publishing steadily (retrying the 503s and
  closed connections of the drain; only acknowledged ids count) and SSE subscribers that
  reconnect with Last-Event-ID when the old process ends their stream (a parting `retry:`), all
  through two hand-overs in a row with the journal on: no refused connection, every acknowledged
  publish received by every subscriber exactly once and in order, no hsc.gap;
- a SIGHUP or SIGUSR2 reaching the successor while it waits for the journal's directory does not
  end it (their default action): it serves once the old one has drained;
- with --listen-tls beside --listen, both kinds of socket are handed over (HSC_LISTEN_TLS_FDS):
  a client loop over HTTPS (a handshake per request) and one over cleartext see no refused
  connection and no failed request through two hand-overs, and afterwards the TLS port still
  speaks TLS only and the cleartext port cleartext;
- a successor that cannot start (its configuration file became bad) exits, and the old process
  keeps serving;
- systemd socket activation (LISTEN_FDS, LISTEN_PID): hscd serves on the socket it is given,
  and a socket held across a restart queues connections instead of refusing them; a socket
  named "tls" in LISTEN_FDNAMES is served as the --listen-tls one, the other stays cleartext.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

from hscd import HOST, SLOW, RawConn, ServerTestCase, binary, wait_for


class Load:
    """Threads that each open a connection per request, ask, and check the answer."""

    def __init__(self, port, threads=6, stream=False):
        self.port, self.stream = port, stream
        self.ok = 0
        self.failures = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def one(self):
        if self.stream:
            target = "/v1/stream?q=" + urllib.parse.quote("a b")
            want = b"Transfer-Encoding: chunked"
        else:
            target, want = "/healthz", b"ok\n"
        with socket.create_connection((HOST, self.port), timeout=20 * SLOW) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target)
                      .encode())
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        if not data.startswith(b"HTTP/1.1 200") or want not in data:
            raise AssertionError("bad answer %r" % data[:200])
        if self.stream and not data.endswith(b"0\r\n\r\n"):
            raise AssertionError("stream cut short %r" % data[-80:])

    def run(self):
        while not self.done.is_set():
            try:
                self.one()
                with self.lock:
                    self.ok += 1
            except Exception as e:  # refused, reset, a bad answer: all failures
                with self.lock:
                    self.failures.append(repr(e))

    def count(self):
        with self.lock:
            return self.ok

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(60 * SLOW)


class Publisher(threading.Thread):
    """Publishes "p<i>" to `channel` every few milliseconds, a fresh connection each time or
    (`keep_alive`) one connection as long as the server keeps it. A 503 (the old process drains)
    or a connection the server closed is retried with the same data; a refused connection is a
    failure. `acked` keeps the acknowledged ids in order."""

    def __init__(self, port, channel, keep_alive=False):
        super().__init__(daemon=True)
        self.port, self.channel, self.keep_alive = port, channel, keep_alive
        self.conn = None
        self.acked, self.failures = [], []
        self.retried = self.n503 = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.start()

    def one(self, data):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=20 * SLOW)
        c, self.conn = self.conn, None
        try:
            c.request("POST", "/v1/events?channel=" + self.channel, body=data.encode(),
                      headers={} if self.keep_alive else {"Connection": "close"})
            r = c.getresponse()
            body = r.read()
            if self.keep_alive and not r.will_close:
                self.conn, c = c, None
            if r.status == 503:
                self.n503 += 1
                return None
            if r.status != 200:
                raise AssertionError("publish: %d %r" % (r.status, body))
            return json.loads(body)["id"]
        finally:
            if c is not None:
                c.close()

    def run(self):
        i = 0
        while not self.done.is_set():
            try:
                eid = self.one("p%d" % i)
            except ConnectionRefusedError as e:
                self.failures.append(repr(e))
                eid = None
            except (ConnectionError, http.client.HTTPException, OSError):
                eid = None  # closed by the draining process before an answer: not acknowledged
            except AssertionError as e:
                self.failures.append(str(e))
                eid = None
            if eid is None:
                self.retried += 1
            else:
                with self.lock:
                    self.acked.append(eid)
                i += 1
            time.sleep(0.003)

    def count(self):
        with self.lock:
            return len(self.acked)

    def stop(self):
        self.done.set()
        self.join(60 * SLOW)


class Subscriber(threading.Thread):
    """An SSE subscriber on a raw HTTP/1.0 connection (the stream ends with a close). When the
    server ends the stream it reconnects with Last-Event-ID, at once (so while the old process
    still drains). Records every event as (type, id, data), the parting retry: lines, and the
    failures (a refused connection, an answer other than 200)."""

    def __init__(self, port, channel):
        super().__init__(daemon=True)
        self.port, self.channel = port, channel
        self.events, self.failures = [], []
        self.partings = self.connects = 0
        self.last = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.ready = threading.Event()
        self.start()

    def session(self):
        s = socket.create_connection((HOST, self.port), timeout=20 * SLOW)
        try:
            req = "GET /v1/events?channel=%s HTTP/1.0\r\nHost: x\r\n" % self.channel
            if self.last is not None:
                req += "Last-Event-ID: %s\r\n" % self.last
            s.sendall((req + "\r\n").encode())
            s.settimeout(0.2)
            buf, head = b"", None
            etype, eid, data, retries = None, None, [], 0
            while not self.done.is_set():
                try:
                    d = s.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    break
                buf += d
                if head is None:
                    if b"\r\n\r\n" not in buf:
                        continue
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise AssertionError("subscribe: %r" % head[:200])
                    self.connects += 1
                    self.ready.set()
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    line = line.decode()
                    if line == "":
                        if data:
                            with self.lock:
                                self.events.append((etype or "message", eid, "\n".join(data)))
                            if eid is not None:
                                self.last = eid
                        etype, eid, data = None, None, []
                    elif line.startswith("retry:"):
                        retries += 1
                    elif line.startswith("event:"):
                        etype = line[6:].strip()
                    elif line.startswith("id:"):
                        eid = line[3:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
            if retries >= 2 and not self.done.is_set():
                self.partings += 1  # a retry: after the preamble's, then the close
        finally:
            s.close()

    def run(self):
        while not self.done.is_set():
            try:
                self.session()
            except Exception as e:  # refused, reset, a bad answer: all failures
                self.failures.append(repr(e))
                time.sleep(0.05)

    def ids(self):
        with self.lock:
            return [e[1] for e in self.events]

    def stop(self):
        self.done.set()
        self.join(60 * SLOW)


class TlsLoad(Load):
    """Like Load over TLS: Python's ssl + http.client, a new connection (and handshake) each."""

    def __init__(self, port, ctx, threads=4):
        self.ctx = ctx
        super().__init__(port, threads)

    def one(self):
        conn = http.client.HTTPSConnection(HOST, self.port, context=self.ctx, timeout=20 * SLOW)
        try:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        if r.status != 200 or body != b"ok\n":
            raise AssertionError("bad answer %d %r" % (r.status, body[:200]))


class HandOver(ServerTestCase):
    def wait_log(self, srv, needle, n):
        self.assertTrue(wait_for(lambda: srv.log().count(needle) >= n, 30 * SLOW),
                        "no %d x %r\n%s" % (n, needle, srv.describe()))

    def stop_successors(self, srv):
        """Stops every successor our SIGUSR2 started that is still there (a failed test too)."""
        for pid in re.findall(r"SIGUSR2: started pid (\d+)", srv.log()):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if not f.read().startswith(binary().encode()):
                        continue  # gone, and the number reused: not ours
                os.kill(int(pid), signal.SIGTERM)
            except (OSError, ProcessLookupError):
                pass

    def test_two_hand_overs_under_load(self):
        srv = self.start("--threads", "2", "--max-gen-len", "2", "--interval", "50ms")
        self.addCleanup(self.stop_successors, srv)
        quick = Load(srv.port)
        streams = Load(srv.port, threads=2, stream=True)
        try:
            pid = srv.proc.pid
            for n in (1, 2):
                before = quick.count()
                self.assertTrue(wait_for(lambda: quick.count() > before + 50, 30 * SLOW))
                os.kill(pid, signal.SIGUSR2)
                self.wait_log(srv, "took over 2 sockets", n)
                pid = int(re.findall(r"hand-over: pid (\d+) took over", srv.log())[-1])
                self.wait_log(srv, "notice: stopped", n)  # the old one drained and exited
            self.assertEqual(srv.proc.wait(30 * SLOW), 0)  # the first hscd, long gone
            before = quick.count()
            self.assertTrue(wait_for(lambda: quick.count() > before + 50, 30 * SLOW))
        finally:
            quick.stop()
            streams.stop()
        self.assertEqual(quick.failures, [])
        self.assertEqual(streams.failures, [])
        self.assertGreater(streams.ok, 0)
        os.kill(pid, signal.SIGTERM)  # the last successor, started by our SIGUSR2
        self.wait_log(srv, "notice: stopped", 3)

    def test_two_hand_overs_with_listen_tls(self):
        from test_tls import Pki, client_ctx, tls_port
        pki = Pki()
        self.addCleanup(pki.cleanup)
        cert, key = pki.issue("srv")
        ctx = client_ctx(pki)
        srv = self.start("--threads", "2", "--tls-cert", cert, "--tls-key", key,
                         "--listen-tls", "%s:0" % HOST)
        self.addCleanup(self.stop_successors, srv)
        port_tls = tls_port(srv)
        clear = Load(srv.port, threads=3)
        tls = TlsLoad(port_tls, ctx, threads=3)
        try:
            pid = srv.proc.pid
            for n in (1, 2):
                before, before_tls = clear.count(), tls.count()
                self.assertTrue(wait_for(lambda: clear.count() > before + 50 and
                                         tls.count() > before_tls + 20, 30 * SLOW))
                os.kill(pid, signal.SIGUSR2)
                # Both workers' --listen and --listen-tls sockets: none bound again.
                self.wait_log(srv, "with 4 listening sockets (2 TLS)", n)
                self.wait_log(srv, "took over 4 sockets", n)
                pid = int(re.findall(r"hand-over: pid (\d+) took over", srv.log())[-1])
                self.wait_log(srv, "notice: stopped", n)  # the old one drained and exited
            self.assertEqual(srv.proc.wait(30 * SLOW), 0)  # the first hscd, long gone
            before, before_tls = clear.count(), tls.count()
            self.assertTrue(wait_for(lambda: clear.count() > before + 50 and
                                     tls.count() > before_tls + 20, 30 * SLOW))
        finally:
            clear.stop()
            tls.stop()
        self.assertEqual(clear.failures, [])
        self.assertEqual(tls.failures, [])
        # The last successor: the TLS port still speaks only TLS, the cleartext one cleartext.
        with socket.create_connection((HOST, port_tls), timeout=10 * SLOW) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 400"))
        with socket.create_connection((HOST, srv.port), timeout=10 * SLOW) as raw:
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                ctx.wrap_socket(raw, server_hostname="localhost")
        self.assertEqual(len(re.findall(r"listening on https://[^ ]*:%d \(TLS\)" % port_tls,
                                        srv.log())), 3)
        os.kill(pid, signal.SIGTERM)  # the last successor, started by our SIGUSR2
        self.wait_log(srv, "notice: stopped", 3)

    def test_subscribers_resume_exactly_across_two_hand_overs(self):
        srv = self.start("--threads", "2")
        self.assertIn("--data-dir", srv.args)  # the harness's own: the journal is on
        self.addCleanup(self.stop_successors, srv)
        subs = [Subscriber(srv.port, "h") for _ in range(3)]
        for s in subs:
            self.assertTrue(s.ready.wait(10 * SLOW), s.failures)
        pubs = [Publisher(srv.port, "h"), Publisher(srv.port, "h", keep_alive=True)]
        count = lambda: sum(p.count() for p in pubs)  # noqa: E731
        try:
            pid = srv.proc.pid
            for n in (1, 2):
                before = count()
                self.assertTrue(wait_for(lambda: count() > before + 100, 30 * SLOW))
                os.kill(pid, signal.SIGUSR2)
                self.wait_log(srv, "took over 2 sockets", n)
                pid = int(re.findall(r"hand-over: pid (\d+) took over", srv.log())[-1])
                self.wait_log(srv, "notice: stopped", n)  # the old one drained and exited
                # The successor serves (its journal replayed, its signals handled).
                before = count()
                self.assertTrue(wait_for(lambda: count() > before + 20, 30 * SLOW),
                                srv.describe())
            self.assertEqual(srv.proc.wait(30 * SLOW), 0)
            before = count()
            self.assertTrue(wait_for(lambda: count() > before + 100, 30 * SLOW))
        finally:
            for p in pubs:
                p.stop()
        # One channel, two publishers: the ids acknowledged, in the channel's order.
        acked = sorted(pubs[0].acked + pubs[1].acked, key=lambda i: int(i.rsplit("-", 1)[1]))
        try:
            for s in subs:
                self.assertTrue(wait_for(lambda: acked[-1] in s.ids(), 10 * SLOW),
                                "%s never came; have %r" % (acked[-1], s.ids()[-5:]))
        finally:
            for s in subs:
                s.stop()
            os.kill(pid, signal.SIGTERM)  # the last successor, started by our SIGUSR2
            self.wait_log(srv, "notice: stopped", 3)
        for p in pubs:
            self.assertEqual(p.failures, [])
        self.assertEqual(len(set(acked)), len(acked))
        for s in subs:
            self.assertEqual(s.failures, [])
            self.assertGreaterEqual(s.partings, 2)  # ended by each old process, with a retry:
            self.assertGreaterEqual(s.connects, 3)
            self.assertEqual([e for e in s.events if e[0] != "message"], [])  # no hsc.gap
            ids = s.ids()
            self.assertEqual(len(set(ids)), len(ids), "an event delivered twice")
            self.assertEqual([i for i in ids if i in set(acked)], acked)
            # Publishes answered 503 or cut off were not acknowledged; one may still have been
            # taken (the answer lost with the connection), never more than the retries.
            self.assertLessEqual(len(ids) - len(acked), sum(p.retried for p in pubs))

    def test_signals_while_the_successor_waits_for_the_data_directory(self):
        # A long answer keeps the old process draining (up to --drain-timeout), so the successor
        # waits for the journal's directory; a SIGHUP or SIGUSR2 then must not end it (their
        # default action), since the old one is already on its way out.
        srv = self.start("--threads", "2", "--max-gen-len", "200", "--interval", "50ms",
                         "--drain-timeout", "2s")
        self.addCleanup(self.stop_successors, srv)
        with RawConn(srv.port) as c:
            c.request("GET", "/v1/stream?q=" + urllib.parse.quote("a b"))
            c.read_response(head_only=True)
            srv.send_signal(signal.SIGUSR2)
            self.wait_log(srv, "waiting for the previous hscd to let go", 1)
            pid = int(re.findall(r"SIGUSR2: started pid (\d+)", srv.log())[-1])
            os.kill(pid, signal.SIGHUP)
            os.kill(pid, signal.SIGUSR2)
            self.assertEqual(srv.proc.wait(30 * SLOW), 0)
        self.wait_log(srv, "listening on", 2)
        with RawConn(srv.port) as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")
        self.assertEqual(srv.log().count("SIGUSR2: started pid"), 1)  # the successor's was ignored
        os.kill(pid, signal.SIGTERM)
        self.wait_log(srv, "notice: stopped", 2)

    def test_failed_successor_leaves_the_old_one_serving(self):
        fd, path = tempfile.mkstemp(prefix="hscd-", suffix=".conf")
        os.close(fd)
        self.addCleanup(os.unlink, path)
        with open(path, "w") as f:
            f.write("history 5\n")
        srv = self.start("--config", path)
        with open(path, "w") as f:
            f.write("history five\n")
        srv.send_signal(signal.SIGUSR2)
        self.wait_log(srv, path + ":1: history: invalid value 'five'", 1)
        self.assertTrue(srv.running())
        with RawConn(srv.port) as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")


class SocketActivation(ServerTestCase):
    def spawn(self, sock, log):
        """hscd with `sock` as descriptor 3 and LISTEN_FDS=1, LISTEN_PID its own pid."""
        fd = sock.fileno()
        cmd = 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" "$@"'
        if not hasattr(self, "data_dir"):  # one journal for the restarts, never the cwd's
            self.data_dir = tempfile.mkdtemp(prefix="hscd-data-")
            self.addCleanup(shutil.rmtree, self.data_dir, True)
        return subprocess.Popen(["/bin/sh", "-c", cmd, binary(), "--threads", "2",
                                 "--data-dir", self.data_dir],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3))

    def test_restart_with_a_held_socket(self):
        sock = socket.socket()
        sock.bind((HOST, 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        log = tempfile.TemporaryFile()
        self.addCleanup(log.close)
        self.addCleanup(sock.close)

        def logged():
            log.seek(0)
            return log.read().decode("utf-8", "replace")

        load = Load(port, threads=4)
        try:
            for n in (1, 2):
                p = self.spawn(sock, log)
                try:
                    self.assertTrue(wait_for(lambda: logged().count("listening on http://%s:%d"
                                                                    % (HOST, port)) >= n,
                                             30 * SLOW), logged())
                    before = load.count()
                    self.assertTrue(wait_for(lambda: load.count() > before + 50, 30 * SLOW))
                finally:
                    p.send_signal(signal.SIGTERM)
                    self.assertEqual(p.wait(30 * SLOW), 0, logged())
                # No hscd now: the held socket queues connections, it refuses none.
                time.sleep(0.2)
        finally:
            p = self.spawn(sock, log)  # serve what queued, then stop
            try:
                load.stop()
            finally:
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait(30 * SLOW), 0, logged())
        self.assertEqual(load.failures, [])
        self.assertNotIn("ERROR: AddressSanitizer", logged())

    def test_a_socket_named_tls_is_the_listen_tls_one(self):
        from test_tls import Pki, client_ctx, https
        pki = Pki()
        self.addCleanup(pki.cleanup)
        cert, key = pki.issue("srv")
        socks = []
        for _ in range(2):
            s = socket.socket()
            self.addCleanup(s.close)
            s.bind((HOST, 0))
            s.listen(128)
            socks.append(s)
        port, port_tls = (s.getsockname()[1] for s in socks)
        log = tempfile.TemporaryFile()
        self.addCleanup(log.close)
        fds = [s.fileno() for s in socks]

        def place():
            hi = [os.dup(fd) for fd in fds]  # above 4: placing one never overwrites the other
            for i, fd in enumerate(hi):
                os.dup2(fd, 3 + i)
        # systemd's order is the .socket file's; FileDescriptorName=tls marks the TLS one.
        cmd = 'LISTEN_FDS=2 LISTEN_FDNAMES=tls:web LISTEN_PID=$$ exec "$0" "$@"'
        p = subprocess.Popen(["/bin/sh", "-c", cmd, binary(), "--threads", "2", "--data-dir",
                              "none", "--tls-cert", cert, "--tls-key", key, "--listen-tls",
                              "%s:1" % HOST],  # the address is the socket's, not this one
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(3, 4),
                             preexec_fn=place)
        port, port_tls = port_tls, port  # descriptor 3 (the first socket) is the TLS one

        def logged():
            log.seek(0)
            return log.read().decode("utf-8", "replace")
        try:
            self.assertTrue(wait_for(lambda: "listening on https://%s:%d (TLS)" % (HOST, port_tls)
                                     in logged(), 30 * SLOW), logged())
            self.assertIn("listening on http://%s:%d" % (HOST, port), logged())
            self.assertEqual(https(port_tls, client_ctx(pki), "GET", "/healthz"), (200, b"ok\n"))
            with RawConn(port) as c:
                c.request("GET", "/healthz")
                self.assertEqual(c.read_response().body, b"ok\n")
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(30 * SLOW), 0, logged())


if __name__ == "__main__":
    unittest.main()
