"""hsc-bench's own correctness at small scale (timings are never asserted: make bench measures).

- fanout against hscd and against the floor: every delivery counted, nothing lost, latency
  samples for each, the server's CPU and RSS read from /proc;
- fanout over several channels (one hot) and several subscribe URLs: each subscriber counts
  only its channel's events, and the expected deliveries follow the spread; with --resume,
  subscribers cut by a proxy reconnect to the next URL with Last-Event-ID and lose nothing;
- fanout with HTTP/2 subscribers (--h2): prior-knowledge h2c, and h2 over TLS (ALPN, hscd's
  --listen-tls with a certificate made by openssl; publishing stays cleartext), every delivery
  counted with several streams per connection;
- fanout against a deliberately faulty server (drops, duplicates and reorders known events):
  the exact numbers of lost, duplicated and out-of-order deliveries, and exit status 3;
- connect: everyone connected, memory per idle subscriber reported;
- stream: answers counted against hscd's demo and against the Python template equivalent
  (bench/template_server.py), whose answers must be byte for byte the demo's;
- bad usage (2) and an unreachable server (3).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hscd import HOST, SLOW, Hscd, ServerTestCase, free_port, pieces  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def bench_binary():
    path = os.environ.get("HSC_BENCH", "")
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("HSC_BENCH is not set to the hsc-bench binary (run through ctest)")
    return path


def run_bench(*args, timeout=60):
    p = subprocess.run([bench_binary(), *args], capture_output=True, text=True,
                       timeout=timeout * SLOW)
    return p.returncode, p.stdout, p.stderr


def run_json(*args, timeout=60):
    rc, out, err = run_bench(*args, "--json", timeout=timeout)
    try:
        return rc, json.loads(out), err
    except ValueError:
        raise AssertionError("no JSON from hsc-bench %s (rc %d): %r %r" % (args, rc, out, err))


class FaultyServer:
    """An SSE pub/sub server with known defects, for checking the bench's counting. For an event
    with sequence number s > 0 (the bench's data starts with it): s % 7 == 3 is dropped;
    s % 11 == 0 is held back and sent after the next event; s % 5 == 0 is sent twice."""

    def __init__(self):
        subs, lock, held = [], threading.Lock(), []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                ev = threading.Event()
                with lock:
                    subs.append((self.wfile, ev))
                ev.wait(60)
                self.close_connection = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seq = int(body.split(b" ", 1)[0])
                frames = []
                if seq == 0 or seq % 7 != 3:
                    frame = b"data: " + body + b"\n\n"
                    if seq > 0 and seq % 11 == 0:
                        held.append(frame)
                    else:
                        frames.append(frame)
                        if seq > 0 and seq % 5 == 0:
                            frames.append(frame)
                        frames.extend(held)
                        held.clear()
                with lock:
                    for w, _ in subs:
                        for f in frames:
                            w.write(f)
                        w.flush()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.subs = subs
        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        for _, ev in self.subs:
            ev.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_listening(proc, pattern=rb"listening on http://127\.0\.0\.1:(\d+)", stream="stderr"):
    """Reads the child's output (bounded) until it says where it listens; returns the port."""
    deadline = time.monotonic() + 10 * SLOW
    buf = b""
    f = proc.stderr if stream == "stderr" else proc.stdout
    while time.monotonic() < deadline:
        line = f.readline()
        if not line:
            break
        buf += line
        m = re.search(pattern, buf)
        if m:
            return int(m.group(1))
    raise AssertionError("no 'listening on' from %s: %r" % (proc.args, buf))


class BenchTest(ServerTestCase):
    def hscd_urls(self, server):
        url = "http://%s:%d/v1/events?channel={ch}" % (HOST, server.port)
        return ["--sub-url", url, "--pub-url", url]

    def check_clean(self, r, n, m):
        self.assertEqual(r["connected"], n, r)
        self.assertEqual(r["deliveries_expected"], n * m, r)
        self.assertEqual(r["deliveries"], n * m, r)
        self.assertEqual((r["lost"], r["duplicated"], r["out_of_order"]), (0, 0, 0), r)
        self.assertEqual(r["latency"]["samples"], n * m, r)
        self.assertGreaterEqual(r["latency"]["max_ms"], r["latency"]["p99_ms"])
        self.assertGreaterEqual(r["latency"]["p99_ms"], r["latency"]["p50_ms"])
        self.assertGreater(r["deliveries_per_s"], 0)

    def test_fanout_hscd_counts_every_delivery(self):
        server = self.start()
        rc, r, err = run_json("fanout", *self.hscd_urls(server), "-n", "40", "-m", "30",
                              "-P", "2", "--sources", "3", "--pid", str(server.proc.pid),
                              "--label", "hscd")
        self.assertEqual(rc, 0, err)
        self.check_clean(r, 40, 30)
        self.assertEqual(r["server"], "hscd")
        usage = r["server_usage"]
        self.assertEqual(usage["processes"], 1)
        self.assertGreater(usage["rss_peak_kb"], 1000)
        self.assertGreaterEqual(usage["cpu_s"], 0)

    def test_fanout_h2c_counts_every_delivery(self):
        server = self.start()
        # 30 subscribers as streams, 8 to a connection: four connections, the last one partly used.
        rc, r, err = run_json("fanout", *self.hscd_urls(server), "--h2", "8", "-n", "30", "-m",
                              "25", "-P", "1", "--pid", str(server.proc.pid))
        self.assertEqual(rc, 0, err)
        self.check_clean(r, 30, 25)
        self.assertEqual((r["protocol"], r["h2_streams_per_connection"]), ("h2", 8), r)
        self.assertEqual((r["disconnects"], r["parse_errors"]), (0, 0), r)
        # Every subscriber was an HTTP/2 stream, 8 to a connection: hscd counts them.
        metrics = urllib.request.urlopen(server.url("/metrics"), timeout=10).read().decode()
        count = {k: int(re.search(r"^hsc_h2_%s_total (\d+)" % k, metrics, re.M).group(1))
                 for k in ("connections", "streams")}
        self.assertEqual(count, {"connections": 4, "streams": 30}, metrics)

    def test_fanout_h2_over_tls_counts_every_delivery(self):
        from test_tls import Pki
        pki = Pki()
        self.addCleanup(pki.cleanup)
        cert, key = pki.issue("srv")
        server = self.start("--tls-cert", cert, "--tls-key", key, "--listen-tls", "%s:0" % HOST,
                            "--log-level", "info")
        # The TLS listener's line may follow the cleartext one (which start() waited for).
        deadline = time.monotonic() + 10 * SLOW
        m = None
        while m is None and time.monotonic() < deadline:
            m = re.search(r"listening on https://[^ ]*:(\d+) \(TLS\)", server.log())
            time.sleep(0.02)
        self.assertTrue(m, server.describe())
        sub = "https://%s:%s/v1/events?channel={ch}" % (HOST, m.group(1))
        pub = "http://%s:%d/v1/events?channel={ch}" % (HOST, server.port)
        rc, r, err = run_json("fanout", "--sub-url", sub, "--pub-url", pub, "--h2", "10", "-n",
                              "40", "-m", "30", "-P", "2", "--pid", str(server.proc.pid))
        self.assertEqual(rc, 0, err)
        self.check_clean(r, 40, 30)
        self.assertEqual(r["protocol"], "h2", r)
        self.assertEqual((r["disconnects"], r["parse_errors"]), (0, 0), r)
        # HTTP/1.1 subscribers over the same TLS listener still count the same (ALPN http/1.1).
        rc, r, err = run_json("fanout", "--sub-url", sub, "--pub-url", pub, "-n", "10", "-m",
                              "10")
        self.assertEqual(rc, 0, err)
        self.check_clean(r, 10, 10)
        self.assertEqual(r["protocol"], "http/1.1", r)

    def test_fanout_at_a_rate(self):
        server = self.start()
        rc, r, err = run_json("fanout", *self.hscd_urls(server), "-n", "10", "-m", "10",
                              "-r", "50", "-s", "200")
        self.assertEqual(rc, 0, err)
        self.check_clean(r, 10, 10)
        # 10 events at 50/s: the publishing takes at least the 9 intervals between them.
        self.assertGreaterEqual(r["publish_s"], 9 / 50.0 * 0.9)
        self.assertEqual(r["payload_bytes"], 200)

    def test_fanout_floor(self):
        proc = subprocess.Popen([bench_binary(), "floor", "--listen", "%s:0" % HOST],
                                stderr=subprocess.PIPE)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.wait, 10)
        self.addCleanup(proc.terminate)
        port = wait_listening(proc)
        rc, r, err = run_json("fanout", "--sub-url", "http://%s:%d/sub" % (HOST, port),
                              "--pub-url", "http://%s:%d/pub" % (HOST, port), "-n", "30", "-m",
                              "20", "--pid", str(proc.pid), "--label", "floor")
        self.assertEqual(rc, 0, err)
        self.check_clean(r, 30, 20)

    def test_fanout_channels_hot_and_several_urls(self):
        server = self.start()
        url = "http://%s:%d/v1/events?channel={ch}" % (HOST, server.port)
        # 60 subscribers: 10 on the hot channel 0, 50 spread over channels 1..4; 50 events
        # round-robin over the 5 channels: 10 each, so 60 x 10 deliveries.
        rc, r, err = run_json("fanout", "--sub-url", url, "--sub-url", url, "--pub-url", url,
                              "--pub-url", url, "--channels", "5", "--hot", "10", "-n", "60",
                              "-m", "50", "--pid", str(server.proc.pid),
                              "--aux-pid", str(server.proc.pid))
        self.assertEqual(rc, 0, err)
        self.assertEqual(r["deliveries_expected"], 600, r)
        self.assertEqual(r["deliveries"], 600, r)
        self.assertEqual((r["lost"], r["duplicated"], r["out_of_order"]), (0, 0, 0), r)
        self.assertEqual(r["foreign_events"], 0, r)
        self.assertEqual(r["latency"]["samples"], 600, r)
        self.assertEqual((r["channels"], r["hot_subscribers"], r["nodes"]), (5, 10, 2))
        self.assertGreaterEqual(r["publishes"], 55)  # 50 events and a warm-up per channel
        self.assertEqual([p["pid"] for p in r["server_usage"]["per_pid"]], [server.proc.pid])
        self.assertGreater(r["aux_usage"]["rss_end_kb"], 1000)
        # Uneven: 7 events over 3 channels (3, 2, 2), 9 subscribers on channel i % 3; --midway
        # runs its command once, halfway.
        tmp = tempfile.mkdtemp(prefix="hsc-bench-test-")
        self.addCleanup(shutil.rmtree, tmp, True)
        mark = os.path.join(tmp, "midway")
        rc, r, err = run_json("fanout", "--sub-url", url, "--channels", "3", "-n", "9", "-m", "7",
                              "--midway", "echo x >> " + mark)
        self.assertEqual(rc, 0, err)
        self.assertEqual((r["deliveries_expected"], r["deliveries"], r["lost"]), (21, 21, 0), r)
        self.assertEqual((r["midway_status"], open(mark).read()), (0, "x\n"))

    def test_fanout_resume_moves_cut_subscribers_to_the_next_url(self):
        from test_eventsource import CuttableProxy
        server = self.start()
        proxy = CuttableProxy(server.port)
        proxy.start()
        self.addCleanup(proxy.stop)
        direct = "http://%s:%d/v1/events?channel={ch}" % (HOST, server.port)
        via = "http://%s:%d/v1/events?channel={ch}" % (HOST, proxy.port)
        # Subscriber i starts on URL i % 2: the even ones through the proxy, which cuts them
        # mid-run; they resume on the direct URL with Last-Event-ID.
        p = subprocess.Popen([bench_binary(), "fanout", "--sub-url", via, "--sub-url", direct,
                              "--pub-url", direct, "--resume", "-n", "20", "-m", "150", "-r",
                              "100", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        deadline = time.monotonic() + 20 * SLOW
        while len(proxy.heads) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.8)  # into the publishing
        proxy.cut(rst=False)
        out, err = p.communicate(timeout=60 * SLOW)
        self.assertEqual(p.returncode, 0, err)
        r = json.loads(out)
        self.assertEqual(proxy.cuts[0], 10)
        self.assertEqual((r["resumed"], r["disconnects"]), (10, 10), r)
        self.assertEqual((r["deliveries"], r["lost"], r["duplicated"]), (3000, 0, 0), r)
        heads = [h for h in proxy.heads]
        self.assertFalse([h for h in heads if "last-event-id" in h.lower()], heads)

    def test_fanout_h2_resume_after_a_cut_connection(self):
        from test_eventsource import CuttableProxy
        server = self.start()
        proxy = CuttableProxy(server.port)
        proxy.start()
        self.addCleanup(proxy.stop)
        direct = "http://%s:%d/v1/events?channel={ch}" % (HOST, server.port)
        via = "http://%s:%d/v1/events?channel={ch}" % (HOST, proxy.port)
        # Two processes of 10 subscribers, 5 streams to a connection: in each, the 5 on the
        # proxied URL share one connection; its cut resets them, and they come back as new
        # streams on the direct URL with Last-Event-ID.
        p = subprocess.Popen([bench_binary(), "fanout", "--sub-url", via, "--sub-url", direct,
                              "--pub-url", direct, "--resume", "--h2", "5", "-P", "2", "-n",
                              "20", "-m", "150", "-r", "100", "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        deadline = time.monotonic() + 20 * SLOW
        while len(proxy.heads) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.8)  # into the publishing
        proxy.cut(rst=False)
        out, err = p.communicate(timeout=60 * SLOW)
        self.assertEqual(p.returncode, 0, err)
        r = json.loads(out)
        self.assertEqual(proxy.cuts[0], 2)
        self.assertTrue(all(h.startswith("PRI * HTTP/2.0") for h in proxy.heads), proxy.heads)
        self.assertEqual((r["resumed"], r["disconnects"]), (10, 10), r)
        self.assertEqual((r["deliveries"], r["lost"], r["duplicated"]), (3000, 0, 0), r)

    def test_fanout_counts_loss_duplicates_and_disorder(self):
        faulty = FaultyServer()
        self.addCleanup(faulty.close)
        url = "http://%s:%d/x" % (HOST, faulty.port)
        n, m = 3, 30
        rc, r, err = run_json("fanout", "--sub-url", url, "--pub-url", url, "-n", str(n), "-m",
                              str(m), "--idle", "1")
        self.assertEqual(rc, 3, err)
        seqs = range(1, m + 1)
        lost = [s for s in seqs if s % 7 == 3]
        dup = [s for s in seqs if s % 5 == 0 and s not in lost and s % 11 != 0]
        late = [s for s in seqs if s % 11 == 0 and s not in lost]
        self.assertEqual(r["connected"], n)
        self.assertEqual(r["lost"], n * len(lost), r)
        self.assertEqual(r["duplicated"], n * len(dup), r)
        self.assertEqual(r["out_of_order"], n * len(late), r)
        self.assertEqual(r["deliveries"], n * (m - len(lost)), r)

    def test_connect(self):
        server = self.start("--max-connections", "500")
        rc, r, err = run_json("connect", "--sub-url",
                              "http://%s:%d/v1/events?channel={ch}" % (HOST, server.port),
                              "-n", "200", "--settle", "0.2", "--pid", str(server.proc.pid))
        self.assertEqual(rc, 0, err)
        self.assertEqual((r["connected"], r["connect_failed"]), (200, 0), r)
        self.assertGreater(r["connects_per_s"], 0)
        self.assertGreater(r["rss_idle_kb"], 0)
        self.assertIn("bytes_per_idle_subscriber", r)

    def answer_bytes(self, text):
        return len("".join(pieces(10, text)).encode())

    def test_stream_hscd_and_template_answer_alike(self):
        server = self.start("--interval", "0", "--max-gen-len", "10", "--legacy-get")
        rc, r, err = run_json("stream", "--url", "http://%s:%d/bench%%20q" % (HOST, server.port),
                              "-c", "4", "-d", "1", "-k", "10", "--pid", str(server.proc.pid))
        self.assertEqual(rc, 0, err)
        self.assertGreater(r["answers"], 0)
        self.assertEqual(r["failed"], 0)
        self.assertEqual(r["mean_answer_bytes"], self.answer_bytes("bench q"))
        self.assertEqual(r["first_piece"]["samples"], r["answers"])

        port = free_port()
        tpl = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "template_server.py"),
                                "--server_port", str(port), "--max_gen_len", "10", "--interval",
                                "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.addCleanup(tpl.stdout.close)
        self.addCleanup(tpl.wait, 10)
        self.addCleanup(tpl.terminate)
        wait_listening(tpl, stream="stdout")
        rc, r, err = run_json("stream", "--url", "http://%s:%d/bench%%20q" % (HOST, port), "-c",
                              "2", "-d", "1", "-k", "10")
        self.assertEqual(rc, 0, err)
        self.assertGreater(r["answers"], 0)
        self.assertEqual(r["failed"], 0)
        self.assertEqual(r["mean_answer_bytes"], self.answer_bytes("bench q"))
        # SIGTERM ends it whole: its HTTP server process too (the port stops answering).
        tpl.terminate()
        tpl.wait(10)
        deadline = time.monotonic() + 5 * SLOW
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
            except OSError:
                break
            time.sleep(0.1)
        else:
            self.fail("the template's server process outlived it")

    def test_stream_pool_worker_answers_like_the_demo(self):
        # bench/pool_worker.py, the --pool scenario's worker, answers the demo's exact pieces.
        worker = os.path.join(ROOT, "bench", "pool_worker.py")
        server = self.start("--pool", "1", "--exec", "%s %s" % (sys.executable, worker))
        rc, r, err = run_json("stream", "--url",
                              "http://%s:%d/v1/stream?q=bench%%20q" % (HOST, server.port),
                              "-c", "2", "-d", "1")
        self.assertEqual(rc, 0, err)
        self.assertGreater(r["answers"], 0)
        self.assertEqual(r["failed"], 0)
        self.assertEqual(r["mean_answer_bytes"], self.answer_bytes("bench q"))

    def test_usage_and_unreachable(self):
        rc, out, err = run_bench("fanout", "-n", "0")
        self.assertEqual(rc, 2)
        self.assertIn("bad options", err)
        rc, out, err = run_bench("nonsense")
        self.assertEqual(rc, 2)
        rc, out, err = run_bench("--help")
        self.assertEqual(rc, 0)
        for cmd in ("fanout", "connect", "stream", "floor"):
            self.assertIn(cmd, out)
        url = "http://%s:%d/x" % (HOST, free_port())
        rc, r, err = run_json("fanout", "--sub-url", url, "--pub-url", url, "-n", "3", "-m", "2",
                              "--idle", "1")
        self.assertEqual(rc, 3)
        self.assertEqual(r["connected"], 0)
        self.assertEqual(r["connect_failed"], 3)


if __name__ == "__main__":
    unittest.main()
