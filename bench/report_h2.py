"""The HTTP/2 fan-out section of docs/PERFORMANCE.md (issue 18), from the "h2-fanout-*" records
of scripts/bench.sh (BENCH_H2): the same fan-out with hscd's subscribers over HTTP/1.1, HTTP/1.1
over TLS, h2c and h2 over TLS. bench/report.py calls section() for a whole report, and
only_h2() when only this section is regenerated (BENCH_ONLY=h2); the section sits between its
own markers so that it can be replaced alone."""

import json
import os
import statistics
import subprocess
import time

from report_util import fmt as _fmt, get as _get, span_of

BEGIN = "<!-- h2-fanout: written by bench/report.py from the h2-fanout rows; do not edit -->"
END = "<!-- h2-fanout: end -->"
PREFIX = "h2-fanout-"
MODES = (("h1", "HTTP/1.1"), ("h1-tls", "HTTP/1.1 over TLS"), ("h2c", "h2c (prior knowledge)"),
         ("h2-tls", "h2 over TLS (ALPN)"))


def _vals(runs, path):
    return [v for v in (_get(r, path) for r in runs) if isinstance(v, (int, float))]


def _span(runs, path, digits=0, scale=1.0):
    return span_of([x * scale for x in _vals(runs, path)], digits)


def _med(runs, path):
    v = _vals(runs, path)
    return statistics.median(v) if v else None


def section(rows):
    """The section's lines, markers included; [] when no h2-fanout record is there."""
    mine = [r for r in rows if str(r.get("case", "")).startswith(PREFIX) and "error" not in r]
    if not mine:
        return []
    runs = {m: [r for r in mine if r["case"] == PREFIX + m] for m, _ in MODES}
    any_run = mine[0]
    streams = max((r.get("h2_streams_per_connection") or 0) for r in mine)
    out = [BEGIN, "## Fan-out over HTTP/2 and TLS", ""]
    w = out.append
    w("hscd alone, %s subscribers × %s events of %s bytes published flat out (one publisher, "
      "cleartext), the subscribers over HTTP/1.1 (one connection each), HTTP/1.1 over TLS, h2c "
      "(prior knowledge) and h2 over TLS (ALPN), %d streams to an HTTP/2 connection "
      "(`hsc-bench fanout --h2 %d`). TLS: an EC P-256 test certificate, `--listen-tls` beside "
      "the cleartext `--listen`. A fresh hscd for each run; median of %d repetitions (range in "
      "parentheses). hsc-bench's HTTP/2 client (libnghttp2) advertises 16 MiB stream and "
      "256 MiB connection windows and returns them as soon as DATA arrives, so flow control "
      "never holds hscd back." % (
          _fmt(any_run.get("subscribers")), _fmt(any_run.get("events")),
          any_run.get("payload_bytes", "?"), streams, streams,
          max(len(v) for v in runs.values())))
    w("")
    w("| subscribers over | deliveries/s | server CPU µs/delivery | p50 ms | p99 ms "
      "| peak RSS MiB | lost / dup |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for m, name in MODES:
        rs = runs[m]
        if not rs:
            continue
        bad = "%d / %d" % (sum(_vals(rs, "lost")), sum(_vals(rs, "duplicated")))
        w("| %s | %s | %s | %s | %s | %s | %s |" % (
            name, _span(rs, "deliveries_per_s"), _span(rs, "server_usage.cpu_us_per_delivery", 2),
            _span(rs, "latency.p50_ms", 1), _span(rs, "latency.p99_ms", 1),
            _span(rs, "server_usage.rss_peak_kb", 1, 1 / 1024.0), bad))
    w("")
    c = {m: _med(runs[m], "server_usage.cpu_us_per_delivery") for m, _ in MODES}
    notes = []
    if c["h1"] and c["h1-tls"]:
        notes.append("TLS costs HTTP/1.1 %.2f µs of server CPU per delivery (%.1f× cleartext)"
                     % (c["h1-tls"] - c["h1"], c["h1-tls"] / c["h1"]))
    if c["h2c"] and c["h2-tls"]:
        notes.append("h2 %.2f µs (%.1f× h2c)" % (c["h2-tls"] - c["h2c"], c["h2-tls"] / c["h2c"]))
    if c["h1"] and c["h2c"]:
        notes.append("server CPU per delivery, h2c ÷ HTTP/1.1: %.2f" % (c["h2c"] / c["h1"]))
    if c["h1-tls"] and c["h2-tls"]:
        notes.append("h2 over TLS ÷ HTTP/1.1 over TLS: %.2f" % (c["h2-tls"] / c["h1-tls"]))
    if notes:
        w("Medians: " + "; ".join(notes) + ".")
        w("")
    loads = [r["loadavg"][0] for r in mine if r.get("loadavg")]
    if loads:
        w("Load average (1 min) at the end of the runs: %.1f–%.1f on this machine's cores "
          "(other work shares them)." % (min(loads), max(loads)))
        w("")
    w(END)
    return out


def replace(text, lines):
    """`text` (a PERFORMANCE.md) with its HTTP/2 fan-out section replaced by `lines`: between the
    markers, or before "## Targets" (else at the end) the first time."""
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        a = text.index(BEGIN)
        b = text.index(END) + len(END)
        return text[:a] + block + text[b:]
    if "\n## Targets" in text:
        a = text.index("\n## Targets") + 1
        return text[:a] + block + "\n\n" + text[a:]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def only_h2(results, rows, out_dir, dest):
    """BENCH_ONLY=h2: the h2-fanout records replace theirs in bench/results.jsonl (`dest`), the
    section replaces its namesake in PERFORMANCE.md; everything else stays as it was."""
    mine = [r for r in rows if str(r.get("case", "")).startswith(PREFIX)]
    kept = []
    if os.path.exists(dest) and os.path.abspath(results) != os.path.abspath(dest):
        kept = [l for l in open(dest) if l.strip() and
                not str(json.loads(l).get("case", "")).startswith(PREFIX)]
    with open(dest, "w") as f:
        f.writelines(kept)
        for r in mine:
            f.write(json.dumps(r) + "\n")
    md = os.path.join(out_dir, "PERFORMANCE.md")
    text = open(md).read() if os.path.exists(md) else "# Performance\n"
    lines = section(mine)
    if not lines:
        return
    desc = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                          text=True).stdout.strip() or "?"
    lines = lines[:-1] + ["(HTTP/2 fan-out section written by `bench/report.py --h2-only` "
                          "(`BENCH_ONLY=h2`) on %s, `git describe`: %s.)" % (
                              time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), desc),
                          "", END]
    open(md, "w").write(replace(text.rstrip("\n") + "\n", lines).rstrip("\n") + "\n")
