#!/usr/bin/env python3
"""A per-request responder for `hscd --exec`: the request text arrives on stdin (then EOF); every
byte written to stdout reaches the client as it is flushed. Exit status 0 completes the answer.

    hscd --exec 'python3 examples/responders/count.py'
    curl -N -d 'Wake up, Neo' http://127.0.0.1:8000/v1/stream
"""
import os
import sys
import time

text = sys.stdin.read()
n = int(os.environ.get("COUNT", "5"))
for i in range(1, n + 1):
    sys.stdout.write(f"{i}/{n} {text} ✓\n")
    sys.stdout.flush()  # a piece reaches the client when it is flushed
    time.sleep(0.1)
print(f"request {os.environ['HSC_REQUEST_ID']} from {os.environ['REMOTE_ADDR']}", file=sys.stderr)
