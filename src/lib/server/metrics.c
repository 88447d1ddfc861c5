/*
 * GET /metrics: the Prometheus text format, gathered from every layer's counters (the
 * transports', the hubs', the channel engine's, the answers' of each loop's stream context).
 * Each loop writes its own counters (no shared cache line, no lock on the request path); a scrape
 * sums them with relaxed atomic loads: each is exact, a scrape is not a snapshot across them.
 * Histograms are per-loop bucket counts made cumulative here, so _count is always the +Inf
 * bucket.
 */
#include "server/server.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

/* A bounded text buffer: what does not fit is cut (the body is sized for every metric). */
typedef struct out_s {
    char *p;
    size_t len, cap;
} out_t;

static void put(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len = o->len + (size_t)n < o->cap ? o->len + (size_t)n : o->cap - 1;
}

/* One histogram, summed over the loops: cumulative buckets, _sum (seconds), _count. `offset`:
 * the hsc_timing_t's place in a worker; `labels`: "" or `name="value"`, before le. */
static void put_timing(out_t *o, hsc_server_t *srv, size_t offset, const char *name,
                       const char *help, const char *labels)
{
    uint64_t b[HSC_TIMING_BUCKETS + 1] = {0}, sum_us = 0;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        hsc_timing_t *t = (hsc_timing_t *)((char *)&srv->workers[i] + offset);
        for (size_t k = 0; k <= HSC_TIMING_BUCKETS; k++)
            b[k] += atomic_load_explicit(&t->bucket[k], memory_order_relaxed);
        sum_us += atomic_load_explicit(&t->sum_us, memory_order_relaxed);
    }
    const char *comma = labels[0] != '\0' ? "," : "";
    const char *open = labels[0] != '\0' ? "{" : "", *close = labels[0] != '\0' ? "}" : "";
    put(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t k = 0; k <= HSC_TIMING_BUCKETS; k++) {
        cum += b[k];
        if (k < HSC_TIMING_BUCKETS)
            put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, comma, hsc_timing_bounds[k],
                (unsigned long long)cum);
        else
            put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, comma,
                (unsigned long long)cum);
    }
    put(o, "%s_sum%s%s%s %llu.%06llu\n", name, open, labels, close,
        (unsigned long long)(sum_us / 1000000), (unsigned long long)(sum_us % 1000000));
    put(o, "%s_count%s%s%s %llu\n", name, open, labels, close, (unsigned long long)cum);
}

/* The answers' counters (/v1/stream), labelled with the kind of responder the server runs. */
static void put_answers(out_t *o, hsc_server_t *srv)
{
    static const struct {
        size_t offset;
        const char *name, *help;
    } counters[] = {
        {offsetof(hsc_stream_stats_t, started), "hsc_answers_started_total",
         "Answers handed to the responder."},
        {offsetof(hsc_stream_stats_t, completed), "hsc_answers_completed_total",
         "Answers that completed."},
        {offsetof(hsc_stream_stats_t, failed), "hsc_answers_failed_total",
         "Answers that failed (the client was told)."},
        {offsetof(hsc_stream_stats_t, cancelled), "hsc_answers_cancelled_total",
         "Answers whose client went away first."},
    };
    const char *kind = hsc_stream_kind(srv->responder);
    for (size_t c = 0; c < sizeof counters / sizeof counters[0]; c++) {
        uint64_t v = 0;
        for (unsigned i = 0; i < srv->nworkers; i++)
            v += atomic_load_explicit(
                (atomic_uint_fast64_t *)((char *)&srv->workers[i].stream.st + counters[c].offset),
                memory_order_relaxed);
        put(o, "# HELP %s %s\n# TYPE %s counter\n%s{responder=\"%s\"} %llu\n", counters[c].name,
            counters[c].help, counters[c].name, counters[c].name, kind, (unsigned long long)v);
    }
    char labels[64];
    snprintf(labels, sizeof labels, "responder=\"%s\"", kind);
    put_timing(o, srv, offsetof(hsc_worker_t, stream.st.first_piece),
               "hsc_answer_first_piece_seconds",
               "Time from an answer's start to its first piece (queue wait included).", labels);
    put_timing(o, srv, offsetof(hsc_worker_t, stream.st.duration), "hsc_answer_duration_seconds",
               "Time from an answer's start to its end, completed or failed.", labels);
    uint64_t queued = 0, restarts = 0;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        queued += atomic_load_explicit(&srv->workers[i].stream.st.queued, memory_order_relaxed);
        restarts += atomic_load_explicit(&srv->workers[i].stream.st.restarts, memory_order_relaxed);
    }
    put(o,
        "# HELP hsc_responder_queue_depth Answers waiting for a responder process.\n"
        "# TYPE hsc_responder_queue_depth gauge\n"
        "hsc_responder_queue_depth{responder=\"%s\"} %llu\n"
        "# HELP hsc_pool_worker_restarts_total Pool workers started again after they exited.\n"
        "# TYPE hsc_pool_worker_restarts_total counter\n"
        "hsc_pool_worker_restarts_total %llu\n",
        kind, (unsigned long long)queued, (unsigned long long)restarts);
}

/* The journal's counters (--data-dir). */
static void put_journal(out_t *o, hsc_journal_t *j)
{
    hsc_journal_stats_t s;
    hsc_journal_stats(j, &s);
    put(o,
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
        "# HELP hsc_journal_write_errors_total Writes that failed (their publishes got 503).\n"
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
}

/* Open descriptors: the entries of /proc/self/fd, less the one reading it. -1 if unreadable. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* Build information and the process metrics every Prometheus client library exports, under their
 * conventional names, so existing dashboards and alerts work unchanged. */
static void put_process(out_t *o, hsc_server_t *srv)
{
    put(o,
        "# HELP hsc_build_info The running hscd's version (the value is always 1).\n"
        "# TYPE hsc_build_info gauge\n"
        "hsc_build_info{version=\"%s\"} 1\n"
        "# HELP hsc_config_reloads_total Configurations applied while running (SIGHUP).\n"
        "# TYPE hsc_config_reloads_total counter\n"
        "hsc_config_reloads_total %u\n"
        "# HELP process_start_time_seconds Start time of the process since the Unix epoch.\n"
        "# TYPE process_start_time_seconds gauge\n"
        "process_start_time_seconds %.3f\n",
        HSC_VERSION_STRING, atomic_load(&srv->reloads), srv->start_time);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        put(o,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
            "# TYPE process_cpu_seconds_total counter\n"
            "process_cpu_seconds_total %.6f\n",
            (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages_vm = 0, pages_rss = 0;
    if (f != NULL) {
        if (fscanf(f, "%llu %llu", &pages_vm, &pages_rss) == 2) {
            unsigned long long page = (unsigned long long)sysconf(_SC_PAGESIZE);
            put(o,
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                "# TYPE process_resident_memory_bytes gauge\n"
                "process_resident_memory_bytes %llu\n"
                "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                "# TYPE process_virtual_memory_bytes gauge\n"
                "process_virtual_memory_bytes %llu\n",
                pages_rss * page, pages_vm * page);
        }
        fclose(f);
    }
    long fds = open_fds();
    if (fds >= 0)
        put(o,
            "# HELP process_open_fds Number of open file descriptors.\n"
            "# TYPE process_open_fds gauge\n"
            "process_open_fds %ld\n",
            fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        put(o,
            "# HELP process_max_fds Maximum number of open file descriptors.\n"
            "# TYPE process_max_fds gauge\n"
            "process_max_fds %llu\n",
            (unsigned long long)rl.rlim_cur);
}

/* TLS (when a certificate is set): handshakes, their failures by reason, the certificate's
 * expiry (the current snapshot's: what new connections get). */
static void put_tls(out_t *o, hsc_server_t *srv)
{
    uint64_t st[HSC_TLS_ST_COUNT] = {0};
    for (unsigned i = 0; i < srv->nworkers; i++)
        for (int k = 0; k < HSC_TLS_ST_COUNT; k++)
            st[k] += atomic_load_explicit(&srv->workers[i].http.st_tls[k], memory_order_relaxed);
    uv_mutex_lock(&srv->snap_lock);
    int64_t not_after = srv->snap->tls_not_after;
    uv_mutex_unlock(&srv->snap_lock);
    put(o,
        "# HELP hsc_tls_handshakes_total TLS handshakes completed.\n"
        "# TYPE hsc_tls_handshakes_total counter\n"
        "hsc_tls_handshakes_total %llu\n"
        "# HELP hsc_tls_resumed_total TLS handshakes that resumed a session (ticket or cache).\n"
        "# TYPE hsc_tls_resumed_total counter\n"
        "hsc_tls_resumed_total %llu\n"
        "# HELP hsc_tls_handshake_timeouts_total TLS handshakes not completed within "
        "--header-timeout.\n"
        "# TYPE hsc_tls_handshake_timeouts_total counter\n"
        "hsc_tls_handshake_timeouts_total %llu\n"
        "# HELP hsc_tls_handshake_failures_total TLS handshakes that failed, by reason.\n"
        "# TYPE hsc_tls_handshake_failures_total counter\n",
        (unsigned long long)st[HSC_TLS_ST_HANDSHAKES], (unsigned long long)st[HSC_TLS_ST_RESUMED],
        (unsigned long long)st[HSC_TLS_ST_TIMEOUTS]);
    for (int k = HSC_TLS_ST_FAIL_VERSION; k <= HSC_TLS_ST_FAIL_OTHER; k++)
        put(o, "hsc_tls_handshake_failures_total{reason=\"%s\"} %llu\n", hsc_tls_fail_reason(k),
            (unsigned long long)st[k]);
    put(o,
        "# HELP hsc_tls_cert_expiry_seconds The certificate's notAfter, in seconds since the "
        "epoch.\n"
        "# TYPE hsc_tls_cert_expiry_seconds gauge\n"
        "hsc_tls_cert_expiry_seconds %lld\n",
        (long long)not_after);
}

/* HTTP/2: connections, streams, resets and GOAWAYs, closings for abuse by reason (docs/http2.md).
 */
static void put_h2(out_t *o, hsc_server_t *srv)
{
    uint64_t conns = 0, streams = 0, resets = 0, goaway = 0, abuse[HSC_H2_ABUSE_N] = {0};
    for (unsigned i = 0; i < srv->nworkers; i++) {
        hsc_http_t *h = &srv->workers[i].http;
        conns += atomic_load_explicit(&h->st_h2_conns, memory_order_relaxed);
        streams += atomic_load_explicit(&h->st_h2_streams, memory_order_relaxed);
        resets += atomic_load_explicit(&h->st_h2_resets, memory_order_relaxed);
        goaway += atomic_load_explicit(&h->st_h2_goaway, memory_order_relaxed);
        for (int r = 0; r < HSC_H2_ABUSE_N; r++)
            abuse[r] += atomic_load_explicit(&h->st_h2_abuse[r], memory_order_relaxed);
    }
    put(o,
        "# HELP hsc_h2_connections_total Connections that spoke HTTP/2.\n"
        "# TYPE hsc_h2_connections_total counter\n"
        "hsc_h2_connections_total %llu\n"
        "# HELP hsc_h2_streams_total HTTP/2 streams accepted (refused ones not counted).\n"
        "# TYPE hsc_h2_streams_total counter\n"
        "hsc_h2_streams_total %llu\n"
        "# HELP hsc_h2_resets_received_total RST_STREAM frames received from clients.\n"
        "# TYPE hsc_h2_resets_received_total counter\n"
        "hsc_h2_resets_received_total %llu\n"
        "# HELP hsc_h2_goaway_sent_total GOAWAY frames sent (shutdown notices included).\n"
        "# TYPE hsc_h2_goaway_sent_total counter\n"
        "hsc_h2_goaway_sent_total %llu\n"
        "# HELP hsc_h2_abuse_closed_total HTTP/2 connections closed for abuse, by reason.\n"
        "# TYPE hsc_h2_abuse_closed_total counter\n",
        (unsigned long long)conns, (unsigned long long)streams, (unsigned long long)resets,
        (unsigned long long)goaway);
    for (int r = 0; r < HSC_H2_ABUSE_N; r++)
        put(o, "hsc_h2_abuse_closed_total{reason=\"%s\"} %llu\n", hsc_h2_abuse_name(r),
            (unsigned long long)abuse[r]);
}

void hsc_metrics_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)req;
    hsc_server_t *srv = ctx;
    uint64_t requests = 0, bytes = 0, delivered = 0, dropped = 0, resumes = 0, missed = 0;
    uint64_t limited = 0;
    unsigned subscribers = 0;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        hsc_worker_t *w = &srv->workers[i];
        requests += atomic_load_explicit(&w->http.st_requests, memory_order_relaxed);
        bytes += atomic_load_explicit(&w->http.st_bytes_out, memory_order_relaxed);
        delivered += atomic_load_explicit(&w->hub.st_delivered, memory_order_relaxed);
        dropped += atomic_load_explicit(&w->hub.st_slow_dropped, memory_order_relaxed);
        resumes += atomic_load_explicit(&w->hub.st_resumes, memory_order_relaxed);
        missed += atomic_load_explicit(&w->hub.st_missed, memory_order_relaxed);
        limited += atomic_load_explicit(&w->hub.st_create_limited, memory_order_relaxed);
        subscribers += atomic_load_explicit(&w->hub.st_subscribers, memory_order_relaxed);
    }
    hsc_engine_stats_t ps;
    hsc_engine_stats(srv->engine, &ps);
    char body[32768];
    out_t o = {body, 0, sizeof body};
    put(&o,
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
        "# HELP hsc_channels_evicted_total Idle channels dropped with their history to make room "
        "(--max-channels, --history-total-bytes).\n"
        "# TYPE hsc_channels_evicted_total counter\n"
        "hsc_channels_evicted_total %llu\n"
        "# HELP hsc_history_evicted_total Events dropped from history to make room "
        "(--max-channels, --history-total-bytes).\n"
        "# TYPE hsc_history_evicted_total counter\n"
        "hsc_history_evicted_total %llu\n"
        "# HELP hsc_channel_creates_limited_total Requests refused with 429 for creating channels "
        "too fast (--channel-create-rate).\n"
        "# TYPE hsc_channel_creates_limited_total counter\n"
        "hsc_channel_creates_limited_total %llu\n"
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
        (unsigned long long)ps.evicted_channels, (unsigned long long)ps.evicted_events,
        (unsigned long long)limited, (unsigned long long)ps.published,
        (unsigned long long)delivered, (unsigned long long)bytes, (unsigned long long)resumes,
        (unsigned long long)missed, (unsigned long long)dropped, (unsigned long long)requests);
    put_timing(&o, srv, offsetof(hsc_worker_t, hub.st_publish_delivery),
               "hsc_publish_delivery_seconds",
               "Time from the engine taking a publish to a loop writing the event to its "
               "subscribers (one observation per event and loop with subscribers for it).",
               "");
    put_answers(&o, srv);
    if (srv->cfg.tls_cert != NULL)
        put_tls(&o, srv);
    put_h2(&o, srv);
    if (srv->journal != NULL)
        put_journal(&o, srv->journal);
    put_process(&o, srv);
    hsc_redis_status_t rs;
    if (hsc_redis_status(srv->engine, &rs))
        put(&o,
            "# HELP hsc_redis_up Whether both Redis connections (commands, pub/sub) are up.\n"
            "# TYPE hsc_redis_up gauge\n"
            "hsc_redis_up %d\n"
            "# HELP hsc_redis_connection_up Each Redis connection's state.\n"
            "# TYPE hsc_redis_connection_up gauge\n"
            "hsc_redis_connection_up{connection=\"command\"} %d\n"
            "hsc_redis_connection_up{connection=\"pubsub\"} %d\n"
            "# HELP hsc_redis_reconnects_total Connections to Redis attempted after a failure.\n"
            "# TYPE hsc_redis_reconnects_total counter\n"
            "hsc_redis_reconnects_total %llu\n"
            "# HELP hsc_redis_timeouts_total Redis commands or connects that missed their "
            "deadline.\n"
            "# TYPE hsc_redis_timeouts_total counter\n"
            "hsc_redis_timeouts_total %llu\n"
            "# HELP hsc_redis_catchups_total Stream range reads after a hole or a reconnect.\n"
            "# TYPE hsc_redis_catchups_total counter\n"
            "hsc_redis_catchups_total %llu\n"
            "# HELP hsc_redis_subscribes_total Subscriptions, by where their replay came from.\n"
            "# TYPE hsc_redis_subscribes_total counter\n"
            "hsc_redis_subscribes_total{from=\"node\"} %llu\n"
            "hsc_redis_subscribes_total{from=\"redis\"} %llu\n"
            "hsc_redis_subscribes_total{from=\"shared\"} %llu\n"
            "# HELP hsc_redis_commands_in_flight Commands sent to Redis and not answered yet.\n"
            "# TYPE hsc_redis_commands_in_flight gauge\n"
            "hsc_redis_commands_in_flight %llu\n",
            rs.cmd_up && rs.pubsub_up, rs.cmd_up, rs.pubsub_up, (unsigned long long)rs.reconnects,
            (unsigned long long)rs.timeouts, (unsigned long long)rs.catchups,
            (unsigned long long)rs.local_subs, (unsigned long long)rs.read_subs,
            (unsigned long long)rs.shared_subs, (unsigned long long)rs.in_flight);
    hsc_res_send(res, 200, "text/plain; version=0.0.4; charset=utf-8",
                 "Cache-Control: no-store\r\n", body, o.len);
}

/* /healthz: 503 with the reason while the engine's store (Redis) is unreachable, else site/'s. */
void hsc_server_healthz_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    hsc_server_t *srv = ctx;
    hsc_redis_status_t rs;
    if (hsc_redis_status(srv->engine, &rs) && rs.why != NULL) {
        hsc_res_error(res, 503, "Retry-After: 1\r\n", rs.why, false);
        return;
    }
    hsc_healthz_handle(NULL, req, res);
}
