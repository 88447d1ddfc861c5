#!/usr/bin/env python3
"""A test responder for `hscd --exec`, one behaviour per mode (used by test_exec.py).

    python3 responder.py [--pid-dir DIR] MODE [ARGS...]

With --pid-dir, the process first writes its PID (and, in mode `grandchild`, the PID of the child
it starts, on a second line) to DIR/<HSC_REQUEST_ID>.pid, atomically, so that a test can find it
from the response's X-Request-Id header. With `bytext`, the mode is the first word of the request
text (and the rest of the text its argument).

Modes (TEXT is the request text read from stdin, up to EOF):
  pieces N MS     "piece i/N: TEXT\\n" N times, MS milliseconds apart, flushed one by one
  fail            "one\\n", "two\\n", then exit status 3
  hang            "started\\n", then sleep 60 s (dies on SIGTERM)
  stubborn        like hang, but ignores SIGTERM (only SIGKILL ends it)
  grandchild      starts `sleep 60` (a grandchild of hscd's shell), "started\\n", sleep 60 s
  flood           64 KiB blocks of "x" as fast as the pipe takes them, forever
  noread [MS]     never reads stdin: optionally sleeps MS ms, "did not read\\n", exit 0
  env             the environment and TEXT as one JSON object on stdout
  environ         the whole environment (as "environ") and TEXT, one JSON object on stdout
  stderr          two lines on stderr, "ok\\n" on stdout
  utf8            UTF-8 characters cut across writes (flush + 300 ms sleep in between)
  cutend          "ok" and the first byte of a 2-byte character, then exit 0
  silent MS       sleeps MS ms, then "after silence\\n"
  echo3           TEXT back in 3 pieces, 30 ms apart
  gate DIR        "started\\n", waits (30 s at most) until DIR/go exists, "released\\n"
  bytext          the mode is taken from TEXT: "ok", "fail", "hang" or "stubborn"
"""

import json
import os
import signal
import subprocess
import sys
import time

out = sys.stdout.buffer


def put(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    out.write(data)
    out.flush()


def write_pid(pid_dir, extra=()):
    if not pid_dir:
        return
    rid = os.environ.get("HSC_REQUEST_ID", "unknown")
    tmp = os.path.join(pid_dir, "%s.tmp.%d" % (rid, os.getpid()))
    with open(tmp, "w") as f:
        f.write("\n".join(str(p) for p in (os.getpid(),) + tuple(extra)) + "\n")
    os.rename(tmp, os.path.join(pid_dir, rid + ".pid"))


def read_text():
    return sys.stdin.buffer.read().decode("utf-8")


def main(argv):
    pid_dir = None
    if argv[:1] == ["--pid-dir"]:
        pid_dir, argv = argv[1], argv[2:]
    mode, args = argv[0], argv[1:]

    if mode == "grandchild":
        read_text()
        child = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
        write_pid(pid_dir, (child.pid,))
        put("started\n")
        time.sleep(60)
        return 0
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_pid(pid_dir)

    if mode == "noread":
        if args:
            time.sleep(int(args[0]) / 1000)
        put("did not read\n")
        return 0
    if mode == "flood":
        read_text()
        block = b"x" * 65536
        while True:
            out.write(block)
            out.flush()

    text = read_text()
    if mode == "bytext":
        mode = text.split()[0]
        if mode == "ok":
            put("ok: %s\n" % text)
            return 0
    if mode == "pieces":
        n, ms = int(args[0]), int(args[1])
        for i in range(1, n + 1):
            put("piece %d/%d: %s\n" % (i, n, text))
            if i < n:
                time.sleep(ms / 1000)
        return 0
    if mode == "fail":
        put("one\n")
        time.sleep(0.1)
        put("two\n")
        time.sleep(0.1)
        return 3
    if mode in ("hang", "stubborn"):
        put("started\n")
        time.sleep(60)
        return 0
    if mode == "env":
        keys = ["HSC_REQUEST_ID", "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR",
                "REMOTE_PORT", "CONTENT_LENGTH", "HSC_CONTENT_TYPE", "SERVER_SOFTWARE"]
        env = {k: os.environ.get(k) for k in keys}
        env["hsc_vars"] = sorted(k for k in os.environ if k.startswith("HSC_"))
        env["inherited"] = os.environ.get("EXEC_TEST_INHERITED")
        env["text"] = text
        put(json.dumps(env) + "\n")
        return 0
    if mode == "environ":
        put(json.dumps({"environ": dict(os.environ), "text": text}) + "\n")
        return 0
    if mode == "stderr":
        sys.stderr.write("first stderr line for %s\n" % text)
        sys.stderr.flush()
        put("ok\n")
        sys.stderr.write("second stderr line, no newline at the end")
        sys.stderr.flush()
        return 0
    if mode == "utf8":
        # 醒 = e9 86 92, 🚀 = f0 9f 9a 80, é = c3 a9
        for part in (b"a\xe9\x86", b"\x92b", b"\xf0", b"\x9f\x9a", b"\x80c\xc3", b"\xa9"):
            put(part)
            time.sleep(0.3)
        return 0
    if mode == "cutend":
        put(b"ok\xc3")
        return 0
    if mode == "silent":
        time.sleep(int(args[0]) / 1000)
        put("after silence\n")
        return 0
    if mode == "echo3":
        data = text.encode("utf-8")
        third = len(data) // 3
        for part in (data[:third], data[third:2 * third], data[2 * third:]):
            put(part)
            time.sleep(0.03)
        return 0
    if mode == "gate":
        put("started\n")
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(args[0], "go")) and time.monotonic() < deadline:
            time.sleep(0.02)
        put("released\n")
        return 0
    sys.stderr.write("unknown mode %r\n" % mode)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
