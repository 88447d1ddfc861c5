#!/usr/bin/env python3
"""A scriptable pool worker for tests/integration/test_pool.py (hscd --pool N --exec ...).

It speaks the framed protocol of docs/responder-protocol.md on fds 0 and 1 with its own buffer
(no Python-level stdin buffering, so that select() sees every frame that is waiting).

Options:
  --dir DIR      at start, write DIR/<pid>.pid; log every frame received (and a few events) to
                 DIR/<pid>.frames as JSON lines {"t": CLOCK_MONOTONIC seconds, "ev": ..., ...};
                 `gate` waits for DIR/go
  --ignore-eof   keep running (up to 60 s) after stdin reaches end of file
  --ignore-term  ignore SIGTERM from the start
  --hello        write "hello from PID" to stderr at start (outside any request)

The request text says what to do; its first word is a command:
  echo TEXT           TEXT back in three pieces, 2 ms apart (the answer is exactly TEXT)
  pid [TAG]           one piece "pid=PID tag=TAG\\n"
  slow N MS [AFTER]   N pieces "slow I/N pid=PID\\n", MS ms apart, watching for `cancel`. On cancel,
                      AFTER says what to do: end (default: send end), stale (send 3 pieces
                      "STALE K\\n", then end), stubborn (ignore it: send every remaining piece, then
                      end), error (send error "cancelled")
  gate                piece "started pid=PID\\n", wait for DIR/go (watching for cancel), piece
                      "released\\n", end
  crash [STATUS]      piece "before crash\\n", then _exit(STATUS, default 3) with no end
  crashchar [HOW]     piece b"x" + the first 2 bytes of "你", then (HOW) crash: _exit(3),
                      garbage: a bad frame header, hang: sleep until killed
  garbage KIND        piece "before garbage\\n", then a broken frame (KIND: header, type, long,
                      size, negative), then sleep until killed
  unsolicited         piece "ok\\n", end, then 100 ms later a piece outside any request
  hang                piece "hanging\\n", then sleep (60 s) until killed
  hangterm            same, ignoring SIGTERM
  hex H1 H2 ...       one piece per argument, each hex-decoded ("-" is an empty piece)
  dribble H1 H2 ...   the same frames, written one byte at a time with a flush and 1 ms pauses
  fail HEX            piece "partial\\n", then an error frame whose reason is HEX decoded
  meta                one piece: the payload of the last meta frame, verbatim
  environ             one piece: the worker's whole environment as a JSON object
  flood               64 KiB pieces as fast as possible until cancel (at most 60 s), then end
  stderr TEXT         writes TEXT and a newline to stderr, then piece "logged\\n"
"""
import json
import os
import select
import signal
import sys
import time

PID = os.getpid()
DIR = None
IGNORE_EOF = False
args = sys.argv[1:]
while args:
    a = args.pop(0)
    if a == "--dir":
        DIR = args.pop(0)
    elif a == "--ignore-eof":
        IGNORE_EOF = True
    elif a == "--ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif a == "--hello":
        os.write(2, b"hello from %d\n" % PID)
    else:
        sys.exit("worker.py: unknown option %r" % a)


def log(ev, payload=None, **kw):
    if DIR is None:
        return
    rec = {"t": time.monotonic(), "ev": ev}
    if payload is not None:
        rec["payload"] = payload.decode("utf-8", "backslashreplace")
    rec.update(kw)
    with open(os.path.join(DIR, "%d.frames" % PID), "a") as f:
        f.write(json.dumps(rec) + "\n")


if DIR is not None:
    with open(os.path.join(DIR, "%d.pid" % PID), "w") as f:
        f.write("%d\n" % PID)
    log("start")


class Eof(Exception):
    pass


class Reader:
    def __init__(self):
        self.buf = b""
        self.eof = False

    def _parse(self):
        nl = self.buf.find(b"\n")
        if nl < 0:
            return None
        kind, length = self.buf[:nl].split()
        n = int(length)
        if len(self.buf) < nl + 1 + n:
            return None
        payload = self.buf[nl + 1:nl + 1 + n]
        self.buf = self.buf[nl + 1 + n:]
        kind = kind.decode()
        log(kind, payload)
        return kind, payload

    def poll(self, timeout):
        """The next frame, or None when none is complete within `timeout` s (None: wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            fr = self._parse()
            if fr is not None:
                return fr
            if self.eof:
                raise Eof()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([0], [], [], remaining)[0]:
                return None
            data = os.read(0, 1 << 16)
            if not data:
                self.eof = True
                log("eof")
            self.buf += data


rd = Reader()
last_meta = b""


def write_all(data):
    while data:
        n = os.write(1, data)
        data = data[n:]


def frame(kind, payload=b""):
    return b"%s %d\n" % (kind.encode(), len(payload)) + payload


def send(kind, payload=b""):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    write_all(frame(kind, payload))


def cancelled(timeout=0.0):
    """True when a cancel frame arrives within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        fr = rd.poll(max(0.0, deadline - time.monotonic()))
        if fr is None:
            return False
        if fr[0] == "cancel":
            return True


def sleep_until_killed(seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(9)


def unhex(h):
    return b"" if h == "-" else bytes.fromhex(h)


def serve(text):
    global last_meta
    words = text.split(" ")
    cmd, rest = words[0], words[1:]
    if cmd == "echo":
        body = " ".join(rest)
        k = max(1, len(body) // 3)
        parts = [body[:k], body[k:2 * k], body[2 * k:]]
        for i, p in enumerate(parts):
            if p:
                send("piece", p)
            if i < 2 and cancelled(0.002):
                break
        send("end")
    elif cmd == "pid":
        send("piece", "pid=%d tag=%s\n" % (PID, " ".join(rest)))
        send("end")
    elif cmd == "slow":
        n, ms = int(rest[0]), int(rest[1])
        after = rest[2] if len(rest) > 2 else "end"
        for i in range(1, n + 1):
            send("piece", "slow %d/%d pid=%d\n" % (i, n, PID))
            if i < n and cancelled(ms / 1000.0):
                log("cancelled", at=i)
                if after == "stale":
                    for k in range(3):
                        send("piece", "STALE %d\n" % k)
                    break
                if after == "error":
                    send("error", "cancelled")
                    return
                if after == "stubborn":
                    for j in range(i + 1, n + 1):
                        time.sleep(ms / 1000.0)
                        send("piece", "slow %d/%d pid=%d\n" % (j, n, PID))
                    log("stubborn done")
                break
        send("end")
    elif cmd == "gate":
        send("piece", "started pid=%d\n" % PID)
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(DIR, "go")):
            if time.monotonic() > deadline or cancelled(0.01):
                break
        else:
            send("piece", "released\n")
        send("end")
    elif cmd == "crash":
        send("piece", "before crash\n")
        os._exit(int(rest[0]) if rest else 3)
    elif cmd == "crashchar":
        send("piece", b"x" + "你".encode()[:2])
        how = rest[0] if rest else "crash"
        if how == "garbage":
            write_all(b"this is not a frame\n")
        elif how == "hang":
            sleep_until_killed()
        time.sleep(0.05)
        os._exit(3)
    elif cmd == "garbage":
        send("piece", "before garbage\n")
        bad = {
            "header": b"this is not a frame\n",
            "type": b"bogus 3\nabc",
            "long": b"x" * 100 + b"\n",
            "size": b"piece 2000000\n",
            "negative": b"piece -1\n",
        }[rest[0]]
        write_all(bad)
        sleep_until_killed()
    elif cmd == "unsolicited":
        send("piece", "ok\n")
        send("end")
        time.sleep(0.1)
        send("piece", "late\n")
    elif cmd in ("hang", "hangterm"):
        if cmd == "hangterm":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        send("piece", "hanging\n")
        sleep_until_killed()
    elif cmd == "hex":
        for h in rest:
            send("piece", unhex(h))
        send("end")
    elif cmd == "dribble":
        data = b"".join(frame("piece", unhex(h)) for h in rest) + frame("end")
        for i in range(len(data)):
            write_all(data[i:i + 1])
            time.sleep(0.001)
    elif cmd == "fail":
        send("piece", "partial\n")
        send("error", unhex(rest[0]))
    elif cmd == "meta":
        send("piece", last_meta)
        send("end")
    elif cmd == "environ":
        send("piece", json.dumps(dict(os.environ)))
        send("end")
    elif cmd == "flood":
        chunk = b"f" * 65535 + b"\n"
        sent = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            send("piece", chunk)
            sent += 1
            if cancelled(0):
                break
        log("flood stopped", pieces=sent)
        send("end")
    elif cmd == "stderr":
        os.write(2, (" ".join(rest) + "\n").encode())
        send("piece", "logged\n")
        send("end")
    else:
        send("piece", "unknown command %r\n" % cmd)
        send("end")


try:
    while True:
        kind, payload = rd.poll(None)
        if kind == "meta":
            last_meta = payload
        elif kind == "request":
            serve(payload.decode("utf-8"))
        # cancel outside a request and unknown frames: ignored (logged by the reader)
except Eof:
    if IGNORE_EOF:
        sleep_until_killed()
    sys.exit(0)
