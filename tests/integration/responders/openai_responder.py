#!/usr/bin/env python3
"""A test responder for hscd's OpenAI-compatible front (`hscd --exec`, test_openai.py).

    python3 openai_responder.py MODE [ARGS...]

Modes (the request text is read from stdin, up to EOF):
  pieces N MS     "tok1 ", "tok2 ", ... N pieces, MS milliseconds apart, flushed one by one
  split DIR       writes its PID to DIR/<HSC_REQUEST_ID>.pid, then the pieces "Hello, wor",
                  "ld! EN", "D of text", " more" (40 ms apart: "END" is cut across two), then
                  sleeps 60 s: only a cancel ends it early
  forever DIR     writes its PID to DIR/<HSC_REQUEST_ID>.pid, then "tick " every 50 ms for 60 s
  env             one piece: JSON of what it learnt (HSC_API, HSC_MAX_TOKENS, the path and
                  content of HSC_REQUEST_JSON_FILE, the text)
  fail            "partial ", then exit status 3
  sleepy MS       sleeps MS ms (a model's prefill), then "awake"
  flood DIR       writes its PID to DIR/<HSC_REQUEST_ID>.pid, then 64 KiB blocks of "x" as fast
                  as the pipe takes them, for 60 s at most
"""

import json
import os
import sys
import time


def put(s):
    sys.stdout.buffer.write(s.encode("utf-8"))
    sys.stdout.buffer.flush()


def write_pid(d):
    rid = os.environ.get("HSC_REQUEST_ID", "unknown")
    tmp = os.path.join(d, "%s.tmp" % rid)
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, os.path.join(d, "%s.pid" % rid))


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    text = sys.stdin.buffer.read().decode("utf-8")
    if mode == "pieces":
        for i in range(int(args[0])):
            if i:
                time.sleep(int(args[1]) / 1000)
            put("tok%d " % (i + 1))
    elif mode == "split":
        write_pid(args[0])
        for p in ["Hello, wor", "ld! EN", "D of text", " more"]:
            put(p)
            time.sleep(0.04)
        time.sleep(60)
    elif mode == "forever":
        write_pid(args[0])
        for _ in range(1200):
            put("tick ")
            time.sleep(0.05)
    elif mode == "env":
        path = os.environ.get("HSC_REQUEST_JSON_FILE")
        with open(path) as f:
            content = f.read()
        put(json.dumps({
            "api": os.environ.get("HSC_API"),
            "max_tokens": os.environ.get("HSC_MAX_TOKENS"),
            "file": path,
            "mode": oct(os.stat(path).st_mode & 0o777),
            "dir_mode": oct(os.stat(os.path.dirname(path)).st_mode & 0o777),
            "json": content,
            "text": text,
        }))
    elif mode == "flood":
        write_pid(args[0])
        block = b"x" * 65536
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            sys.stdout.buffer.write(block)
            sys.stdout.buffer.flush()
    elif mode == "sleepy":
        time.sleep(int(args[0]) / 1000)
        put("awake")
    elif mode == "fail":
        put("partial ")
        sys.exit(3)
    else:
        sys.exit("unknown mode %r" % mode)


main()
