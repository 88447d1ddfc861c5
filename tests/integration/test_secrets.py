"""Responders never receive hscd's secrets (issue 21, item 5; docs/responders.md, "Environment").

An --exec process and a pool worker see hscd's environment less HSC_*, the variable named by
--jwt-key-env and any variable holding the key or a static token; the request's token is
removed from QUERY_STRING (the pool's `query`), however its name is percent-encoded; the
Authorization and Cookie headers reach no responder. Each test sends a real token in every
place a client may put one and looks for it in everything the responder saw.
"""

import base64
import hashlib
import hmac
import json
import os
import shlex
import shutil
import tempfile
import unittest

from hscd import SSE, RawConn, ServerTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
RESPONDER = os.path.join(HERE, "responders", "responder.py")
WORKER = os.path.join(HERE, "pool_workers", "worker.py")

KEY = "an HS256 key of at least 32 bytes, for the secrets test"
KEY_VAR = "APP_SECRETS_TEST_JWT_KEY"  # not HSC_*: only --jwt-key-env can keep it out
STREAM_TOKEN = "static-stream-token-for-the-secrets-test"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, key=KEY):
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(key.encode(), (h + "." + p).encode(), hashlib.sha256).digest())
    return h + "." + p + "." + sig


TOKEN = jwt({"hsc_stream": True, "sub": "secrets-test"})

# Every spelling of the token parameter hscd reads as access_token, with other pairs around it
# that must stay, in order.
QUERIES = [
    ("q=W&access_token=%s&y=2" % TOKEN, "q=W&y=2"),
    ("access_%%74oken=%s&q=W" % TOKEN, "q=W"),
    ("q=W&%%61ccess_token=%s" % TOKEN, "q=W"),
    ("q=W&access%%5Ftoken=%s&access_token=%s" % (TOKEN, TOKEN), "q=W"),
    ("q=W&access_token=%s" % TOKEN, "q=W"),
]


class ResponderSecrets(ServerTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hsc-secrets-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def server(self, pool):
        env = dict(os.environ)
        env[KEY_VAR] = KEY
        env["APP_SECRETS_TEST_COPY"] = KEY  # the key under another name: kept out by its value
        env["HSC_STREAM_TOKEN"] = STREAM_TOKEN
        env["APP_SECRETS_TEST_PLAIN"] = "kept"
        if pool:
            cmd = " ".join(shlex.quote(a) for a in ["python3", "-S", WORKER, "--dir", self.dir])
            args = ["--pool", "1", "--threads", "1", "--exec", cmd]
        else:
            args = ["--exec", " ".join(shlex.quote(a) for a in ["python3", "-S", RESPONDER,
                                                                "environ"])]
        return self.start(*args, "--jwt-key-env", KEY_VAR, env=env)

    def ask(self, srv, query, pool, headers=()):
        """What the responder saw for GET /v1/stream?QUERY (q=W: the text, W the worker's command
        "environ" for a pool): (its environment, its QUERY_STRING)."""
        with RawConn(srv.port) as c:
            c.request("GET", "/v1/stream?" + query.replace("q=W", "q=environ"),
                      list(SSE) + list(headers))
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        events = [e for e in r.body.decode().split("\n\n") if e.strip()]
        data = "".join(line[6:] if line.startswith("data: ") else ""
                       for e in events[:-1] for line in e.split("\n"))
        got = json.loads(data)
        environ = got if pool else got["environ"]
        return environ, environ.get("QUERY_STRING")

    def check(self, pool):
        srv = self.server(pool)
        for query, kept in QUERIES:
            with self.subTest(query=query):
                environ, qs = self.ask(srv, query, pool)
                for var in (KEY_VAR, "APP_SECRETS_TEST_COPY"):
                    self.assertFalse(var in environ, "%s reached the responder" % var)
                self.assertEqual(environ.get("APP_SECRETS_TEST_PLAIN"), "kept")
                self.assertEqual([k for k in environ if k.startswith("HSC_")],
                                 [] if pool else sorted(k for k in environ
                                                        if k in ("HSC_REQUEST_ID",
                                                                 "HSC_CONTENT_TYPE")))
                blob = json.dumps(environ)
                for name, secret in (("key", KEY), ("token", TOKEN), ("static token",
                                                                        STREAM_TOKEN)):
                    self.assertFalse(secret in blob, "the %s reached the responder" % name)
                if not pool:
                    self.assertEqual(qs, kept.replace("q=W", "q=environ"))
        # The header and the cookie: authorised, and never passed on.
        for h in (("Authorization", "Bearer " + TOKEN), ("Cookie", "a=1; hsc_token=" + TOKEN)):
            with self.subTest(header=h[0]):
                environ, qs = self.ask(srv, "q=W", pool, [h])
                blob = json.dumps(environ)
                self.assertFalse(TOKEN in blob, "the token reached the responder")
                self.assertFalse(KEY in blob, "the key reached the responder")
        return srv

    def test_exec_environment_has_no_secret(self):
        self.check(pool=False)

    def test_pool_worker_environment_and_meta_have_no_secret(self):
        srv = self.check(pool=True)
        # The meta frame's query: the same stripping as QUERY_STRING.
        for query, kept in QUERIES:
            with self.subTest(query=query):
                with RawConn(srv.port) as c:
                    c.request("GET", "/v1/stream?" + query.replace("q=W", "q=meta"), list(SSE))
                    r = c.read_response()
                self.assertEqual(r.status, 200, r)
                body = r.body.decode()
                self.assertFalse(TOKEN in body, "the token reached the worker's meta frame")
                self.assertIn("\ndata: query=%s\n" % kept.replace("q=W", "q=meta"), body)


if __name__ == "__main__":
    unittest.main()
