/*
 * pubsub: channels of Server-Sent Events with ids, history and exact resume
 * (docs/internals/engine.md). An engine (engine.h; memory.c) assigns ids, keeps history and
 * answers resumes; a hub per loop (hub.c) holds that loop's subscribers; events.c is the HTTP
 * side, /v1/events. It knows nothing of the server: each piece is given its loop, its index, the
 * configuration and the engine.
 */
#ifndef HSC_PUBSUB_H
#define HSC_PUBSUB_H

#include "http/http.h"
#include "policy/policy.h"
#include "pubsub/engine.h"

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

/* ---- hubs (hub.c) ---------------------------------------------------------------------------- */

typedef struct hsc_sub_s hsc_sub_t;

/** An event in a hub's inbox: references to its channel (the engine's) and to its frame. */
typedef struct hsc_delivery_s {
    hsc_chan_t *chan;
    hsc_frame_t *frame;
    uint64_t seq;
    bool hit; /* on_inbox(): written to (or queued for) one of the hub's subscribers at least */
} hsc_delivery_t;

/**
 * One loop's share of the channels: its subscribers, the inbox the engine fills and the wake-up,
 * per-subscriber batching and backlogs, keep-alive comments, the shutdown drain. Touched by its
 * loop's thread only, except the inbox (under `mu`) and the counters (read by /metrics).
 */
typedef struct hsc_hub_s {
    uv_loop_t *loop;
    unsigned index;                 /* among the engine's hubs */
    const hsc_server_config_t *cfg; /* borrowed for the hub's life */
    hsc_engine_t *engine;
    hsc_ratelimit_t *create_limit; /* channels created per client (the server's), or NULL */
    uv_async_t wake;               /* the engine signals new deliveries and calls */
    uv_timer_t keepalive;
    uv_mutex_t mu; /* guards inbox and calls */
    hsc_delivery_t *inbox, *spare;
    size_t inbox_n, inbox_cap, spare_cap;
    hsc_engine_call_t *calls, **calls_tail; /* in order; each runs before inbox[call->at] */
    void *scratch;                          /* on_inbox(): deliveries regrouped per subscriber */
    size_t npairs, scratch_cap;
    hsc_sub_t *subs; /* this loop's subscribers */
    size_t nsubs;
    bool ready;
    bool draining; /* shutting down: no new subscriptions */
    uint64_t rng;  /* xorshift state for retry jitter, per loop: no shared rand() */
    /* Shutdown: subscribers are ended a few at a time over drain_window ms (hsc_hub_drain). */
    uint64_t drain_start, drain_window;
    size_t drain_total, drain_closed;
    /* Counters: written by this loop's thread only, read by /metrics on any thread. */
    atomic_uint_fast64_t st_delivered, st_slow_dropped, st_resumes, st_missed;
    atomic_uint_fast64_t st_create_limited; /* requests refused with 429 */
    atomic_uint st_subscribers;
    /* From the engine taking a publish to this loop writing the event to its subscribers: one
     * observation per event this loop had subscribers for, however many. */
    hsc_timing_t st_publish_delivery;
} hsc_hub_t;

/**
 * Prepares a hub on `loop` (its handles: a wake-up and the keep-alive timer) and attaches it to
 * `engine` as hub `index`. Borrows `cfg` and `engine` for the hub's life. Before the loop runs.
 */
void hsc_hub_init(hsc_hub_t *hub, uv_loop_t *loop, unsigned index, const hsc_server_config_t *cfg,
                  hsc_engine_t *engine);
/**
 * Shutdown: no new subscriptions; the hub's subscriptions are ended spread over time (at most
 * about one per millisecond, within 3/4 of the drain timeout), each told by a last retry: line
 * to come back after the window, with jitter, so that a restart does not bring every client back
 * at once.
 */
void hsc_hub_drain(hsc_hub_t *hub);
/** Closes the hub's handles (the loop then ends once its other handles are closed). */
void hsc_hub_close(hsc_hub_t *hub);
/**
 * After the loop has ended: runs the calls still queued (their owners free what they hold) and
 * drops the deliveries left in the inbox. The engine must still exist.
 */
void hsc_hub_dispose(hsc_hub_t *hub);
/** A random number below `n` (n > 0) from the hub's own generator. */
uint64_t hsc_hub_random(hsc_hub_t *hub, uint64_t n);

/**
 * What the HTTP side does once the engine has answered a subscription, on the hub's loop (maybe
 * inside hsc_hub_subscribe()). With r->rc non-zero it answers the error. Otherwise the
 * subscription is registered: it starts the response and writes what precedes the events, and
 * returns 0; or it answers or aborts the response and returns non-zero (the hub unsubscribes).
 * The replay (r->replay) is the hub's: it follows as soon as this returns 0.
 */
typedef int (*hsc_hub_start_fn)(hsc_hub_t *hub, hsc_res_t *res, const hsc_subscribe_t *r);

/** What a subscription asks for (hsc_hub_subscribe()); each field as in hsc_subscribe_t. */
typedef struct hsc_hub_sub_s {
    const char *names; /* n distinct valid channel names, NUL-terminated, `stride` bytes apart */
    size_t stride, n;
    const char *last; /* the client's last event id, or NULL: no resume */
    size_t last_len;
    size_t recent;   /* without `last`: the newest `recent` events first (HSC_REPLAY_ALL: all) */
    bool tag;        /* say each event's channel: its tag before an event of another channel */
    uint64_t client; /* hsc_ratelimit_key() of the client, for hub->create_limit */
    const char *subject; /* who subscribes: the `sub` claim of a verified JWT (NUL-terminated,
                            copied, at most HSC_SUBJECT_MAX bytes), or NULL: anonymous */
} hsc_hub_sub_t;

/**
 * Subscribes the response `res` as `o` asks (borrowed during the call), then calls `start`. The
 * hub owns res->user, on_close and on_drain from now on. Returns 0, or HSC_ENOMEM with nothing
 * done (the caller answers).
 */
int hsc_hub_subscribe(hsc_hub_t *hub, hsc_res_t *res, const hsc_hub_sub_t *o,
                      hsc_hub_start_fn start);

/*
 * Calls fn(user, subject) for each of this hub's live subscriptions on `chan` (subject NULL for
 * an anonymous one). On the hub's loop thread; `chan` is a handle the caller holds a reference
 * to (hsc_chan_info_t.chan).
 */
void hsc_hub_each_subscriber(hsc_hub_t *hub, hsc_chan_t *chan,
                             void (*fn)(void *user, const char *subject), void *user);
/**
 * Ends this hub's subscriptions on `chan` as the drain does: each gets a last retry: line (the
 * --retry delay plus jitter) and a clean end, and comes back to resume exactly. A subscription
 * to several channels ends whole. On the hub's loop thread. Returns how many ended.
 */
size_t hsc_hub_disconnect(hsc_hub_t *hub, hsc_chan_t *chan);

/* ---- the admin API (admin.c) ----------------------------------------------------------------- */

/* GET /v1/admin/channels: a page of channels. `ctx` is the loop's hub. */
void hsc_admin_channels_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);
/* GET /v1/admin/channel?channel=NAME: one channel, with presence (every hub asked). */
void hsc_admin_channel_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);
/* POST /v1/admin/disconnect?channel=NAME: ends its subscriptions on every hub. */
void hsc_admin_disconnect_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);

/* ---- the HTTP side (events.c) ---------------------------------------------------------------- */

/** /v1/events: GET subscribes, POST publishes. `ctx` is the loop's hub (hsc_hub_t). */
void hsc_events_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);

#endif
