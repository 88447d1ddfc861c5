"""Chaos: nothing lost. Subscribers on several channels (hsc listen processes, on hsc's client
library, and npm eventsource clients), publishers running flat out on every channel, and a chaos
driver that cuts random connections all along, through a TCP proxy between the subscribers and
hscd: sometimes the client's side first (an RST to the client), sometimes hscd's side first (an
RST to hscd). Every subscriber must end with every event of its channels exactly once, in order,
and no hsc.gap notice (history is large enough to cover every cut).

The size comes from the environment so that `make bench` can run a larger setting:
CHAOS_SECONDS (default 5), CHAOS_SUBSCRIBERS (hsc listen processes, default 8),
CHAOS_ES (eventsource clients, default 2), CHAOS_CHANNELS (default 4).
The report line (subscribers, events, forced disconnects, lost, duplicated, out of order) goes
to stderr: `ctest -R chaos -V` shows it.
"""

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from hscd import HOST, SLOW, ServerTestCase
from test_channels import FlatOutPublisher, Publisher
from test_client import hsc_binary
from test_eventsource import CLIENT, CuttableProxy, node_binary

SECONDS = float(os.environ.get("CHAOS_SECONDS", "5"))
SUBSCRIBERS = int(os.environ.get("CHAOS_SUBSCRIBERS", "8"))
ES_CLIENTS = int(os.environ.get("CHAOS_ES", "2"))
CHANNELS = int(os.environ.get("CHAOS_CHANNELS", "4"))


class ChaosProxy(CuttableProxy):
    """CuttableProxy that can also cut `k` random connections, choosing which side goes first."""

    def __init__(self, target_port, seed):
        super().__init__(target_port)
        self.rng = random.Random(seed)
        self.forced = 0

    def _commands(self):
        with self.lock:
            cmds = [c for c in self.commands if c[0] == "some"]
            self.commands = [c for c in self.commands if c[0] != "some"]
        for _, k in cmds:
            victims = self.rng.sample(self.pairs, min(k, len(self.pairs)))
            for pair in victims:
                client_first = self.rng.random() < 0.5
                first = pair[0] if client_first else pair[1]
                # SO_LINGER 0: this side gets an RST, the other an orderly FIN.
                first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._drop(pair, rst=False)
                self.forced += 1
        super()._commands()

    def cut_some(self, k):
        with self.lock:
            self.commands.append(("some", k))
        self.wake_w.send(b"x")


def channel(i):
    return "chaos%d" % i


class Chaos(ServerTestCase):
    def test_nothing_lost_under_random_disconnects(self):
        # Nothing may leave history: no global budget in the way either (--history-total-bytes).
        srv = self.start("--threads", "2", "--history", "1000000", "--history-bytes", "256m",
                         "--history-total-bytes", "1024g",
                         "--retry", "50ms", "--max-event-bytes", "1k")
        proxy = ChaosProxy(srv.port, seed=int(time.time()))
        proxy.start()
        self.addCleanup(proxy.stop)
        base = "http://%s:%d" % (HOST, proxy.port)

        # Subscribers: hsc listen on two channels each; eventsource clients on two channels.
        subs = []  # (channels, kind, proc, out path)
        for i in range(SUBSCRIBERS + ES_CLIENTS):
            chans = sorted({channel(i % CHANNELS), channel((i + 1) % CHANNELS)})
            out = tempfile.NamedTemporaryFile(prefix="chaos-", suffix=".out", delete=False)
            self.addCleanup(os.unlink, out.name)
            if i < SUBSCRIBERS:
                args = [hsc_binary(), "listen", "--url", base, "--format", "json", "-q"]
                for c in chans:
                    args += ["-c", c]
                kind = "hsc"
            else:
                url = base + "/v1/events?" + "&".join("channel=" + c for c in chans)
                last = max(chans, key=lambda c: int(c[5:]))
                args = [node_binary(), CLIENT, "--url", url, "--until", "END-" + last,
                        "--timeout", str(int(SECONDS * 4 + 60 * SLOW))]
                kind = "es"
            p = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL)
            self.addCleanup(self._reap, p)
            subs.append((chans, kind, p, out.name))
        self._wait_connected(proxy, len(subs))

        pubs = [FlatOutPublisher(srv, channel(c), lambda i, c=c: "%d:%d" % (c, i), SECONDS,
                                 10 ** 9) for c in range(CHANNELS)]
        for p in pubs:
            p.start()
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            time.sleep(random.uniform(0.05, 0.3))
            proxy.cut_some(random.randint(1, max(1, len(subs) // 3)))
        for p in pubs:
            p.done.wait(30 * SLOW)
            self.assertIsNone(p.error, p.error)
        pub = Publisher(srv)
        self.addCleanup(pub.close)
        for c in range(CHANNELS):
            pub.publish(channel(c), "END-" + channel(c))

        sent = {channel(c): [d for _, d in pubs[c].sent] for c in range(CHANNELS)}
        deadline = time.monotonic() + 60 * SLOW
        results = []
        for chans, kind, p, path in subs:
            while True:
                got = self._events(kind, path)
                ends = {e["data"] for e in got if e["data"].startswith("END-")}
                if all("END-" + c in ends for c in chans) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if kind == "hsc":
                p.send_signal(signal.SIGINT)
            try:
                p.wait(15 * SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            results.append((chans, kind, self._events(kind, path)))

        lost = dup = disorder = gaps = 0
        delivered = 0
        for chans, kind, events in results:
            ids = [e["id"] for e in events if e["type"] != "hsc.gap"]
            seqs = [int(i.split("-")[1]) for i in ids]
            disorder += sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a)
            gaps += sum(1 for e in events if e["type"] == "hsc.gap")
            for c in chans:
                want = sent[c]
                prefix = c[5:] + ":"
                got = [e["data"] for e in events if e["data"].startswith(prefix)]
                delivered += len(got)
                seen = set()
                c_dup = 0
                for d in got:
                    if d in seen:
                        c_dup += 1
                    seen.add(d)
                c_lost = len(set(want) - seen)
                dup += c_dup
                lost += c_lost
                if got != want and not c_dup and not c_lost:
                    disorder += 1
        events_total = sum(len(v) for v in sent.values())
        report = ("chaos: %d subscribers (%d hsc, %d eventsource) on %d channels, %d events "
                  "published, %d deliveries, %d forced disconnects, %d proxied connections, "
                  "lost %d, duplicated %d, out of order %d, gap notices %d"
                  % (len(subs), SUBSCRIBERS, ES_CLIENTS, CHANNELS, events_total, delivered,
                     proxy.forced, len(proxy.heads), lost, dup, disorder, gaps))
        sys.stderr.write(report + "\n")
        self.assertGreater(proxy.forced, 0)
        self.assertGreater(len(proxy.heads), len(subs), "nobody reconnected")
        self.assertEqual((lost, dup, disorder, gaps), (0, 0, 0, 0), report)

    def _wait_connected(self, proxy, n):
        deadline = time.monotonic() + 30 * SLOW
        while time.monotonic() < deadline:
            with proxy.lock:
                if len(proxy.heads) >= n:
                    break
            time.sleep(0.05)
        time.sleep(0.3 * SLOW)  # the last heads reach hscd and register

    @staticmethod
    def _events(kind, path):
        """The events a subscriber printed so far, as {type, data, id}."""
        out = []
        with open(path, "rb") as f:
            for raw in f.read().splitlines():
                try:
                    x = json.loads(raw)
                except ValueError:
                    continue  # a line still being written
                if kind == "hsc":
                    out.append(x)
                elif x.get("t") == "event":
                    out.append({"type": x["type"], "data": x["data"], "id": x["id"]})
        return out

    @staticmethod
    def _reap(p):
        if p.poll() is None:
            p.kill()
            p.wait(10)
        if p.stderr:
            p.stderr.close()


if __name__ == "__main__":
    unittest.main()
