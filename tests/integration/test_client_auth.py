"""hsc with credentials (docs/cli.md, docs/security.md): --token and $HSC_TOKEN (the flag wins)
on send, listen and publish against an hscd started with static tokens; -H headers, checked
before anything is sent; a token never printed, neither the one given nor one riding in a URL's
access_token parameter (whatever the spelling of its key); `hsc token` minting JWTs that an hscd
holding the same key accepts for exactly the channels they name, and refuses once expired.

The client binary comes from $HSC (set by ctest). Every subprocess is bounded by a timeout and
stopped by its own PID.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest

from hscd import HOST, SLOW, ServerTestCase
from test_client import Listener, hsc_binary, no_sanitizer_report

KEY = b"an HS256 key of at least 32 bytes, for tests only"

PUB, SUB, ASK = "pub-s3cret", "sub-s3cret", "ask-s3cret"
SECRETS = (PUB, SUB, ASK, "wrong-s3cret", "env-s3cret")


def run(args, env=None, input=None, timeout=20.0):
    """hsc ARGS, with $HSC_URL and $HSC_TOKEN unset unless `env` sets them."""
    e = dict(os.environ)
    e.pop("HSC_URL", None)
    e.pop("HSC_TOKEN", None)
    e.update(env or {})
    return subprocess.run([hsc_binary()] + args, input=input, capture_output=True,
                          timeout=timeout * SLOW, env=e)


class Base(ServerTestCase):
    def assert_nothing_secret(self, r):
        for s in SECRETS:
            self.assertNotIn(s.encode(), r.stdout + r.stderr, r.stderr)
        no_sanitizer_report(self, r.stderr)


class StaticTokens(Base):
    def setUp(self):
        self.srv = self.start("--publish-token", PUB, "--subscribe-token", SUB,
                              "--stream-token", ASK, "--max-gen-len", "2", "--interval", "10ms")
        self.url = "http://%s:%d" % (HOST, self.srv.port)

    def publish(self, *extra, env=None):
        r = run(["publish", "--url", self.url, "-c", "news"] + list(extra) + ["hello"], env=env)
        self.assert_nothing_secret(r)
        return r

    def test_publish_with_token_flag_and_environment(self):
        r = self.publish()
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"HTTP 401", r.stderr)
        self.assertEqual(self.publish("--token", PUB).returncode, 0)
        self.assertEqual(self.publish(env={"HSC_TOKEN": PUB}).returncode, 0)
        # The flag wins over the environment, both ways.
        self.assertEqual(self.publish("--token", PUB, env={"HSC_TOKEN": "wrong-s3cret"})
                         .returncode, 0)
        r = self.publish("--token", "wrong-s3cret", env={"HSC_TOKEN": PUB})
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"HTTP 401", r.stderr)
        # -H sends any header: here the credential itself.
        self.assertEqual(self.publish("-H", "Authorization: Bearer " + PUB).returncode, 0)

    def test_send_with_token(self):
        r = run(["send", "--url", self.url, "hi"])
        self.assertEqual(r.returncode, 4, r.stderr)
        r = run(["send", "--url", self.url, "--token", ASK, "hi"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count(b"\n"), 2, r.stdout)
        self.assert_nothing_secret(r)
        r = run(["send", "--url", self.url, "--sse", "hi"], env={"HSC_TOKEN": ASK})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_listen_with_token(self):
        r = run(["listen", "--url", self.url, "-c", "news", "-q"])
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"HTTP 401", r.stderr)
        for how in (["--token", SUB], ["-H", "authorization: Bearer " + SUB]):
            with self.subTest(how=how[0]):
                l = Listener(["--url", self.url, "-c", "news", "--count", "1"] + how)
                try:
                    # Published until the listener, once subscribed, has seen one.
                    for _ in range(int(50 * SLOW)):
                        self.assertEqual(self.publish("--token", PUB).returncode, 0)
                        if l.wait_lines(1, timeout=0.2):
                            break
                    self.assertEqual(l.proc.wait(10 * SLOW), 0, l.err)
                finally:
                    l.stop()
                self.assertEqual(l.lines[0], "hello\n")
                self.assertIn(b"connected to", l.err)
                for s in SECRETS:
                    self.assertNotIn(s.encode(), l.err)


class Redaction(Base):
    """A token in a URL's access_token parameter is never printed: not in the 'connected to'
    notice, not in a usage error that quotes the URL."""

    def test_access_token_in_a_url_is_not_printed(self):
        srv = self.start("--subscribe-token", SUB)
        for key in ("access_token", "access_%74oken", "%61ccess_token"):
            with self.subTest(key=key):
                url = "http://%s:%d/v1/events?channel=news&%s=%s" % (HOST, srv.port, key, SUB)
                r = run(["listen", "--timeout", "%ds" % max(1, int(SLOW)), url])
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(("connected to http://%s:%d/v1/events?channel=news&%s=***"
                               % (HOST, srv.port, key)).encode(), r.stderr)
                self.assert_nothing_secret(r)
        r = run(["listen", "localhost/v1/events?access_token=" + SUB])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"not a URL (http://...): localhost/v1/events?access_token=***\n",
                      r.stderr)
        self.assert_nothing_secret(r)


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class MintedTokens(Base):
    """`hsc token` against hscd --jwt-key-file: what it mints is checked here with Python's hmac
    and json, independently of both, and hscd allows exactly what the token names."""

    def setUp(self):
        f = tempfile.NamedTemporaryFile(delete=False)
        f.write(KEY + b"\n")  # the final line end is not part of the key, for both programs
        f.close()
        self.addCleanup(os.unlink, f.name)
        self.key_file = f.name
        self.srv = self.start("--jwt-key-file", f.name, "--max-gen-len", "2", "--interval",
                              "10ms")
        self.url = "http://%s:%d" % (HOST, self.srv.port)

    def mint(self, *args, env=None):
        r = run(["token"] + list(args), env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, b"")
        self.assertNotIn(KEY, r.stdout)
        token = r.stdout.decode()
        self.assertTrue(token.endswith("\n") and token.count("\n") == 1, token)
        return token.strip()

    def cmd(self, token, *args):
        r = run([args[0], "--url", self.url, "--token", token] + list(args[1:]))
        self.assertNotIn(token.encode(), r.stdout + r.stderr)
        no_sanitizer_report(self, r.stderr)
        return r

    def test_a_minted_token_is_what_its_claims_say(self):
        t0 = int(time.time())
        tok = self.mint("--key-file", self.key_file, "--publish", "user.42.*", "--subscribe",
                        "news", "--subscribe", "user.42.inbox", "--subject", "user-42",
                        "--ttl", "1h")
        h, p, sig = tok.split(".")
        self.assertEqual(json.loads(unb64(h)), {"alg": "HS256", "typ": "JWT"})
        claims = json.loads(unb64(p))
        exp = claims.pop("exp")
        # At least an hour: exp is rounded up to a whole second.
        self.assertTrue(t0 + 3600 <= exp <= int(time.time()) + 3601, (t0, exp))
        self.assertEqual(claims, {"sub": "user-42", "hsc_pub": ["user.42.*"],
                                  "hsc_sub": ["news", "user.42.inbox"]})
        want = hmac.new(KEY, (h + "." + p).encode(), hashlib.sha256).digest()
        self.assertEqual(unb64(sig), want)
        self.assertNotIn("=", tok)  # base64url without padding

        # hscd allows exactly those channels.
        self.assertEqual(self.cmd(tok, "publish", "-c", "user.42.outbox", "x").returncode, 0)
        r = self.cmd(tok, "publish", "-c", "alerts", "x")
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"HTTP 403: the token does not allow publishing to channel alerts",
                      r.stderr)
        r = self.cmd(tok, "publish", "-c", "news", "x")  # subscribe is not publish
        self.assertEqual(r.returncode, 4, r.stderr)
        r = self.cmd(tok, "listen", "-c", "news", "-c", "user.42.inbox", "--timeout", "1s")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"connected to", r.stderr)
        r = self.cmd(tok, "listen", "-c", "news", "-c", "user.43.inbox", "-q")
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"HTTP 403: the token does not allow subscribing to channel user.43.inbox",
                      r.stderr)
        r = self.cmd(tok, "send", "hi")  # no --stream
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"HTTP 403", r.stderr)

    def test_stream_token_from_a_key_in_the_environment(self):
        tok = self.mint("--key-env", "HSC_TEST_KEY", "--stream",
                        env={"HSC_TEST_KEY": KEY.decode()})
        self.assertEqual(json.loads(unb64(tok.split(".")[1]))["hsc_stream"], True)
        r = self.cmd(tok, "send", "hi")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count(b"\n"), 2, r.stdout)
        r = self.cmd(tok, "publish", "-c", "news", "x")
        self.assertEqual(r.returncode, 4, r.stderr)

    def test_an_expired_token_is_refused(self):
        t0 = time.time()
        tok = self.mint("--key-file", self.key_file, "--publish", "*", "--ttl", "2s")
        exp = json.loads(unb64(tok.split(".")[1]))["exp"]
        self.assertGreaterEqual(exp, t0 + 2)  # the token lasts at least --ttl
        r = self.cmd(tok, "publish", "-c", "news", "x")
        self.assertEqual(r.returncode, 0, (r.stderr, t0, exp, time.time()))
        time.sleep(max(0.0, exp - time.time()) + 0.2)  # hscd refuses from the second exp on
        r = self.cmd(tok, "publish", "-c", "news", "x")
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"HTTP 401", r.stderr)
        self.assertIn(b"expired", r.stderr)

    def test_another_key_is_refused(self):
        tok = self.mint("--key-env", "K", "--publish", "*", env={"K": "x" * 32})
        r = self.cmd(tok, "publish", "-c", "news", "x")
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn(b"HTTP 401", r.stderr)

    def test_bad_command_lines(self):
        short = tempfile.NamedTemporaryFile(delete=False)
        short.write(b"short-s3cret\n")
        short.close()
        self.addCleanup(os.unlink, short.name)
        kf = ["--key-file", self.key_file]
        for args, what in (
            (["--stream"], b"--key-file FILE or --key-env VAR"),
            (kf + ["--key-env", "K", "--stream"], b"one of --key-file"),
            (kf, b"would allow nothing"),
            (kf + ["--subscribe", "bad name"], b"--subscribe: 'bad name' is not a channel pattern"),
            (kf + ["--publish", "a*b"], b"--publish: 'a*b' is not a channel pattern"),
            (kf + ["--stream", "--ttl", "0"], b"--ttl"),
            (kf + ["--stream", "--ttl", "soon"], b"--ttl"),
            (kf + ["--stream", "extra"], b"unexpected argument 'extra'"),
            (["--key-file", short.name, "--stream"], b"the key must be 32 to 4096 bytes"),
            (["--key-file", "/nonexistent/key", "--stream"], b"cannot read"),
            (["--key-env", "HSC_TEST_UNSET_VARIABLE", "--stream"], b"is not set"),
            (["--key=short-s3cret", "--stream"], b"'--key'"),  # no key on the command line
        ):
            with self.subTest(args=args):
                r = run(["token"] + args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(what, r.stderr)
                self.assertEqual(r.stdout, b"")
                self.assertNotIn(b"short-s3cret", r.stderr)
                self.assertNotIn(KEY, r.stderr)


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request's headers; answers a GET with one event, a POST with a publish
    answer (JSON) or, on /v1/stream, a plain text answer."""

    protocol_version = "HTTP/1.0"
    seen = []

    def log_message(self, *a):
        pass

    def answer(self, ctype, body):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        Recorder.seen.append(("GET", self.headers.items()))
        if self.path.startswith("/deny"):  # a reason that quotes the request, token and all
            self.send_response(403)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"no entry for " + self.path.encode() + b"\n")
            return
        self.answer("text/event-stream", b"data: ok\n\n")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Recorder.seen.append(("POST", self.headers.items()))
        if self.path.startswith("/v1/stream"):
            self.answer("text/plain; charset=utf-8", b"ok\n")
        else:
            self.answer("application/json", b'{"id":"1-1"}')


class Headers(Base):
    def setUp(self):
        Recorder.seen = []
        self.httpd = socketserver.ThreadingTCPServer((HOST, 0), Recorder)
        self.httpd.daemon_threads = True
        self.url = "http://%s:%d" % (HOST, self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def tearDown(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def headers_of_last(self, name):
        return [v for k, v in Recorder.seen[-1][1] if k.lower() == name.lower()]

    def test_every_command_sends_the_headers(self):
        extra = ["-H", "X-Trace: 42", "--header", "X-Other:two words"]
        for cmd in (["send"] + extra + ["hi"],
                    ["publish", "-c", "a"] + extra + ["hi"],
                    ["listen", "-c", "a", "--count", "1", "-q"] + extra):
            with self.subTest(cmd=cmd[0]):
                r = run(cmd[:1] + ["--url", self.url] + cmd[1:])
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(self.headers_of_last("X-Trace"), ["42"])
                self.assertEqual(self.headers_of_last("X-Other"), ["two words"])
                self.assertEqual(self.headers_of_last("Authorization"), [])

    def test_an_option_after_the_text_is_not_sent_as_text(self):
        """getopt stops at the text: `publish -c a hello --token T` would publish the words
        "hello --token T" to everyone on the channel. An option among the words is refused;
        after `--`, the words are sent as they are."""
        for cmd in (["send"], ["publish", "-c", "a"]):
            for late in (["--token", "wrong-s3cret"], ["--token=wrong-s3cret"],
                         ["-H", "Authorization: Bearer wrong-s3cret"], ["--url", self.url]):
                with self.subTest(cmd=cmd[0], late=late[0]):
                    r = run(cmd[:1] + ["--url", self.url] + cmd[1:] + ["hello"] + late)
                    self.assertEqual(r.returncode, 2, r.stderr)
                    self.assertIn(b"options go before the text", r.stderr)
                    self.assert_nothing_secret(r)
        r = run(["listen", self.url + "/stream", "--token=wrong-s3cret"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"'--token' after the URL: options go before the URL", r.stderr)
        self.assert_nothing_secret(r)
        self.assertEqual(Recorder.seen, [], "nothing is sent after a usage error")
        r = run(["publish", "--url", self.url, "-c", "a", "--", "hello", "--token", "x"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["send", "--url", self.url, "--", "-5", "degrees", "-H"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["send", "--url", self.url, "what", "is", "--tokenism?"])  # not an option
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_a_header_replaces_the_one_hsc_sends(self):
        r = run(["listen", "--url", self.url, "-c", "a", "--count", "1", "-q",
                 "--token", "ignored-s3cret", "-H", "Authorization: Bearer wrong-s3cret",
                 "-H", "Accept: text/event-stream, */*"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.headers_of_last("Authorization"), ["Bearer wrong-s3cret"])
        self.assertEqual(self.headers_of_last("Accept"), ["text/event-stream, */*"])
        self.assert_nothing_secret(r)

    def test_token_goes_where_it_belongs(self):
        r = run(["publish", "--url", self.url, "-c", "a", "x"], env={"HSC_TOKEN": "env-s3cret"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.headers_of_last("Authorization"), ["Bearer env-s3cret"])
        # $HSC_TOKEN belongs to the server of --url / $HSC_URL: it is not sent to a URL given to
        # listen. --token, given for that URL, is.
        r = run(["listen", "--count", "1", "-q", self.url + "/elsewhere"],
                env={"HSC_TOKEN": "env-s3cret"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.headers_of_last("Authorization"), [])
        r = run(["listen", "--count", "1", "-q", "--token", "wrong-s3cret",
                 self.url + "/elsewhere"], env={"HSC_TOKEN": "env-s3cret"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.headers_of_last("Authorization"), ["Bearer wrong-s3cret"])
        r = run(["listen", "--count", "1", "-q", "-c", "a"],
                env={"HSC_TOKEN": "env-s3cret", "HSC_URL": self.url})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.headers_of_last("Authorization"), ["Bearer env-s3cret"])

    def test_a_server_quoting_the_token_is_redacted(self):
        r = run(["listen", self.url + "/deny?channel=a&access_%74oken=wrong-s3cret"])
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertEqual(r.stderr, b"hsc listen: HTTP 403: no entry for "
                                   b"/deny?channel=a&access_%74oken=***\n")
        self.assert_nothing_secret(r)

    def test_bad_headers_and_tokens_are_usage_errors_that_show_no_secret(self):
        cases = [
            (["-H", "NoColon-s3cret"], b"-H: not a header 'Name: value'"),
            (["-H", "Bad Name-s3cret: v"], b"-H: not a header 'Name: value'"),
            (["-H", ": wrong-s3cret"], b"-H: not a header 'Name: value'"),
            (["-H", "X-A: wrong-s3cret\r\nX-Injected: 1"],
             b"-H X-A: the value holds CR, LF or another control character"),
            (["-H", "X-A: wrong-s3cret\nX-B: 1"], b"-H X-A: the value holds"),
            (["--token", "two wrong-s3cret"], b"--token: not a valid token"),
            (["--token", "wrong-s3cret\r\nX-Injected: 1"], b"--token: not a valid token"),
            (["--token", ""], b"--token: not a valid token"),
            (["--tokn=wrong-s3cret"], b"unknown option or missing value: '--tokn'"),
        ]
        for cmd in (["send"], ["publish", "-c", "a"], ["listen", "-c", "a"]):
            for extra, what in cases:
                with self.subTest(cmd=cmd[0], extra=extra):
                    text = [] if cmd[0] == "listen" else ["x"]
                    r = run(cmd + ["--url", self.url] + extra + text)
                    self.assertEqual(r.returncode, 2, r.stderr)
                    self.assertIn(what, r.stderr)
                    self.assertIn(b"Try 'hsc %s --help'." % cmd[0].encode(), r.stderr)
                    self.assert_nothing_secret(r)
        r = run(["publish", "--url", self.url, "-c", "a", "x"],
                env={"HSC_TOKEN": "wrong-s3cret with a space"})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"$HSC_TOKEN: not a valid token", r.stderr)
        self.assert_nothing_secret(r)
        self.assertEqual(Recorder.seen, [], "nothing is sent after a usage error")


if __name__ == "__main__":
    unittest.main()
