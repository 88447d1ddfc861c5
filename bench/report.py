#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench.sh into docs/PERFORMANCE.md and the plots in
docs/bench/ (gnuplot, PNG). Medians over the repetitions, with min-max; ratios to the floor and
to the best peer; the issue's targets checked one by one."""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import time

import report_cluster
import report_h2
import report_tls

PEERS = ("nchan", "pushpin")
ORDER = ("floor", "hscd", "nchan", "pushpin")


def sh(cmd):
    try:
        out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "?"
    except Exception:
        return "?"


def get(r, path, default=None):
    for k in path.split("."):
        if not isinstance(r, dict) or k not in r:
            return default
        r = r[k]
    return r


class Results:
    def __init__(self, rows):
        self.rows = rows

    def runs(self, case, server):
        return [r for r in self.rows if r.get("case") == case and r.get("server") == server
                and "error" not in r]

    def values(self, case, server, path):
        return [v for v in (get(r, path) for r in self.runs(case, server)) if v is not None]

    def median(self, case, server, path):
        v = self.values(case, server, path)
        return statistics.median(v) if v else None

    def servers(self, case):
        seen = [r["server"] for r in self.rows if r.get("case") == case]
        known = [s for s in ORDER + ("hscd-none", "hscd-batch") if s in seen]
        return known + sorted(set(seen) - set(known))

    def total(self, case, server, path):
        return sum(self.values(case, server, path))


def fmt(v, digits=0, unit=""):
    if v is None:
        return "–"
    if digits == 0:
        return "{:,.0f}{}".format(v, unit)
    return "{:,.{d}f}{}".format(v, unit, d=digits)


def span(res, case, server, path, digits=0, scale=1.0):
    v = [x * scale for x in res.values(case, server, path)]
    if not v:
        return "–"
    m = statistics.median(v)
    if len(v) == 1:
        return fmt(m, digits)
    return "%s (%s–%s)" % (fmt(m, digits), fmt(min(v), digits), fmt(max(v), digits))


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def best_peer(res, case, path, higher_better=True):
    vals = [(res.median(case, p, path), p) for p in PEERS if res.median(case, p, path) is not None]
    if not vals:
        return None, None
    return (max(vals) if higher_better else min(vals))


def fanout_table(res, case):
    lines = [
        "| server | connected | deliveries/s | × floor | × best peer | server CPU µs/delivery | "
        "× floor CPU | latency p50 / p99 ms | peak RSS MiB | lost / dup / out of order |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    floor_d = res.median(case, "floor", "deliveries_per_s")
    floor_c = res.median(case, "floor", "server_usage.cpu_us_per_delivery")
    peer_d, _ = best_peer(res, case, "deliveries_per_s")
    for s in res.servers(case):
        d = res.median(case, s, "deliveries_per_s")
        c = res.median(case, s, "server_usage.cpu_us_per_delivery")
        p50 = res.median(case, s, "latency.p50_ms")
        p99 = res.median(case, s, "latency.p99_ms")
        rss = res.median(case, s, "server_usage.rss_peak_kb")
        lost = res.total(case, s, "lost")
        dup = res.total(case, s, "duplicated")
        ooo = res.total(case, s, "out_of_order")
        exp = res.total(case, s, "deliveries_expected")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %d / %d / %d of %s |" % (
            s, fmt(res.median(case, s, "connected")), span(res, case, s, "deliveries_per_s"), fmt(ratio(d, floor_d), 2),
            fmt(ratio(d, peer_d), 2) if s not in PEERS else "", span(res, case, s, "server_usage.cpu_us_per_delivery", 2),
            fmt(ratio(c, floor_c), 2), fmt(p50, 1), fmt(p99, 1), fmt(rss / 1024 if rss else None, 1),
            lost, dup, ooo, fmt(exp)))
    return "\n".join(lines)


def only_section(a, rows, dest, prefix, module):
    """BENCH_ONLY=cluster or tls: that section's records (cases starting with `prefix`) replace
    theirs in bench/results.jsonl, the section (`module`.section) replaces its namesake in
    PERFORMANCE.md; everything else stays as it was."""
    mine = [r for r in rows if str(r.get("case", "")).startswith(prefix)]
    kept = []
    if os.path.exists(dest) and os.path.abspath(a.results) != os.path.abspath(dest):
        kept = [l for l in open(dest) if l.strip() and
                not str(json.loads(l).get("case", "")).startswith(prefix)]
    with open(dest, "w") as f:
        f.writelines(kept)
        for r in mine:
            f.write(json.dumps(r) + "\n")
    md = os.path.join(a.out, "PERFORMANCE.md")
    text = open(md).read() if os.path.exists(md) else "# Performance\n"
    lines = module.section(mine)
    if lines:
        lines = lines + ["(%s section written by `bench/report.py --only-section %s` "
                         "(`BENCH_ONLY=%s`) on %s, `git describe`: %s.)" % (
                             a.only_section.capitalize() if a.only_section != "tls" else "TLS",
                             a.only_section, a.only_section,
                             time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                             sh("git describe --always --dirty")), ""]
    open(md, "w").write(module.replace(text.rstrip("\n"), lines) + "\n")


JOURNAL_BEGIN = "<!-- journal: written by bench/report.py from the journal's rows; do not edit -->"
JOURNAL_END = "<!-- journal: end -->"


def per_round_ratios(res, case_a, case_b, path):
    """case_a / case_b for each repetition that has both (the runs next to each other)."""
    a = {r.get("rep"): get(r, path) for r in res.runs(case_a, "hscd-journal")}
    b = {r.get("rep"): get(r, path) for r in res.runs(case_b, "hscd-journal")}
    return [a[k] / b[k] for k in sorted(set(a) & set(b)) if a[k] is not None and b[k]]


def pct_span(v):
    if not v:
        return "–"
    m = statistics.median(v)
    if len(v) == 1:
        return "%.0f %%" % (100 * m)
    return "%.0f %% (%.0f–%.0f)" % (100 * m, 100 * min(v), 100 * max(v))


def journal_block(res):
    """The journal's sections (issue 15): the publish path by mode, fan-out with and without the
    journal, restart with a large journal; between markers, so that `--journal-only` can replace
    them alone."""
    rows = [r for r in res.rows if str(r.get("case", "")).startswith("journal-")]
    if not rows:
        return []
    out = [JOURNAL_BEGIN]
    w = out.append
    J = "hscd-journal"
    pubs = sorted({r.get("publishers") for r in rows if str(r["case"]).startswith("journal-memory-")
                   or str(r["case"]).startswith("journal-batch-")
                   or str(r["case"]).startswith("journal-always-")} - {None})
    loads = [r["loadavg"][0] for r in rows if r.get("loadavg")]
    reps = sorted({r.get("rep") for r in rows if r.get("publishers")} - {None})
    targets = []
    w("## The journal on the publish path")
    w("")
    w("`bench/journal.sh`: `hsc-bench publish` with C publishers flat out, each on its own "
      "keep-alive connection, 64-byte events on one channel, for 5 s, against hscd memory only "
      "(`--data-dir none`), with `--fsync batch` (the default) and with `--fsync always`, one "
      "after the other in each of %d round(s): medians, min–max in parentheses. *batch %% of "
      "memory* is the median of each round's ratio (the two runs next to each other). Publishes "
      "per fsync (the group-commit factor) and records per write from hscd's `/metrics`; server "
      "CPU per publish from /proc (hscd's user + system time, every thread, during the run). "
      "docs/internals/journal.md explains the write paths." % len(reps))
    w("")
    if loads:
        w("Machine load: a 2-core machine shared with other work and with the load generator; "
          "the 1-minute load average at the end of the runs was %.1f (median; %.1f–%.1f). "
          "Run-to-run spread on this machine is ±20 %% or more for the same build and mode: read "
          "the medians and the CPU per publish, which moves far less."
          % (statistics.median(loads), min(loads), max(loads)))
        w("")
    if pubs:
        w("| publishers | memory publishes/s | batch publishes/s | batch % of memory | "
          "always publishes/s | always publishes per fsync | batch publishes per fsync | "
          "server CPU µs/publish memory / batch / always |")
        w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in pubs:
            m, b, al = ("journal-%s-%d" % (k, c) for k in ("memory", "batch", "always"))
            share = per_round_ratios(res, b, m, "publishes_per_s")
            cpu = " / ".join(fmt(res.median(x, J, "server_cpu_us_per_publish"), 1) for x in (m, b, al))
            w("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
                c, span(res, m, J, "publishes_per_s"), span(res, b, J, "publishes_per_s"),
                pct_span(share), span(res, al, J, "publishes_per_s"),
                span(res, al, J, "records_per_fsync", 1), fmt(res.median(b, J, "records_per_fsync")),
                cpu))
            med = statistics.median(share) if share else None
            targets.append(("publishes/s with `--fsync batch` ≥ 80 %% of memory only, %d publisher%s"
                            % (c, "" if c == 1 else "s"), pct_span(share),
                            None if med is None else med >= 0.8))
        w("")

    fo = "journal-fanout-1k"
    if res.servers(fo):
        r0 = next((x for x in rows if x.get("case") == fo and "subscribers" in x), {})
        w("## Fan-out with the journal on")
        w("")
        w("The 1k fan-out scenario (%s subscribers × %s events of %s bytes, flat out) against hscd "
          "memory only (`hscd-none`) and with `--fsync batch` (`hscd-batch`), one after the other "
          "in each round. The journal is on the publish path only: deliveries leave from the same "
          "hubs either way." % (r0.get("subscribers"), r0.get("events"), r0.get("payload_bytes")))
        w("")
        w(fanout_table(res, fo))
        w("")
        a = {r.get("rep"): r.get("deliveries_per_s") for r in res.runs(fo, "hscd-batch")}
        b = {r.get("rep"): r.get("deliveries_per_s") for r in res.runs(fo, "hscd-none")}
        ratios = [a[k] / b[k] for k in sorted(set(a) & set(b)) if a[k] and b[k]]
        cb = res.median(fo, "hscd-batch", "server_usage.cpu_us_per_delivery")
        cn = res.median(fo, "hscd-none", "server_usage.cpu_us_per_delivery")
        w("Deliveries/s with the journal on, per round, as a share of memory only: %s; server CPU "
          "per delivery %s × memory only's." % (pct_span(ratios), fmt(ratio(cb, cn), 2)))
        w("")
        med = statistics.median(ratios) if ratios else None
        targets.append(("fan-out deliveries/s with the journal on unchanged (≥ 90 % of memory "
                        "only, the median round)", pct_span(ratios),
                        None if med is None else med >= 0.9))

    rs = [(k, res.runs("journal-restart-%s" % k, J)) for k in ("sigterm", "kill9")]
    rs = [(k, v[0]) for k, v in rs if v]
    if rs:
        r0 = rs[0][1]
        w("## Restart with a large journal")
        w("")
        w("`bench/journal_restart.sh`: one hscd (`--fsync batch`) filled by `hsc-bench publish` "
          "with %s events of %s bytes over %s channels (%s MiB of data, at %s publishes/s), its "
          "history limits set so that every event stays; then stopped with SIGTERM (a clean "
          "stop) or killed with SIGKILL (as in a crash) and started again on the same directory. "
          "*restart* is from the exec to the first 200 from `/healthz` (the journal is replayed "
          "before hscd listens); *peak RSS* is VmHWM from /proc/PID/status then, *RSS* VmRSS. "
          "Peak RSS while it was being filled: %s MiB." % (
              fmt(r0.get("events_before")), fmt(r0.get("event_bytes")), fmt(r0.get("channels")),
              fmt(r0.get("events_before", 0) * r0.get("event_bytes", 0) / 2**20),
              fmt(r0.get("fill_publishes_per_s")), fmt(r0.get("fill_rss_peak_kb", 0) / 1024)))
        w("")
        w("| stopped by | journal on disk MiB (segments) | events restored | channels | "
          "stop s | restart s | peak RSS MiB | RSS MiB | records skipped |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for k, r in rs:
            w("| %s | %s (%s) | %s of %s | %s | %s | %s | %s | %s | %s |" % (
                "SIGTERM" if k == "sigterm" else "kill -9", fmt(r["disk_bytes"] / 2**20),
                r.get("journal_segments"), fmt(r["events_restored"]), fmt(r["events_before"]),
                fmt(r["channels"]), fmt(r["stop_s"], 2), fmt(r["restart_s"], 1),
                fmt(r["rss_peak_kb"] / 1024), fmt(r["rss_kb"] / 1024), r["records_skipped"]))
            targets.append(("restart after %s with %s MiB over %s channels: every event back"
                            % ("SIGTERM" if k == "sigterm" else "kill -9",
                               fmt(r["events_before"] * r["event_bytes"] / 2**20),
                               fmt(r["channels"])),
                            "%s of %s in %s s, peak RSS %s MiB" % (
                                fmt(r["events_restored"]), fmt(r["events_before"]),
                                fmt(r["restart_s"], 1), fmt(r["rss_peak_kb"] / 1024)),
                            r["events_restored"] == r["events_before"]))
        w("")

    if targets:
        w("### The journal's targets (issue 15)")
        w("")
        w("| target | measured | met |")
        w("| --- | --- | --- |")
        for text, value, ok in targets:
            w("| %s | %s | %s |" % (text, value, "yes" if ok else ("**no**" if ok is not None else "–")))
        w("")
    w("Measured %s; raw rows in [bench/%s](bench/%s). Reproduce: `BENCH_ONLY=journal make "
      "bench` (these sections only; `BENCH_RESTART_BYTES` sets the journal's size, 1g by "
      "default)." % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), JOURNAL_ROWS,
                     JOURNAL_ROWS))
    w("")
    w(JOURNAL_END)
    return out


JOURNAL_ROWS = "journal.jsonl"


def journal_only(res, out_dir):
    """Replaces the journal's sections of an existing PERFORMANCE.md (the rest stays as the last
    full run wrote it): between the markers, or before "## Reading the numbers" the first time."""
    path = os.path.join(out_dir, "PERFORMANCE.md")
    doc = open(path).read() if os.path.exists(path) else "# Performance\n\n"
    block = "\n".join(journal_block(res)) + "\n"
    if JOURNAL_BEGIN in doc and JOURNAL_END in doc:
        a = doc.index(JOURNAL_BEGIN)
        b = doc.index(JOURNAL_END) + len(JOURNAL_END) + 1
        doc = doc[:a] + block + doc[b:]
    elif "\n## Reading the numbers" in doc:
        a = doc.index("\n## Reading the numbers") + 1
        doc = doc[:a] + block + "\n" + doc[a:]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block
    open(path, "w").write(doc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--chaos", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--hscd", required=True)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--quick", default="0")
    ap.add_argument("--hscd-fsync", default="none",
                    help="hscd's journal mode in the comparison: none (memory only), batch, always")
    ap.add_argument("--openai", default=None, help="bench/openai_bench.py --json output")
    ap.add_argument("--only-section", choices=("cluster", "tls"), default=None,
                    help="rewrite only this section of an existing PERFORMANCE.md (and only its "
                    "records in bench/results.jsonl)")
    ap.add_argument("--h2-only", action="store_true",
                    help="rewrite only the HTTP/2 fan-out section of PERFORMANCE.md (and only its "
                    "records in bench/results.jsonl): BENCH_ONLY=h2")
    ap.add_argument("--journal-only", action="store_true",
                    help="rewrite only the journal's sections of PERFORMANCE.md (BENCH_ONLY=journal)")
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    res = Results(rows)
    plots = os.path.join(a.out, "bench")
    os.makedirs(plots, exist_ok=True)
    dest = os.path.join(plots, "results.jsonl")
    if a.only_section == "cluster":
        only_section(a, rows, dest, "cluster", report_cluster)
        return
    if a.only_section == "tls":
        only_section(a, rows, dest, "tls-", report_tls)
        return
    if a.h2_only:
        report_h2.only_h2(a.results, rows, a.out, dest)
        return
    with open(os.path.join(plots, JOURNAL_ROWS), "w") as f:
        for r in rows:
            if str(r.get("case", "")).startswith("journal-"):
                f.write(json.dumps(r) + "\n")
    if a.journal_only:
        journal_only(res, a.out)
        return
    if os.path.abspath(a.results) != os.path.abspath(dest):
        shutil.copy(a.results, dest)

    cpu = "?"
    try:
        m = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
        cpu = m.group(1) if m else "?"
    except OSError:
        pass
    mem = "?"
    try:
        mem = "%.0f GiB" % (int(open("/proc/meminfo").read().split()[1]) / 1024 / 1024)
    except (OSError, ValueError):
        pass

    def n_of(case):
        r = res.rows and next((x for x in res.rows if x.get("case") == case and "subscribers" in x), None)
        return r

    out = []
    w = out.append
    w("# Performance")
    w("")
    w("Written by `make bench` (scripts/bench.sh, bench/report.py) on %s. Every figure below was "
      "measured in that one run, on this machine, with the load generator (`hsc-bench`) sharing the "
      "cores with the server under test. Medians of %d repetition(s), min–max in parentheses. "
      "Nothing here is asserted by `make test`, which checks only the benchmark's own counting at "
      "small scale (tests/integration/test_bench.py)." % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), a.reps))
    if a.quick == "1":
        w("")
        w("**This is a quick run (`BENCH_QUICK=1`): small sizes, one repetition. Its figures "
          "are not the product's.**")
    w("")
    w("## Machine and versions")
    w("")
    w("| | |")
    w("| --- | --- |")
    w("| CPU | %s, %d cores |" % (cpu, os.cpu_count() or 0))
    w("| memory | %s |" % mem)
    w("| kernel | %s |" % platform.release())
    # The binary named relative to the tree's root: no machine's path goes into the docs.
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    hscd = os.path.relpath(os.path.abspath(a.hscd), root)
    w("| hscd | `%s` (this tree, `git describe`: %s) |" % (hscd, sh("git describe --always --dirty")))
    w("| nginx + nchan | %s; libnginx-mod-nchan %s |" % (sh("nginx -v"), sh("dpkg-query -W -f='${Version}' libnginx-mod-nchan")))
    w("| Pushpin | %s (zurl %s) |" % (sh("pushpin --version"), sh("dpkg-query -W -f='${Version}' zurl")))
    w("| Python (template) | %s |" % sh("python3 --version"))
    w("")
    w("## How it was measured")
    w("")
    w("- **floor**: `hsc-bench floor`, a single-threaded program that answers each subscriber with "
      "the event-stream headers and, for each publish, encodes the event once and `write()`s the same "
      "bytes to every subscriber socket, nothing else. It is the least work a server can do per "
      "delivery with one `write()` per event per subscriber.")
    if a.hscd_fsync == "none":
        journal = ("--data-dir none` (memory only, like the peers' memory stores; the journal is "
                   "measured on its own below)")
    else:
        journal = "--data-dir DIR --fsync %s` (the journal on)" % a.hscd_fsync
    w("- **hscd**: `hscd --listen 127.0.0.1:PORT --max-connections 15000 %s (2 worker threads, "
      "the default), channels at `/v1/events`." % journal)
    w("- **nchan**: nginx with `libnginx-mod-nchan`, 2 worker processes, `nchan_subscriber "
      "eventsource` (bench/nginx-nchan.conf.in).")
    w("- **Pushpin**: the stock configuration with its own ports, warnings-only logs and the "
      "handler's `message_rate` limit lifted; an asyncio origin answers GRIP stream holds "
      "(bench/grip_origin.py); zurl carries Pushpin's origin requests; publishing through Pushpin's "
      "HTTP publish API. Its CPU and RSS include pushpin's runner, condure, pushpin-proxy, "
      "pushpin-handler and zurl.")
    w("- **fanout** (`hsc-bench fanout -n N -m M -s 64 [-r RATE] --pid PID`): N subscribers over "
      "several processes and source addresses 127.0.0.1–8, each parsing SSE with libhsc's parser; "
      "warm-up events until every subscriber has one, then M events of 64 bytes, published one "
      "after the other on a keep-alive connection (flat out) or at RATE per second. Each event carries "
      "its send time; deliveries/s = deliveries / (last delivery − first publish). Server CPU "
      "seconds and peak RSS from /proc for the server's processes and their descendants.")
    w("- **connect** (`hsc-bench connect -n N`): N subscriptions opened as fast as possible (200 in "
      "flight per client process), then the server's RSS after 2 s, minus its RSS before: memory per "
      "idle subscriber.")
    w("- **stream** (`hsc-bench stream -c 20 -d 5 -k 10`): 20 clients asking for answers of 10 "
      "pieces one after the other for 5 s: hscd's demo responder at `--interval 0`, an `--exec` "
      "responder (a shell loop printing 10 lines: a process per answer), a `--pool 2` of "
      "long-lived Python workers (bench/pool_worker.py, the framed protocol), and "
      "bench/template_server.py, a faithful equivalent of the Python template hsc grew from "
      "(http.server in one process, the responder in another over one pipe, the answer written "
      "character by character), started with the same parameters (10 pieces, interval 0).")
    w("")

    cases = [
        ("fanout-1k", "1,000 subscribers × 200 events, flat out"),
        ("fanout-10k", "10,000 subscribers × 50 events, flat out"),
        ("latency", "latency below saturation: 1,000 subscribers × 20 events/s"),
    ]
    for case, title in cases:
        if not res.servers(case):
            continue
        r0 = next((x for x in rows if x.get("case") == case and "subscribers" in x), {})
        w("## %s" % title)
        w("")
        if r0:
            w("(this run: %s subscribers × %s events of %s bytes, %s)" % (
                r0.get("subscribers"), r0.get("events"), r0.get("payload_bytes"),
                "%g events/s" % r0["rate"] if r0.get("rate") else "flat out"))
            w("")
        w(fanout_table(res, case))
        w("")

    if res.servers("idle-10k"):
        w("## Idle memory per subscriber")
        w("")
        w("| server | subscribers connected | connections/s | bytes per idle subscriber | RSS empty → idle MiB |")
        w("| --- | ---: | ---: | ---: | --- |")
        for s in res.servers("idle-10k"):
            e = res.median("idle-10k", s, "rss_empty_kb")
            i = res.median("idle-10k", s, "rss_idle_kb")
            w("| %s | %s | %s | %s | %s → %s |" % (s, fmt(res.median("idle-10k", s, "connected")),
              span(res, "idle-10k", s, "connects_per_s"), span(res, "idle-10k", s, "bytes_per_idle_subscriber"),
              fmt(e / 1024 if e else None, 1), fmt(i / 1024 if i else None, 1)))
        w("")

    stream_rows = [(c, s) for c in ("stream-demo", "stream-exec", "stream-pool")
                   for s in res.servers(c)]
    if stream_rows:
        w("## Streamed answers")
        w("")
        w("| responder | answers/s | first piece p50 / p99 ms | per piece p50 ms | failed | server CPU µs/answer |")
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        for c, s in stream_rows:
            w("| %s | %s | %s / %s | %s | %d | %s |" % (s, span(res, c, s, "answers_per_s"),
              fmt(res.median(c, s, "first_piece.p50_ms"), 2), fmt(res.median(c, s, "first_piece.p99_ms"), 2),
              fmt(res.median(c, s, "per_piece.p50_ms"), 3), res.total(c, s, "failed"),
              fmt(res.median(c, s, "server_usage.cpu_us_per_answer"), 1)))
        w("")
        if res.servers("stream-exec"):
            w("`sh-spawned-serially` is no server: it is this machine's own rate of starting the "
              "exec responder's shell loop one process after another (bash, 200 times). A "
              "process per answer cannot go much faster than process creation allows; a pool "
              "of long-lived workers (`--pool`) pays it once.")
            w("")

    openai = []
    if a.openai and os.path.exists(a.openai) and os.path.getsize(a.openai) > 0:
        openai = json.load(open(a.openai))
        shutil.copy(a.openai, os.path.join(plots, "openai.json"))
    if openai:
        w("## The OpenAI front")
        w("")
        w("bench/openai_bench.py: `hsc-bench stream` against `/v1/stream` (Server-Sent Events) and "
          "`/v1/chat/completions` (`stream: true`) on the same hscd (one thread), %d pieces per "
          "answer, the two alternating (medians of %d rounds); hscd's own CPU (not the "
          "responder's) per piece delivered. The demo at `--interval 0` sends all its pieces at "
          "once, the framing's worst case; 1 ms apart, each piece is its own write, as a model "
          "streams; the pool is Python workers sending their pieces at once."
          % (openai[0].get("pieces", 50), openai[0].get("rounds", 1)))
        w("")
        w("| responder | endpoint | answers/s | first piece p50 | hscd CPU per piece | bytes/answer |")
        w("| --- | --- | ---: | ---: | ---: | ---: |")
        base = {}
        for r in openai:
            extra = ""
            if r["endpoint"].startswith("/v1/stream"):
                base[r["responder"]] = r["cpu_us_per_piece"]
            elif base.get(r["responder"]):
                extra = " (%+.0f %%)" % (100 * (r["cpu_us_per_piece"] / base[r["responder"]] - 1))
            w("| %s | %s | %s | %s ms | %s µs%s | %s |" % (
              r["responder"], r["endpoint"], fmt(r["answers_per_s"]), fmt(r["first_piece_p50_ms"], 2),
              fmt(r["cpu_us_per_piece"], 2), extra, fmt(r["mean_answer_bytes"])))
        w("")

    w("## Reading the numbers")
    w("")
    w("- **Why hscd can be above the floor.** The floor writes each event to each subscriber "
      "as it is published: one `write()` per event per subscriber. hscd hands each publish to "
      "every worker thread once, and each worker writes all the events waiting for a subscriber "
      "in one `writev()` per turn of its loop: under a flat-out publisher several events share "
      "one system call, so it does less work per delivery than the floor's definition allows "
      "and uses both cores. At a rate well below saturation (the latency scenario) there is "
      "nothing to batch, and hscd and the floor do the same work per delivery; that table is "
      "the like-for-like comparison.")
    w("- **deliveries/s** counts from the first measured publish to the last delivery, so a "
      "server that accepts publishes quickly and delivers late (Pushpin buffers: see its "
      "latency) is not credited for the buffering.")
    w("- **At 10,000 subscribers** the load generator (its subscriber processes parse every "
      "delivery) shares the two cores with the server and limits everyone; server CPU per "
      "delivery is the fairer figure there.")
    w("- **connected** below the subscriber count means subscriptions that still failed after "
      "five tries (Pushpin refuses some in a connection storm); their deliveries are not expected.")
    w("- **RSS** is what /proc reports for the server's processes and their descendants (nginx: "
      "master and workers; Pushpin: runner, condure, proxy, handler and zurl); shared pages count "
      "once per process. Kernel socket buffers are in nobody's RSS.")
    w("- **The subscriber-count plot** joins the 1k (200 events) and 10k (50 events) scenarios "
      "with a series at 100, 300 and 3,000 subscribers (100 events each).")
    w("")

    out.extend(journal_block(res))

    cl = report_cluster.section(rows)
    if cl:
        out.extend(cl)
    out.extend(report_tls.section(rows))
    out.extend(report_h2.section(rows))

    # Targets (issue 7).
    w("## Targets")
    w("")
    w("| target | measured | met |")
    w("| --- | --- | --- |")

    def target(text, value, ok):
        w("| %s | %s | %s |" % (text, value, "yes" if ok else ("**no**" if ok is not None else "–")))

    for case in ("fanout-1k", "fanout-10k"):
        d = res.median(case, "hscd", "deliveries_per_s")
        f = res.median(case, "floor", "deliveries_per_s")
        pd, pn = best_peer(res, case, "deliveries_per_s")
        r = ratio(d, f)
        target("%s: deliveries/s ≥ 0.9 × floor" % case, "%s × floor" % fmt(r, 2), r >= 0.9 if r else None)
        r = ratio(d, pd)
        target("%s: ahead of every peer" % case, "%s × %s" % (fmt(r, 2), pn), r > 1 if r else None)
        c = res.median(case, "hscd", "server_usage.cpu_us_per_delivery")
        fc = res.median(case, "floor", "server_usage.cpu_us_per_delivery")
        r = ratio(c, fc)
        target("%s: server CPU per delivery ≤ 1.25 × floor" % case, "%s µs = %s × floor" % (fmt(c, 2), fmt(r, 2)),
               r <= 1.25 if r else None)
    p = res.median("latency", "hscd", "latency.p99_ms")
    fp = res.median("latency", "floor", "latency.p99_ms")
    r = ratio(p, fp)
    target("latency: p99 ≤ 2 × floor's", "%s ms = %s × floor" % (fmt(p, 1), fmt(r, 2)), r <= 2 if r else None)
    b = res.median("idle-10k", "hscd", "bytes_per_idle_subscriber")
    target("idle memory ≤ 2 KiB per subscriber at 10k", "%s bytes" % fmt(b), b <= 2048 if b else None)
    hp = res.median("fanout-10k", "hscd", "server_usage.rss_peak_kb")
    np_ = res.median("fanout-10k", "nchan", "server_usage.rss_peak_kb")
    target("peak RSS during 10k × 50 below nchan's", "%s vs %s MiB" % (fmt(hp / 1024 if hp else None, 1),
           fmt(np_ / 1024 if np_ else None, 1)), hp < np_ if hp and np_ else None)
    h = res.median("stream-demo", "hscd", "answers_per_s")
    t = res.median("stream-demo", "python-template", "answers_per_s")
    r = ratio(h, t)
    target("streamed answers ≥ 50 × the Python template", "%s × (%s vs %s answers/s)" % (fmt(r, 1), fmt(h), fmt(t)),
           r >= 50 if r else None)
    worst = None
    for r in openai:
        if not r["endpoint"].startswith("/v1/stream"):
            b = next((x["cpu_us_per_piece"] for x in openai if x["responder"] == r["responder"]
                      and x["endpoint"].startswith("/v1/stream")), None)
            if b:
                worst = max(worst or 0, r["cpu_us_per_piece"] / b)
    if openai:
        target("the OpenAI framing ≤ 1.10 × /v1/stream's server CPU per piece (worst responder)",
               "%s ×" % fmt(worst, 2), worst <= 1.10 if worst else None)
    bad = sum(res.total(c, s, k) for c in {x.get("case") for x in rows} for s in res.servers(c)
              for k in ("lost", "duplicated", "out_of_order"))
    target("no lost, duplicated or out-of-order delivery, any scenario, any server", "%d" % bad, bad == 0)
    w("")

    chaos = open(a.chaos).read() if os.path.exists(a.chaos) else ""
    m = re.search(r"chaos: .*", chaos)
    w("## Chaos (the larger setting of tests/integration/test_chaos.py)")
    w("")
    if m:
        w("    " + m.group(0))
        w("")
        w("Result: %s." % ("passed" if re.search(r"^OK", chaos, re.M) else "**FAILED**"))
    else:
        w("Not run in this pass (BENCH_CHAOS_SECONDS=0).")
    w("")

    # Plots.
    have_gnuplot = shutil.which("gnuplot") is not None
    scale_cases = sorted({x["case"] for x in rows if x.get("case", "").startswith("scale-")} | {"fanout-1k", "fanout-10k"},
                         key=lambda c: res.median(c, "hscd", "subscribers") or 0)
    with open(os.path.join(plots, "deliveries.dat"), "w") as f:
        f.write("# subscribers " + " ".join(ORDER) + "\n")
        for c in scale_cases:
            n = res.median(c, "hscd", "subscribers") or res.median(c, "floor", "subscribers")
            if not n:
                continue
            f.write("%d %s\n" % (n, " ".join(str(res.median(c, s, "deliveries_per_s") or "NaN") for s in ORDER)))
    with open(os.path.join(plots, "latency.dat"), "w") as f:
        f.write("# percentile " + " ".join(ORDER) + "\n")
        for label, key in (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"), ("max", "max_ms")):
            f.write("%s %s\n" % (label, " ".join(str(res.median("latency", s, "latency." + key) or "NaN") for s in ORDER)))
    if have_gnuplot:
        gp = """set terminal pngcairo size 900,520 noenhanced font ',11'
set output '{d}/deliveries.png'
set title 'Fan-out: deliveries per second against subscribers (flat out, 64-byte events)'
set xlabel 'subscribers'; set ylabel 'deliveries/s'; set logscale x; set grid; set key top left
set format y '%.0s%c'
plot for [i=2:5] '{d}/deliveries.dat' using 1:i with linespoints lw 2 title columnhead(i)
set output '{d}/latency.png'
unset logscale x; set logscale y; set format y '%g'
set title 'Latency distribution, 1,000 subscribers x 20 events/s'
set xlabel 'percentile'; set ylabel 'ms (log)'
plot for [i=2:5] '{d}/latency.dat' using i:xtic(1) with linespoints lw 2 title columnhead(i)
""".format(d=plots)
        # columnhead needs the header line without '#'.
        for name in ("deliveries.dat", "latency.dat"):
            p = os.path.join(plots, name)
            txt = open(p).read().replace("# ", "", 1)
            open(p, "w").write(txt)
        subprocess.run(["gnuplot"], input=gp, text=True, check=False, timeout=60)
        w("## Plots")
        w("")
        w("![deliveries per second against subscribers](bench/deliveries.png)")
        w("")
        w("![latency percentiles](bench/latency.png)")
        w("")
    w("The raw results, one JSON object per run: [bench/results.jsonl](bench/results.jsonl).")
    w("")
    w("Reproduce: `make bench` (about 15 minutes; `BENCH_REPS=1` for one repetition, "
      "`BENCH_QUICK=1` for a smoke run, `BENCH_SERVERS='hscd floor'` for a subset, "
      "`BENCH_ONLY=cluster` for the cluster scenario alone, `BENCH_CLUSTER=0` without it, "
      "`BENCH_ONLY=tls` for the TLS section alone, `BENCH_TLS=0` without it).")
    open(os.path.join(a.out, "PERFORMANCE.md"), "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
