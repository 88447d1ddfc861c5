"""Channel squatting (issue 21, item 3; docs/security.md, "Channel squatting").

One client floods new channels: 20,000 one-byte publishes to fresh names, pipelined. Meanwhile a
second client, from another source address (127.0.0.2, another client to hscd), publishes to and
subscribes to new channels of its own, and keeps a live subscription: it is never refused. The
flooder gets 429 with Retry-After once past its burst; the table stays within --max-channels by
dropping the least recently used idle channels, so a subscriber resuming one of those gets
hsc.gap ("expired"); history stays within --history-total-bytes, and hscd's RSS within that
budget plus a fixed allowance.
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import sys
import threading
import time
import unittest

from hscd import HOST, SANITIZE, SLOW, RawConn, ServerTestCase, rss_kb

OTHER = "127.0.0.2"  # the well-behaved client's address
MAX_CHANNELS = 1000
BUDGET = 4 << 20  # --history-total-bytes
RATE, BURST = 100, 1000  # the defaults of --channel-create-rate and --channel-create-burst
# RSS may grow past the baseline by the history budget and this: the table of --max-channels
# channels, the per-client table, allocator slack, the flood's buffers.
RSS_ALLOWANCE_KB = 24 * 1024


def metrics(port, source=None):
    with RawConn(port, source=source) as c:
        c.request("GET", "/metrics")
        r = c.read_response()
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split()
            out[k] = int(float(v))
    return out


def publish(port, channel, data, source=None, headers=()):
    with RawConn(port, source=source) as c:
        c.request("POST", "/v1/events?channel=" + channel, list(headers), body=data)
        return c.read_response()


class LiveSub:
    """A subscription on a connection of its own, from `source`; collects the raw bytes."""

    def __init__(self, port, target, source, headers=()):
        self.conn = RawConn(port, source=source)
        self.conn.request("GET", target, [("Accept", "text/event-stream")] + list(headers))
        self.head = self.conn.read_response(head_only=True)

    def wait_for(self, needle, timeout=10):
        deadline = time.monotonic() + timeout * SLOW
        while needle not in self.conn.buf:
            try:
                if not self.conn._fill(deadline):
                    return False
            except socket.timeout:
                return False
        return True

    def close(self):
        self.conn.close()


class Victim(threading.Thread):
    """The other client: new channels, a live subscription, until stopped. Records every
    refusal."""

    def __init__(self, port, live):
        super().__init__(daemon=True)
        self.port = port
        self.live = live
        self.halt = threading.Event()
        self.refusals = []
        self.rounds = 0

    def run(self):
        k = 0
        while not self.halt.is_set():
            k += 1
            try:
                r = publish(self.port, "victim-new-%d" % k, "v", source=OTHER)
                if r.status != 200:
                    self.refusals.append("publish: %d %r" % (r.status, r.body))
                s = LiveSub(self.port, "/v1/events?channel=victim-sub-%d" % k, OTHER)
                if s.head.status != 200:
                    self.refusals.append("subscribe: %d" % s.head.status)
                s.close()
                payload = "live-%d" % k
                r = publish(self.port, "victim-live", payload, source=OTHER)
                if r.status != 200:
                    self.refusals.append("publish live: %d %r" % (r.status, r.body))
                elif not self.live.wait_for(b"data: " + payload.encode()):
                    self.refusals.append("live event %s never arrived" % payload)
                self.rounds += 1
            except Exception as e:  # reported by the test
                self.refusals.append(repr(e))
            time.sleep(0.01)

    def stop(self):
        self.halt.set()
        self.join(30)


class Squatting(ServerTestCase):
    def test_a_flood_of_new_channels_locks_no_one_out(self):
        srv = self.start("--threads", "2", "--max-channels", str(MAX_CHANNELS),
                         "--history-total-bytes", str(BUDGET))
        # The victim's idle channel with history, before the flood: its events will be dropped.
        first = json.loads(publish(srv.port, "victim-idle", "1", source=OTHER).body)["id"]
        publish(srv.port, "victim-idle", "2", source=OTHER)
        live = LiveSub(srv.port, "/v1/events?channel=victim-live", OTHER)
        self.addCleanup(live.close)
        self.assertEqual(live.head.status, 200)
        time.sleep(0.3)
        base = rss_kb(srv.proc.pid)
        victim = Victim(srv.port, live)
        victim.start()
        self.addCleanup(victim.stop)

        ok = limited = peak = 0
        retry_after = set()
        batch, total = 500, 20000
        t0 = time.monotonic()
        with RawConn(srv.port, timeout=30 * SLOW) as c:
            for b in range(total // batch):
                c.send(b"".join(
                    b"POST /v1/events?channel=squat-%d HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 1\r\n\r\nx" % (b * batch + k) for k in range(batch)))
                for _ in range(batch):
                    r = c.read_response()
                    if r.status == 200:
                        ok += 1
                    elif r.status == 429:
                        limited += 1
                        retry_after.add(r.header("Retry-After"))
                        self.assertEqual(
                            r.body, b"creating channels too fast (see --channel-create-rate)\n")
                    else:
                        self.fail("flooder: unexpected %r" % r)
                if b % 8 == 0:
                    peak = max(peak, rss_kb(srv.proc.pid))
        elapsed = time.monotonic() - t0
        # Past the burst, the budget: big events to the flooder's own channels (some 429 too).
        big = "b" * 16384
        with RawConn(srv.port, timeout=30 * SLOW) as c:
            for b in range(8):
                c.send(b"".join(
                    b"POST /v1/events?channel=squat-big-%d HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (k % 40, len(big), big.encode())
                    for k in range(100)))
                for _ in range(100):
                    r = c.read_response()
                    self.assertIn(r.status, (200, 429), r)
                peak = max(peak, rss_kb(srv.proc.pid))
        time.sleep(0.3)
        victim.stop()
        self.assertEqual(victim.refusals, [], "the other client was refused")
        self.assertGreater(victim.rounds, 0)
        self.assertTrue(live.wait_for(b"data: live-%d" % victim.rounds), "live events lost")

        # The flooder: its burst, then about RATE a second; every other request 429.
        self.assertEqual(ok + limited, total)
        self.assertGreaterEqual(ok, BURST)
        self.assertLessEqual(ok, BURST + RATE * (elapsed + 1))
        self.assertGreater(limited, 0, "the flood was never limited")
        self.assertTrue(retry_after and all(v is not None and v.isdigit() and int(v) >= 1
                                            for v in retry_after), retry_after)

        m = metrics(srv.port)
        self.assertLessEqual(m["hsc_channels"], MAX_CHANNELS)
        self.assertLessEqual(m["hsc_history_bytes"], BUDGET)
        self.assertGreater(m["hsc_channels_evicted_total"], 0)
        self.assertGreater(m["hsc_history_evicted_total"], 0)
        self.assertGreaterEqual(m["hsc_channel_creates_limited_total"], limited)

        # The victim's idle channel went with the flood: resuming it reports the gap.
        s = LiveSub(srv.port, "/v1/events?channel=victim-idle", OTHER, [("Last-Event-ID", first)])
        try:
            self.assertEqual(s.head.status, 200)
            self.assertTrue(s.wait_for(b"event: hsc.gap\n"), s.conn.buf[:300])
            self.assertTrue(s.wait_for(b'"reason":"expired"'), s.conn.buf[:300])
        finally:
            s.close()

        if not SANITIZE:
            self.assertLess(peak, base + BUDGET // 1024 + RSS_ALLOWANCE_KB,
                            "RSS past the history budget")
        sys.stderr.write(
            "squat: %d publishes to new channels in %.1f s: %d accepted, %d refused with 429 "
            "(Retry-After %s); other client: %d rounds, 0 refusals; channels %d (max %d), "
            "evicted %d channels / %d events; history %d bytes (budget %d); RSS baseline %d KiB, "
            "peak %d KiB\n" % (total, elapsed, ok, limited, ",".join(sorted(retry_after)),
                               victim.rounds, m["hsc_channels"], MAX_CHANNELS,
                               m["hsc_channels_evicted_total"], m["hsc_history_evicted_total"],
                               m["hsc_history_bytes"], BUDGET, base, peak))

    def test_limit_follows_the_jwt_subject_not_the_address(self):
        # Two tokens from one address are two clients; one token is one client wherever it is
        # used from. --channel-create-burst 3, rate 1: the fourth new channel is refused.
        key = "an HS256 key of at least 32 bytes, squat test"

        def b64(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

        def jwt(sub):
            h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            p = b64(json.dumps({"sub": sub, "hsc_pub": ["*"], "hsc_sub": ["*"]}).encode())
            sig = b64(hmac.new(key.encode(), (h + "." + p).encode(), hashlib.sha256).digest())
            return h + "." + p + "." + sig

        env = dict(os.environ)
        env["SQUAT_TEST_KEY"] = key
        srv = self.start("--jwt-key-env", "SQUAT_TEST_KEY", "--channel-create-rate", "1",
                         "--channel-create-burst", "3", env=env)
        alice = [("Authorization", "Bearer " + jwt("alice"))]
        bob = [("Authorization", "Bearer " + jwt("bob"))]
        for i in range(3):
            self.assertEqual(publish(srv.port, "a-%d" % i, "x", headers=alice).status, 200)
        r = publish(srv.port, "a-3", "x", source=OTHER, headers=alice)  # same subject elsewhere
        self.assertEqual(r.status, 429)
        self.assertRegex(r.header("Retry-After", ""), r"^[1-9]\d*$")
        self.assertEqual(publish(srv.port, "a-0", "existing", headers=alice).status, 200)
        for i in range(3):
            self.assertEqual(publish(srv.port, "b-%d" % i, "x", headers=bob).status, 200)
        # A subscription creating channels counts the same way.
        s = LiveSub(srv.port, "/v1/events?channel=a-9", HOST, alice)
        self.assertEqual(s.head.status, 429)
        s.close()
        time.sleep(1.1)  # one token back
        self.assertEqual(publish(srv.port, "a-4", "x", headers=alice).status, 200)


if __name__ == "__main__":
    unittest.main()
