/*
 * pubsub: channels of Server-Sent Events with ids, history and exact resume.
 */
#ifndef HSC_PUBSUB_H
#define HSC_PUBSUB_H

#include "http/http.h"
#include "policy/policy.h"

typedef struct hsc_worker_s hsc_worker_t;

/* ---- history rings (history.c) --------------------------------------------------------------- */

typedef struct hsc_hist_entry_s {
    uint64_t seq;
    uint64_t time_ms;
    hsc_frame_t *frame; /* one reference */
} hsc_hist_entry_t;

typedef struct hsc_history_s {
    hsc_hist_entry_t *ring;
    size_t head, count, cap;
    size_t bytes; /* sum of the frames' lengths */
    size_t max_count, max_bytes;
    uint64_t max_age_ms;
    uint64_t evicted_seq; /* newest sequence number evicted (or never kept); 0 when none */
} hsc_history_t;

void hsc_history_init(hsc_history_t *h, size_t max_count, size_t max_bytes, uint64_t max_age_ms);
void hsc_history_dispose(hsc_history_t *h);
/**
 * Appends an event (takes a new reference to `frame`), first evicting the oldest entries that the
 * count and byte bounds require. An event that can never fit (bounds of 0, or a frame larger than
 * max_bytes) empties the history and is recorded as evicted. Returns 0 or HSC_ENOMEM.
 */
int hsc_history_push(hsc_history_t *h, uint64_t seq, uint64_t now_ms, hsc_frame_t *frame);
/** Evicts entries at least max_age_ms old; frees the ring when it empties. Returns how many. */
size_t hsc_history_expire(hsc_history_t *h, uint64_t now_ms);
void hsc_history_evict_oldest(hsc_history_t *h);
/** The i-th entry, 0 the oldest. */
const hsc_hist_entry_t *hsc_history_at(const hsc_history_t *h, size_t i);
/** The index of the first entry with a sequence number above `seq` (count when none). */
size_t hsc_history_first_after(const hsc_history_t *h, uint64_t seq);

/* ---- channels (channels.c) ------------------------------------------------------------------- */

typedef struct hsc_registry_s hsc_registry_t;
typedef struct hsc_sub_s hsc_sub_t;
typedef struct hsc_chan_s hsc_chan_t;

/** An event on its way to a worker's subscribers. */
typedef struct hsc_delivery_s {
    hsc_chan_t *chan; /* one reference */
    hsc_frame_t *frame;
    uint64_t seq;
} hsc_delivery_t;

/** A worker's share of the channels machinery. */
typedef struct hsc_chw_s {
    uv_async_t wake; /* publishers signal new deliveries */
    uv_timer_t keepalive;
    uv_mutex_t mu; /* guards inbox */
    hsc_delivery_t *inbox, *spare;
    size_t inbox_n, inbox_cap, spare_cap;
    void *scratch; /* on_inbox(): deliveries regrouped per subscriber */
    size_t npairs, scratch_cap;
    hsc_sub_t *subs; /* this loop's subscribers */
    size_t nsubs;
    bool ready;
    uint64_t rng; /* xorshift state for retry jitter, per loop: no shared rand() */
    /* Shutdown: subscribers are ended a few at a time over drain_window ms (hsc_chw_drain). */
    uint64_t drain_start, drain_window;
    size_t drain_total, drain_closed;
} hsc_chw_t;

int hsc_registry_new(hsc_server_t *srv);
void hsc_registry_free(hsc_server_t *srv);
/** Evicts aged history and frees empty channels (the server calls it every second). */
void hsc_registry_sweep(hsc_server_t *srv);
void hsc_chw_init(hsc_worker_t *w);
/**
 * Shutdown: ends the worker's subscriptions spread over time (at most about one per millisecond,
 * within 3/4 of the drain timeout), each told by a last retry: line to come back after the
 * window, with jitter, so that a restart does not bring every client back at once.
 */
void hsc_chw_drain(hsc_worker_t *w);
void hsc_chw_close(hsc_worker_t *w);
/** After the worker's loop has ended: frees what is left in its inbox. */
void hsc_chw_free(hsc_worker_t *w);
typedef struct hsc_pubsub_stats_s {
    size_t channels, history_events, history_bytes;
    uint64_t published;
    unsigned subscribers;
    uint64_t resumes, missed;
} hsc_pubsub_stats_t;
void hsc_registry_stats(hsc_registry_t *reg, hsc_pubsub_stats_t *out);

void hsc_events_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);

#endif
