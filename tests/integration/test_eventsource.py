"""Channels seen from a real EventSource client: the npm `eventsource` package (4.x, pinned in
tests/js/package-lock.json, installed by scripts/install-js.sh), driven by tests/js/es_client.mjs.

Proves that:
- EventSource receives published events with their ids, types and exact data (multi-line data
  joined with LF, CR and CRLF normalised, non-ASCII intact);
- when its connection is cut (a TCP proxy in this test closes it, with FIN or RST) while two
  publishers run flat out, it reconnects by itself after the server's retry: delay, sends
  Last-Event-ID = the last id it received, and in the end has received every published event
  exactly once, in order, with no hsc.gap notice;
- an unknown lastEventId= gives it an hsc.gap event (no id: its lastEventId stays empty), then
  live events;
- lastEventId=earliest and history=N give it the channel's recent events, then live ones; when
  its connection is cut it reconnects to the same URL with Last-Event-ID, which wins: it gets
  exactly what it missed, not the recent events again;
- with tag=channel, its hsc.channel listener receives the channel's name before each run of
  that channel's events (typed or not), and its message and typed listeners get the events as
  before.
A missing node or node_modules is a failure (run scripts/install-js.sh), never a skip.
"""

import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

from hscd import HOST, SLOW, ServerTestCase, wait_for
from test_channels import FlatOutPublisher, Publisher, metric, split_id

JS_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "js"))
CLIENT = os.path.join(JS_DIR, "es_client.mjs")


def node_binary():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise AssertionError("node is not installed: run scripts/install-deps.sh")
    if not os.path.isfile(os.path.join(JS_DIR, "node_modules", "eventsource", "package.json")):
        raise AssertionError("%s/node_modules has no eventsource: run scripts/install-js.sh"
                             % JS_DIR)
    return node


class EsClient:
    """es_client.mjs as a subprocess; its JSON lines are collected by a thread."""

    def __init__(self, url, until="end", types=(), timeout=60):
        self.timeout = timeout * SLOW
        args = [node_binary(), CLIENT, "--url", url, "--until", until,
                "--timeout", str(int(self.timeout))]
        if types:
            args += ["--types", ",".join(types)]
        self.proc = subprocess.Popen(args, cwd=JS_DIR, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        self.bad = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                self.bad.append(raw)

    def of(self, kind):
        return [x for x in list(self.lines) if x["t"] == kind]

    def events(self):
        return self.of("event")

    def wait_exit(self):
        """Waits for the client to finish (bounded); returns (status, stderr)."""
        try:
            rc = self.proc.wait(self.timeout + 10 * SLOW)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("es_client did not exit; last lines: %r" % self.lines[-5:])
        self._reader.join(10)
        err = self.proc.stderr.read().decode("utf-8", "replace")
        return rc, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self):
        self.kill()
        self._reader.join(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


class CuttableProxy(threading.Thread):
    """A TCP proxy 127.0.0.1:port -> hscd that records each connection's request head and can
    cut every open connection at once (`cut(rst)`), as a network failure would."""

    def __init__(self, target_port):
        super().__init__(daemon=True)
        self.target = target_port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, ("accept", None))
        self.wake_r, self.wake_w = socket.socketpair()
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self.heads = []  # request head of every connection, in order
        self.pairs = []  # [client, upstream, head buffer]
        self.cuts = []
        self.commands = []
        self.lock = threading.Lock()
        self.stopping = False
        self.error = None

    def run(self):
        try:
            while not self.stopping:
                for key, _ in self.sel.select(0.2):
                    kind, pair = key.data
                    if kind == "accept":
                        self._accept()
                    elif kind == "wake":
                        self.wake_r.recv(64)
                        self._commands()
                    else:
                        self._relay(key.fileobj, kind, pair)
        except Exception as e:
            self.error = repr(e)
        finally:
            for pair in list(self.pairs):
                self._drop(pair, rst=False)
            self.sel.close()
            self.lsock.close()

    def _accept(self):
        client, _ = self.lsock.accept()
        upstream = socket.create_connection((HOST, self.target), timeout=10)
        for s in (client, upstream):
            s.settimeout(10 * SLOW)
        pair = [client, upstream, b""]
        self.pairs.append(pair)
        self.sel.register(client, selectors.EVENT_READ, ("up", pair))
        self.sel.register(upstream, selectors.EVENT_READ, ("down", pair))

    def _relay(self, sock, kind, pair):
        try:
            data = sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self._drop(pair, rst=False)
            return
        if kind == "up" and pair[2] is not None:
            pair[2] += data
            i = pair[2].find(b"\r\n\r\n")
            if i >= 0:
                with self.lock:
                    self.heads.append(pair[2][:i].decode("latin-1"))
                pair[2] = None
        other = pair[1] if kind == "up" else pair[0]
        try:
            other.sendall(data)
        except OSError:
            self._drop(pair, rst=False)

    def _drop(self, pair, rst):
        if pair not in self.pairs:
            return
        self.pairs.remove(pair)
        for s in pair[:2]:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
        if rst:
            pair[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                               b"\x01\x00\x00\x00\x00\x00\x00\x00")
        pair[0].close()
        pair[1].close()

    def _commands(self):
        with self.lock:
            cmds, self.commands = self.commands, []
        for cmd in cmds:
            if cmd[0] == "cut":
                n = len(self.pairs)
                for pair in list(self.pairs):
                    self._drop(pair, rst=cmd[1])
                self.cuts.append(n)
            elif cmd[0] == "stop":
                self.stopping = True

    def cut(self, rst):
        with self.lock:
            self.commands.append(("cut", rst))
        self.wake_w.send(b"x")

    def stop(self):
        with self.lock:
            self.commands.append(("stop",))
        self.wake_w.send(b"x")
        self.join(10)
        self.wake_r.close()
        self.wake_w.close()


class EventSourceClient(ServerTestCase):

    def client(self, url, **kw):
        c = EsClient(url, **kw)
        self.addCleanup(c.close)
        return c

    def test_receives_events_with_ids_types_and_exact_data(self):
        srv = self.start()
        es = self.client(srv.url("/v1/events?channel=es"), types=["update"])
        self.assertTrue(wait_for(lambda: es.of("open"), 20), "no open: %r" % es.lines)
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 1, 5))
        p = Publisher(srv)
        self.addCleanup(p.close)
        cases = [("hello", None, "hello"), ("two\nlines", None, "two\nlines"),
                 ("cr\rand\r\ncrlf", "update", "cr\nand\ncrlf"),
                 ("\n\nevent: x\nid: 9\ndata: y", None, "\n\nevent: x\nid: 9\ndata: y"),
                 ("héllo 你好 🚀", "update", "héllo 你好 🚀"), ("", None, "")]
        want = []
        for body, etype, data in cases:
            ans = p.publish("es", body, event=etype)
            want.append({"t": "event", "type": etype or "message", "id": ans["id"],
                         "data": data})
        ans = p.publish("es", "end")
        want.append({"t": "event", "type": "message", "id": ans["id"], "data": "end"})
        rc, err = es.wait_exit()
        self.assertEqual(rc, 0, err)
        self.assertEqual(es.events(), want)
        self.assertEqual(es.of("connect"), [{"t": "connect", "n": 1, "lastEventId": None}])
        self.assertEqual(es.bad, [])

    def test_cut_connections_resume_with_nothing_lost_or_repeated(self):
        srv = self.start("--threads", "2", "--retry", "200ms", "--history", "100000",
                         "--history-bytes", "64m")
        proxy = CuttableProxy(srv.port)
        proxy.start()
        self.addCleanup(proxy.stop)
        es = self.client("http://%s:%d/v1/events?channel=ea&channel=eb" % (HOST, proxy.port),
                         timeout=90)
        self.assertTrue(wait_for(lambda: es.of("open"), 20), "no open: %r" % es.lines)
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 1, 5))
        pubs = [FlatOutPublisher(srv, "ea", "a-{}".format, 4.0, 100000),
                FlatOutPublisher(srv, "eb", "b-{}".format, 4.0, 100000)]
        for pb in pubs:
            pb.start()
        try:
            cuts = 0

            def publishing():
                return not all(pb.done.is_set() for pb in pubs)
            while publishing() and cuts < 12:
                # Cut once the client is connected again and has received something new.
                n_conn, n_ev = len(proxy.heads), len(es.events())
                ok = wait_for(lambda: not publishing() or (
                    len(proxy.pairs) >= 1 and len(es.events()) > n_ev + 10), 20)
                self.assertTrue(ok, "the client did not come back after cut %d: %r"
                                % (cuts, es.lines[-5:]))
                if not publishing():
                    break
                time.sleep(0.1)
                proxy.cut(rst=cuts % 2 == 1)
                cuts += 1
                self.assertTrue(wait_for(lambda: len(proxy.heads) > n_conn, 20),
                                "no reconnection after cut %d" % cuts)
        finally:
            for pb in pubs:
                pb.halt.set()
                pb.join(10 * SLOW)
        for pb in pubs:
            self.assertIsNone(pb.error)
        self.assertGreaterEqual(cuts, 3, "the publishers finished too soon")
        end = Publisher(srv)
        self.addCleanup(end.close)
        last = end.publish("ea", "end")
        rc, err = es.wait_exit()
        self.assertEqual(rc, 0, "es_client: %s; last lines %r" % (err, es.lines[-5:]))
        self.assertEqual(proxy.error, None)
        published = sorted(pubs[0].sent + pubs[1].sent, key=lambda e: split_id(e[0])[1])
        published.append((last["id"], "end"))
        got = [(e["id"], e["data"]) for e in es.events()]
        gaps = [e for e in es.events() if e["type"] != "message"]
        self.assertEqual(gaps, [])
        if got != published:
            ids = [i for i, _ in got]
            self.fail("received %d events (%d distinct), published %d; missing e.g. %r; "
                      "unexpected e.g. %r" % (len(got), len(set(ids)), len(published),
                                              sorted(set(published) - set(got))[:3],
                                              sorted(set(got) - set(published))[:3]))
        # Every reconnection carried Last-Event-ID = the last id received before it.
        connects = es.of("connect")
        self.assertGreaterEqual(len(connects), cuts + 1)
        last_id = None
        for x in es.lines:
            if x["t"] == "event":
                last_id = x["id"]
            elif x["t"] == "connect":
                self.assertEqual(x["lastEventId"], last_id, x)
        resumed = [h for h in proxy.heads if "\r\nlast-event-id: " in h.lower()]
        self.assertEqual(len(resumed), len(proxy.heads) - 1, proxy.heads)
        sys.stderr.write("[numbers] eventsource: %d events, %d cuts, %d connections\n"
                         % (len(published), cuts, len(connects)))

    def test_unknown_id_gives_a_gap_event_then_live_events(self):
        srv = self.start()
        p = Publisher(srv)
        self.addCleanup(p.close)
        old = p.publish("eg", "before")
        epoch = split_id(old["id"])[0]
        es = self.client(srv.url("/v1/events?channel=eg&lastEventId=garbage"))
        self.assertTrue(wait_for(lambda: es.events(), 20), "no gap event: %r" % es.lines)
        live = p.publish("eg", "end")
        rc, err = es.wait_exit()
        self.assertEqual(rc, 0, err)
        evs = es.events()
        self.assertEqual(len(evs), 2, evs)
        self.assertEqual((evs[0]["type"], evs[0]["id"]), ("hsc.gap", ""))
        info = json.loads(evs[0]["data"])
        self.assertEqual((info.get("reason"), info.get("requested"), info.get("epoch"),
                          info.get("replayed")), ("unknown", "garbage", epoch, 0), info)
        self.assertEqual(evs[1], {"t": "event", "type": "message", "id": live["id"],
                                  "data": "end"})

    def test_recent_events_then_a_cut_resumes_after_the_last_one(self):
        srv = self.start("--retry", "200ms")
        p = Publisher(srv)
        self.addCleanup(p.close)
        old = [p.publish("er", "old-%d" % i) for i in range(5)]
        # earliest: all five, then live.
        es = self.client(srv.url("/v1/events?channel=er&lastEventId=earliest"), until="end")
        self.assertTrue(wait_for(lambda: len(es.events()) == 5, 20), "%r" % es.lines)
        end = p.publish("er", "end")
        rc, err = es.wait_exit()
        self.assertEqual(rc, 0, err)
        self.assertEqual([(e["id"], e["data"]) for e in es.events()],
                         [(a["id"], "old-%d" % i) for i, a in enumerate(old)] +
                         [(end["id"], "end")])
        # history=3 through a proxy that cuts the connection: the URL still asks for recent
        # events, but the client's Last-Event-ID wins: it gets what it missed, once.
        proxy = CuttableProxy(srv.port)
        proxy.start()
        self.addCleanup(proxy.stop)
        es = self.client("http://%s:%d/v1/events?channel=er&history=3" % (HOST, proxy.port),
                         until="last")
        want = [(a["id"], "old-%d" % (i + 3)) for i, a in enumerate(old[3:])] + \
            [(end["id"], "end")]
        self.assertTrue(wait_for(lambda: len(es.events()) == 3, 20), "%r" % es.lines)
        live = p.publish("er", "live")
        want.append((live["id"], "live"))
        self.assertTrue(wait_for(lambda: len(es.events()) == 4, 20), "%r" % es.lines)
        proxy.cut(rst=False)
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 0, 5))
        for i in range(2):
            ans = p.publish("er", "missed-%d" % i)
            self.assertEqual(ans["subscribers"], 0)
            want.append((ans["id"], "missed-%d" % i))
        self.assertTrue(wait_for(lambda: len(proxy.heads) == 2, 20), proxy.heads)
        last = p.publish("er", "last")
        want.append((last["id"], "last"))
        rc, err = es.wait_exit()
        self.assertEqual(rc, 0, err)
        self.assertEqual([(e["id"], e["data"]) for e in es.events()], want)
        self.assertEqual([e["type"] for e in es.events()], ["message"] * len(want))
        self.assertEqual([c["lastEventId"] for c in es.of("connect")], [None, live["id"]])
        for head in proxy.heads:
            self.assertTrue(head.startswith("GET /v1/events?channel=er&history=3 "), head)

    def test_tag_channel_events_name_the_channel_of_what_follows(self):
        srv = self.start()
        p = Publisher(srv)
        self.addCleanup(p.close)
        first = p.publish("ta", "before")
        es = self.client(srv.url("/v1/events?channel=ta&channel=tb&tag=channel&history=1"),
                         types=["hsc.channel", "upd"], until="end")
        self.assertTrue(wait_for(lambda: len(es.events()) == 2, 20), "%r" % es.lines)
        sent = [("ta", first["id"], "message", "before")]
        for ch, etype, data in (("tb", None, "1"), ("tb", "upd", "2"), ("tc", None, "no"),
                                ("ta", "upd", "3"), ("tb", None, "end")):
            ans = p.publish(ch, data, event=etype)
            if ch != "tc":
                sent.append((ch, ans["id"], etype or "message", data))
        rc, err = es.wait_exit()
        self.assertEqual(rc, 0, err)
        evs = es.events()
        # The client's listeners, in order: hsc.channel names the channel of what follows.
        # (The tag has no id field: this package gives the tag's event an empty lastEventId,
        # where a browser gives the previous event's.)
        got, channel = [], None
        for e in evs:
            if e["type"] == "hsc.channel":
                channel = e["data"]
            else:
                got.append((channel, e["id"], e["type"], e["data"]))
        self.assertEqual(got, sent)
        self.assertEqual([e["data"] for e in evs if e["type"] == "hsc.channel"],
                         ["ta", "tb", "ta", "tb"])


if __name__ == "__main__":
    unittest.main()
