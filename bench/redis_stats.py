#!/usr/bin/env python3
"""What the cluster scenario of scripts/bench.sh reads from its redis-server (loopback, plain
RESP over a socket: no client library needed).

  redis_stats.py snapshot PORT     one JSON object: every command's calls (INFO commandstats,
                                   commands run inside scripts included), total_commands_processed
  redis_stats.py pubsub PORT PAT   one JSON object: pub/sub channels matching PAT, their
                                   subscriptions (the sum of PUBSUB NUMSUB: one per node
                                   connection subscribed to the channel)
  redis_stats.py census PORT SECS  MONITOR for SECS seconds: the commands clients sent (round
                                   trips) apart from those scripts ran, per PUBLISH seen (one per
                                   publish for hscd and nchan alike)
  redis_stats.py diff A B [N]      B - A per command as JSON; with N publishes, also per publish
  redis_stats.py merge DIR STORM   hsc-bench's JSON on stdin, with what scripts/bench.sh left in
                                   DIR added: "redis" (before.json to after.json, per publish),
                                   "pubsub", "census", and with STORM=1 "storm" (kill.json to
                                   storm.json)
                                   and the surviving nodes' hsc_redis_* counters (metrics.txt)
"""

import json
import os
import re
import socket
import sys


def command(port, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(out)
        f = s.makefile("rb")
        return read_reply(f)


def read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return [read_reply(f) for _ in range(max(n, 0))]
    raise OSError("unexpected reply %r" % line)


def snapshot(port):
    calls = {}
    for line in command(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            calls[name] = int(dict(kv.split("=") for kv in fields.split(","))["calls"])
    stats = dict(l.split(":", 1) for l in command(port, "INFO", "stats").splitlines()
                 if ":" in l)
    return {"calls": calls, "total_commands_processed": int(stats["total_commands_processed"])}


def pubsub(port, pattern):
    chans = command(port, "PUBSUB", "CHANNELS", pattern)
    subs = 0
    for i in range(0, len(chans), 500):
        r = command(port, "PUBSUB", "NUMSUB", *chans[i:i + 500])
        subs += sum(r[1::2])
    return {"channels": len(chans), "subscriptions": subs}


def ours(name):
    """This script's own commands (INFO, MONITOR, PUBSUB ...), not the servers'."""
    return name in ("info", "monitor") or name.startswith("pubsub")


def census(port, seconds):
    """INFO commandstats counts the commands scripts run with the others; MONITOR tells them
    apart ("[db lua]" for a script's). It costs Redis some CPU while it runs: a short window."""
    import time
    sent, inner = {}, {}
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        f = s.makefile("rb")
        f.readline()  # +OK
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                line = f.readline()
            except socket.timeout:
                break
            if not line:
                break
            m = re.match(rb'^\+\d+\.\d+ \[(\d+) ([^\]]*)\] "([^"]*)"', line)
            if not m:
                continue
            name = m.group(3).decode("latin-1").lower()
            if ours(name):
                continue
            d = inner if m.group(2) == b"lua" else sent
            d[name] = d.get(name, 0) + 1
    pubs = sent.get("publish", 0) + inner.get("publish", 0)
    out = {"seconds": seconds, "publishes": pubs, "sent": sent, "in_scripts": inner}
    if pubs:
        out["sent_per_publish"] = sum(sent.values()) / pubs
        out["in_scripts_per_publish"] = sum(inner.values()) / pubs
    return out


def diff(a, b, publishes=None):
    calls = {k: b["calls"].get(k, 0) - a["calls"].get(k, 0) for k in b["calls"]}
    mine = sum(v for k, v in calls.items() if ours(k))
    calls = {k: v for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
             if v > 0 and not ours(k)}
    total = b["total_commands_processed"] - a["total_commands_processed"] - mine
    out = {"calls": calls, "total": total}
    if publishes:
        out["publishes"] = publishes
        out["per_publish"] = {k: v / publishes for k, v in calls.items()}
        out["total_per_publish"] = total / publishes
    return out


def merge(d, storm):
    try:
        r = json.loads(sys.stdin.read())
    except ValueError:
        return {"error": "no output"}
    load = lambda name: json.load(open(os.path.join(d, name)))
    r["redis"] = diff(load("before.json"), load("after.json"), r.get("publishes"))
    # The sample with the most node subscriptions: the run at its fullest.
    path = os.path.join(d, "pubsub.jsonl")
    samples = [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []
    if samples:
        r["pubsub"] = max(samples, key=lambda x: x.get("subscriptions", 0))
    if os.path.exists(os.path.join(d, "census.json")):
        r["census"] = load("census.json")
    if storm and os.path.exists(os.path.join(d, "storm.json")):
        r["storm"] = diff(load("kill.json"), load("storm.json"))
    counters = {}
    path = os.path.join(d, "metrics.txt")
    for line in open(path) if os.path.exists(path) else ():
        m = re.match(r"^(hsc_redis_(?:subscribes|catchups)_total(?:\{[^}]*\})?)\s+(\S+)", line)
        if m:
            counters[m.group(1)] = counters.get(m.group(1), 0) + float(m.group(2))
    if counters:
        r["node_counters"] = counters
    return r


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "snapshot":
        print(json.dumps(snapshot(int(sys.argv[2]))))
    elif cmd == "pubsub":
        print(json.dumps(pubsub(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "*")))
    elif cmd == "census":
        print(json.dumps(census(int(sys.argv[2]), float(sys.argv[3]))))
    elif cmd == "diff":
        a, b = (json.load(open(p)) for p in sys.argv[2:4])
        n = int(sys.argv[4]) if len(sys.argv) > 4 else None
        print(json.dumps(diff(a, b, n)))
    elif cmd == "merge":
        print(json.dumps(merge(sys.argv[2], sys.argv[3] == "1")))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
