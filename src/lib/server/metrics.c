/*
 * GET /metrics: the Prometheus text format, gathered from every layer's counters (the
 * transports', the hubs', the channel engine's). Counters are read with relaxed atomic loads:
 * each is exact, a scrape is not a snapshot across them.
 */
#include "server/server.h"

#include <stdio.h>

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
    char body[4096];
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
    hsc_res_send(res, 200, "text/plain; version=0.0.4; charset=utf-8",
                 "Cache-Control: no-store\r\n", body, (size_t)n);
}
