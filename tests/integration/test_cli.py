"""The hscd command line and process life cycle.

Proves that:
- `hscd --help` exits 0 and documents every flag with its default; `--version` exits 0;
- a bad flag value, a missing value, an unknown flag or a stray argument exits 2 with a message
  naming the flag, and never starts a server;
- listening on an address in use (a plain socket, or another hscd) exits 1 with a clear message;
- SIGTERM/SIGINT: hscd stops accepting, closes idle connections at once, lets a stream finish
  within --drain-timeout, cuts one that does not (chunked: no last chunk; SSE: no done event;
  HTTP/1.0: a reset, not an orderly close) and exits 0 within a bounded time;
- listening on an address that is not loopback with no token or JWT key logs a warning that says
  what is open and how to protect it; loopback, or any token or key, does not;
- SIGHUP reloads the configuration (test_config.py) with one notice line and interrupts
  nothing: the stream in progress goes on and hscd keeps serving; during the drain it is ignored.
"""

import os
import re
import signal
import socket
import time
import unittest

from hscd import (
    HOST,
    SLOW,
    ServerTestCase,
    is_connection_refused,
    parse_sse,
    pieces,
    run_hscd,
    wait_for,
)

# flag -> the default --help must show (None: a switch or an alias, no default)
FLAGS = {
    "--listen": "127.0.0.1:8000",
    "--threads": "cores",
    "--max-gen-len": "10",
    "--interval": "200ms",
    "--legacy-get": None,
    "--server_ip": None,
    "--server_port": None,
    "--max_gen_len": None,
    "--max-connections": "10000",
    "--max-header-bytes": "16k",
    "--max-body-bytes": "1m",
    "--max-queue-bytes": "1m",
    "--header-timeout": "10s",
    "--idle-timeout": "60s",
    "--drain-timeout": "5s",
    "--log-level": "notice",
}


class Help(unittest.TestCase):

    def test_help_lists_every_flag_with_its_default(self):
        rc, out, err = run_hscd(["--help"])
        self.assertEqual(rc, 0, err)
        self.assertIn("Usage", out)
        lines = out.splitlines()
        for flag, default in FLAGS.items():
            with self.subTest(flag=flag):
                idx = [i for i, l in enumerate(lines) if re.match(r"^\s+%s\b" % re.escape(flag), l)
                       and not re.match(r"^\s+%s[-_]" % re.escape(flag), l)]
                self.assertEqual(len(idx), 1, "%s is not listed once in --help:\n%s" % (flag, out))
                if default is None:
                    continue
                # the flag's entry: its line and the continuation lines up to the next entry
                entry = [lines[idx[0]]]
                for l in lines[idx[0] + 1:]:
                    if not l.startswith("    ") or l.lstrip().startswith("-"):
                        break
                    entry.append(l)
                m = re.search(r"\(default:? ([^)]*)\)", " ".join(entry))
                self.assertIsNotNone(m, "no default shown for %s: %r" % (flag, entry))
                self.assertEqual(m.group(1).strip(), default)
        self.assertIn("-h, --help", out)
        self.assertIn("--version", out)

    def test_short_help_and_version(self):
        rc, out, _ = run_hscd(["-h"])
        self.assertEqual(rc, 0)
        self.assertIn("--listen", out)
        rc, out, _ = run_hscd(["--version"])
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^hscd \d+\.\d+\.\d+")


class BadCommandLines(unittest.TestCase):

    CASES = [
        (["--interval", "abc"], "--interval"),
        (["--interval", "-1"], "--interval"),
        (["--interval", "5x"], "--interval"),
        (["--threads", "0"], "--threads"),
        (["--threads", "257"], "--threads"),
        (["--threads", "two"], "--threads"),
        (["--max-body-bytes", "1x"], "--max-body-bytes"),
        (["--max-body-bytes", "-5"], "--max-body-bytes"),
        (["--max-header-bytes", "10"], "--max-header-bytes"),
        (["--max-queue-bytes", "1k"], "--max-queue-bytes"),
        (["--max-connections", "0"], "--max-connections"),
        (["--max-gen-len", "-1"], "--max-gen-len"),
        (["--max_gen_len", "ten"], "--max[-_]gen[-_]len"),  # the alias or its modern name
        (["--header-timeout", "0"], "--header-timeout"),
        (["--idle-timeout", "soon"], "--idle-timeout"),
        (["--drain-timeout", "1y"], "--drain-timeout"),
        (["--log-level", "loud"], "--log-level"),
        (["--listen", "nope"], "--listen"),
        (["--listen", "127.0.0.1"], "--listen"),
        (["--listen", "127.0.0.1:99999"], "--listen"),
        (["--listen", "999.0.0.1:80"], "--listen"),
        (["--bogus"], "--bogus"),
        (["--bogus=3"], "--bogus"),
        (["--threads"], "--threads"),  # missing value
        (["--listen"], "--listen"),
        (["stray"], "stray"),
        # credentials only ever go to exact origins
        (["--cors-credentials"], "--cors-credentials"),
        (["--cors-credentials", "--cors-origin", "*"], "--cors-credentials"),
        (["--cors-credentials", "--cors-origin", " * , "], "--cors-credentials"),
    ]

    def check(self, args, name):
        rc, out, err = run_hscd(args)
        self.assertEqual(rc, 2, "%s: exit %d, stderr %r" % (args, rc, err))
        self.assertRegex(err, re.escape(name) if "[" not in name else name,
                         "%s: the message does not name %s" % (args, name))
        self.assertNotIn("listening", err)
        return err

    def test_bad_values_exit_2_naming_the_flag(self):
        for args, name in self.CASES:
            with self.subTest(args=args):
                self.check(args, name)

    def test_unknown_short_option_is_named(self):
        # hscd's only short option is -h; "-x" must be reported as unknown, by its name.
        err = self.check(["-x"], "-x")
        self.assertNotIn("needs a value", err)

    def test_switch_given_a_value(self):
        # --legacy-get takes no value; the message must not claim that it needs one.
        err = self.check(["--legacy-get=yes"], "--legacy-get")
        self.assertNotIn("needs a value", err)

    def test_template_alias_errors_name_the_alias(self):
        # The user typed --server_port / --server_ip: the message should name that flag, not
        # --listen, which was never given.
        for args, name in [(["--server_port", "abc"], "--server_port"),
                           (["--server_port", "70000"], "--server_port"),
                           (["--server_ip", "nope"], "--server_ip")]:
            with self.subTest(args=args):
                self.check(args, name)


class AddressInUse(ServerTestCase):

    def test_port_taken_by_a_listening_socket(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            s.listen(8)
            port = s.getsockname()[1]
            rc, out, err = run_hscd(["--listen", "%s:%d" % (HOST, port)])
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot listen on %s:%d" % (HOST, port), err)
        self.assertRegex(err.lower(), r"address already in use|in use")

    def test_port_taken_by_another_hscd(self):
        # hscd binds with SO_REUSEPORT; a second hscd must still be refused, not share the port.
        first = self.start()
        rc, out, err = run_hscd(["--listen", "%s:%d" % (HOST, first.port)])
        self.assertEqual(rc, 1, err)
        self.assertRegex(err.lower(), r"in use")
        with first.connect() as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")


class ListenForms(ServerTestCase):

    def test_localhost_means_127_0_0_1(self):
        srv = self.start(listen="localhost:0")
        self.assertIn("listening on http://127.0.0.1:%d" % srv.port, srv.log())
        with srv.connect() as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")

    # Every interface, but the test only ever connects through 127.0.0.1.
    OPEN_WARNING = r"warn: .*not loopback.*no token or JWT key"

    def test_every_interface_without_tokens_is_a_warning(self):
        for listen in ("0.0.0.0:0", ":0"):
            with self.subTest(listen=listen):
                srv = self.start(listen=listen)
                self.assertIn("listening on http://0.0.0.0:%d" % srv.port, srv.log())
                lines = [l for l in srv.log().splitlines() if re.search(self.OPEN_WARNING, l)]
                self.assertEqual(len(lines), 1, srv.log())
                w = lines[0]
                # what is open, and how to protect it
                for word in ("0.0.0.0", "every interface", "port %d" % srv.port, "publish",
                             "subscribe", "/v1/stream", "/metrics", "--publish-token",
                             "--subscribe-token", "--stream-token", "--jwt-key-file",
                             "docs/security.md", "127.0.0.1"):
                    self.assertIn(word, w)
                with srv.connect() as c:
                    c.request("GET", "/healthz")
                    self.assertEqual(c.read_response().body, b"ok\n")
                self.stop_clean(srv)

    def test_no_warning_on_loopback_or_with_a_token(self):
        for listen, args in (("127.0.0.1:0", ()), ("127.8.9.10:0", ()),
                             ("0.0.0.0:0", ("--publish-token", "s3cret")),
                             ("0.0.0.0:0", ("--stream-token", "s3cret")),
                             ("0.0.0.0:0", ("--jwt-key-env", "HSC_TEST_KEY"))):
            with self.subTest(listen=listen, args=args):
                env = dict(os.environ, HSC_TEST_KEY="k" * 32)
                srv = self.start(*args, listen=listen, env=env)
                self.assertNotRegex(srv.log(), self.OPEN_WARNING)
                self.stop_clean(srv)

    def test_threads_flag_is_reported(self):
        srv = self.start("--threads", "3")
        self.assertRegex(srv.log(), r"listening on http://127\.0\.0\.1:%d \(3 threads\)"
                         % srv.port)


class Shutdown(ServerTestCase):

    def stream_started(self, srv, target="/v1/stream?q=drain", headers=(), version="HTTP/1.1"):
        c = srv.connect(timeout=20)
        c.request("GET", target, headers, version=version)
        # wait for the first piece: the stream is running
        deadline = time.monotonic() + 10 * SLOW
        while b"[1/" not in c.buf:
            self.assertTrue(c._fill(deadline), "closed before the first piece")
        return c

    def test_sigterm_lets_a_short_stream_finish(self):
        srv = self.start("--max-gen-len", "5", "--interval", "250ms", "--drain-timeout", "5s")
        idle = srv.connect()
        idle.request("GET", "/healthz")
        self.assertEqual(idle.read_response().body, b"ok\n")
        c = self.stream_started(srv)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        # idle keep-alive connections are closed at once
        self.assertIn(idle.wait_closed(timeout=5), ("fin", "reset"))
        idle.close()
        # new connections are refused while the stream drains
        self.assertTrue(wait_for(lambda: is_connection_refused(srv.port), timeout=2),
                        "still accepting connections after SIGTERM")
        r = c.read_response(timeout=20)
        c.close()
        self.assertTrue(r.complete, "the stream was cut although it fit in --drain-timeout: %r" % r)
        self.assertEqual(r.text(), "".join(pieces(5, "drain")))
        rc = srv.wait(10 * SLOW)
        self.assertEqual(rc, 0, srv.describe())
        self.assertLess(time.monotonic() - t0, 5 * SLOW)

    def test_sigterm_cuts_a_long_stream_after_drain_timeout(self):
        srv = self.start("--max-gen-len", "10", "--interval", "500ms", "--drain-timeout", "300ms")
        c = self.stream_started(srv)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        r = c.read_response(timeout=20)
        c.close()
        cut_after = time.monotonic() - t0
        self.assertEqual(r.status, 200)
        self.assertFalse(r.complete, "a cut stream ended with the last chunk: %r" % r)
        self.assertLess(len(r.chunks), 10)
        self.assertLess(cut_after, 3 * SLOW, "not cut near --drain-timeout")
        rc = srv.wait(10 * SLOW)
        self.assertEqual(rc, 0, srv.describe())

    def test_sigterm_cut_sse_has_no_done_event(self):
        srv = self.start("--max-gen-len", "10", "--interval", "500ms", "--drain-timeout", "300ms")
        c = self.stream_started(srv, headers=[("Accept", "text/event-stream")])
        srv.send_signal(signal.SIGTERM)
        r = c.read_response(timeout=20)
        c.close()
        events = parse_sse(r.body)
        self.assertNotIn("done", [t for t, _ in events], "a cut SSE stream ended with done")
        self.assertEqual(srv.wait(10 * SLOW), 0, srv.describe())

    def test_sigterm_cut_http10_stream_is_a_reset(self):
        # docs/api.md: a failed close-delimited (HTTP/1.0) answer ends with a reset; an orderly
        # close would tell the client the answer is complete.
        srv = self.start("--max-gen-len", "10", "--interval", "500ms", "--drain-timeout", "300ms")
        c = self.stream_started(srv, version="HTTP/1.0")
        srv.send_signal(signal.SIGTERM)
        data, how = c.read_eof(timeout=20)
        c.close()
        self.assertEqual(srv.wait(10 * SLOW), 0, srv.describe())
        self.assertNotIn(b"[10/10]", c.buf + data)
        self.assertEqual(how, "reset", "the cut HTTP/1.0 answer ended with an orderly close, "
                                      "which means 'complete' to the client")

    def test_sigint_is_like_sigterm(self):
        srv = self.start("--max-gen-len", "3", "--interval", "200ms")
        c = self.stream_started(srv)
        srv.send_signal(signal.SIGINT)
        r = c.read_response(timeout=20)
        c.close()
        self.assertTrue(r.complete)
        self.assertEqual(srv.wait(10 * SLOW), 0, srv.describe())

    def test_sighup_reloads_without_interrupting(self):
        srv = self.start("--max-gen-len", "4", "--interval", "200ms")
        c = self.stream_started(srv)
        srv.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "SIGHUP" in srv.log(), timeout=5), srv.describe())
        r = c.read_response(timeout=20)
        c.close()
        self.assertTrue(r.complete, "the stream was cut by SIGHUP: %r" % r)
        self.assertEqual(r.text(), "".join(pieces(4, "drain")))
        self.assertTrue(srv.running(), "hscd exited on SIGHUP\n" + srv.describe())
        with srv.connect() as h:
            h.request("GET", "/healthz")
            self.assertEqual(h.read_response().body, b"ok\n")
        lines = [l for l in srv.log().splitlines() if "SIGHUP" in l]
        self.assertEqual(len(lines), 1, srv.log())
        self.assertRegex(lines[0], r"notice: SIGHUP: configuration reloaded")
        self.assertNotIn("draining", srv.log())
        # During the drain too: the stream in progress still finishes and hscd exits 0.
        c = self.stream_started(srv)
        srv.send_signal(signal.SIGTERM)
        self.assertTrue(wait_for(lambda: "SIGTERM: draining" in srv.log(), timeout=5),
                        srv.describe())
        srv.send_signal(signal.SIGHUP)
        r = c.read_response(timeout=20)
        c.close()
        self.assertTrue(r.complete, "the drained stream was cut by SIGHUP: %r" % r)
        self.assertEqual(srv.wait(10 * SLOW), 0, srv.describe())

    def test_idle_server_exits_at_once(self):
        srv = self.start("--drain-timeout", "30s")
        conns = [srv.connect() for _ in range(5)]
        try:
            for c in conns[:3]:
                c.request("GET", "/healthz")
                c.read_response()
            t0 = time.monotonic()
            rc = srv.stop(timeout=10)
            self.assertEqual(rc, 0, srv.describe())
            self.assertLess(time.monotonic() - t0, 3 * SLOW, "idle connections delayed the exit")
        finally:
            for c in conns:
                c.close()

    def test_half_sent_request_does_not_hold_shutdown_forever(self):
        srv = self.start("--drain-timeout", "500ms", "--header-timeout", "60s")
        c = srv.connect()
        c.send(b"GET /healthz HTTP/1.1\r\nHo")  # a head that never ends
        time.sleep(0.1)
        t0 = time.monotonic()
        rc = srv.stop(timeout=10)
        c.close()
        self.assertEqual(rc, 0, srv.describe())
        self.assertLess(time.monotonic() - t0, 3 * SLOW)


if __name__ == "__main__":
    unittest.main()
