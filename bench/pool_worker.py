#!/usr/bin/env python3
"""The pool worker of `make bench`'s streamed-answers scenario (hscd --pool N --exec ...): the
demo's ten pieces, at once, over the framed protocol of docs/responder-protocol.md. It measures
what a long-lived worker in Python costs per answer, next to a process per answer (--exec)."""
import sys

inp, out = sys.stdin.buffer, sys.stdout.buffer


def read_frame():
    head = inp.readline()
    if not head:
        sys.exit(0)  # hscd closed our stdin: shut down
    kind, length = head.split()
    return kind, inp.read(int(length))


while True:
    kind, payload = read_frame()
    if kind != b"request":
        continue  # meta, and a cancel that arrives after we already ended
    text = payload.decode("utf-8")
    frames = []
    for i in range(1, 11):
        piece = ("[%d/10] «%s» → 回声 ✓\n" % (i, text)).encode()
        frames.append(b"piece %d\n" % len(piece) + piece)
    frames.append(b"end 0\n")
    out.write(b"".join(frames))
    out.flush()
