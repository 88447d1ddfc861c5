/*
 * GET /metrics: the Prometheus text format, gathered from every layer's counters (the
 * transports', the hubs', the channel engine's). Counters are read with relaxed atomic loads:
 * each is exact, a scrape is not a snapshot across them.
 */
#include "server/server.h"

#include <stdio.h>

/* The journal's counters (--data-dir), appended to the body; returns the bytes written. */
static int journal_metrics(hsc_journal_t *j, char *out, size_t room)
{
    hsc_journal_stats_t s;
    hsc_journal_stats(j, &s);
    int n = snprintf(
        out, room,
        "# HELP hsc_journal_bytes Bytes in the journal's segment files.\n"
        "# TYPE hsc_journal_bytes gauge\n"
        "hsc_journal_bytes %llu\n"
        "# HELP hsc_journal_segments Journal segment files.\n"
        "# TYPE hsc_journal_segments gauge\n"
        "hsc_journal_segments %llu\n"
        "# HELP hsc_journal_fsyncs_total fsync calls on the journal.\n"
        "# TYPE hsc_journal_fsyncs_total counter\n"
        "hsc_journal_fsyncs_total %llu\n"
        "# HELP hsc_journal_writes_total Journal writes (with --fsync always, one per group).\n"
        "# TYPE hsc_journal_writes_total counter\n"
        "hsc_journal_writes_total %llu\n"
        "# HELP hsc_journal_records_total Records written to the journal.\n"
        "# TYPE hsc_journal_records_total counter\n"
        "hsc_journal_records_total %llu\n"
        "# HELP hsc_journal_write_seconds Time of each journal write (always: write + fsync).\n"
        "# TYPE hsc_journal_write_seconds summary\n"
        "hsc_journal_write_seconds_sum %.6f\n"
        "hsc_journal_write_seconds_count %llu\n"
        "# HELP hsc_journal_write_seconds_max The slowest journal write.\n"
        "# TYPE hsc_journal_write_seconds_max gauge\n"
        "hsc_journal_write_seconds_max %.6f\n"
        "# HELP hsc_journal_records_skipped_total Damaged records skipped when replaying.\n"
        "# TYPE hsc_journal_records_skipped_total counter\n"
        "hsc_journal_records_skipped_total %llu\n"
        "# HELP hsc_journal_write_errors_total Group writes that failed (their publishes got "
        "503).\n"
        "# TYPE hsc_journal_write_errors_total counter\n"
        "hsc_journal_write_errors_total %llu\n"
        "# HELP hsc_journal_compactions_total Compactions of the journal.\n"
        "# TYPE hsc_journal_compactions_total counter\n"
        "hsc_journal_compactions_total %llu\n"
        "# HELP hsc_journal_failing 1 while the journal cannot write (publishes get 503).\n"
        "# TYPE hsc_journal_failing gauge\n"
        "hsc_journal_failing %d\n",
        (unsigned long long)s.bytes, (unsigned long long)s.segments, (unsigned long long)s.fsyncs,
        (unsigned long long)s.writes, (unsigned long long)s.records, s.write_ns_sum / 1e9,
        (unsigned long long)s.writes, s.write_ns_max / 1e9, (unsigned long long)s.skipped,
        (unsigned long long)s.write_errors, (unsigned long long)s.compactions, s.failing);
    return n < 0 ? 0 : (size_t)n < room ? n : (int)room - 1;
}

void hsc_metrics_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)req;
    hsc_server_t *srv = ctx;
    uint64_t requests = 0, bytes = 0, delivered = 0, dropped = 0, resumes = 0, missed = 0;
    unsigned subscribers = 0;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        hsc_worker_t *w = &srv->workers[i];
        requests += atomic_load_explicit(&w->http.st_requests, memory_order_relaxed);
        bytes += atomic_load_explicit(&w->http.st_bytes_out, memory_order_relaxed);
        delivered += atomic_load_explicit(&w->hub.st_delivered, memory_order_relaxed);
        dropped += atomic_load_explicit(&w->hub.st_slow_dropped, memory_order_relaxed);
        resumes += atomic_load_explicit(&w->hub.st_resumes, memory_order_relaxed);
        missed += atomic_load_explicit(&w->hub.st_missed, memory_order_relaxed);
        subscribers += atomic_load_explicit(&w->hub.st_subscribers, memory_order_relaxed);
    }
    hsc_engine_stats_t ps;
    hsc_engine_stats(srv->engine, &ps);
    char body[8192];
    int n = snprintf(
        body, sizeof body,
        "# HELP hsc_connections Open client connections.\n"
        "# TYPE hsc_connections gauge\n"
        "hsc_connections %u\n"
        "# HELP hsc_subscribers Open /v1/events subscriptions.\n"
        "# TYPE hsc_subscribers gauge\n"
        "hsc_subscribers %u\n"
        "# HELP hsc_channels Channels with subscribers or history.\n"
        "# TYPE hsc_channels gauge\n"
        "hsc_channels %zu\n"
        "# HELP hsc_history_events Events held in history.\n"
        "# TYPE hsc_history_events gauge\n"
        "hsc_history_events %zu\n"
        "# HELP hsc_history_bytes Encoded bytes held in history.\n"
        "# TYPE hsc_history_bytes gauge\n"
        "hsc_history_bytes %zu\n"
        "# HELP hsc_events_published_total Events accepted by POST /v1/events.\n"
        "# TYPE hsc_events_published_total counter\n"
        "hsc_events_published_total %llu\n"
        "# HELP hsc_events_delivered_total Events written to subscribers.\n"
        "# TYPE hsc_events_delivered_total counter\n"
        "hsc_events_delivered_total %llu\n"
        "# HELP hsc_bytes_out_total Bytes written to client sockets.\n"
        "# TYPE hsc_bytes_out_total counter\n"
        "hsc_bytes_out_total %llu\n"
        "# HELP hsc_resumes_total Reconnections served exactly from history.\n"
        "# TYPE hsc_resumes_total counter\n"
        "hsc_resumes_total %llu\n"
        "# HELP hsc_resumes_missed_total Reconnections that got an hsc.gap event.\n"
        "# TYPE hsc_resumes_missed_total counter\n"
        "hsc_resumes_missed_total %llu\n"
        "# HELP hsc_slow_subscribers_dropped_total Subscribers disconnected for falling behind.\n"
        "# TYPE hsc_slow_subscribers_dropped_total counter\n"
        "hsc_slow_subscribers_dropped_total %llu\n"
        "# HELP hsc_requests_total Requests received.\n"
        "# TYPE hsc_requests_total counter\n"
        "hsc_requests_total %llu\n",
        atomic_load(&srv->nconns), subscribers, ps.channels, ps.history_events, ps.history_bytes,
        (unsigned long long)ps.published, (unsigned long long)delivered, (unsigned long long)bytes,
        (unsigned long long)resumes, (unsigned long long)missed, (unsigned long long)dropped,
        (unsigned long long)requests);
    if (srv->journal != NULL && n > 0 && (size_t)n < sizeof body)
        n += journal_metrics(srv->journal, body + n, sizeof body - (size_t)n);
    hsc_res_send(res, 200, "text/plain; version=0.0.4; charset=utf-8",
                 "Cache-Control: no-store\r\n", body, (size_t)n);
}
