"""The configuration file (hscd --config FILE, docs/operations.md) against a real hscd.

Proves that:
- `hscd --check --config FILE` exits 0 for a good file and 2 for a bad one, naming the file and
  the line of the first mistake (unknown setting, bad value, an action such as help);
- a running hscd takes its settings from the file (the listen address, a token), and a flag on
  the command line overrides the file's value;
- on SIGHUP (class Reload) hscd reads the file again: a changed token applies to the next
  request while a subscriber opened before stays connected and keeps receiving; so do a rotated
  JWT key file and changed CORS origins; a broken file
  is refused with its line number in the log and the running configuration stays; new history
  bounds apply to the channels that exist (their oldest events leave); a setting that needs a
  restart is logged as such and keeps its running value.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import tempfile
import unittest

from hscd import HOST, RawConn, ServerTestCase, run_hscd, wait_for


def write_conf(text, path=None):
    """Writes `text` to `path`, or to a new temporary file; returns the path."""
    if path is None:
        fd, path = tempfile.mkstemp(prefix="hscd-", suffix=".conf")
        os.close(fd)
    tmp = path + ".new"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)  # as an editor or a deployment tool would: the whole file at once
    return path


class ConfTestCase(ServerTestCase):
    def conf(self, text):
        path = write_conf(text)
        self.addCleanup(os.unlink, path)
        return path

    def publish(self, srv, token, channel="c", body="x"):
        headers = [("Authorization", "Bearer " + token)] if token else []
        with RawConn(srv.port) as c:
            c.request("POST", "/v1/events?channel=" + channel, headers, body=body)
            return c.read_response().status


class Check(ConfTestCase):
    def test_good_file(self):
        path = self.conf("# hscd.conf\n\nlisten 127.0.0.1:0\nhistory 500  # events\n"
                         "exec \"sh -c 'echo hi'\"\nlegacy-get off\n")
        rc, out, err = run_hscd(["--check", "--config", path])
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out)

    def test_errors_name_file_and_line(self):
        cases = [
            ("history 5\nhistroy 6\n", ":2: unknown setting 'histroy'"),
            ("\n\n# c\nhistory -5\n", ":4: history: invalid value '-5'"),
            ("help\n", ":1: 'help' is a command-line action"),
            ("exec \"open\n", ":1: a quoted value must end with"),
            ("max-connections\n", ":1: max-connections needs a value"),
        ]
        for text, want in cases:
            with self.subTest(text=text):
                path = self.conf(text)
                rc, out, err = run_hscd(["--check", "--config", path])
                self.assertEqual(rc, 2, err)
                self.assertIn(path + want, err)

    def test_missing_file(self):
        rc, out, err = run_hscd(["--check", "--config", "/nonexistent/hscd.conf"])
        self.assertEqual(rc, 2)
        self.assertIn("cannot read '/nonexistent/hscd.conf'", err)

    def test_command_line_errors_still_checked(self):
        path = self.conf("history 5\n")
        rc, out, err = run_hscd(["--check", "--config", path, "--history", "x"])
        self.assertEqual(rc, 2)
        self.assertIn("--history: invalid value 'x'", err)


class FileSettings(ConfTestCase):
    def test_server_runs_from_the_file(self):
        path = self.conf("listen %s:0\npublish-token from-file\n" % HOST)
        srv = self.start("--config", path, listen=None)
        self.assertEqual(self.publish(srv, "from-file"), 200)
        self.assertEqual(self.publish(srv, "wrong"), 401)

    def test_command_line_overrides_the_file(self):
        path = self.conf("listen 127.0.0.1:1\npublish-token from-file\n")
        srv = self.start("--config", path, "--publish-token", "from-cli")
        self.assertEqual(self.publish(srv, "from-cli"), 200)
        self.assertEqual(self.publish(srv, "from-file"), 401)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, key):
    """An HS256 token, minted here independently of hscd."""
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(key, (h + "." + p).encode(), hashlib.sha256).digest())
    return h + "." + p + "." + sig


def wait_data(conn, needle, timeout=10.0):
    """Reads from `conn` until `needle` (bytes) has arrived; fails if the stream ends first."""
    deadline = conn._deadline(timeout)
    while needle not in conn.buf:
        if not conn._fill(deadline):
            raise AssertionError("the stream ended (%s) before %r" % (conn.eof, needle))


class Reload(ConfTestCase):
    BASE = "listen %s:0\nsubscribe-token sub-1\n" % HOST

    def subscribe(self, srv, token):
        c = RawConn(srv.port)
        self.addCleanup(c.close)
        c.request("GET", "/v1/events?channel=c", [("Authorization", "Bearer " + token)])
        r = c.read_response(head_only=True)
        self.assertEqual(r.status, 200)
        return c

    def reload(self, srv, want):
        """Sends SIGHUP and waits for the log line `want` (one more than before)."""
        before = srv.log().count(want)
        srv.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: srv.log().count(want) > before, 10),
                        "no %r after SIGHUP\n%s" % (want, srv.describe()))

    def test_token_changes_and_subscribers_stay(self):
        path = self.conf(self.BASE + "publish-token old-token\n")
        srv = self.start("--config", path, "--threads", "2", listen=None)
        sub = self.subscribe(srv, "sub-1")
        self.assertEqual(self.publish(srv, "old-token", body="before"), 200)
        wait_data(sub, b"before")

        write_conf(self.BASE + "publish-token new-token\n", path)
        self.reload(srv, "configuration reloaded")
        # Every worker takes the new snapshot up between callbacks: wait until all have, by
        # asking until the old token is refused several times in a row on new connections.
        self.assertTrue(wait_for(lambda: all(self.publish(srv, "old-token") == 401
                                             for _ in range(8)), 10))
        self.assertEqual(self.publish(srv, "new-token", body="after"), 200)
        wait_data(sub, b"after")  # the subscriber opened before the reload is still there
        self.assertIsNone(sub.eof)

    def test_bad_file_keeps_running_configuration(self):
        path = self.conf(self.BASE + "publish-token old-token\n")
        srv = self.start("--config", path, listen=None)
        sub = self.subscribe(srv, "sub-1")
        write_conf(self.BASE + "publish-token new-token\nhistory lots\n", path)
        self.reload(srv, "configuration refused")
        self.assertIn(path + ":4: history: invalid value 'lots'", srv.log())
        self.assertTrue(srv.running())
        self.assertEqual(self.publish(srv, "old-token", body="still"), 200)
        self.assertEqual(self.publish(srv, "new-token"), 401)
        wait_data(sub, b"still")
        os.unlink(path)  # a missing file is refused too
        self.addCleanup(write_conf, "", path)  # for the cleanup's unlink
        self.reload(srv, "configuration refused")
        self.assertEqual(self.publish(srv, "old-token"), 200)

    def get(self, srv, target, headers=()):
        with RawConn(srv.port) as c:
            c.request("GET", target, list(headers))
            return c.read_response()

    def test_jwt_key_rotates(self):
        key_a, key_b = b"a" * 40, b"b" * 40
        kfd, key_path = tempfile.mkstemp(prefix="hscd-", suffix=".key")
        os.close(kfd)
        self.addCleanup(os.unlink, key_path)
        write_conf(key_a.decode(), key_path)
        path = self.conf("listen %s:0\njwt-key-file %s\n" % (HOST, key_path))
        srv = self.start("--config", path, listen=None)
        tok_a, tok_b = jwt({"hsc_pub": ["c"]}, key_a), jwt({"hsc_pub": ["c"]}, key_b)
        self.assertEqual(self.publish(srv, tok_a), 200)
        self.assertEqual(self.publish(srv, tok_b), 401)
        write_conf(key_b.decode(), key_path)  # the file is read again on SIGHUP
        self.reload(srv, "configuration reloaded")
        self.assertTrue(wait_for(lambda: all(self.publish(srv, tok_a) == 401
                                             for _ in range(8)), 10))
        self.assertEqual(self.publish(srv, tok_b), 200)

    def test_cors_origins_change(self):
        base = "listen %s:0\n" % HOST
        path = self.conf(base + "cors-origin https://old.example\n")
        srv = self.start("--config", path, listen=None)
        acao = "Access-Control-Allow-Origin"
        old, new = [("Origin", "https://old.example")], [("Origin", "https://new.example")]
        self.assertEqual(self.get(srv, "/healthz", old).header(acao), "https://old.example")
        self.assertIsNone(self.get(srv, "/healthz", new).header(acao))
        write_conf(base + "cors-origin https://new.example\n", path)
        self.reload(srv, "configuration reloaded")
        self.assertTrue(wait_for(lambda: all(self.get(srv, "/healthz", old).header(acao) is None
                                             for _ in range(8)), 10))
        self.assertEqual(self.get(srv, "/healthz", new).header(acao), "https://new.example")

    def test_restart_only_setting_is_kept_and_logged(self):
        path = self.conf(self.BASE + "max-gen-len 10\n")
        srv = self.start("--config", path, listen=None)
        write_conf(self.BASE + "max-gen-len 20\nlog-level debug\n", path)
        self.reload(srv, "configuration reloaded")
        self.assertIn("reload: --max-gen-len changed: it needs a restart", srv.log())

    def metric(self, srv, name):
        with RawConn(srv.port) as c:
            c.request("GET", "/metrics")
            body = c.read_response().body.decode()
        return int(float(re.search(r"^%s (\S+)$" % name, body, re.M).group(1)))

    def test_history_bounds_change(self):
        base = "listen %s:0\n" % HOST
        path = self.conf(base + "history 10\n")
        srv = self.start("--config", path, listen=None)
        for i in range(10):
            self.assertEqual(self.publish(srv, None, channel="h", body="e%d" % i), 200)
        self.assertEqual(self.metric(srv, "hsc_history_events"), 10)
        write_conf(base + "history 3\n", path)
        self.reload(srv, "configuration reloaded")
        self.assertEqual(self.metric(srv, "hsc_history_events"), 3)  # the oldest left
        self.assertEqual(self.metric(srv, "hsc_history_evicted_total"), 7)
        for i in range(5):
            self.publish(srv, None, channel="h", body="f%d" % i)
        self.assertEqual(self.metric(srv, "hsc_history_events"), 3)
        write_conf(base + "history 8\n", path)
        self.reload(srv, "configuration reloaded")
        for i in range(10):
            self.publish(srv, None, channel="h", body="g%d" % i)
        self.assertEqual(self.metric(srv, "hsc_history_events"), 8)
        self.assertNotIn("needs a restart", srv.log())


if __name__ == "__main__":
    unittest.main()
