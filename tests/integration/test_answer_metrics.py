"""/metrics covers answers (docs/api.md, "Operations"): scraped before and after real answers.

Proves that:
- answers started, completed, failed and cancelled are counted, labelled with the kind of
  responder (demo, exec, pool), summed over every thread;
- the time to the first piece and the answer's duration are Prometheus histograms: cumulative
  `_bucket{le=...}` lines ending in `le="+Inf"`, equal to `_count`, and a `_sum` in seconds;
- the responder queue depth is a gauge of the answers waiting for an exec process now;
- a pool worker that crashes is restarted, and the restart is counted;
- publish to delivery (hsc_publish_delivery_seconds) is a histogram with one observation per
  event and loop that wrote it to subscribers: not per subscriber, none for an event nobody
  subscribed to.
Values are compared before and after; nothing here asserts a duration.
"""

import http.client
import os
import re
import shlex
import socket
import sys
import time

from hscd import HOST, SLOW, ServerTestCase, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
RESPONDER = os.path.join(HERE, "responders", "responder.py")
WORKER = os.path.join(HERE, "pool_workers", "worker.py")

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')


def scrape(tc, srv):
    """{(name, ((label, value), ...)): float}, after checking the text format."""
    c = http.client.HTTPConnection(HOST, srv.port, timeout=10 * SLOW)
    c.request("GET", "/metrics")
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    tc.assertEqual(r.status, 200)
    tc.assertTrue(r.getheader("Content-Type").startswith("text/plain; version=0.0.4"))
    out, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = _LINE.match(line)
        tc.assertIsNotNone(m, "not a sample line: %r" % line)
        labels = tuple(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    # every histogram: cumulative buckets, +Inf last and equal to _count
    for name, kind in types.items():
        if kind != "histogram":
            continue
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in out.items()
                          if k[0] == name + "_bucket"), key=lambda b: b[0])
        tc.assertGreater(len(buckets), 1, name)
        tc.assertEqual(buckets[-1][0], float("inf"), name)
        values = [v for _, v in buckets]
        tc.assertEqual(values, sorted(values), "%s buckets are not cumulative" % name)
        counts = [v for k, v in out.items() if k[0] == name + "_count"]
        tc.assertEqual(counts, [values[-1]], name)
        tc.assertTrue(any(k[0] == name + "_sum" for k in out), name)
    out["types"] = types
    return out


def value(m, name, responder=None, le=None):
    labels = []
    if responder is not None:
        labels.append(("responder", responder))
    if le is not None:
        labels.append(("le", le))
    key = (name, tuple(labels))
    if key not in m:
        raise AssertionError("no %s%s in /metrics" % (name, dict(labels)))
    return m[key]


def ask(srv, text, sse=True):
    """One answer read whole; returns the body (SSE: it ends in a done or error event)."""
    c = http.client.HTTPConnection(HOST, srv.port, timeout=30 * SLOW)
    headers = {"Accept": "text/event-stream"} if sse else {}
    c.request("POST", "/v1/stream", body=text.encode(), headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


class Counters(ServerTestCase):
    def check_answers(self, m, kind, started, completed, failed, cancelled):
        got = [value(m, "hsc_answers_%s_total" % w, kind)
               for w in ("started", "completed", "failed", "cancelled")]
        self.assertEqual(got, [started, completed, failed, cancelled])
        for name in ("hsc_answers_started_total", "hsc_answers_failed_total"):
            self.assertEqual(m["types"][name], "counter")
        self.assertEqual(m["types"]["hsc_answer_first_piece_seconds"], "histogram")
        self.assertEqual(m["types"]["hsc_answer_duration_seconds"], "histogram")
        self.assertEqual(m["types"]["hsc_responder_queue_depth"], "gauge")
        self.assertEqual(m["types"]["hsc_pool_worker_restarts_total"], "counter")

    def test_demo_answers_on_two_threads(self):
        srv = self.start("--threads", "2", "--max-gen-len", "20", "--interval", "10ms")
        m0 = scrape(self, srv)
        self.check_answers(m0, "demo", 0, 0, 0, 0)
        self.assertEqual(value(m0, "hsc_answer_duration_seconds_count", "demo"), 0)
        self.assertEqual(value(m0, "hsc_answer_duration_seconds_bucket", "demo", "+Inf"), 0)
        for i in range(4):
            status, body = ask(srv, "q%d" % i, sse=i % 2 == 0)
            self.assertEqual(status, 200)
            self.assertTrue(b"[20/20]" in body, body[-200:])
        # one client that leaves after the first piece: cancelled
        s = socket.create_connection((HOST, srv.port), timeout=10 * SLOW)
        s.sendall(b"GET /v1/stream?q=bye HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b"[1/20]" not in buf:
            chunk = s.recv(4096)
            self.assertTrue(chunk)
            buf += chunk
        s.close()
        self.assertTrue(wait_for(lambda: value(scrape(self, srv), "hsc_answers_cancelled_total",
                                               "demo") == 1, 10))
        m = scrape(self, srv)
        self.check_answers(m, "demo", 5, 4, 0, 1)
        self.assertEqual(value(m, "hsc_answer_first_piece_seconds_count", "demo"), 5)
        self.assertEqual(value(m, "hsc_answer_duration_seconds_count", "demo"), 4)
        self.assertGreater(value(m, "hsc_answer_duration_seconds_sum", "demo"), 0)
        self.assertEqual(value(m, "hsc_responder_queue_depth", "demo"), 0)
        self.assertEqual(value(m, "hsc_pool_worker_restarts_total"), 0)
        # a refused request (empty text) is no answer
        status, _ = ask(srv, "")
        self.assertEqual(status, 400)
        self.check_answers(scrape(self, srv), "demo", 5, 4, 0, 1)

    def test_a_failing_exec_responder_and_the_queue_depth(self):
        cmd = "%s %s bytext" % (shlex.quote(sys.executable), shlex.quote(RESPONDER))
        srv = self.start("--threads", "1", "--exec", cmd, "--max-processes", "1")
        m0 = scrape(self, srv)
        self.check_answers(m0, "exec", 0, 0, 0, 0)
        status, body = ask(srv, "ok then")
        self.assertIn(b"event: done", body)
        status, body = ask(srv, "fail")
        self.assertIn(b"event: error", body)
        m = scrape(self, srv)
        self.check_answers(m, "exec", 2, 1, 1, 0)
        self.assertEqual(value(m, "hsc_answer_duration_seconds_count", "exec"), 2)
        # one process at a time: while `hang` holds it, two more answers wait in the queue
        conns = []
        for text in ("hang", "ok 1", "ok 2"):
            s = socket.create_connection((HOST, srv.port), timeout=10 * SLOW)
            body = text.encode()
            s.sendall(b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
            conns.append(s)
            if text == "hang":
                buf = b""
                while b"started" not in buf:
                    chunk = s.recv(4096)
                    self.assertTrue(chunk)
                    buf += chunk
        self.assertTrue(wait_for(lambda: value(scrape(self, srv), "hsc_responder_queue_depth",
                                               "exec") == 2, 10))
        for s in conns:
            s.close()
        self.assertTrue(wait_for(lambda: value(scrape(self, srv), "hsc_responder_queue_depth",
                                               "exec") == 0, 10))
        self.assertTrue(wait_for(lambda: value(scrape(self, srv), "hsc_answers_cancelled_total",
                                               "exec") == 3, 10))
        self.check_answers(scrape(self, srv), "exec", 5, 1, 1, 3)

    def test_a_crashing_pool_worker_is_restarted_and_counted(self):
        cmd = "%s -S %s" % (shlex.quote(sys.executable), shlex.quote(WORKER))
        srv = self.start("--threads", "1", "--pool", "1", "--exec", cmd)
        m0 = scrape(self, srv)
        self.check_answers(m0, "pool", 0, 0, 0, 0)
        self.assertEqual(value(m0, "hsc_pool_worker_restarts_total"), 0)
        status, body = ask(srv, "echo hello")
        self.assertIn(b"event: done", body)
        status, body = ask(srv, "crash")
        self.assertIn(b"the pool worker crashed", body)
        self.assertTrue(wait_for(lambda: value(scrape(self, srv),
                                               "hsc_pool_worker_restarts_total") == 1, 10))
        status, body = ask(srv, "echo again")  # served by the restarted worker
        self.assertIn(b"event: done", body)
        m = scrape(self, srv)
        self.check_answers(m, "pool", 3, 2, 1, 0)
        self.assertEqual(value(m, "hsc_pool_worker_restarts_total"), 1)
        self.assertEqual(value(m, "hsc_answer_first_piece_seconds_count", "pool"), 3)

    def test_a_c_callback_responder_is_labelled_callback(self):
        embed = os.path.join(os.path.dirname(os.environ.get("HSCD", "")), "embed")
        self.assertTrue(os.access(embed, os.X_OK), "examples/embed.c is not built: %s" % embed)
        srv = self.start(program=embed)
        self.check_answers(scrape(self, srv), "callback", 0, 0, 0, 0)
        status, body = ask(srv, "two words")
        self.assertIn(b"event: done", body)
        m = scrape(self, srv)
        self.check_answers(m, "callback", 1, 1, 0, 0)
        self.assertEqual(value(m, "hsc_answer_duration_seconds_count", "callback"), 1)


def subscribe(srv, channel):
    """A subscription on a raw socket, returned once the server registered it (its preamble)."""
    s = socket.create_connection((HOST, srv.port), timeout=10 * SLOW)
    s.sendall(("GET /v1/events?channel=%s HTTP/1.1\r\nHost: x\r\n\r\n" % channel).encode())
    buf = b""
    while b": hsc " not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise AssertionError("closed: %r" % buf)
        buf += chunk
    return s


def publish(srv, channel, data):
    c = http.client.HTTPConnection(HOST, srv.port, timeout=10 * SLOW)
    c.request("POST", "/v1/events?channel=" + channel, body=data.encode())
    r = c.getresponse()
    r.read()
    c.close()
    if r.status != 200:
        raise AssertionError("publish to %s: %d" % (channel, r.status))


class PublishDelivery(ServerTestCase):
    def delivery(self, srv):
        m = scrape(self, srv)
        self.assertEqual(m["types"]["hsc_publish_delivery_seconds"], "histogram")
        return (value(m, "hsc_publish_delivery_seconds_count"),
                value(m, "hsc_publish_delivery_seconds_bucket", le="1"),
                value(m, "hsc_publish_delivery_seconds_sum"),
                value(m, "hsc_events_delivered_total"))

    def test_one_observation_per_event_and_loop(self):
        srv = self.start("--threads", "1")
        self.assertEqual(self.delivery(srv), (0, 0, 0, 0))
        subs = [subscribe(srv, "a") for _ in range(3)] + [subscribe(srv, "b")]
        try:
            for i in range(5):
                publish(srv, "a", "a%d" % i)
            for i in range(2):
                publish(srv, "b", "b%d" % i)
            for i in range(3):
                publish(srv, "c", "c%d" % i)  # no subscriber: delivered to no one
            self.assertTrue(wait_for(lambda: self.delivery(srv)[3] == 5 * 3 + 2, 10))
            count, under_1s, total, _ = self.delivery(srv)
            self.assertEqual(count, 5 + 2)  # per event and loop, not per subscriber
            self.assertEqual(under_1s, count)  # a local delivery takes well under a second
            self.assertGreater(total, 0)
            self.assertLess(total, count * 1.0)
            publish(srv, "b", "b2")
            self.assertTrue(wait_for(lambda: self.delivery(srv)[0] == 8, 10))
        finally:
            for s in subs:
                s.close()

    def test_summed_over_loops(self):
        srv = self.start("--threads", "2")
        subs = [subscribe(srv, "a") for _ in range(8)]  # on one loop or both
        try:
            for i in range(4):
                publish(srv, "a", "a%d" % i)
            self.assertTrue(wait_for(lambda: self.delivery(srv)[3] == 4 * 8, 10))
            count = self.delivery(srv)[0]
            self.assertIn(count, (4, 8))  # 4 events, once per loop with subscribers
        finally:
            for s in subs:
                s.close()
