"""Many clients at once: every client gets its own answer, and the answers run side by side.

100 http.client clients (threads), each with a different text (ASCII and not), ask at the same
moment with --max-gen-len 5 --interval 200ms. Proves that:
- each client receives exactly its own 5 pieces, in order, complete (no piece of another client's
  text, no missing or doubled piece);
- the answers are interleaved in time, not served one after the other: every client's first piece
  arrives before any client's last piece;
with 2 worker threads and with 1 (one event loop multiplexing all streams).
"""

import http.client
import threading
import time
import unittest
import urllib.parse

from hscd import HOST, SLOW, ServerTestCase, pieces

CLIENTS = 100
N = 5


def text_for(i):
    scripts = ["client", "клиент", "客户端", "κλιέντ", "😀 emoji", "عميل", "クライアント"]
    return "%s #%d %s" % (scripts[i % len(scripts)], i, "✓" * (i % 4))


class Client(threading.Thread):
    def __init__(self, port, i, barrier, post):
        super().__init__(daemon=True)
        self.port, self.i, self.barrier, self.post = port, i, barrier, post
        self.text = text_for(i)
        self.lines = []  # [(time.monotonic(), str)]
        self.error = None
        self.status = None

    def run(self):
        try:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=30 * SLOW)
            conn.connect()
            self.barrier.wait(timeout=30 * SLOW)
            if self.post:
                conn.request("POST", "/v1/stream", body=self.text.encode("utf-8"),
                             headers={"Content-Type": "text/plain; charset=utf-8"})
            else:
                conn.request("GET", "/v1/stream?q=" + urllib.parse.quote(self.text))
            resp = conn.getresponse()
            self.status = resp.status
            for _ in range(N + 2):  # bounded: at most N pieces are expected
                line = resp.readline()
                if not line:
                    break
                self.lines.append((time.monotonic(), line.decode("utf-8")))
            # The body must be complete: the last chunk makes resp.read() return b"" and
            # mark the response closed; a cut body raises IncompleteRead.
            rest = resp.read()
            if rest:
                self.lines.append((time.monotonic(), rest.decode("utf-8")))
            conn.close()
        except Exception as e:  # reported by the test
            self.error = e


class ManyClients(ServerTestCase):

    def run_clients(self, threads, post=False):
        srv = self.start("--threads", str(threads), "--max-gen-len", str(N),
                         "--interval", "200ms")
        barrier = threading.Barrier(CLIENTS)
        clients = [Client(srv.port, i, barrier, post) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=60 * SLOW)
        self.assertFalse([c.i for c in clients if c.is_alive()], "clients still running")
        errors = ["%d: %r" % (c.i, c.error) for c in clients if c.error is not None]
        self.assertEqual(errors, [])

        for c in clients:
            self.assertEqual(c.status, 200, c.i)
            got = [line for _, line in c.lines]
            self.assertEqual(got, pieces(N, c.text), "client %d got someone else's pieces" % c.i)

        first = [c.lines[0][0] for c in clients]
        last = [c.lines[-1][0] for c in clients]
        # Interleaved: all first pieces are in before any answer finishes. Served one after the
        # other, the 2nd client's first piece would come after the 1st client's last.
        self.assertLess(max(first), min(last),
                        "some client's first piece (at +%.3f s) came after another client's "
                        "last piece (at +%.3f s)" % (max(first) - min(first),
                                                     min(last) - min(first)))
        # And each answer is spread over its 4 intervals (a loose lower bound).
        spans = [c.lines[-1][0] - c.lines[0][0] for c in clients]
        self.assertGreater(min(spans), 0.4, "an answer arrived all at once")
        self.assertLess(max(last) - min(first), 20 * SLOW)

    def test_100_clients_two_threads(self):
        self.run_clients(threads=2)

    def test_100_clients_one_thread(self):
        self.run_clients(threads=1)

    def test_100_clients_post_two_threads(self):
        self.run_clients(threads=2, post=True)


if __name__ == "__main__":
    unittest.main()
