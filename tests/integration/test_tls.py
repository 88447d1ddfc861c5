"""TLS (docs/tls.md): hscd with --tls-cert and --tls-key, checked with real clients. A test CA and
server certificates are made with the `openssl` command at test time, in a temporary directory.

Proves that:
- curl --http1.1 over TLS subscribes to a channel and receives what is published (over TLS too),
  streams an answer, gets the demo page and /metrics, which counts the handshakes;
- Python's ssl + http.client keeps one TLS connection alive across requests; ALPN answers
  "http/1.1" to a client offering it, "h2" to one offering h2 too, and nothing to a client
  offering only other protocols, which is still served;
- the npm `eventsource` client (NODE_EXTRA_CA_CERTS = the test CA) receives events over HTTPS;
- TLS 1.1 is refused, counted as a version failure; TLS 1.2 (with an ECDHE + AEAD suite) and
  TLS 1.3 are accepted; a TLS 1.2 client offering only CBC suites is refused (cipher);
- a session is resumed (TLS 1.3 ticket, TLS 1.2) and hsc_tls_resumed_total counts it;
- a client that sends 10 bytes of a ClientHello and nothing more is closed after
  --header-timeout and counted as a handshake timeout, while a good client is served meanwhile;
  plain HTTP sent to the TLS port gets a plain-text 400 and is counted; garbage is closed;
- a TLS subscriber that stops reading is dropped by the output queue's bound, while another
  receives every event;
- over --max-connections, a TLS client gets its 503 after the handshake, then a clean close;
- hsc-bench fanout subscribes over TLS (https:// --sub-url) and counts every delivery;
- --listen-tls: a second listener speaks TLS while --listen stays cleartext;
- a missing, non-PEM or mismatched certificate or key at start: exit status 2 and a one-line
  message naming the file, and `hscd --check` says the same; --tls-cert without --tls-key:
  exit 2;
- SIGHUP with a new certificate: an SSE stream opened before it continues and receives events
  published after it, a new connection gets the new certificate (and the expiry gauge follows);
  a SIGHUP with a mismatched key is refused and the old certificate stays;
- headless Chromium loads the demo page over HTTPS (the test CA trusted by its SPKI hash) in two
  pages over HTTP/2 (nextHopProtocol "h2"), both go live, a message sent from one reaches both,
  and an answer completes;
- over HTTPS (HTTP/2 by ALPN) ten EventSources on one page, each on its own channel, all open and
  each receives what is published to its channel, and a fetch() to the origin answers meanwhile:
  hscd saw one HTTP/2 connection (and one TCP connection is established to its port) carrying
  them all, where HTTP/1.1 stalls the seventh (test_browser.py).
"""

import base64
import hashlib
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

from hscd import HOST, SLOW, ServerTestCase, free_port, run_hscd, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
JS_DIR = os.path.join(os.path.dirname(HERE), "js")


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), r.stderr.decode()))
    return r.stdout


class Pki:
    """A test CA and certificates it signs, in a temporary directory (removed by cleanup())."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hsc-tls-")
        self.ca = self.path("ca.crt")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "3", "-subj", "/CN=hsc test CA",
                cwd=self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def issue(self, name, days=2, cn="localhost"):
        """Certificate `name`.crt (signed by the CA) and its key `name`.key; returns both paths."""
        with open(self.path(name + ".ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn,
                cwd=self.dir)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".crt", "-days", str(days), "-extfile",
                name + ".ext", cwd=self.dir)
        return self.path(name + ".crt"), self.path(name + ".key")

    def spki_hash(self, cert):
        """base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's
        --ignore-certificate-errors-spki-list takes."""
        pub = openssl("x509", "-in", cert, "-noout", "-pubkey", cwd=self.dir)
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                             capture_output=True, check=True).stdout
        return base64.b64encode(hashlib.sha256(der).digest()).decode()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def client_ctx(pki, minv=None, maxv=None, ciphers=None, alpn=None):
    ctx = ssl.create_default_context(cafile=pki.ca)
    if minv is not None:
        ctx.minimum_version = minv
    if maxv is not None:
        ctx.maximum_version = maxv
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, ctx, session=None, timeout=10):
    raw = socket.create_connection((HOST, port), timeout=timeout * SLOW)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    except BaseException:
        raw.close()
        raise


def https(port, ctx, method, path, body=None, headers=None):
    conn = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=10 * SLOW)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def tls_metrics(port, ctx):
    status, body = https(port, ctx, "GET", "/metrics")
    assert status == 200, status
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?)\s+(\S+)", line)
        if m and not line.startswith("#"):
            out[m.group(1)] = float(m.group(2))
    return out


def tls_port(srv):
    """The --listen-tls port, from the "listening on https://..." line."""
    m = re.search(r"listening on https://[^ ]*:(\d+) \(TLS\)", srv.log())
    assert m, srv.describe()
    return int(m.group(1))


def curl(*args, timeout=20):
    r = subprocess.run(["curl", "-sS", "--http1.1"] + list(args), capture_output=True,
                       timeout=timeout * SLOW)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


class SseReader:
    """An SSE subscription over TLS on a raw ssl socket, read by a thread, which keeps the
    first 64 bytes of each line received."""

    def __init__(self, port, ctx, path):
        self.sock = tls_connect(port, ctx)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream"
                           "\r\n\r\n" % path).encode())
        self.lines = []
        self.rest = b""
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    break
                parts = (self.rest + d).split(b"\n")
                self.rest = parts.pop()[-64:]
                self.lines.extend(p[:64] for p in parts)
        except OSError:
            pass
        self.closed = True

    def has(self, text):
        """Whether a line received starts with `text`."""
        t = text.encode()
        return any(line.startswith(t) for line in reversed(self.lines))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(5)


class TlsCase(ServerTestCase):
    """A PKI per test, and a server certificate "srv"."""

    def setUp(self):
        self.pki = Pki()
        self.addCleanup(self.pki.cleanup)
        self.cert, self.key = self.pki.issue("srv")
        self.ctx = client_ctx(self.pki)

    def start_tls(self, *args, **kw):
        return self.start("--tls-cert", self.cert, "--tls-key", self.key, "--log-level", "info",
                          *args, **kw)


class Clients(TlsCase):

    def test_curl_channels_answer_demo_page_and_metrics(self):
        srv = self.start_tls("--max-gen-len", "3", "--interval", "10ms")
        base = "https://localhost:%d" % srv.port
        sub = subprocess.Popen(["curl", "-sS", "-N", "--http1.1", "--cacert", self.pki.ca,
                                "--max-time", str(int(20 * SLOW)),
                                base + "/v1/events?channel=news"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: sub.poll() is not None or sub.kill())
        self.assertTrue(wait_for(lambda: tls_metrics(srv.port, self.ctx)["hsc_subscribers"] == 1,
                                 10 * SLOW))
        for text in ("one", "two", "bye"):
            rc, out, err = curl("--cacert", self.pki.ca, "-d", text,
                                base + "/v1/events?channel=news")
            self.assertEqual(rc, 0, err)
        got = b""
        deadline = time.monotonic() + 10 * SLOW
        os.set_blocking(sub.stdout.fileno(), False)
        while b"data: bye" not in got and time.monotonic() < deadline:
            chunk = sub.stdout.read()
            if chunk:
                got += chunk
            time.sleep(0.05)
        sub.kill()
        sub.communicate(timeout=10)
        self.assertIn(b"data: one\n", got)
        self.assertLess(got.index(b"data: one"), got.index(b"data: two"))
        self.assertIn(b"data: bye", got)

        rc, out, err = curl("--cacert", self.pki.ca, "-N", base + "/v1/stream?q=hello")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count("«hello»".encode()), 3, out)
        rc, out, err = curl("--cacert", self.pki.ca, "-o", "/dev/null", "-w",
                            "%{http_code} %{ssl_verify_result}", base + "/")
        self.assertEqual((rc, out), (0, b"200 0"), err)
        rc, out, err = curl("--cacert", self.pki.ca, base + "/metrics")
        self.assertEqual(rc, 0, err)
        m = re.search(rb"^hsc_tls_handshakes_total (\d+)$", out, re.M)
        self.assertTrue(m and int(m.group(1)) >= 6, out)
        self.assertRegex(out, rb"hsc_tls_cert_expiry_seconds \d{10}")

    def test_python_http_client_keep_alive_and_alpn(self):
        srv = self.start_tls()
        conn = http.client.HTTPSConnection("localhost", srv.port, timeout=10 * SLOW,
                                           context=client_ctx(self.pki, alpn=["http/1.1"]))
        for _ in range(3):
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"ok\n"))
        self.assertEqual(conn.sock.selected_alpn_protocol(), "http/1.1")
        conn.close()
        s = tls_connect(srv.port, client_ctx(self.pki, alpn=["h2", "http/1.1"]))
        self.assertEqual(s.selected_alpn_protocol(), "h2")  # HTTP/2 is on by default
        s.close()
        self.assertEqual(tls_metrics(srv.port, self.ctx)["hsc_tls_handshakes_total"], 3)
        # Only protocols hscd does not speak: no ALPN, and still served.
        s = tls_connect(srv.port, client_ctx(self.pki, alpn=["spdy/3", "foo"]))
        self.assertIsNone(s.selected_alpn_protocol())
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)

    def test_npm_eventsource_over_https(self):
        srv = self.start_tls()
        node = shutil.which("node") or shutil.which("nodejs")
        self.assertIsNotNone(node, "node is not installed: run scripts/install-deps.sh")
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=self.pki.ca)
        proc = subprocess.Popen(
            [node, os.path.join(JS_DIR, "es_client.mjs"), "--url",
             "https://localhost:%d/v1/events?channel=es" % srv.port, "--until", "last",
             "--timeout", str(int(30 * SLOW))],
            cwd=JS_DIR, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is not None or proc.kill())
        self.assertTrue(wait_for(lambda: tls_metrics(srv.port, self.ctx)["hsc_subscribers"] == 1,
                                 15 * SLOW))
        for text in ("a", "b", "last"):
            self.assertEqual(https(srv.port, self.ctx, "POST", "/v1/events?channel=es", text)[0],
                             200)
        out, err = proc.communicate(timeout=40 * SLOW)
        self.assertEqual(proc.returncode, 0, err)
        events = [json.loads(x) for x in out.splitlines()]
        self.assertEqual([e["data"] for e in events if e["t"] == "event"], ["a", "b", "last"])

    def test_versions_and_ciphers(self):
        srv = self.start_tls()
        old = client_ctx(self.pki, minv=ssl.TLSVersion.TLSv1, maxv=ssl.TLSVersion.TLSv1_1,
                         ciphers="DEFAULT:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError):
            tls_connect(srv.port, old).close()
        s = tls_connect(srv.port, client_ctx(self.pki, maxv=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(s.version(), "TLSv1.2")
        name = s.cipher()[0]
        self.assertTrue(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name)
        s.close()
        s = tls_connect(srv.port, self.ctx)
        self.assertEqual(s.version(), "TLSv1.3")
        s.close()
        cbc = client_ctx(self.pki, maxv=ssl.TLSVersion.TLSv1_2,
                         ciphers="ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")
        with self.assertRaises(ssl.SSLError):
            tls_connect(srv.port, cbc).close()

        def counted():
            m = tls_metrics(srv.port, self.ctx)
            return (m['hsc_tls_handshake_failures_total{reason="version"}'],
                    m['hsc_tls_handshake_failures_total{reason="cipher"}'])
        self.assertTrue(wait_for(lambda: counted() == (1, 1), 5 * SLOW), counted())
        self.assertRegex(srv.log(), r"info: conn 127\.0\.0\.1:\d+: TLS handshake failed "
                                    r"\(version\): \w")

    def test_session_resumption(self):
        srv = self.start_tls()
        for maxv in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_ctx(self.pki, maxv=maxv)
            s = tls_connect(srv.port, ctx)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200", s.recv(4096))  # TLS 1.3 tickets arrive after the handshake
            session = s.session
            s.close()
            s = tls_connect(srv.port, ctx, session=session)
            self.assertTrue(s.session_reused, maxv)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200", s.recv(4096))
            s.close()
        self.assertEqual(tls_metrics(srv.port, self.ctx)["hsc_tls_resumed_total"], 2)


class Abuse(TlsCase):

    def test_handshake_slowloris_closed_after_header_timeout(self):
        srv = self.start_tls("--header-timeout", "%dms" % int(1500 * SLOW))
        slow = socket.create_connection((HOST, srv.port), timeout=30 * SLOW)
        # The first 10 bytes of a ClientHello: record header, handshake type, part of a length.
        slow.sendall(bytes([0x16, 0x03, 0x01, 0x00, 0xC8, 0x01, 0x00, 0x00, 0xC4, 0x03]))
        t0 = time.monotonic()
        for _ in range(3):  # a good client is served meanwhile
            self.assertEqual(https(srv.port, self.ctx, "GET", "/healthz"), (200, b"ok\n"))
        self.assertEqual(slow.recv(100), b"")  # closed by the server
        took = time.monotonic() - t0
        slow.close()
        self.assertGreater(took, 1.0 * SLOW)
        self.assertLess(took, 6 * SLOW)
        m = tls_metrics(srv.port, self.ctx)
        self.assertEqual(m["hsc_tls_handshake_timeouts_total"], 1)
        self.assertIn("TLS handshake not completed within --header-timeout", srv.log())

    def test_plain_http_and_garbage_on_the_tls_port(self):
        srv = self.start_tls()
        s = socket.create_connection((HOST, srv.port), timeout=10 * SLOW)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data)
        self.assertIn(b"use https://", data)
        s = socket.create_connection((HOST, srv.port), timeout=10 * SLOW)
        s.sendall(os.urandom(16) + b"\x00" * 200)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        s.close()
        self.assertEqual(https(srv.port, self.ctx, "GET", "/healthz"), (200, b"ok\n"))
        m = tls_metrics(srv.port, self.ctx)
        self.assertEqual(m['hsc_tls_handshake_failures_total{reason="http"}'], 1)
        self.assertEqual(m['hsc_tls_handshake_failures_total{reason="other"}'], 1)


class SlowReader(TlsCase):

    def test_stalled_tls_subscriber_dropped_while_another_gets_everything(self):
        # The output queue keeps its bounds over TLS: the stalled subscriber's queue (plaintext
        # slices waiting to be encrypted) passes --max-queue-bytes and it is dropped.
        srv = self.start_tls("--listen-tls", "%s:0" % HOST, "--max-queue-bytes", "256k",
                             "--history", "0")
        port = tls_port(srv)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(10 * SLOW)
        raw.connect((HOST, port))
        stalled = self.ctx.wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(stalled.close)
        stalled.sendall(b"GET /v1/events?channel=burst HTTP/1.1\r\nHost: x\r\n\r\n")
        good = SseReader(port, self.ctx, "/v1/events?channel=burst")
        self.addCleanup(good.close)
        c = http.client.HTTPConnection(HOST, srv.port, timeout=10 * SLOW)
        self.addCleanup(c.close)

        def m(name):
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode()
            return float(re.search(r"^%s (\S+)$" % name, text, re.M).group(1))
        self.assertTrue(wait_for(lambda: m("hsc_subscribers") == 2, 10 * SLOW))
        sent, dropped = 0, False
        while sent < 4000 and not dropped:
            for _ in range(16):
                c.request("POST", "/v1/events?channel=burst", body="%06d:" % sent + "z" * 4000)
                self.assertEqual(c.getresponse().read()[:1], b"{")
                sent += 1
            self.assertTrue(wait_for(lambda: good.has("data: %06d:" % (sent - 1)), 10 * SLOW),
                            "the reading subscriber fell behind at %d" % sent)
            dropped = m("hsc_slow_subscribers_dropped_total") >= 1
        self.assertTrue(dropped, "the stalled TLS subscriber was never dropped (%d events)" % sent)
        self.assertEqual(m("hsc_subscribers"), 1)
        self.assertFalse(good.closed)


class ConnectionCap(TlsCase):

    def test_over_max_connections_a_503_over_tls(self):
        srv = self.start_tls("--max-connections", "1")
        held = tls_connect(srv.port, self.ctx)
        self.addCleanup(held.close)
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", held.recv(4096))
        s = tls_connect(srv.port, self.ctx)
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 503 "), data)
        self.assertIn(b"connection limit", data)


class Listeners(TlsCase):

    def test_listen_tls_beside_a_cleartext_listen(self):
        srv = self.start_tls("--listen-tls", "%s:0" % HOST)
        port = tls_port(srv)
        self.assertNotEqual(port, srv.port)
        self.assertEqual(https(port, self.ctx, "GET", "/healthz"), (200, b"ok\n"))
        c = http.client.HTTPConnection(HOST, srv.port, timeout=10 * SLOW)
        c.request("GET", "/healthz")
        self.assertEqual(c.getresponse().status, 200)
        c.close()
        self.assertEqual(tls_metrics(port, self.ctx)["hsc_tls_handshakes_total"], 2)


class BenchOverTls(TlsCase):

    def test_hsc_bench_fanout_subscribes_over_tls(self):
        bench = os.environ.get("HSC_BENCH", "")
        self.assertTrue(bench and os.access(bench, os.X_OK),
                        "HSC_BENCH is not set to the hsc-bench binary (run through ctest)")
        srv = self.start_tls("--listen-tls", "%s:0" % HOST)
        r = subprocess.run(
            [bench, "fanout", "--sub-url",
             "https://%s:%d/v1/events?channel={ch}" % (HOST, tls_port(srv)), "--pub-url",
             "http://%s:%d/v1/events?channel={ch}" % (HOST, srv.port), "-n", "40", "-m", "30",
             "-P", "2", "--json"], capture_output=True, text=True, timeout=60 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual((out["connected"], out["deliveries"], out["lost"]), (40, 1200, 0), out)
        self.assertGreaterEqual(tls_metrics(tls_port(srv), self.ctx)["hsc_tls_handshakes_total"],
                                40)


class Certificates(TlsCase):

    def refused(self, args, *expect):
        rc, out, err = run_hscd(["--listen", "%s:0" % HOST, "--data-dir", "none"] + args)
        self.assertEqual(rc, 2, err)
        for e in expect:
            self.assertIn(e, err)
        return err

    def test_unusable_certificate_or_key_at_start(self):
        missing = self.pki.path("nope.crt")
        self.refused(["--tls-cert", missing, "--tls-key", self.key],
                     "--tls-cert %s: No such file or directory" % missing)
        junk = self.pki.path("junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        self.refused(["--tls-cert", junk, "--tls-key", self.key], "--tls-cert %s: not a PEM" % junk)
        self.refused(["--tls-cert", self.cert, "--tls-key", junk], "--tls-key %s: not an" % junk)
        _, other_key = self.pki.issue("other")
        self.refused(["--tls-cert", self.cert, "--tls-key", other_key],
                     "--tls-key %s does not match the certificate" % other_key)
        self.refused(["--tls-cert", self.cert, "--tls-key", other_key, "--check"],
                     "--tls-key %s does not match the certificate" % other_key)
        rc, out, err = run_hscd(["--tls-cert", self.cert, "--tls-key", self.key, "--check"])
        self.assertEqual((rc, out.startswith("hscd: configuration OK")), (0, True), err)
        self.refused(["--tls-cert", self.cert], "--tls-cert and --tls-key go together")
        self.refused(["--listen-tls", "%s:0" % HOST], "--listen-tls needs --tls-cert")

    def peer_cert(self, port):
        s = tls_connect(port, self.ctx)
        der = s.getpeercert(binary_form=True)
        s.close()
        return der

    def test_sighup_new_certificate_keeps_open_streams(self):
        srv = self.start_tls()
        first = self.peer_cert(srv.port)
        expiry = tls_metrics(srv.port, self.ctx)["hsc_tls_cert_expiry_seconds"]
        reader = SseReader(srv.port, self.ctx, "/v1/events?channel=hup")
        self.addCleanup(reader.close)
        self.assertTrue(wait_for(lambda: tls_metrics(srv.port, self.ctx)["hsc_subscribers"] == 1,
                                 10 * SLOW))
        https(srv.port, self.ctx, "POST", "/v1/events?channel=hup", "before")
        self.assertTrue(wait_for(lambda: reader.has("data: before"), 10 * SLOW))
        # New files at the same paths (renamed into place, as certbot does), then SIGHUP.
        crt, key = self.pki.issue("next", days=30)
        os.replace(crt, self.cert)
        os.replace(key, self.key)
        srv.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "SIGHUP: configuration reloaded" in srv.log(), 10 * SLOW),
                        srv.describe())
        second = self.peer_cert(srv.port)
        self.assertNotEqual(first, second)
        self.assertGreater(tls_metrics(srv.port, self.ctx)["hsc_tls_cert_expiry_seconds"],
                           expiry + 20 * 86400)
        https(srv.port, self.ctx, "POST", "/v1/events?channel=hup", "after")
        self.assertTrue(wait_for(lambda: reader.has("data: after"), 10 * SLOW), reader.lines)
        self.assertFalse(reader.closed)

        # A mismatched key: refused, the running certificate stays.
        _, wrong = self.pki.issue("wrong")
        shutil.copy(wrong, self.key)
        srv.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "configuration refused" in srv.log(), 10 * SLOW),
                        srv.describe())
        self.assertIn("does not match the certificate", srv.log())
        self.assertEqual(self.peer_cert(srv.port), second)
        https(srv.port, self.ctx, "POST", "/v1/events?channel=hup", "still")
        self.assertTrue(wait_for(lambda: reader.has("data: still"), 10 * SLOW), reader.lines)


def established_to(port):
    """Established TCP connections to 127.0.0.1:port seen from the client side (/proc/net/tcp):
    the connections Chromium holds to hscd."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            rem, state = fields[2], fields[3]
            if state == "01" and rem == "0100007F:%04X" % port:
                n += 1
    return n


class Browser(TlsCase):
    """Headless Chromium over HTTPS, where ALPN gives it HTTP/2."""

    def chromium(self):
        from test_browser import Browser as Chromium
        spki = self.pki.spki_hash(self.cert)
        b = Chromium(chromium_args=["--ignore-certificate-errors-spki-list=" + spki])
        self.addCleanup(lambda: self.assertEqual(b.close(), [], "browser processes left"))
        return b

    def test_chromium_demo_page_over_https(self):
        from test_browser import LIVE, MESSAGES, SENT
        srv = self.start_tls("--max-gen-len", "3", "--interval", "50ms")
        b = self.chromium()
        for page, name in (("a", "alice"), ("b", "bob")):
            url = "https://127.0.0.1:%d/?room=tls&name=%s" % (srv.port, name)
            self.assertEqual(b.open(page, url), 200)
            b.wait(page, LIVE, timeout=10, what="%s's page never went live over HTTPS" % name)
            self.assertEqual(b.eval(page, "() => location.protocol"), "https:")
            self.assertEqual(b.eval(page, "() => performance.getEntriesByType('navigation')[0]"
                                          ".nextHopProtocol"), "h2")
        b.fill("a", "#text", "over TLS")
        b.click("a", "#send")
        self.assertEqual(b.wait("a", SENT, timeout=10, what="the message was not sent"),
                         {"error": ""})
        for page in ("a", "b"):  # alice's own page and bob's both show it
            b.wait(page, "() => document.querySelectorAll('#messages li.msg').length >= 1",
                   timeout=10, what="the message did not reach page %s" % page)
            self.assertEqual([m["text"] for m in b.eval(page, MESSAGES)], ["over TLS"])
        b.click("b", "#go")
        b.wait("b", "() => document.getElementById('state').textContent === 'complete'",
               timeout=10, what="the answer did not complete")
        self.assertEqual(b.page_errors(), [])
        m = tls_metrics(srv.port, self.ctx)
        self.assertGreaterEqual(m["hsc_tls_handshakes_total"], 1)
        self.assertGreaterEqual(m["hsc_h2_connections_total"], 1)

    def test_ten_event_sources_on_one_http2_connection(self):
        # Over HTTP/1.1 the seventh EventSource of a page stalls (six connections per origin):
        # test_browser.py Connection.test_more_than_six_event_sources_and_one_for_seven_channels.
        # Over HTTPS Chromium speaks HTTP/2: every EventSource is a stream of one connection.
        srv = self.start_tls()
        b = self.chromium()
        self.assertEqual(b.open("p", "https://127.0.0.1:%d/healthz" % srv.port), 200)
        chans = ["c%d" % i for i in range(1, 11)]
        b.eval("p", """(chans) => {
          window.__es = []; window.__got = {};
          for (const ch of chans) {
            const es = new EventSource('/v1/events?channel=' + ch);
            window.__got[ch] = [];
            es.onmessage = (e) => window.__got[ch].push(e.data);
            es.onerror = () => window.__got[ch].push('error:' + es.readyState);
            window.__es.push(es);
          }
          return true;
        }""", chans)
        states = "() => window.__es.map((es) => es.readyState)"
        b.wait("p", "() => (%s)().every((s) => s === 1)" % states, timeout=10,
               what="ten EventSources did not all open: %r" % b.eval("p", states))
        self.assertTrue(wait_for(lambda: tls_metrics(srv.port, self.ctx)["hsc_subscribers"] == 10,
                                 10 * SLOW), "hscd does not count ten subscribers")
        # A fetch() to the origin answers while the ten are open (over HTTP/1.1 it would wait).
        fetched = b.eval("p", """async () => {
          const ac = new AbortController();
          const timer = setTimeout(() => ac.abort(), 5000);
          try {
            const r = await fetch('/healthz', {signal: ac.signal, cache: 'no-store'});
            return [r.status, await r.text()];
          } catch (e) { return e.name; } finally { clearTimeout(timer); }
        }""")
        self.assertEqual(fetched, [200, "ok\n"])
        protos = b.eval("p", """() => [performance.getEntriesByType('navigation')[0]
          .nextHopProtocol].concat(performance.getEntriesByType('resource')
          .map((e) => e.nextHopProtocol))""")
        self.assertGreaterEqual(len(protos), 2, protos)  # the page and at least the fetch
        self.assertEqual(set(protos), {"h2"})
        for ch in chans:
            status, body = https(srv.port, self.ctx, "POST", "/v1/events?channel=" + ch,
                                 body=("to-" + ch).encode())
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["subscribers"], 1, ch)
        b.wait("p", "() => Object.values(window.__got).every((g) => g.length > 0)", timeout=10,
               what="not every EventSource got its event: %r" % b.eval("p", "() => window.__got"))
        self.assertEqual(b.eval("p", "() => window.__got"), {ch: ["to-" + ch] for ch in chans})
        # One connection from the browser: one HTTP/2 connection ever (our Python clients speak
        # HTTP/1.1) and one established TCP connection to the port, carrying >= 12 streams (the
        # page, ten EventSources, the fetch).
        m = tls_metrics(srv.port, self.ctx)
        self.assertEqual(m["hsc_h2_connections_total"], 1)
        self.assertGreaterEqual(m["hsc_h2_streams_total"], 12)
        self.assertEqual(m["hsc_subscribers"], 10)
        self.assertTrue(wait_for(lambda: established_to(srv.port) == 1, 5 * SLOW),
                        "%d connections to the port" % established_to(srv.port))
        self.assertEqual(b.page_errors(), [])


if __name__ == "__main__":
    unittest.main()
