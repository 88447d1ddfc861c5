#!/usr/bin/env python3
"""The shape of libhsc stays one-way: fails on an include or a call that runs upward.

src/lib has one folder per layer (docs/architecture.md). Each layer may use itself and the layers
below it, never one above it nor a sibling on its own level:

    core <- codec <- http <- policy <- {pubsub, stream, site} <- server

Two checks:
  includes  every `#include "LAYER/..."` in src/lib/LAYER/*.{c,h} names an allowed layer, and a
            layer's private headers (http/conn.h) are included from inside that layer only;
  calls     with --build DIR, every symbol an object file of a layer needs (nm: undefined) and
            another layer of libhsc defines is defined by an allowed layer.

Usage: layer-check.py [--src src/lib] [--build build]
Exit 0 when the shape holds, 1 with one line per violation otherwise.
"""
import argparse
import os
import re
import subprocess
import sys

RANK = {"core": 0, "codec": 1, "http": 2, "policy": 3, "pubsub": 4, "stream": 4, "site": 4,
        "server": 5}
# Headers that only their own layer may include: there the types they define are opaque.
PRIVATE = {"http/conn.h": "http"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def allowed(user, used):
    """Whether layer `user` may depend on layer `used`."""
    return used == user or RANK[used] < RANK[user]


def check_includes(src):
    problems = []
    for layer in sorted(RANK):
        folder = os.path.join(src, layer)
        if not os.path.isdir(folder):
            problems.append(f"{folder}: the layer's folder is missing")
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for m in INCLUDE.finditer(text):
                inc = m.group(1)
                line = text.count("\n", 0, m.start()) + 1
                where = f"{path}:{line}"
                if inc.startswith("hsc/"):
                    continue  # the public headers: every layer may use them
                if "/" not in inc:
                    problems.append(f"{where}: #include \"{inc}\": name the layer's folder "
                                    f"(\"{layer}/{inc}\")")
                    continue
                used = inc.split("/", 1)[0]
                if used not in RANK:
                    problems.append(f"{where}: #include \"{inc}\": no such layer")
                elif not allowed(layer, used):
                    problems.append(f"{where}: #include \"{inc}\" runs upward ({layer} may use "
                                    f"{', '.join(sorted(l for l in RANK if allowed(layer, l)))})")
                elif inc in PRIVATE and PRIVATE[inc] != layer:
                    problems.append(f"{where}: #include \"{inc}\" is private to {PRIVATE[inc]}/")
    for name in sorted(os.listdir(src)):
        if name.endswith((".c", ".h")):
            problems.append(f"{os.path.join(src, name)}: belongs in a layer's folder")
    return problems


def nm(path, defined):
    args = ["nm", "--defined-only" if defined else "--undefined-only", "--format=posix", path]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and (not defined or parts[1] in "TDBRCVWtdbr" and parts[1].isupper()):
            syms.add(parts[0])
    return syms


def objects(build, layer):
    base = os.path.join(build, "CMakeFiles", f"hsc_layer_{layer}.dir")
    found = []
    for root, _, files in os.walk(base):
        found += [os.path.join(root, f) for f in files if f.endswith(".o")]
    return sorted(found)


def check_calls(build):
    problems = []
    owner = {}  # symbol -> layer that defines it
    objs = {}
    for layer in RANK:
        objs[layer] = objects(build, layer)
        if not objs[layer]:
            problems.append(f"{build}: no objects for layer {layer} (build first)")
        for o in objs[layer]:
            for s in nm(o, True):
                owner[s] = layer
    for layer in sorted(RANK):
        for o in objs[layer]:
            for s in sorted(nm(o, False)):
                used = owner.get(s)
                if used is not None and not allowed(layer, used):
                    rel = os.path.relpath(o, build)
                    problems.append(f"{rel}: calls {s} of {used}/, which runs upward from {layer}/")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=os.path.join(os.path.dirname(__file__), "..", "src", "lib"))
    ap.add_argument("--build", help="a build tree: also check the object files' calls")
    args = ap.parse_args()
    problems = check_includes(os.path.normpath(args.src))
    if args.build:
        problems += check_calls(args.build)
    for p in problems:
        print(p)
    if problems:
        print(f"layer check: {len(problems)} violation(s); see docs/architecture.md for the order")
        return 1
    print("layer check: every include and call runs downward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
