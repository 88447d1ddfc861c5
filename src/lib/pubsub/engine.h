/*
 * pubsub/engine.h: the seam between the hubs and an engine (docs/internals/engine.md).
 *
 *   HTTP side (events.c) ──► hub (one per loop: subscribers, inbox, batching, backlog, drain)
 *                             ▲ sink: deliver / flush / call        │ publish, subscribe, ...
 *                             └────────────── engine ◄──────────────┘
 *                                  memory (memory.c); later a journal, Redis
 *
 * An engine assigns ids, keeps history and answers resumes; it hands every event to the hubs
 * that have subscribers on its channel. A hub knows its loop's subscribers and sockets, nothing
 * of how events travel or are stored. The memory engine does everything under one lock and
 * answers before returning; a journal engine (a writer thread appending to disk, acknowledging
 * after write or fsync) or a Redis engine (a Lua script per publish, deliveries arriving on one
 * pub/sub connection's loop) answer later, on the caller's loop, through the hub's call().
 *
 * The contract, which every engine keeps:
 *
 * Ids. An event's id is "EPOCH-SEQ" (hsc_event_id_format()). SEQ increases by one with every
 * event published to any channel of the engine, so every subscription, single- or
 * multi-channel, sees ids increase. EPOCH changes only when history is lost as a whole.
 *
 * Threads. publish(), subscribe(), unsubscribe(), release() and channels() are called on a hub's
 * loop thread, with that hub's index. sweep() and stats() may be called on any thread. free() is
 * called once, after every hub has been disposed, with no other call running. The sink's deliver(),
 * flush() and call() may be called on any thread (the engine's); deliver() and call() may be called
 * with the engine's own lock held: they only queue (under the hub's small inbox mutex), never call
 * back into the engine, never block on I/O.
 *
 * Completions. The callback of a publish or a subscribe runs exactly once, on the loop of the hub
 * named in the request: before publish()/subscribe() returns (the memory engine), or later
 * through that hub's call(). It runs with no engine lock held, so it may call the engine again
 * (publish, subscribe, unsubscribe) and free the request. Requests are the caller's memory and
 * must stay valid until their callback; their inputs are borrowed during the call only (an engine
 * that answers later copies what it keeps).
 *
 * Order. Each hub receives deliveries in increasing SEQ order, across channels, interleaved with
 * calls in the order the engine queued them. A subscribe registers the subscription and takes
 * the cut (the last SEQ it covers) atomically with respect to deliveries: the replay holds
 * exactly the events of the subscription's channels still in history with SEQ in (last id, cut],
 * in SEQ order; every event after the cut on those channels reaches the hub while the
 * subscription is registered. Deliveries numbered at or below the cut may still reach the hub (an
 * event queued just before the subscription): the hub skips them. An engine that answers a
 * subscribe later queues the completion with call() at the moment it registers, so the hub sees
 * it before any delivery after the cut.
 *
 * Recent events. A subscribe without a last id may ask for the `recent` newest events its
 * channels still hold (HSC_REPLAY_ALL: every one, what a client's "earliest" asks): the replay is
 * then the `recent` events with the highest SEQ at or below the cut among those channels'
 * histories, in SEQ order, and the gap is HSC_GAP_NONE (nothing was asked to be resumed). The cut
 * works as for a resume, so live events follow the replay with no gap and no duplicate.
 *
 * Frames. An event is encoded once (hsc_event_frame_new()) into an immutable frame that history,
 * deliveries and replays share by reference: "<size>\r\n" + the SSE bytes + "\r\n", so the same
 * bytes serve every HTTP/1.1 subscriber; hsc_event_frame_body() gives the slice without the
 * chunk framing (HTTP/1.0).
 *
 * Room. An engine bounds its channels and history (--max-channels, --history-total-bytes) by
 * dropping what no subscriber holds, never by refusing everyone: the least recently used
 * channels without subscribers first, then the oldest events of others. Dropped events count as
 * evicted, so a resume across them reports HSC_GAP_EXPIRED. A new channel is refused (HSC_EFULL)
 * only when every channel has subscribers, or (HSC_ELIMIT) when the request's create check
 * refuses it (hsc_create_check_t).
 *
 * Channels. A channel handle (hsc_chan_t) is the engine's; a hub may use it from the completion
 * of a subscribe that returned it until it unsubscribes, and from a delivery that carries it
 * until it releases it. Slot i belongs to hub i's thread: the hub keeps its subscribers of that
 * channel there; the engine never reads it.
 *
 * Listings (the admin API). channels() reports either one channel by name, with a reference to
 * its handle so that the caller can ask every hub about its subscribers there (release() gives it
 * back, from any hub's thread), or a page of at most `limit` channels in name order after a
 * cursor: keyset paging, so a listing costs memory for one page whatever the number of channels,
 * and a channel that exists throughout a listing is reported exactly once. Counts are this
 * node's; each record is consistent in itself, the page is not a snapshot of the whole engine.
 *
 * Tags. A subscriber may ask which channel each event is on (docs/api.md, "Which channel"). The
 * channel is not in the event's frame, which stays one for every subscriber: the hub writes the
 * channel's tag frame (an "hsc.channel" event whose data is the name, hsc_chan_tag_new()) before
 * an event whose channel differs from the previous event's, for that subscriber only. A subscribe
 * with `tag` set gets handles whose `tag` is set, and replay entries name their channel. The
 * engine makes a channel's tag once, before the completion of the first subscribe that asks for
 * it, never changes it afterwards and frees it with the channel.
 */
#ifndef HSC_PUBSUB_ENGINE_H
#define HSC_PUBSUB_ENGINE_H

#include "core/core.h"
#include "hsc/codec.h"

typedef struct hsc_engine_s hsc_engine_t;

/** What hubs see of an engine's channel: every engine's channel holds one. */
typedef struct hsc_chan_s {
    void **slot; /* one per hub, NULL at first: slot[i] is hub i's, touched by its thread only */
    hsc_frame_t *tag; /* the channel's tag (see Tags), or NULL before a subscribe asked for it */
} hsc_chan_t;

/**
 * A function an engine has a hub run on its loop (hsc_engine_sink_t.call), usually a completion.
 * Embedded in the engine's own request state; `next` and `at` are the hub's while it is queued.
 */
typedef struct hsc_engine_call_s hsc_engine_call_t;
struct hsc_engine_call_s {
    void (*fn)(hsc_engine_call_t *call);
    hsc_engine_call_t *next;
    size_t at;
};

/** How an engine reaches one hub. All three may be called on any thread (see the contract). */
typedef struct hsc_engine_sink_s {
    /**
     * Queues one event for the hub's subscribers on `chan`. Borrows `frame` (the hub takes its own
     * reference). The engine took one reference to `chan` for the hub: on true the hub owns it and
     * gives it back with release() once done; on false (out of memory) nothing was queued and the
     * reference is still the engine's.
     */
    bool (*deliver)(void *hub, hsc_chan_t *chan, uint64_t seq, hsc_frame_t *frame);
    /** Wakes the hub for what deliver() queued. Called once after a group, with no lock held. */
    void (*flush)(void *hub);
    /** Has the hub run call->fn(call) on its loop, in order with deliveries; wakes it. */
    void (*call)(void *hub, hsc_engine_call_t *call);
} hsc_engine_sink_t;

/** Why a resume is not exact (docs/api.md, "Resume"). */
typedef enum hsc_gap_e {
    HSC_GAP_NONE,
    HSC_GAP_EPOCH,   /* the id is from an earlier epoch: everything in history follows */
    HSC_GAP_EXPIRED, /* events after the id left history: what is left follows */
    HSC_GAP_UNKNOWN  /* not an id of this engine, or ahead of the newest: live events only */
} hsc_gap_t;

/** One event to replay: one reference to its frame, and its channel (one of the request's). */
typedef struct hsc_replay_s {
    uint64_t seq;
    hsc_frame_t *frame;
    hsc_chan_t *chan;
} hsc_replay_t;

/** hsc_subscribe_t.recent for every event history holds (a client's "earliest"). */
#define HSC_REPLAY_ALL SIZE_MAX

/**
 * Channel creation per client (docs/security.md, "Channel squatting"). A request that would
 * create channels first takes one token per new channel from `limit` for `client`, under the
 * engine's lock; a request on existing channels never touches it. Refused: rc HSC_ELIMIT, nothing
 * created, `retry_ms` says when the tokens will be there.
 */
typedef struct hsc_create_check_s {
    struct hsc_ratelimit_s *limit; /* in: NULL for no limit (policy.h, hsc_ratelimit_take()) */
    uint64_t client;               /* in: hsc_ratelimit_key() of the request's client */
    uint64_t retry_ms;             /* out, with HSC_ELIMIT */
} hsc_create_check_t;

typedef struct hsc_publish_s hsc_publish_t;
typedef void (*hsc_publish_cb)(hsc_publish_t *p);

/** A publish request: the caller fills the inputs, the engine the results, then calls `cb`. */
struct hsc_publish_s {
    /* In, borrowed during publish() only. */
    const char *channel; /* a valid name (hsc_channel_name_valid()) */
    size_t channel_len;
    const char *type; /* NULL, or a valid event type (hsc_event_type_valid()), NUL-terminated */
    const char *data; /* the event's data, valid UTF-8 */
    size_t len;
    unsigned hub; /* the caller's hub: where `cb` runs */
    hsc_publish_cb cb;
    void *user; /* the caller's */
    /* Out, valid in `cb`. */
    hsc_create_check_t create; /* whether the client may create the channel */
    int rc; /* 0; HSC_ELIMIT (create.retry_ms), HSC_EFULL (the table is full of channels with
               subscribers) or HSC_ENOMEM: nothing published */
    char id[HSC_EVENT_ID_MAX]; /* the event's id */
    uint64_t seq;
    unsigned subscribers; /* this node's subscribers the event was queued for */
};

typedef struct hsc_subscribe_s hsc_subscribe_t;
typedef void (*hsc_subscribe_cb)(hsc_subscribe_t *s);

/** A subscribe request, with replay: the caller fills the inputs, the engine the results. */
struct hsc_subscribe_s {
    /* In, borrowed during subscribe() only (except `chans`, written until `cb`). */
    const char *names; /* n distinct valid channel names, NUL-terminated, `stride` bytes apart */
    size_t stride, n;
    const char *last; /* the client's last event id (any bytes), or NULL for no resume */
    size_t last_len;
    size_t recent; /* with `last` NULL: replay the `recent` newest events (see Recent events;
                      HSC_REPLAY_ALL: all); 0: live events only. Ignored with a `last`. */
    bool tag;      /* the hub tags events with their channel: make the handles' `tag` */
    unsigned hub;  /* the caller's hub: where `cb` runs and where deliveries go */
    hsc_subscribe_cb cb;
    void *user;         /* the caller's */
    hsc_chan_t **chans; /* n entries: the channel handles, in the order of `names` */
    /* Out, valid in `cb`. */
    hsc_create_check_t create; /* whether the client may create the missing channels */
    int rc; /* 0; HSC_ELIMIT (create.retry_ms), HSC_EFULL (the table is full of channels with
               subscribers) or HSC_ENOMEM: nothing registered */
    uint64_t epoch, cut;
    hsc_gap_t gap;
    hsc_replay_t *replay; /* nreplay events in SEQ order: the caller takes ownership (each frame's
                             reference, and the array, which it frees with free()) */
    size_t nreplay;
};

/** Counts an engine keeps; each exact, the set not a snapshot. */
typedef struct hsc_engine_stats_s {
    size_t channels;           /* channels with subscribers or history */
    size_t history_events;     /* events held in history */
    size_t history_bytes;      /* their encoded bytes */
    uint64_t published;        /* events accepted */
    uint64_t evicted_channels; /* idle channels dropped whole for room (table or history budget) */
    uint64_t evicted_events;   /* events dropped for the global history budget */
} hsc_engine_stats_t;

/**
 * One channel as an engine reports it to a listing (hsc_channels_t.each): what it holds on this
 * node, read under the engine's lock, so each record is consistent in itself.
 */
typedef struct hsc_chan_info_s {
    const char *name; /* borrowed during each(); not NUL-terminated */
    size_t name_len;
    hsc_chan_t *chan;     /* with `one`: the handle, one reference for the caller, who gives it back
                             with release() (as a delivery's); otherwise NULL */
    unsigned subscribers; /* this node's subscriptions on the channel */
    size_t history_events;    /* events it holds in history */
    size_t history_bytes;     /* their encoded bytes */
    uint64_t first_seq;       /* the oldest event in its history; 0 when empty */
    uint64_t last_seq;        /* the newest; 0 when empty */
    uint64_t last_publish_ms; /* wall clock (ms since 1970) of its newest publish; 0: none */
} hsc_chan_info_t;

typedef struct hsc_channels_s hsc_channels_t;

/**
 * A listing of channels (hsc_engine_vt_t.channels), for the admin API: either one channel by
 * name (`one`), or a page of channels in name order after a cursor. The caller fills the inputs;
 * the engine calls `each` once per channel reported, then `cb` once, as for a publish.
 */
struct hsc_channels_s {
    /* In, borrowed during channels() only. */
    const char *name; /* with `one`: the channel; otherwise the cursor: report the channels whose
                         names sort after it (bytewise, shorter first on a tie), NULL: from the
                         first */
    size_t name_len;
    bool one;
    size_t limit; /* at most this many channels (> 0); the caller bounds it (memory) */
    unsigned hub; /* the caller's hub: where `cb` runs */
    /* Called for each channel reported, in name order, on any thread, maybe under the engine's
     * lock: it copies what it keeps and never calls the engine. */
    void (*each)(hsc_channels_t *q, const hsc_chan_info_t *info);
    void (*cb)(hsc_channels_t *q);
    void *user; /* the caller's */
    /* Out, valid in `cb`. */
    int rc;         /* 0, or HSC_ENOMEM: nothing reported */
    uint64_t epoch; /* to format ids from the sequence numbers */
    size_t total;   /* channels the engine holds */
    size_t found;   /* channels reported (each() calls) */
    bool more;      /* more channels sort after the last one reported */
};

typedef struct hsc_engine_vt_s {
    /** Publishes one event: assigns its id, keeps it in history, delivers it; then p->cb. */
    void (*publish)(hsc_engine_t *e, hsc_publish_t *p);
    /** Registers a subscription, with replay and gap as the contract says; then s->cb. */
    void (*subscribe)(hsc_engine_t *e, hsc_subscribe_t *s);
    /** Ends one hub's registration on `n` channels a subscribe returned (no callback). */
    void (*unsubscribe)(hsc_engine_t *e, unsigned hub, hsc_chan_t *const *chans, size_t n);
    /** Gives back the channel reference of a delivery the hub accepted. */
    void (*release)(hsc_engine_t *e, hsc_chan_t *chan);
    /** Ages history out and frees what is left empty (the server calls it every second). */
    void (*sweep)(hsc_engine_t *e);
    void (*stats)(hsc_engine_t *e, hsc_engine_stats_t *out);
    /** Frees the engine and what it holds: no hub is left, no request is pending. */
    void (*free)(hsc_engine_t *e);
    /**
     * Reports channels as `q` asks (one by name, or a page in name order; see Listings); then
     * q->cb. Last, and optional: NULL in an engine that cannot list (the admin API answers 501).
     */
    void (*channels)(hsc_engine_t *e, hsc_channels_t *q);
    /**
     * Takes new history bounds from `cfg` while running (a reload, docs/operations.md): history,
     * history_bytes, history_total_bytes, history_age_ms, max_channels. History over the new
     * bounds leaves at once, oldest first, and counts as evicted. Safe from any thread. Optional:
     * NULL in an engine whose bounds only a restart changes.
     */
    void (*reconfigure)(hsc_engine_t *e, const hsc_server_config_t *cfg);
} hsc_engine_vt_t;

/** One hub as its engine knows it. */
typedef struct hsc_engine_hub_s {
    const hsc_engine_sink_t *sink;
    void *ctx;
} hsc_engine_hub_t;

/** What every engine starts with. */
struct hsc_engine_s {
    const hsc_engine_vt_t *vt;
    unsigned nhubs;
    hsc_engine_hub_t *hubs; /* nhubs entries, set by hsc_engine_attach() before the loops run */
};

/**
 * The in-memory engine (memory.c): one lock, history rings per channel, a new epoch per run.
 * Copies the limits it needs from `cfg` (history, history_bytes, history_total_bytes (0: no
 * global budget), history_age_ms, max_channels).
 * Returns 0 or HSC_ENOMEM; free with hsc_engine_free().
 */
int hsc_memory_engine_new(const hsc_server_config_t *cfg, unsigned nhubs, hsc_engine_t **out);

/** Tells the engine how to reach hub `index` (< nhubs); before any call naming that hub. */
static inline void hsc_engine_attach(hsc_engine_t *e, unsigned index, const hsc_engine_sink_t *sink,
                                     void *ctx)
{
    e->hubs[index] = (hsc_engine_hub_t){sink, ctx};
}

static inline void hsc_engine_publish(hsc_engine_t *e, hsc_publish_t *p)
{
    e->vt->publish(e, p);
}
static inline void hsc_engine_subscribe(hsc_engine_t *e, hsc_subscribe_t *s)
{
    e->vt->subscribe(e, s);
}
static inline void hsc_engine_unsubscribe(hsc_engine_t *e, unsigned hub, hsc_chan_t *const *chans,
                                          size_t n)
{
    e->vt->unsubscribe(e, hub, chans, n);
}
static inline void hsc_engine_release(hsc_engine_t *e, hsc_chan_t *chan)
{
    e->vt->release(e, chan);
}
static inline void hsc_engine_sweep(hsc_engine_t *e)
{
    e->vt->sweep(e);
}
static inline void hsc_engine_stats(hsc_engine_t *e, hsc_engine_stats_t *out)
{
    e->vt->stats(e, out);
}
/** Whether the engine can list channels (the admin API). */
static inline bool hsc_engine_can_list(const hsc_engine_t *e)
{
    return e->vt->channels != NULL;
}
static inline void hsc_engine_channels(hsc_engine_t *e, hsc_channels_t *q)
{
    e->vt->channels(e, q);
}
/** NULL is ignored. */
static inline void hsc_engine_free(hsc_engine_t *e)
{
    if (e != NULL)
        e->vt->free(e);
}

/* ---- what every engine shares (engine.c) ----------------------------------------------------- */

/**
 * Encodes an event once, in chunked framing (see Frames above), with one reference. `type` is
 * NULL or valid, `id` a formatted id (NULL: none). NULL when out of memory.
 */
hsc_frame_t *hsc_event_frame_new(const char *type, const char *id, const char *data, size_t len);
/** The SSE bytes inside a frame of hsc_event_frame_new(): [*off, *end). */
void hsc_event_frame_body(const hsc_frame_t *f, size_t *off, size_t *end);

/** The type of a channel's tag event (see Tags): reserved, so no publisher can forge one. */
#define HSC_TAG_TYPE "hsc.channel"

/**
 * A channel's tag (see Tags): "event: hsc.channel", "data: NAME", no id (a client's last event id
 * stays that of the last real event), framed as hsc_event_frame_new() frames events. `name` is a
 * valid channel name of `len` bytes. NULL when out of memory.
 */
hsc_frame_t *hsc_chan_tag_new(const char *name, size_t len);

/** 2020-01-01T00:00:00Z in milliseconds: no engine's epoch is older. */
#define HSC_EPOCH_MIN 1577836800000ull

/**
 * Where a resume starts, from the client's last id and the engine's epoch and cut: returns
 * HSC_GAP_UNKNOWN (live events only; not an id, an epoch before 2020 or after ours, or a SEQ
 * above the cut), HSC_GAP_EPOCH (an earlier epoch: replay everything, *after = 0) or
 * HSC_GAP_NONE with *after = its SEQ; the engine then checks whether history still covers it.
 */
hsc_gap_t hsc_resume_point(const char *last, size_t len, uint64_t epoch, uint64_t cut,
                           uint64_t *after);

#endif
