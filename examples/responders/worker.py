#!/usr/bin/env python3
"""A pool worker for `hscd --pool 4 --exec 'python3 examples/responders/worker.py'`.

Started once, it serves one request at a time over the framed protocol of
docs/responder-protocol.md: frames are `TYPE LENGTH\\n` then LENGTH bytes. It reads `request`
frames (after an optional `meta`), answers with `piece` frames and an `end`, and stops early on
`cancel`. Expensive set-up (loading a model) goes before the loop and is paid once.
"""
import select
import sys
import time

inp, out = sys.stdin.buffer, sys.stdout.buffer


def read_frame():
    head = inp.readline()
    if not head:
        sys.exit(0)  # hscd closed our stdin: shut down
    kind, length = head.split()
    return kind.decode(), inp.read(int(length))


def send(kind, payload=b""):
    out.write(b"%s %d\n" % (kind.encode(), len(payload)) + payload)
    out.flush()


def cancelled():
    """True when hscd sent `cancel` (the client went away) while we were producing."""
    if select.select([inp], [], [], 0)[0]:
        return read_frame()[0] == "cancel"
    return False


while True:
    kind, payload = read_frame()
    if kind != "request":
        continue  # `meta` (request id, path, client address...) and anything unknown
    text = payload.decode("utf-8")
    for i in range(1, 6):
        if cancelled():
            break
        send("piece", f"{i}/5 {text} ✓\n".encode())
        time.sleep(0.1)
    send("end")
