"""The TLS section of docs/PERFORMANCE.md (issue 18), from the "tls-*" records of
scripts/bench.sh (BENCH_TLS): fan-out over cleartext and TLS for hscd and nginx + nchan on the
same certificate, handshakes/s with `openssl s_time`, and h2load's request rates (bench/
tls_rates.py). bench/report.py calls section() for a whole report, and replace() when only this
section is regenerated (BENCH_ONLY=tls)."""

import statistics

from report_util import fmt as _fmt, get as _get, replace_section
from report_util import runs as _runs, span_of as _span_of

HEADING = "## TLS and HTTP/2"
FANOUT = "tls-fanout-1k"
SERVERS = ("hscd", "nchan")


def _vals(rows, case, srv, path):
    return [v for v in (_get(r, path) for r in _runs(rows, case, srv)) if v is not None]


def _med(rows, case, srv, path):
    v = _vals(rows, case, srv, path)
    return statistics.median(v) if v else None


def _span(rows, case, srv, path, digits=0):
    return _span_of(_vals(rows, case, srv, path), digits)


def _per_round(rows, case, a, b, path):
    """a / b for each repetition that has both (the runs next to each other)."""
    x = {r.get("rep"): _get(r, path) for r in _runs(rows, case, a)}
    y = {r.get("rep"): _get(r, path) for r in _runs(rows, case, b)}
    return [x[k] / y[k] for k in sorted(set(x) & set(y)) if x[k] is not None and y[k]]


def section(rows):
    """The section's lines; [] when no TLS record is there."""
    mine = [r for r in rows if str(r.get("case", "")).startswith("tls-")]
    if not mine:
        return []
    out = []
    w = out.append
    reps = sorted({r.get("rep") for r in mine} - {None})
    loads = [r["loadavg"][0] for r in mine if r.get("loadavg")]
    w(HEADING)
    w("")
    w("Issue 18, docs/tls.md. A test certificate made with openssl at bench time (EC P-256, "
      "OpenSSL 3, TLS 1.2 and 1.3) serves both servers: hscd with `--tls-cert`/`--tls-key` on "
      "`--listen-tls` beside its cleartext `--listen`, and nginx + nchan "
      "(bench/nginx-nchan-tls.conf.in: the same 2 workers as the cleartext runs, `listen ... ssl` "
      "without `http2` for the HTTP/1.1 fan-out, `ssl http2` and cleartext `http2` listeners for "
      "h2load, a session cache and tickets). Every run starts a fresh server; %d round(s), "
      "medians with min–max in parentheses; server CPU is user + system time from /proc of the "
      "server's processes and their descendants." % len(reps))
    w("")
    if loads:
        w("Machine load: 2 cores shared with the load generator (and, at times, other work on "
          "this machine); the 1-minute load average at the end of these runs was %.1f (median; "
          "%.1f–%.1f). Read the CPU per delivery, handshake or request before the rates: it moves "
          "far less from run to run." % (statistics.median(loads), min(loads), max(loads)))
        w("")

    r0 = next((r for r in mine if r.get("case") == FANOUT and "subscribers" in r), None)
    if r0:
        w("### Fan-out over TLS (HTTP/1.1)")
        w("")
        w("The 1k scenario, %s subscribers × %s events of %s bytes published flat out "
          "(`hsc-bench fanout`), each server over cleartext and then with its subscribers over "
          "TLS (an `https://` `--sub-url`; hsc-bench's subscribers decrypt on the same two "
          "cores), publishing cleartext in both. *TLS ÷ cleartext* is the median of each "
          "round's ratio (the two runs next to each other)." % (
              _fmt(r0.get("subscribers")), _fmt(r0.get("events")), r0.get("payload_bytes")))
        w("")
        w("| server | transport | connected | deliveries/s | server CPU µs/delivery | "
          "TLS ÷ cleartext CPU/delivery | TLS ÷ cleartext deliveries/s | latency p50 / p99 ms | "
          "peak RSS MiB | lost / dup / out of order |")
        w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for s in SERVERS:
            for label, srv in (("cleartext", s), ("TLS", s + "-tls")):
                runs = _runs(mine, FANOUT, srv)
                if not runs and not [r for r in mine if r.get("server") == srv]:
                    continue
                cpu_r = dps_r = ""
                if label == "TLS":
                    cpu_r = _span_of(_per_round(mine, FANOUT, srv, s,
                                                "server_usage.cpu_us_per_delivery"), 2)
                    dps_r = _span_of(_per_round(mine, FANOUT, srv, s, "deliveries_per_s"), 2)
                rss = _med(mine, FANOUT, srv, "server_usage.rss_peak_kb")
                bad = [sum(_vals(mine, FANOUT, srv, k)) for k in ("lost", "duplicated",
                                                                   "out_of_order")]
                failed = len([r for r in mine if r.get("case") == FANOUT and
                              r.get("server") == srv and "error" in r])
                w("| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %d / %d / %d of %s%s |" % (
                    s, label, _fmt(_med(mine, FANOUT, srv, "connected")),
                    _span(mine, FANOUT, srv, "deliveries_per_s"),
                    _span(mine, FANOUT, srv, "server_usage.cpu_us_per_delivery", 2), cpu_r,
                    dps_r, _fmt(_med(mine, FANOUT, srv, "latency.p50_ms"), 1),
                    _fmt(_med(mine, FANOUT, srv, "latency.p99_ms"), 1),
                    _fmt(rss / 1024 if rss else None, 1), bad[0], bad[1], bad[2],
                    _fmt(sum(_vals(mine, FANOUT, srv, "deliveries_expected"))),
                    "; %d run(s) failed" % failed if failed else ""))
        w("")
        w("HTTP/2 fan-out (subscribers multiplexed on HTTP/2 connections) needs hsc-bench's "
          "HTTP/2 subscribers, not in this tree yet: no row for it here.")
        w("")

    hs = [(v, m) for v in ("tls1_3", "tls1_2") for m in ("new", "reuse")]
    if any(_runs(mine, "tls-hs-%s-%s" % k, s) for k in hs for s in SERVERS):
        w("### Handshakes")
        w("")
        w("`openssl s_time -connect ... -new|-reuse -tls1_3|-tls1_2 -time S`: one client process, "
          "the same for both servers, one handshake after another (no request; closed). "
          "One client is the bottleneck: the rates are mostly the client's (see how busy the "
          "server was); the server's CPU per handshake is the comparison. `reuse` resumes the "
          "first session (TLS 1.2: a session ticket; TLS 1.3: a ticket for PSK with ECDHE, when "
          "the client manages to use one: a CPU per handshake close to `new` says it did not).")
        w("")
        w("| TLS | sessions | hscd handshakes/s | hscd CPU µs/handshake | hscd busy | "
          "nginx handshakes/s | nginx CPU µs/handshake | nginx busy | hscd ÷ nginx CPU |")
        w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for v, m in hs:
            c = "tls-hs-%s-%s" % (v, m)
            h = _med(mine, c, "hscd", "server_cpu_us_per_handshake")
            n = _med(mine, c, "nchan", "server_cpu_us_per_handshake")
            hb = _med(mine, c, "hscd", "server_cpu_percent")
            nb = _med(mine, c, "nchan", "server_cpu_percent")
            w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                v.replace("tls1_", "1."), "new" if m == "new" else "resumed",
                _span(mine, c, "hscd", "handshakes_per_s"),
                _span(mine, c, "hscd", "server_cpu_us_per_handshake"),
                "%s %%" % _fmt(hb) if hb is not None else "–",
                _span(mine, c, "nchan", "handshakes_per_s"),
                _span(mine, c, "nchan", "server_cpu_us_per_handshake"),
                "%s %%" % _fmt(nb) if nb is not None else "–",
                _fmt(h / n, 2) if h and n else "–"))
        w("")

    cases = [(p, q) for p in ("healthz", "page") for q in ("h2c", "h2", "h1", "h1-tls")]
    if any(_runs(mine, "tls-h2load-%s-%s" % k, s) for k in cases for s in SERVERS):
        r1 = next((r for r in mine if str(r.get("case")).startswith("tls-h2load-")), {})
        w("### Request rates (h2load)")
        w("")
        w("nghttp2's `h2load -D S -c %s -t 1` (one client thread), `-m %s` streams per "
          "connection over HTTP/2 and `--h1` (keep-alive, one request at a time per connection) "
          "for HTTP/1.1: `/healthz` (a small answer) and `/` (the demo page). nginx serves hscd's "
          "own answers as static files (nchan's nginx, `keepalive_requests` lifted so that "
          "neither server closes connections; no `open_file_cache`, so it opens the file for each "
          "request while hscd answers from memory). *h2c* is HTTP/2 prior knowledge on "
          "cleartext, *h2* ALPN h2 over TLS. h2load runs on the same two cores: the server's "
          "CPU per request is the comparison, the rates are the pair's." % (
              r1.get("clients", "?"), r1.get("streams", "?")))
        w("")
        w("| path | protocol | hscd requests/s | hscd CPU µs/request | nginx requests/s | "
          "nginx CPU µs/request | hscd ÷ nginx requests/s | failed (hscd / nginx) |")
        w("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        names = {"h2c": "HTTP/2 cleartext (h2c)", "h2": "HTTP/2 over TLS (h2)",
                 "h1": "HTTP/1.1 cleartext", "h1-tls": "HTTP/1.1 over TLS"}
        for p, q in cases:
            c = "tls-h2load-%s-%s" % (p, q)
            h = _med(mine, c, "hscd", "requests_per_s")
            n = _med(mine, c, "nchan", "requests_per_s")
            w("| `%s` | %s | %s | %s | %s | %s | %s | %d / %d |" % (
                "/healthz" if p == "healthz" else "/", names[q],
                _span(mine, c, "hscd", "requests_per_s"),
                _span(mine, c, "hscd", "server_cpu_us_per_request", 1),
                _span(mine, c, "nchan", "requests_per_s"),
                _span(mine, c, "nchan", "server_cpu_us_per_request", 1),
                _fmt(h / n, 2) if h and n else "–",
                sum(_vals(mine, c, "hscd", "failed")), sum(_vals(mine, c, "nchan", "failed"))))
        w("")
    errors = [r for r in mine if "error" in r]
    if errors:
        w("Runs that failed (not in the medians): %s." % ", ".join(
            "%s %s #%s" % (r.get("case"), r.get("server"), r.get("rep")) for r in errors))
        w("")
    return out


def replace(text, lines):
    """`text` (a PERFORMANCE.md) with its TLS section replaced by `lines`, or the section inserted
    where a whole report puts it: before "## Targets" (or at the end)."""
    return replace_section(text, HEADING, lines)
