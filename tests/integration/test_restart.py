"""Restarts that refuse no one (docs/operations.md, "Restart without refusing anyone").

Proves that:
- SIGUSR2 starts a successor hscd with the same arguments and the same listening sockets; once
  it has them it stops the old one, which drains: clients making a new connection per request
  all through two hand-overs in a row see no refused connection and no failed request, and
  answers streaming during the hand-over finish;
- a successor that cannot start (its configuration file became bad) exits, and the old process
  keeps serving;
- systemd socket activation (LISTEN_FDS, LISTEN_PID): hscd serves on the socket it is given,
  and a socket held across a restart queues connections instead of refusing them.
"""

import os
import re
import signal
import socket
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
        return subprocess.Popen(["/bin/sh", "-c", cmd, binary(), "--threads", "2"],
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


if __name__ == "__main__":
    unittest.main()
