"""Logs and metrics operators expect (docs/operations.md): --log-format json, --access-log, and
the build and process metrics of /metrics.

Proves that:
- with --log-format json every line hscd writes (start, access, a refused reload, shutdown)
  parses as one JSON object with time, level and message;
- --access-log writes one line per response with request id, peer, method, path, status, bytes
  and duration, including a response the client cut short (complete false), a request that
  could not be parsed, and a path holding quotes and bytes that are not UTF-8;
- access tokens in the query are masked in the access log;
- without --access-log there is no access line; the text format has one too;
- a bad --log-format value exits 2;
- /metrics has hsc_build_info and the process metrics under Prometheus' conventional names
  (process_resident_memory_bytes, process_open_fds, process_cpu_seconds_total...), with
  plausible values, and counts configuration reloads.
"""

import json
import os
import signal
import socket
import tempfile
import unittest

from hscd import HOST, RawConn, ServerTestCase, run_hscd, wait_for


class Json(ServerTestCase):
    def lines(self, srv):
        out = []
        for line in srv.log().splitlines():
            try:
                obj = json.loads(line)
            except ValueError as e:
                self.fail("not JSON (%s): %r" % (e, line))
            self.assertIsInstance(obj, dict, line)
            for key in ("time", "level", "message"):
                self.assertIn(key, obj, line)
            out.append(obj)
        return out

    def access(self, srv, n):
        self.assertTrue(wait_for(lambda: srv.log().count('"message":"access"') >= n, 10),
                        srv.describe())
        return [o for o in self.lines(srv) if o["message"] == "access"]

    def test_every_line_is_json_with_access_fields(self):
        fd, path = tempfile.mkstemp(prefix="hscd-", suffix=".conf")
        os.close(fd)
        self.addCleanup(os.unlink, path)
        with open(path, "w") as f:
            f.write("max-gen-len 3\ninterval 10ms\n")
        srv = self.start("--config", path, "--log-format", "json", "--access-log")
        with RawConn(srv.port) as c:
            c.request("GET", "/v1/stream?q=a+b&access_token=s3cret")
            self.assertEqual(c.read_response().status, 200)
            c.request("GET", "/no/such/\"path\"/\xff")
            self.assertEqual(c.read_response().status, 404)
        with RawConn(srv.port) as c:  # a subscriber the client leaves: cut short
            c.request("GET", "/v1/events?channel=x")
            self.assertEqual(c.read_response(head_only=True).status, 200)
        with RawConn(srv.port) as c:  # cannot be parsed
            c.send(b"BLAH / HTTP/1.1\r\n\r\n")
            c.read_eof()
        with open(path, "a") as f:
            f.write("history nope\n")
        srv.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "configuration refused" in srv.log(), 10))
        acc = self.access(srv, 4)
        for a in acc:
            for key in ("request_id", "peer", "method", "path", "status", "bytes",
                        "duration_ms", "complete"):
                self.assertIn(key, a)
            self.assertTrue(a["peer"].startswith(HOST + ":"), a)
            self.assertGreaterEqual(a["duration_ms"], 0)
        by_path = {a["path"].split("?")[0]: a for a in acc}
        ok = by_path["/v1/stream"]
        self.assertEqual(ok["method"], "GET")
        self.assertNotIn("s3cret", srv.log())
        self.assertTrue(ok["path"].startswith("/v1/stream?q=a+b&access_token="), ok)
        self.assertGreater(ok["bytes"], 0)
        self.assertTrue(ok["complete"])
        self.assertEqual(by_path['/no/such/"path"/\u00c3\u00bf']["status"], 404)
        self.assertTrue(wait_for(lambda: any(o.get("status") == 400 for o in self.lines(srv)),
                                 10), srv.describe())
        self.assertEqual(len({a["request_id"] for a in acc}), len(acc))
        self.assertTrue(wait_for(lambda: any(o["message"] == "access" and
                                             o["path"].startswith("/v1/events")
                                             for o in self.lines(srv)), 10))
        sub = [a for a in self.lines(srv)
               if a["message"] == "access" and a["path"].startswith("/v1/events")][0]
        self.assertFalse(sub["complete"])
        self.assertEqual(sub["status"], 200)
        self.stop_clean(srv)
        levels = {o["level"] for o in self.lines(srv)}
        self.assertTrue({"notice", "error", "info"} <= levels, levels)
        self.assertTrue(any("stopped" == o["message"] for o in self.lines(srv)))

    def test_no_access_log_by_default_and_text_form(self):
        srv = self.start("--log-format", "json")
        with RawConn(srv.port) as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().status, 200)
        self.stop_clean(srv)
        self.assertNotIn('"access"', srv.log())
        self.lines(srv)
        srv = self.start("--access-log")
        with RawConn(srv.port) as c:
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().status, 200)
        self.assertTrue(wait_for(lambda: " access: " in srv.log(), 10), srv.describe())
        self.assertIn("GET /healthz 200", srv.log())

    def test_bad_format(self):
        rc, out, err = run_hscd(["--log-format", "xml"])
        self.assertEqual(rc, 2)
        self.assertIn("--log-format: invalid value 'xml' (text or json)", err)


class ProcessMetrics(ServerTestCase):
    def metrics(self, srv):
        with RawConn(srv.port) as c:
            c.request("GET", "/metrics")
            r = c.read_response()
        self.assertEqual(r.status, 200)
        values = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def test_build_and_process_metrics(self):
        srv = self.start()
        m = self.metrics(srv)
        self.assertEqual(m['hsc_build_info{version="0.1.0"}'], 1)
        self.assertGreater(m["process_resident_memory_bytes"], 1 << 20)
        self.assertGreaterEqual(m["process_virtual_memory_bytes"],
                                m["process_resident_memory_bytes"])
        self.assertGreater(m["process_open_fds"], 3)
        self.assertGreaterEqual(m["process_max_fds"], m["process_open_fds"])
        self.assertGreaterEqual(m["process_cpu_seconds_total"], 0)
        self.assertGreater(m["process_start_time_seconds"], 1.6e9)
        self.assertEqual(m["hsc_config_reloads_total"], 0)
        conns = [RawConn(srv.port) for _ in range(10)]
        try:
            self.assertTrue(wait_for(lambda: self.metrics(srv)["process_open_fds"]
                                     >= m["process_open_fds"] + 10, 10))
        finally:
            for c in conns:
                c.close()
        srv.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: self.metrics(srv)["hsc_config_reloads_total"] == 1, 10))


if __name__ == "__main__":
    unittest.main()
