"""What the report's section modules (report_cluster.py, report_tls.py, report_h2.py) share:
number formatting, medians with their spread, the records of one case and server, and putting a
section in its place in docs/PERFORMANCE.md."""

import statistics


def fmt(v, digits=0):
    if v is None:
        return "–"
    return "{:,.{d}f}".format(v, d=digits)


def get(r, path):
    """The value at a dotted path of a record ("server.cpu_us"), or None."""
    for k in path.split("."):
        if not isinstance(r, dict) or k not in r:
            return None
        r = r[k]
    return r


def runs(rows, case, srv):
    """The records of one case and server that did not fail."""
    return [r for r in rows if r.get("case") == case and r.get("server") == srv
            and "error" not in r]


def span_of(v, digits=0):
    """"median (min–max)" of the values, the median alone for one, "–" for none."""
    if not v:
        return "–"
    m = statistics.median(v)
    if len(v) == 1:
        return fmt(m, digits)
    return "%s (%s–%s)" % (fmt(m, digits), fmt(min(v), digits), fmt(max(v), digits))


def replace_section(text, heading, lines):
    """`text` (a PERFORMANCE.md) with the section that starts with `heading` replaced by `lines`,
    or the section inserted where a whole report puts it: before "## Targets" (or at the end)."""
    body = text.split("\n")
    start = next((i for i, l in enumerate(body) if l.startswith(heading)), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(body)) if body[i].startswith("## ")),
                   len(body))
    else:
        start = next((i for i, l in enumerate(body) if l.startswith("## Targets")), len(body))
        end = start
    return "\n".join(body[:start] + lines + body[end:])
