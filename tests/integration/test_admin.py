"""The admin API (docs/api.md, "Admin API") against a real hscd, with real clients: Python's
http.client, curl, raw sockets and `hsc channels` / `hsc info` / `hsc disconnect`.

Proves that:
- without --admin-token the API is off (404 with a one-line reason naming the flag); with it, no
  token or a wrong one is 401, a valid JWT (a token for something else) 403, the admin token 200;
- the listing counts subscriptions and history right with subscribers spread over two threads,
  in name order, paged by `after`/`next` with each channel once; bad `limit`/`after` and bad or
  missing channel names are 400, an unknown channel 404;
- one channel's info gives its history (first and last id, the last publish's time) and
  presence: subscriptions under their JWT's `sub` (tokens minted with `hsc token`), the others
  anonymous;
- disconnect ends every subscription of the channel on every thread as a drain does (a parting
  `retry:`, then the last chunk or, on HTTP/1.0, a close), leaves other channels alone, and the
  clients reconnect with Last-Event-ID and resume exactly;
- `hsc channels`, `hsc info` and `hsc disconnect` print what the API says, and exit 4 with the
  server's reason when refused.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.parse

from hscd import HOST, SLOW, ServerTestCase, assert_error_response, wait_for

ADMIN = "4dm1n-t0ken"
KEY = b"an HS256 key of at least 32 bytes, for tests only"


def hsc_binary():
    path = os.environ.get("HSC", "")
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("HSC is not set to the hsc binary: run through ctest")
    return path


def run_hsc(args, env=None, timeout=20.0):
    e = dict(os.environ)
    for k in ("HSC_URL", "HSC_TOKEN", "HSC_ADMIN_TOKEN"):
        e.pop(k, None)
    e.update(env or {})
    p = subprocess.run([hsc_binary()] + args, capture_output=True, timeout=timeout * SLOW, env=e)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def q(s):
    return urllib.parse.quote(s, safe="")


class Response:
    """What http.client answered, with the fields assert_error_response() reads."""

    def __init__(self, r):
        self.status = r.status
        self.headers = r.getheaders()
        self.body = r.read()
        self.complete = True

    def header(self, name):
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self):
        return json.loads(self.body)


def call(srv, method, target, token=ADMIN, headers=None):
    c = http.client.HTTPConnection(HOST, srv.port, timeout=10 * SLOW)
    try:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        c.request(method, target, body=b"" if method == "POST" else None, headers=h)
        return Response(c.getresponse())
    finally:
        c.close()


def publish(srv, channel, data, token=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    c = http.client.HTTPConnection(HOST, srv.port, timeout=10 * SLOW)
    try:
        c.request("POST", "/v1/events?channel=" + q(channel), body=data.encode(), headers=h)
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body)
        return json.loads(body)["id"]
    finally:
        c.close()


class Sub:
    """A subscription on a raw socket: the head and preamble are read (so it is registered),
    then events as they come."""

    def __init__(self, srv, channels, token=None, last=None, version="HTTP/1.1"):
        self.sock = socket.create_connection((HOST, srv.port), timeout=10 * SLOW)
        self.version = version
        req = "GET /v1/events?%s %s\r\nHost: x\r\n" % (
            "&".join("channel=" + q(c) for c in channels), version)
        if token:
            req += "Authorization: Bearer %s\r\n" % token
        if last:
            req += "Last-Event-ID: %s\r\n" % last
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        self.eof = False
        self.read_until(lambda b: b"\r\n\r\n" in b and b": hsc " in b)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"200", head

    def read_until(self, done, timeout=10.0):
        deadline = time.monotonic() + timeout * SLOW
        while not done(self.buf):
            if self.eof:
                raise AssertionError("closed before expected: %r" % self.buf[-300:])
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError("timed out; have %r" % self.buf[-300:])
            if not chunk:
                self.eof = True
            self.buf += chunk
        return self.buf

    def wait_data(self, data):
        self.read_until(lambda b: b"data: " + data.encode() + b"\n" in b)

    def ended(self):
        """Whether the stream ended cleanly: the last chunk (HTTP/1.1) or a close (HTTP/1.0)."""
        if self.version == "HTTP/1.0":
            return self.eof
        return self.buf.endswith(b"\r\n0\r\n\r\n")

    def close(self):
        self.sock.close()


class AdminCase(ServerTestCase):
    def subs(self, srv, n, channels, **kw):
        out = [Sub(srv, channels, **kw) for _ in range(n)]
        for s in out:
            self.addCleanup(s.close)
        return out


class Off(AdminCase):
    def test_without_the_admin_token_the_api_is_off(self):
        srv = self.start("--threads", "2")
        for method, target in (("GET", "/v1/admin/channels"),
                               ("GET", "/v1/admin/channel?channel=news"),
                               ("POST", "/v1/admin/disconnect?channel=news")):
            for token in (None, ADMIN):
                r = call(srv, method, target, token=token)
                assert_error_response(self, r, 404)
                self.assertIn(b"--admin-token", r.body)


class Auth(AdminCase):
    def test_only_the_admin_token_opens_the_api(self):
        key = tempfile.NamedTemporaryFile(delete=False)
        key.write(KEY)
        key.close()
        self.addCleanup(os.unlink, key.name)
        srv = self.start("--admin-token", ADMIN, "--jwt-key-file", key.name,
                         "--subscribe-token", "sub-token")
        rc, jwt, err = run_hsc(["token", "--key-file", key.name, "--subject", "root",
                                "--subscribe", "*", "--publish", "*", "--stream"])
        self.assertEqual(rc, 0, err)
        jwt = jwt.strip()
        for target in ("/v1/admin/channels", "/v1/admin/channel?channel=news"):
            r = call(srv, "GET", target, token=None)
            assert_error_response(self, r, 401)
            self.assertTrue(r.header("WWW-Authenticate").startswith("Bearer"))
            self.assertIn(b"admin token", r.body)
            r = call(srv, "GET", target, token="wrong")
            assert_error_response(self, r, 401)
            r = call(srv, "GET", target, token="sub-token")
            assert_error_response(self, r, 401)
            r = call(srv, "GET", target, token=jwt)  # allows everything else, not this
            assert_error_response(self, r, 403)
            self.assertIn(b"admin API", r.body)
        r = call(srv, "GET", "/v1/admin/channels", token=None,
                 headers={"Authorization": "Basic eDp5"})
        assert_error_response(self, r, 401)
        r = call(srv, "GET", "/v1/admin/channels")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.json(), {"channels": [], "total": 0, "next": None})
        r = call(srv, "POST", "/v1/admin/channels")
        assert_error_response(self, r, 405)
        r = call(srv, "GET", "/v1/admin/disconnect?channel=x")
        assert_error_response(self, r, 405)
        # curl, and the token from the environment of hscd
        env = dict(os.environ, HSC_ADMIN_TOKEN="from-env")
        srv2 = self.start(env=env)
        out = subprocess.run(["curl", "-sS", "-H", "Authorization: Bearer from-env",
                              srv2.url("/v1/admin/channels")], capture_output=True,
                             timeout=20 * SLOW)
        self.assertEqual(json.loads(out.stdout)["total"], 0, out)


class Channels(AdminCase):
    def test_listing_counts_subscribers_on_two_threads_and_pages_by_name(self):
        srv = self.start("--threads", "2", "--admin-token", ADMIN)
        # 16 connections: the kernel spreads them over both threads' sockets (SO_REUSEPORT).
        self.subs(srv, 10, ["news"])
        self.subs(srv, 6, ["news", "alerts"])
        ids = [publish(srv, "news", "n%d" % i) for i in range(3)]
        publish(srv, "quiet", "hello")
        r = call(srv, "GET", "/v1/admin/channels")
        self.assertEqual(r.status, 200, r.body)
        j = r.json()
        self.assertEqual(j["total"], 3)
        self.assertIsNone(j["next"])
        by = {c["channel"]: c for c in j["channels"]}
        self.assertEqual([c["channel"] for c in j["channels"]], ["alerts", "news", "quiet"])
        self.assertEqual(by["news"]["subscribers"], 16)
        self.assertEqual(by["alerts"]["subscribers"], 6)
        self.assertEqual(by["quiet"]["subscribers"], 0)
        self.assertEqual(by["news"]["history_events"], 3)
        self.assertEqual(by["alerts"]["history_events"], 0)
        self.assertEqual(by["alerts"]["history_bytes"], 0)
        self.assertEqual(by["quiet"]["history_events"], 1)
        self.assertGreater(by["news"]["history_bytes"], by["quiet"]["history_bytes"])
        # one channel
        info = call(srv, "GET", "/v1/admin/channel?channel=news").json()
        self.assertEqual(info["subscribers"], 16)
        self.assertEqual((info["first_id"], info["last_id"]), (ids[0], ids[-1]))
        self.assertEqual(info["history_events"], 3)
        self.assertRegex(info["last_publish"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(info["presence"], {"anonymous": 16, "identified": 0, "distinct": 0,
                                            "subjects": [], "more": False})
        info = call(srv, "GET", "/v1/admin/channel?channel=alerts").json()
        self.assertIsNone(info["first_id"])
        self.assertIsNone(info["last_publish"])
        self.assertEqual(info["presence"]["anonymous"], 6)
        # pages of one, then of two: each channel once, in order
        for limit in (1, 2):
            seen, after = [], None
            for _ in range(5):
                target = "/v1/admin/channels?limit=%d" % limit
                if after:
                    target += "&after=" + q(after)
                page = call(srv, "GET", target).json()
                self.assertLessEqual(len(page["channels"]), limit)
                seen += [c["channel"] for c in page["channels"]]
                after = page["next"]
                if after is None:
                    break
            self.assertEqual(seen, ["alerts", "news", "quiet"])
        page = call(srv, "GET", "/v1/admin/channels?after=news").json()
        self.assertEqual([c["channel"] for c in page["channels"]], ["quiet"])

    def test_bad_input_is_400_and_an_unknown_channel_404(self):
        srv = self.start("--admin-token", ADMIN)
        publish(srv, "news", "x")
        for target, why in (
            ("/v1/admin/channels?limit=0", b"bad limit"),
            ("/v1/admin/channels?limit=1001", b"bad limit"),
            ("/v1/admin/channels?limit=ten", b"bad limit"),
            ("/v1/admin/channels?after=a%20b", b"bad after name"),
            ("/v1/admin/channel", b"missing channel parameter"),
            ("/v1/admin/channel?channel=", b"empty channel name"),
            ("/v1/admin/channel?channel=bad%20name", b"bad channel name"),
            ("/v1/admin/channel?channel=%zz", b"bad percent-encoding"),
            ("/v1/admin/channel?channel=" + "a" * 129, b"too long"),
            ("/v1/admin/channel?channel=news&limit=-1", b"bad limit"),
        ):
            r = call(srv, "GET", target)
            assert_error_response(self, r, 400, target)
            self.assertIn(why, r.body, target)
        for method, path in (("GET", "/v1/admin/channel"), ("POST", "/v1/admin/disconnect")):
            r = call(srv, method, path + "?channel=nope")
            assert_error_response(self, r, 404)
            self.assertIn(b"no such channel: nope", r.body)
        r = call(srv, "POST", "/v1/admin/disconnect?channel=bad%20name")
        assert_error_response(self, r, 400)

    def test_a_channel_leaves_the_listing_when_its_last_subscriber_goes(self):
        srv = self.start("--threads", "2", "--admin-token", ADMIN)
        subs = self.subs(srv, 4, ["room"])
        self.assertEqual(call(srv, "GET", "/v1/admin/channels").json()["channels"][0]
                         ["subscribers"], 4)
        for s in subs[:3]:
            s.close()
        self.assertTrue(wait_for(lambda: call(srv, "GET", "/v1/admin/channels").json()
                                 ["channels"][0]["subscribers"] == 1, 10))
        subs[3].close()
        self.assertTrue(wait_for(lambda: call(srv, "GET", "/v1/admin/channels").json()
                                 ["total"] == 0, 10))
        assert_error_response(self, call(srv, "GET", "/v1/admin/channel?channel=room"), 404)

    def test_hsc_channels_and_info(self):
        srv = self.start("--threads", "2", "--admin-token", ADMIN)
        self.subs(srv, 3, ["news"])
        last = publish(srv, "news", "hello")
        # more channels than one page of hsc's (200): hsc follows `next`
        names = ["c%03d" % i for i in range(230)]
        c = http.client.HTTPConnection(HOST, srv.port, timeout=10 * SLOW)
        for n in names:
            c.request("POST", "/v1/events?channel=" + n, body=b"x")
            self.assertEqual(c.getresponse().read()[:6], b'{"id":')
        c.close()
        url = ["--url", srv.url("")]
        rc, out, err = run_hsc(["channels"] + url, env={"HSC_ADMIN_TOKEN": ADMIN})
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["CHANNEL", "SUBSCRIBERS", "HISTORY_EVENTS",
                                            "HISTORY_BYTES"])
        self.assertEqual([l.split()[0] for l in lines[1:]], names + ["news"])
        self.assertEqual(lines[-1].split()[:3], ["news", "3", "1"])
        rc, out, err = run_hsc(["channels", "--json", "--token", ADMIN] + url)
        self.assertEqual(rc, 0, err)
        rows = [json.loads(l) for l in out.splitlines()]
        self.assertEqual(len(rows), 231)
        self.assertEqual(rows[-1]["subscribers"], 3)
        rc, out, err = run_hsc(["info", "--token", ADMIN] + url + ["news"])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^subscribers +3$")
        self.assertRegex(out, r"(?m)^last id +%s$" % re.escape(last))
        self.assertRegex(out, r"(?m)^presence +3 anonymous, 0 identified")
        rc, out, err = run_hsc(["info", "--json"] + url + ["news"], env={"HSC_TOKEN": ADMIN})
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["last_id"], last)
        # refusals: the server's reason, exit 4; usage: exit 2
        rc, out, err = run_hsc(["channels"] + url)
        self.assertEqual(rc, 4)
        self.assertIn("401", err)
        self.assertNotIn(ADMIN, err)
        rc, out, err = run_hsc(["info", "--token", ADMIN] + url + ["nope"])
        self.assertEqual((rc, out), (4, ""))
        self.assertIn("no such channel: nope", err)
        rc, out, err = run_hsc(["info", "--token", ADMIN] + url)
        self.assertEqual(rc, 2)
        rc, out, err = run_hsc(["info"] + url + ["news", "--token", ADMIN])
        self.assertEqual(rc, 2)
        self.assertNotIn(ADMIN, err)
        rc, out, err = run_hsc(["channels", "--help"])
        self.assertEqual(rc, 0)
        self.assertIn("--admin-token", out)


class Presence(AdminCase):
    def test_presence_counts_subscriptions_by_the_sub_of_their_jwt(self):
        key = tempfile.NamedTemporaryFile(delete=False)
        key.write(KEY)
        key.close()
        self.addCleanup(os.unlink, key.name)
        srv = self.start("--threads", "2", "--admin-token", ADMIN, "--jwt-key-file", key.name,
                         "--subscribe-token", "static-sub")

        def mint(*args):
            rc, out, err = run_hsc(["token", "--key-file", key.name, "--subscribe", "room*"]
                                   + list(args))
            self.assertEqual(rc, 0, err)
            return out.strip()

        alice, bob, nobody = mint("--subject", "alice"), mint("--subject", "bob"), mint()
        utf = mint("--subject", "zoë")
        self.subs(srv, 3, ["room"], token=alice)
        self.subs(srv, 1, ["room", "room2"], token=bob)
        self.subs(srv, 1, ["room"], token=utf)
        self.subs(srv, 2, ["room"], token=nobody)
        self.subs(srv, 1, ["room"], token="static-sub")
        p = call(srv, "GET", "/v1/admin/channel?channel=room").json()
        self.assertEqual(p["subscribers"], 8)
        self.assertEqual(p["presence"], {
            "anonymous": 3, "identified": 5, "distinct": 3, "more": False,
            "subjects": [{"sub": "alice", "subscriptions": 3}, {"sub": "bob", "subscriptions": 1},
                         {"sub": "zoë", "subscriptions": 1}]})
        p = call(srv, "GET", "/v1/admin/channel?channel=room&limit=1").json()["presence"]
        self.assertEqual(p["subjects"], [{"sub": "alice", "subscriptions": 3}])
        self.assertEqual((p["distinct"], p["more"]), (3, True))
        p = call(srv, "GET", "/v1/admin/channel?channel=room2").json()["presence"]
        self.assertEqual(p["subjects"], [{"sub": "bob", "subscriptions": 1}])
        rc, out, err = run_hsc(["info", "--token", ADMIN, "--url", srv.url(""), "room"])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^presence +3 anonymous, 5 identified \(3 distinct\)$")
        self.assertRegex(out, r"(?m)^  alice +3$")
        self.assertRegex(out, r"(?m)^  zoë +1$")


class Disconnect(AdminCase):
    def test_disconnect_ends_the_channels_subscribers_who_resume_exactly(self):
        srv = self.start("--threads", "2", "--admin-token", ADMIN, "--retry", "1s")
        news = self.subs(srv, 6, ["news"])
        both = self.subs(srv, 2, ["news", "other"])
        old = self.subs(srv, 1, ["news"], version="HTTP/1.0")
        other = self.subs(srv, 2, ["other"])
        e1 = publish(srv, "news", "e1")
        gone = news + both + old
        for s in gone:
            s.wait_data("e1")
        r = call(srv, "POST", "/v1/admin/disconnect?channel=news")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {"channel": "news", "disconnected": 9})
        for s in gone:
            s.read_until(lambda b, s=s: s.ended() or (s.eof and s.version == "HTTP/1.0"))
            self.assertTrue(s.ended(), s.buf[-200:])
            m = re.findall(rb"retry: (\d+)\n\n", s.buf)
            self.assertEqual(len(m), 1, s.buf)  # the parting one (the preamble's was read)
            self.assertTrue(1000 <= int(m[0]) <= 1500, m)
        self.assertIn("disconnected 9 subscription(s) of channel news", srv.log())
        # the other channel's subscribers stay
        publish(srv, "other", "still here")
        for s in other:
            s.wait_data("still here")
        self.assertEqual(call(srv, "GET", "/v1/admin/channel?channel=other").json()
                         ["subscribers"], 2)
        # events published while they were away reach them on reconnection, exactly
        e2, e3 = publish(srv, "news", "e2"), publish(srv, "news", "e3")
        back = self.subs(srv, 3, ["news"], last=e1)
        back += self.subs(srv, 1, ["news"], last=e1, version="HTTP/1.0")
        e4 = publish(srv, "news", "e4")
        for s in back:
            s.wait_data("e4")
            ids = re.findall(rb"id: (\S+)\n", s.buf)
            self.assertEqual([i.decode() for i in ids], [e2, e3, e4], s.buf)
            self.assertNotIn(b"hsc.gap", s.buf)
        self.assertEqual(call(srv, "GET", "/v1/admin/channel?channel=news").json()
                         ["subscribers"], 4)

    def test_hsc_disconnect(self):
        srv = self.start("--threads", "2", "--admin-token", ADMIN)
        subs = self.subs(srv, 3, ["room"])
        url = ["--url", srv.url("")]
        rc, out, err = run_hsc(["disconnect"] + url + ["room"], env={"HSC_ADMIN_TOKEN": ADMIN})
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "disconnected 3 subscription(s) of room\n")
        for s in subs:
            s.read_until(lambda b, s=s: s.ended())
        # none left: the channel (no history) is gone
        self.assertTrue(wait_for(lambda: call(srv, "GET", "/v1/admin/channels").json()
                                 ["total"] == 0, 10))
        rc, out, err = run_hsc(["disconnect", "--token", ADMIN] + url + ["room"])
        self.assertEqual(rc, 4)
        self.assertIn("404", err)
