#!/usr/bin/env python3
"""scripts/layer-check.py catches what it is for: an upward include and an upward call.

Runs the checker on a copy of src/lib with one include that runs upward added, and on a tiny
build tree of one object file per layer where core's calls a function of server's. Each must
fail with a line naming the file; the untouched copy must pass the include check.
"""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "scripts", "layer-check.py")
LAYERS = ["core", "codec", "http", "policy", "pubsub", "stream", "site", "server"]


def run(*args):
    p = subprocess.run([sys.executable, CHECK, *args], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def expect(cond, what, out):
    if not cond:
        print(f"FAIL: {what}\n{out}")
        sys.exit(1)
    print(f"ok: {what}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "lib")
        shutil.copytree(os.path.join(ROOT, "src", "lib"), src)
        rc, out = run("--src", src)
        expect(rc == 0, "the tree as it is passes the include check", out)

        buf = os.path.join(src, "core", "buf.c")
        with open(buf, "a", encoding="utf-8") as f:
            f.write('\n#include "server/server.h"\n')
        rc, out = run("--src", src)
        expect(rc == 1 and "core/buf.c" in out and "runs upward" in out,
               "an upward include (core -> server) fails the check", out)

        hub = os.path.join(src, "pubsub", "sneaky.c")
        with open(hub, "w", encoding="utf-8") as f:
            f.write('#include "http/conn.h"\n')
        rc, out = run("--src", src)
        expect(rc == 1 and "private to http/" in out,
               "http's private header outside http/ fails the check", out)

        build = os.path.join(tmp, "build")
        for layer in LAYERS:
            d = os.path.join(build, "CMakeFiles", f"hsc_layer_{layer}.dir")
            os.makedirs(d)
            c = os.path.join(d, f"{layer}.c")
            body = {"core": "int hsc_srv_fn(void); int hsc_core_fn(void) { return hsc_srv_fn(); }",
                    "server": "int hsc_core_fn(void); int hsc_srv_fn(void) { return 1; }\n"
                              "int hsc_srv_main(void) { return hsc_core_fn(); }"}
            with open(c, "w", encoding="utf-8") as f:
                f.write(body.get(layer, f"int hsc_{layer}_only(void) {{ return 0; }}") + "\n")
            subprocess.run(["cc", "-c", c, "-o", c + ".o"], check=True)
        rc, out = run("--src", os.path.join(ROOT, "src", "lib"), "--build", build)
        expect(rc == 1 and "calls hsc_srv_fn of server/" in out and "hsc_core_fn" not in out,
               "an upward call (core -> server) fails the check, a downward one does not", out)


if __name__ == "__main__":
    main()
