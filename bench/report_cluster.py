"""The cluster section of docs/PERFORMANCE.md (issue 16), from the "cluster" and
"cluster-storm" records of scripts/bench.sh (BENCH_CLUSTER). bench/report.py calls section() for
a whole report, and replace() when only this section is regenerated (BENCH_ONLY=cluster)."""

import statistics

from report_util import fmt as _fmt, replace_section, runs as _runs, span_of


def _collect(runs, f):
    """f(r) for each record where it has a value (a missing field or a zero divisor: none)."""
    vals = []
    for r in runs:
        try:
            v = f(r)
        except (KeyError, TypeError, ZeroDivisionError, ValueError):
            v = None
        if v is not None:
            vals.append(v)
    return vals


def _med(runs, f):
    vals = _collect(runs, f)
    return statistics.median(vals) if vals else None


def _span(runs, f, digits=0):
    return span_of(_collect(runs, f), digits)

HEADING = "## Cluster on Redis"
SERVERS = ("hscd", "nchan")
SCRIPT_CALLS = ("evalsha", "eval", "fcall")
RANGE_READS = ("xrange", "xrevrange", "xread")


def _calls(d, names):
    return sum(v for k, v in d.get("calls", {}).items() if k in names)


def section(rows):
    """The section's lines; [] when no cluster record is there."""
    runs = {s: _runs(rows, "cluster", s) for s in SERVERS}
    storms = {s: _runs(rows, "cluster-storm", s) for s in SERVERS}
    if not any(runs.values()) and not any(storms.values()):
        return []
    r0 = next(r for s in SERVERS for r in runs[s] + storms[s])
    nodes = r0.get("nodes", 0)
    chans = r0.get("channels", 0)
    hot = r0.get("hot_subscribers", 0)
    per = (r0["subscribers"] - hot) // max(chans - 1, 1) if chans > 1 else r0["subscribers"]
    out = []
    w = out.append
    w("%s: %d nodes, %s subscribers" % (HEADING, nodes, _fmt(r0["subscribers"])))
    w("")
    w("(this run: %s channels × %s subscribers plus one channel with %s, spread so that every "
      "channel has subscribers on every node; %s events of %s bytes at %g publishes/s, "
      "round-robin over the %s channels and published through every node in turn)" % (
          _fmt(chans - 1), _fmt(per), _fmt(hot), _fmt(r0.get("events")),
          r0.get("payload_bytes"), r0.get("rate", 0), _fmt(chans)))
    w("")
    w("- **hscd**: %d processes `hscd --redis redis://127.0.0.1:PORT --threads 1 "
      "--max-connections 19800 --data-dir none`, each on its own loopback port." % nodes)
    w("- **nchan**: %d nginx instances, one worker process each, each on its own loopback port, "
      "all with `nchan_redis_pass` to an upstream of `nchan_redis_server` with "
      "`nchan_redis_storage_mode distributed` (bench/nginx-nchan-redis.conf.in): %d instances "
      "stand for %d nodes, as %d hscd processes do." % (nodes, nodes, nodes, nodes))
    w("- One redis-server 7.0 (Debian) per server and run, started by scripts/bench.sh on a free "
      "loopback port in a temporary directory, no persistence. Redis CPU is its user + system "
      "CPU seconds from /proc over the measured publishing, as a share of one core.")
    w("- The load generator: `hsc-bench fanout` with one `--sub-url` and `--pub-url` per node, "
      "`--channels %d --hot %d` (bench/redis_stats.py reads INFO commandstats, INFO stats and "
      "PUBSUB NUMSUB)." % (chans, hot))
    w("")
    w("One publisher sends the events one after the other on keep-alive connections, each at "
      "its due time or as soon as the previous one is answered: when a publish takes longer "
      "than the interval, the achieved rate falls below the asked one, and deliveries/s with "
      "it (achieved = events / publishing time).")
    w("")
    w("| server | connected | publishes/s achieved | deliveries/s | latency p50 / p99 ms | "
      "RSS per node MiB, min–max (mean) | nodes' CPU s | Redis CPU, % of a core | Redis RSS "
      "MiB | lost / dup / out of order |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for s in SERVERS:
        rr = runs[s]
        if not rr:
            continue
        last = rr[-1]
        each = [p["rss_end_kb"] / 1024 for p in last.get("server_usage", {}).get("per_pid", [])]
        rss = "%s–%s (%s)" % (_fmt(min(each), 1), _fmt(max(each), 1),
                              _fmt(sum(each) / len(each), 1)) if each else "–"
        w("| %s | %s of %s | %s | %s | %s / %s | %s | %s | %s | %s | %d / %d / %d of %s |" % (
            s, _fmt(_med(rr, lambda r: r["connected"])), _fmt(last["subscribers"]),
            _span(rr, lambda r: r["events"] / r["publish_s"]),
            _span(rr, lambda r: r["deliveries_per_s"]),
            _fmt(_med(rr, lambda r: r["latency"]["p50_ms"]), 1),
            _fmt(_med(rr, lambda r: r["latency"]["p99_ms"]), 1), rss,
            _span(rr, lambda r: r["server_usage"]["cpu_s"], 1),
            _span(rr, lambda r: r["aux_usage"]["cpu_percent"]),
            _fmt(_med(rr, lambda r: r["aux_usage"]["rss_end_kb"] / 1024), 1),
            sum(r["lost"] for r in rr), sum(r["duplicated"] for r in rr),
            sum(r["out_of_order"] for r in rr), _fmt(sum(r["deliveries_expected"] for r in rr))))
    w("")
    w("### Redis commands per publish")
    w("")
    w("Two readings. INFO commandstats before and after the whole run counts every command, "
      "those that scripts run included (this benchmark's own INFO, MONITOR and PUBSUB left "
      "out), divided by the publishes (the warm-up ones and the subscriptions' reads included). "
      "MONITOR for 3 s halfway through the publishing tells apart the commands the nodes sent "
      "(round trips) from those their scripts ran, per PUBLISH seen (one per publish for both "
      "servers); MONITOR costs Redis some CPU in that window. Target for hscd: one script "
      "call per publish, plus one pub/sub message per node that has subscribers of the channel: "
      "PUBSUB NUMSUB, sampled every 3 s (the fullest sample kept), counts those node "
      "connections per channel, so each publish reaches that many nodes.")
    w("")
    w("| server | publishes | commands per publish (commandstats) | script calls per publish "
      "(commandstats) | sent by the nodes per publish (MONITOR) | run inside scripts per "
      "publish (MONITOR) | node subscriptions per channel | sent by the nodes, per publish "
      "(MONITOR) |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for s in SERVERS:
        rr = runs[s]
        if not rr:
            continue
        cs = rr[-1].get("census") or {}
        n = cs.get("publishes") or 0
        top = ", ".join("%s %.2f" % (k.upper(), v / n) for k, v in sorted(
            cs.get("sent", {}).items(), key=lambda kv: -kv[1])[:5]) if n else "–"
        ps = rr[-1].get("pubsub") or {}
        w("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            s, _fmt(_med(rr, lambda r: r["redis"]["publishes"])),
            _fmt(_med(rr, lambda r: r["redis"]["total_per_publish"]), 2),
            _fmt(_med(rr, lambda r: _calls(r["redis"], SCRIPT_CALLS) / r["redis"]["publishes"]), 2),
            _fmt(_med(rr, lambda r: r["census"]["sent_per_publish"]), 2),
            _fmt(_med(rr, lambda r: r["census"]["in_scripts_per_publish"]), 2),
            _fmt(ps["subscriptions"] / ps["channels"], 2) if ps.get("channels") else "–", top))
    w("")
    nc = runs["hscd"][-1].get("node_counters") if runs["hscd"] else None
    if nc:
        sub = lambda k: nc.get('hsc_redis_subscribes_total{from="%s"}' % k, 0)
        w("The commandstats figure counts the subscriptions' reads too: hscd's nodes served "
          "%s of the first subscriptions from their rings, %s with a read of their own and %s "
          "from another subscription's read of the same channel (`hsc_redis_subscribes_total`). "
          "The subscribers connect before anything is published, when a node has nothing in "
          "its rings to serve them from; the MONITOR columns are the steady state." % (
              _fmt(sub("node")), _fmt(sub("redis")), _fmt(sub("shared"))))
        w("")
    if any(storms.values()):
        rs = next(r for s in SERVERS for r in storms[s])
        w("### Resume storm after a node is killed")
        w("")
        w("A second run at 6/10 of the size (%s subscribers: after the kill one node fewer must "
          "hold them all, each node under the 20,000 open files a process may have here), with "
          "`--resume`: once half the events are published, the first node and its children are "
          "killed with SIGKILL; its subscribers (about %s) reconnect at once, spread over the %d "
          "other nodes, each with the Last-Event-ID it had. Publishing pauses for 5 s after the "
          "kill, so that what Redis counts in that window (INFO commandstats at the kill and 5 s "
          "later) is the storm's, plus the nodes' own pings; then it goes on through the other "
          "nodes and every event must still arrive exactly once. Range reads are the XRANGE, "
          "XREVRANGE and XREAD calls in the window; the target for hscd is at most one per "
          "channel per node (%s channels × %d nodes = %s), not one per resumed subscriber." % (
              _fmt(rs["subscribers"]), _fmt(rs["subscribers"] / max(nodes, 1)), nodes - 1,
              _fmt(chans), nodes - 1, _fmt(chans * (nodes - 1))))
        w("")
        w("| server | subscribers | resumed | lost / dup / out of order | range reads in the "
          "window | Redis commands in the window | per resumed subscriber | script calls in the "
          "window | most frequent | hscd subscriptions served by node / read / shared read |")
        w("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | --- |")
        for s in SERVERS:
            for r in storms[s]:
                st = r.get("storm", {})
                total = st.get("total")
                nc = r.get("node_counters", {})
                served = "%s / %s / %s" % tuple(
                    _fmt(nc.get('hsc_redis_subscribes_total{from="%s"}' % k))
                    for k in ("node", "redis", "shared")) if nc else "–"
                top = ", ".join("%s %s" % (k.upper(), _fmt(v)) for k, v in
                                list(st.get("calls", {}).items())[:5]) or "–"
                w("| %s | %s | %s | %d / %d / %d of %s | %s | %s | %s | %s | %s | %s |" % (
                    s, _fmt(r["subscribers"]), _fmt(r.get("resumed")), r["lost"],
                    r["duplicated"], r["out_of_order"], _fmt(r["deliveries_expected"]),
                    _fmt(_calls(st, RANGE_READS)) if st else "–", _fmt(total),
                    _fmt(total / r["resumed"], 2) if total is not None and r.get("resumed")
                    else "–", _fmt(_calls(st, SCRIPT_CALLS)) if st else "–", top, served))
        w("")
        w("Every channel has subscribers on every node here, so the surviving nodes already "
          "serve the resumed subscribers' channels and answer them from their rings. A node "
          "that had no subscriber of a channel reads it once and answers every resume waiting "
          "for that read from its reply: tests/integration/test_cluster.py "
          "(`test_resume_storm_costs_one_range_read_per_channel`) holds Redis still while 30 "
          "subscribers per channel resume on such a node and counts one XRANGE per channel.")
        w("")
        w("hscd's counters are the surviving nodes' `hsc_redis_subscribes_total` over the whole "
          "run, first subscriptions included: `node` from the node's rings, `redis` its own "
          "read, `shared` answered by another subscription's read of the same channel and "
          "range. nchan reads a resumed subscriber's messages with its own scripts (EVALSHA), "
          "not with stream range commands, so its range reads are 0 by construction: its cost "
          "shows in the commands and script calls in the window.")
        w("")
    hs, hst = runs["hscd"], storms["hscd"]
    if hs or hst:
        w("### Targets of the cluster scenario (hscd)")
        w("")
        w("| target | measured | met |")
        w("| --- | --- | --- |")

        def target(text, value, ok):
            w("| %s | %s | %s |" % (text, value, "–" if ok is None else ("yes" if ok else "**no**")))
        if hs:
            r = hs[-1]
            target("every subscriber connected (%s on %d nodes)" % (_fmt(r["subscribers"]), nodes),
                   _fmt(r["connected"]), r["connected"] == r["subscribers"])
            bad = sum(x["lost"] + x["duplicated"] + x["out_of_order"] for x in hs + hst)
            target("0 lost, duplicated or out of order (both runs)", _fmt(bad), bad == 0)
            sent = (r.get("census") or {}).get("sent_per_publish")
            target("one round trip (the script call) per publish", _fmt(sent, 2),
                   None if sent is None else sent <= 1.1)
            ps = r.get("pubsub") or {}
            per_ch = ps["subscriptions"] / ps["channels"] if ps.get("channels") else None
            target("one pub/sub message per node with subscribers (node subscriptions per "
                   "channel ≤ %d)" % nodes, _fmt(per_ch, 2),
                   None if per_ch is None else per_ch <= nodes)
        if hst:
            r = hst[-1]
            reads = _calls(r.get("storm", {}), RANGE_READS)
            bound = chans * (nodes - 1)
            target("range reads in the resume storm ≤ one per channel per node (%s), not one "
                   "per resumed subscriber (%s)" % (_fmt(bound), _fmt(r.get("resumed"))),
                   _fmt(reads), "storm" in r and reads <= bound)
        w("")
    return out


def replace(text, lines):
    """`text` (a PERFORMANCE.md) with its cluster section replaced by `lines`, or the section
    inserted where a whole report puts it: before "## Targets" (or at the end)."""
    return replace_section(text, HEADING, lines)
