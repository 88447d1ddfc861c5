"""Authorization (docs/security.md) against a real hscd: static bearer tokens per action, HS256
JWTs with channel claims (exact names and prefix patterns), exp/nbf, tokens from the
Authorization header, the hsc_token cookie or access_token=, 401 versus 403, a multi-channel
subscription refused whole, the key never on the command line, tokens kept out of the log, and
the demo open with no flags. Tokens are minted here with Python's hmac, independently of hscd.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from hscd import (
    HOST,
    Hscd,
    RawConn,
    ServerTestCase,
    assert_error_response,
    binary,
    free_port,
    is_connection_refused,
    run_hscd,
    wait_for,
)

KEY = b"an HS256 key of at least 32 bytes, for tests only"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, key=KEY, alg="HS256"):
    h = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    p = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(key, (h + "." + p).encode(), hashlib.sha256).digest())
    return h + "." + p + "." + sig


def q(s):
    return urllib.parse.quote(s, safe="")


class Base(ServerTestCase):
    def request(self, srv, method, target, headers=(), body=None):
        with RawConn(srv.port) as c:
            c.request(method, target, list(headers), body=body)
            return c.read_response()

    def publish(self, srv, channel, headers=(), extra=""):
        return self.request(srv, "POST", "/v1/events?channel=%s%s" % (q(channel), extra),
                            headers, body="x")

    def subscribe_status(self, srv, channels, headers=(), extra=""):
        """The status of a subscription, and its error body when it was refused."""
        target = "/v1/events?" + "&".join("channel=" + q(c) for c in channels) + extra
        with RawConn(srv.port) as c:
            c.request("GET", target, list(headers))
            line = c.read_line(time.monotonic() + 10)
            status = int(line.split()[1])
            if status == 200:
                return status, b""
        r = self.request(srv, "GET", target, headers)
        self.assertEqual(r.status, status)
        assert_error_response(self, r, status)
        return status, r.body

    def stream_status(self, srv, headers=()):
        return self.request(srv, "POST", "/v1/stream", headers, body="hi")

    def assert_401(self, r, reason=None):
        assert_error_response(self, r, 401)
        self.assertTrue((r.header("WWW-Authenticate") or "").startswith("Bearer"), r.headers)
        if reason is not None:
            self.assertIn(reason.encode(), r.body)

    def start_quiet(self, *args):
        """A server whose log level may hide 'listening on': on a port chosen here, ready once
        it accepts a connection."""
        port = free_port()
        srv = Hscd(*args, listen=None)
        srv.args = ["--listen", "%s:%d" % (HOST, port)] + srv.args
        self._servers.append(srv)
        self.addCleanup(self.stop_clean, srv)
        fd, srv._log_path = tempfile.mkstemp(prefix="hscd-", suffix=".log")
        try:
            srv.proc = subprocess.Popen([binary()] + srv.args, stdin=subprocess.DEVNULL,
                                        stdout=fd, stderr=fd, close_fds=True)
        finally:
            os.close(fd)
        srv.port = port
        self.assertTrue(wait_for(lambda: not is_connection_refused(port), timeout=10),
                        srv.describe())
        return srv

    def bearer(self, token):
        return [("Authorization", "Bearer " + token)]

    def key_file(self, key=KEY, newline=True):
        f = tempfile.NamedTemporaryFile(delete=False)
        f.write(key + (b"\n" if newline else b""))
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name


class Open(Base):
    def test_no_flags_everything_is_open(self):
        srv = self.start()
        self.assertEqual(self.publish(srv, "news").status, 200)
        self.assertEqual(self.subscribe_status(srv, ["news"])[0], 200)
        self.assertEqual(self.stream_status(srv).status, 200)
        self.assertEqual(self.request(srv, "GET", "/").status, 200)


class StaticTokens(Base):
    def test_publish_token(self):
        srv = self.start("--publish-token", "pub-secret")
        self.assert_401(self.publish(srv, "news"), "token is required")
        self.assert_401(self.publish(srv, "news", self.bearer("pub-secreT")), "bad token")
        self.assert_401(self.publish(srv, "news", self.bearer("pub-secret-longer")))
        self.assert_401(self.publish(srv, "news", [("Authorization", "Basic cHViLXNlY3JldA==")]))
        self.assertEqual(self.publish(srv, "news", self.bearer("pub-secret")).status, 200)
        self.assertEqual(self.publish(srv, "news", [("Authorization", "bearer  pub-secret ")])
                         .status, 200)
        self.assertEqual(self.publish(srv, "news", [("Cookie", "a=1; hsc_token=pub-secret")])
                         .status, 200)
        self.assertEqual(self.publish(srv, "news", extra="&access_token=pub-secret").status, 200)
        # Only publishing is protected.
        self.assertEqual(self.subscribe_status(srv, ["news"])[0], 200)
        self.assertEqual(self.stream_status(srv).status, 200)
        # Nothing refused was published: the three accepted ones only.
        r = self.publish(srv, "news", self.bearer("pub-secret"))
        self.assertTrue(json.loads(r.body)["id"].endswith("-5"), r.body)

    def test_subscribe_and_stream_tokens(self):
        srv = self.start("--subscribe-token", "sub-secret", "--stream-token", "ask-secret")
        self.assertEqual(self.subscribe_status(srv, ["news"])[0], 401)
        self.assertEqual(self.subscribe_status(srv, ["news"], self.bearer("ask-secret"))[0], 401)
        self.assertEqual(self.subscribe_status(srv, ["news"], self.bearer("sub-secret"))[0], 200)
        self.assertEqual(self.subscribe_status(srv, ["news"], [("Cookie", "hsc_token=sub-secret")])
                         [0], 200)
        self.assertEqual(self.subscribe_status(srv, ["news"], extra="&access_token=sub-secret")
                         [0], 200)
        self.assert_401(self.stream_status(srv))
        self.assertEqual(self.stream_status(srv, self.bearer("ask-secret")).status, 200)
        self.assertEqual(self.publish(srv, "news").status, 200)

    def test_trailer_fields_carry_no_credentials(self):
        # RFC 9110 §6.5.1: trailer fields are not merged into the header section. A token in a
        # chunked body's trailer authorises nothing.
        srv = self.start("--publish-token", "pub-secret")
        head = (b"POST /v1/events?channel=news HTTP/1.1\r\nHost: x\r\n%s"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n%s\r\n")
        for trailer in (b"Authorization: Bearer pub-secret\r\n",
                        b"Cookie: hsc_token=pub-secret\r\n",
                        b"X-A: 1\r\nAuthorization: Bearer pub-secret\r\n"):
            with self.subTest(trailer=trailer), RawConn(srv.port) as c:
                c.send(head % (b"", trailer))
                self.assert_401(c.read_response())
                c.send(head % (b"Authorization: Bearer pub-secret\r\n", trailer))
                self.assertEqual(c.read_response().status, 200)
        # A wrong token in the trailer does not undo the right one in the header either.
        with RawConn(srv.port) as c:
            c.send(head % (b"Authorization: Bearer pub-secret\r\n",
                           b"Authorization: Bearer wrong\r\n"))
            self.assertEqual(c.read_response().status, 200)

    def test_a_token_never_reaches_the_log(self):
        # Wherever a token may be given, in whatever spelling hscd accepts (the query is
        # percent-decoded: access_%74oken is access_token), and at every log level.
        secret = "s3cret-Tok3n"
        places = [
            ([("Authorization", "Bearer " + secret)], ""),
            ([("Cookie", "a=1; hsc_token=" + secret)], ""),
            ([], "&access_token=" + secret),
            ([], "&access_%74oken=" + secret),
            ([], "&%61ccess_token=" + secret),
            ([], "&%61%63%63%65%73%73%5F%74%6F%6B%65%6E=" + secret),
            ([], "&access_token=" + q(secret).replace("3", "%33")),
            ([], "&access_token=x&access_token=" + secret + "&b=2"),
        ]
        for level in ("error", "warn", "notice", "info", "debug"):
            with self.subTest(level=level):
                srv = self.start_quiet("--publish-token", secret, "--log-level", level,
                                       "--max-gen-len", "1", "--interval", "1ms")
                for headers, extra in places:
                    status = 401 if extra.startswith("&access_token=x") else 200
                    self.assertEqual(self.publish(srv, "news", headers, extra).status, status,
                                     (headers, extra))
                    self.assertEqual(self.subscribe_status(srv, ["news"], headers, extra)[0],
                                     200)
                    self.assertEqual(self.stream_status(srv, headers).status, 200)
                srv.stop()
                log = srv.log()
                self.assertNotIn(secret, log)
                self.assertNotIn(secret.replace("3", "%33"), log)
                if level in ("info", "debug"):
                    self.assertIn("access_%74oken=***", log)  # the requests were logged

    def test_tokens_from_the_environment_and_bad_values(self):
        env = dict(os.environ, HSC_PUBLISH_TOKEN="from-env")
        srv = self.start(env=env)
        self.assert_401(self.publish(srv, "news"))
        self.assertEqual(self.publish(srv, "news", self.bearer("from-env")).status, 200)
        for bad in ("", "has space", "tab\there"):
            rc, _, err = run_hscd(["--publish-token", bad, "--listen", HOST + ":0"])
            self.assertEqual(rc, 2, err)
            self.assertIn("--publish-token", err)


class Jwt(Base):
    def start_jwt(self, *args):
        return self.start("--jwt-key-file", self.key_file(), *args)

    def test_channel_claims(self):
        srv = self.start_jwt()
        now = int(time.time())
        tok = jwt({"hsc_pub": ["news", "chat.*"], "hsc_sub": ["news", "user.42.*"],
                   "exp": now + 600})
        h = self.bearer(tok)
        self.assertEqual(self.publish(srv, "news", h).status, 200)
        self.assertEqual(self.publish(srv, "chat.room1", h).status, 200)
        r = self.publish(srv, "alerts", h)
        assert_error_response(self, r, 403)
        self.assertIn(b"publishing to channel alerts", r.body)
        r = self.publish(srv, "chat", h)  # "chat.*" is a prefix pattern: "chat" itself is not in
        self.assertEqual(r.status, 403)
        self.assertEqual(self.subscribe_status(srv, ["news"], h)[0], 200)
        self.assertEqual(self.subscribe_status(srv, ["news", "user.42.inbox"], h)[0], 200)
        # One channel not covered: the whole subscription is refused.
        status, body = self.subscribe_status(srv, ["news", "user.43.inbox"], h)
        self.assertEqual(status, 403)
        self.assertIn(b"subscribing to channel user.43.inbox", body)
        # With a key, every action needs a token; this one has no hsc_stream.
        self.assert_401(self.publish(srv, "news"))
        self.assertEqual(self.subscribe_status(srv, ["news"])[0], 401)
        self.assertEqual(self.stream_status(srv, h).status, 403)
        self.assertEqual(self.stream_status(srv, self.bearer(jwt({"hsc_stream": True}))).status,
                         200)

    def test_cookie_and_query_carry_a_jwt(self):
        srv = self.start_jwt()
        tok = jwt({"hsc_sub": ["*"], "hsc_pub": ["*"]})
        self.assertEqual(self.subscribe_status(srv, ["a", "b"], [("Cookie", "hsc_token=" + tok)])
                         [0], 200)
        self.assertEqual(self.subscribe_status(srv, ["a"], extra="&access_token=" + q(tok))[0],
                         200)
        self.assertEqual(self.publish(srv, "a", extra="&access_token=" + tok).status, 200)

    def test_refused_tokens(self):
        srv = self.start_jwt()
        now = int(time.time())
        cases = [
            (jwt({"hsc_pub": ["*"], "exp": now - 1}), "token expired"),
            (jwt({"hsc_pub": ["*"], "nbf": now + 600}), "not valid yet"),
            (jwt({"hsc_pub": ["*"]}, key=b"another key, also long enough......"),
             "bad token signature"),
            (jwt({"hsc_pub": ["*"]}, alg="none"), "HS256"),
            (jwt({"hsc_pub": ["*"]}, alg="HS512"), "HS256"),
            (jwt({"hsc_pub": ["*"], "exp": "tomorrow"}), "numbers"),
            ("not.a.token", "malformed"),
            ("x" * 9000, None),
        ]
        for tok, reason in cases:
            with self.subTest(reason=reason):
                self.assert_401(self.publish(srv, "news", self.bearer(tok)), reason)
        # alg=none with an empty signature (the classic forgery)
        h = b64(json.dumps({"alg": "none"}).encode())
        p = b64(json.dumps({"hsc_pub": ["*"]}).encode())
        self.assert_401(self.publish(srv, "news", self.bearer(h + "." + p + ".")))
        self.assertEqual(self.publish(srv, "news", self.bearer(jwt({"hsc_pub": ["*"]}))).status,
                         200)

    def test_static_token_still_works_with_a_key(self):
        srv = self.start_jwt("--publish-token", "ops-token")
        self.assertEqual(self.publish(srv, "anything", self.bearer("ops-token")).status, 200)
        self.assertEqual(self.subscribe_status(srv, ["x"], self.bearer("ops-token"))[0], 401)

    def test_key_from_environment_never_on_the_command_line(self):
        env = dict(os.environ, HSC_TEST_JWT_KEY=KEY.decode())
        srv = self.start("--jwt-key-env", "HSC_TEST_JWT_KEY", env=env)
        self.assertEqual(self.publish(srv, "n", self.bearer(jwt({"hsc_pub": ["n"]}))).status, 200)
        with open("/proc/%d/cmdline" % srv.proc.pid, "rb") as f:
            self.assertNotIn(KEY, f.read())

    def test_bad_keys_are_command_line_errors(self):
        short = self.key_file(b"too short")
        for args, needle in (
            (["--jwt-key-file", short], "32 to 4096 bytes"),
            (["--jwt-key-file", "/nonexistent/key"], "cannot read"),
            (["--jwt-key-env", "HSC_TEST_UNSET_VARIABLE"], "not set"),
        ):
            rc, _, err = run_hscd(args + ["--listen", HOST + ":0"])
            self.assertEqual(rc, 2, err)
            self.assertIn(needle, err)

    def test_tokens_are_not_logged(self):
        srv = self.start_jwt("--log-level", "info")
        tok = jwt({"hsc_pub": ["*"]})
        self.assertEqual(self.publish(srv, "news", extra="&access_token=" + tok).status, 200)
        self.assertEqual(self.publish(srv, "news", self.bearer(tok)).status, 200)
        srv.stop()
        log = srv.log()
        self.assertIn("access_token=***", log)
        self.assertNotIn(tok.split(".")[2], log)


if __name__ == "__main__":
    unittest.main()
