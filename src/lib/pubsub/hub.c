/*
 * A hub: one loop's share of the channels (pubsub.h). It holds the loop's subscribers, receives
 * the engine's deliveries and calls through its inbox, and writes each event's shared frame to
 * its own subscribers, on its own thread, with no lock held: try to write at once, otherwise
 * queue a reference (no copy). It knows its loop, its index, the configuration and the engine;
 * nothing of the server.
 *
 * Inbox. The engine (any thread) appends deliveries under the hub's small mutex and wakes the
 * hub (uv_async_t); calls (an engine's completions) are queued under the same mutex with the
 * position they arrived at, so they run in order with deliveries. on_inbox() swaps the inbox out
 * and regroups its deliveries per subscriber, so a subscriber receiving several events gets them
 * in one writev: under a burst the number of system calls falls well below one per event per
 * subscriber. A subscriber finds its channels through links kept in each channel's slot for this
 * hub (hsc_chan_t.slot[index]), which only this thread touches.
 *
 * Exact resume, the hub's half: a subscription's replay (everything up to the engine's cut) is
 * queued first; deliveries numbered at or below the cut are skipped for it (min_seq), since the
 * replay has them. Until the engine's completion the subscription is not linked, so no delivery
 * reaches it; the engine guarantees the completion comes before any delivery after the cut.
 *
 * Tags (engine.h): a subscriber that asked which channel each event is on gets the channel's
 * tag frame, shared like every frame, before an event whose channel differs from that of the
 * event before it (tag_chan); the events' own frames stay the ones every subscriber gets.
 *
 * Flow control: a subscriber writes directly while its connection is below the high-water mark;
 * otherwise frames wait in its backlog (references again) and go out on drain. A backlog larger
 * than the replay plus --max-queue-bytes means the client cannot keep up: it is disconnected,
 * counted, and resumes from history when it comes back. Nobody else waits for it.
 *
 * Keep-alive comments come from one timer that visits the subscribers; one that wrote nothing
 * since the last tick gets HSC_SSE_KEEPALIVE (": keep-alive", as answers). On shutdown the same
 * timer ends the subscriptions, spread over time (hsc_hub_drain()).
 */
#include "pubsub/pubsub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hsc_link_s hsc_link_t;

/* A subscriber on one channel: on the list in that channel's slot for this hub. */
struct hsc_link_s {
    hsc_sub_t *sub;
    hsc_link_t *prev, *next;
};

struct hsc_sub_s {
    hsc_res_t *res;
    hsc_hub_t *hub;
    hsc_sub_t *prev, *next; /* on the hub's list */
    uint64_t min_seq;       /* deliveries at or below this came with the replay (or predate it) */
    bool chunked;
    bool dropped;
    bool active;          /* wrote something since the last keep-alive tick */
    bool in_batch;        /* on the hub's list of subscribers with frames in this inbox batch */
    bool pending;         /* the engine has not answered the subscribe yet */
    bool closed;          /* the client went away while pending */
    bool tag;             /* tags events with their channel (engine.h, "Tags") */
    hsc_chan_t *tag_chan; /* the channel of the last event queued, when `tag` */
    uint32_t bt_head, bt_tail; /* this subscriber's frames in the batch (indexes of pairs) */
    hsc_sub_t *bnext;
    /* Frames waiting for the connection to drain, oldest first. */
    hsc_frame_t **bl;
    size_t bl_head, bl_count, bl_cap, bl_bytes, bl_limit;
    const char *subject; /* its JWT's sub claim (admin API presence), in this block; or NULL */
    unsigned nlinks;
    hsc_link_t links[]; /* then nlinks channel handles (sub_chans()), then the subject */
};

/* The channel handles of a subscriber, in the order of its links. */
static hsc_chan_t **sub_chans(hsc_sub_t *s)
{
    return (hsc_chan_t **)(s->links + s->nlinks);
}

/* ---- writing to a subscriber ----------------------------------------------------------------- */

#define SUB_WRITE_MAX 64

/* How many of the `n` frames are tags of the subscriber's channels, not events. */
static size_t count_tags(hsc_sub_t *s, hsc_frame_t *const *f, size_t n)
{
    size_t tags = 0;
    hsc_chan_t **chans = sub_chans(s);
    for (size_t i = 0; i < n; i++)
        for (unsigned j = 0; j < s->nlinks; j++)
            if (f[i] == chans[j]->tag) {
                tags++;
                break;
            }
    return tags;
}

/*
 * Writes up to SUB_WRITE_MAX frames (borrowed) in one go: one writev for all of them when the
 * socket takes them. Returns how many the connection took; the caller keeps the rest.
 */
static size_t sub_write(hsc_sub_t *s, hsc_frame_t *const *f, size_t n)
{
    hsc_outq_item_t it[SUB_WRITE_MAX];
    for (size_t i = 0; i < n; i++) {
        it[i] = (hsc_outq_item_t){.frame = f[i], .off = 0, .end = f[i]->len};
        if (!s->chunked)
            hsc_event_frame_body(f[i], &it[i].off, &it[i].end);
    }
    s->active = true;
    int k = hsc_res_send_slices(s->res, it, (unsigned)n);
    if (k < 0)
        return n; /* the connection is closing: nothing more will reach it */
    size_t events = (size_t)k - (s->tag ? count_tags(s, f, (size_t)k) : 0);
    HSC_STAT_ADD(s->hub->st_delivered, (uint64_t)events);
    return (size_t)k;
}

/* Sends what the backlog holds while the connection takes it. */
static void sub_flush(hsc_sub_t *s)
{
    while (s->bl_count > 0 && !s->dropped && hsc_res_writable(s->res)) {
        hsc_frame_t *f[SUB_WRITE_MAX];
        size_t m = 0;
        for (; m < s->bl_count && m < SUB_WRITE_MAX; m++)
            f[m] = s->bl[(s->bl_head + m) % s->bl_cap];
        size_t k = sub_write(s, f, m);
        for (size_t i = 0; i < k; i++) {
            s->bl_head = (s->bl_head + 1) % s->bl_cap;
            s->bl_count--;
            s->bl_bytes -= f[i]->len;
            hsc_frame_unref(f[i]);
        }
        if (k < m)
            break;
    }
}

static void sub_drop(hsc_sub_t *s)
{
    s->dropped = true;
    HSC_STAT_ADD(s->hub->st_slow_dropped, 1);
    HSC_LOG(HSC_LOG_INFO, "req %llu: subscriber fell %zu bytes behind, disconnecting",
            (unsigned long long)hsc_res_request(s->res)->id, s->bl_bytes);
    hsc_res_close(s->res);
}

/* Takes a new reference to `f` into the backlog; false when the subscriber must be dropped. */
static bool sub_backlog(hsc_sub_t *s, hsc_frame_t *f)
{
    if (s->bl_bytes + f->len > s->bl_limit)
        return false;
    if (s->bl_count == s->bl_cap) {
        size_t cap = s->bl_cap ? s->bl_cap * 2 : 16;
        hsc_frame_t **v = malloc(cap * sizeof *v);
        if (v == NULL)
            return false;
        for (size_t i = 0; i < s->bl_count; i++)
            v[i] = s->bl[(s->bl_head + i) % s->bl_cap];
        free(s->bl);
        s->bl = v;
        s->bl_cap = cap;
        s->bl_head = 0;
    }
    s->bl[(s->bl_head + s->bl_count) % s->bl_cap] = hsc_frame_ref(f);
    s->bl_count++;
    s->bl_bytes += f->len;
    return true;
}

/* Frames that go to a subscriber now: written in one go while it keeps up, else backlogged. */
static void sub_deliver(hsc_sub_t *s, hsc_frame_t *const *f, size_t n)
{
    size_t k = 0;
    if (!s->dropped && s->bl_count == 0 && hsc_res_writable(s->res))
        k = sub_write(s, f, n);
    for (; k < n && !s->dropped; k++)
        if (!sub_backlog(s, f[k]))
            sub_drop(s);
}

/* ---- the inbox ------------------------------------------------------------------------------- */

/* A subscriber's frames in the batch: a list threaded through the hub's scratch array. */
typedef struct pair_s {
    hsc_frame_t *frame;
    uint32_t next;
} pair_t;

#define PAIR_END UINT32_MAX

static void batch_send(hsc_hub_t *hub, hsc_sub_t **touched)
{
    pair_t *p = hub->scratch;
    for (hsc_sub_t *s = *touched; s != NULL; s = s->bnext) {
        s->in_batch = false;
        for (uint32_t i = s->bt_head; i != PAIR_END;) {
            hsc_frame_t *f[SUB_WRITE_MAX];
            size_t m = 0;
            for (; i != PAIR_END && m < SUB_WRITE_MAX; i = p[i].next)
                f[m++] = p[i].frame;
            sub_deliver(s, f, m);
        }
    }
    *touched = NULL;
    hub->npairs = 0;
}

/* Adds a frame (borrowed) to what `s` gets in this batch, after the frames it already has. */
static void batch_push(hsc_hub_t *hub, hsc_sub_t *s, hsc_frame_t *f, hsc_sub_t **touched)
{
    if (hub->npairs == hub->scratch_cap) {
        size_t ncap = hub->scratch_cap ? hub->scratch_cap * 2 : 1024;
        pair_t *np = ncap < PAIR_END ? realloc(hub->scratch, ncap * sizeof *np) : NULL;
        if (np == NULL) {
            batch_send(hub, touched); /* send what is grouped (s's earlier frames too); go on */
            sub_deliver(s, &f, 1);
            return;
        }
        hub->scratch = np;
        hub->scratch_cap = ncap;
    }
    pair_t *p = hub->scratch;
    uint32_t idx = (uint32_t)hub->npairs++;
    p[idx] = (pair_t){f, PAIR_END};
    if (!s->in_batch) {
        s->in_batch = true;
        s->bt_head = s->bt_tail = idx;
        s->bnext = *touched;
        *touched = s;
    } else {
        p[s->bt_tail].next = idx;
        s->bt_tail = idx;
    }
}

/* Runs the queued calls due before inbox position `at` (all of them with SIZE_MAX). */
static void run_calls(hsc_engine_call_t **calls, size_t at)
{
    while (*calls != NULL && (*calls)->at <= at) {
        hsc_engine_call_t *c = *calls;
        *calls = c->next; /* fn may free c */
        c->fn(c);
    }
}

static void on_inbox(uv_async_t *a)
{
    hsc_hub_t *hub = a->data;
    uv_mutex_lock(&hub->mu);
    hsc_delivery_t *v = hub->inbox;
    size_t n = hub->inbox_n, cap = hub->inbox_cap;
    hub->inbox = hub->spare;
    hub->inbox_cap = hub->spare_cap;
    hub->inbox_n = 0;
    hsc_engine_call_t *calls = hub->calls;
    hub->calls = NULL;
    hub->calls_tail = &hub->calls;
    uv_mutex_unlock(&hub->mu);
    hsc_sub_t *touched = NULL;
    for (size_t i = 0; i < n; i++) {
        if (calls != NULL && calls->at <= i) {
            batch_send(hub, &touched); /* what came before goes first */
            run_calls(&calls, i);
        }
        hsc_delivery_t *d = &v[i];
        for (hsc_link_t *l = d->chan->slot[hub->index]; l != NULL; l = l->next) {
            hsc_sub_t *s = l->sub;
            if (d->seq <= s->min_seq || s->dropped)
                continue;
            if (s->tag && s->tag_chan != d->chan) {
                s->tag_chan = d->chan;
                batch_push(hub, s, d->chan->tag, &touched);
            }
            batch_push(hub, s, d->frame, &touched);
            d->hit = true;
        }
    }
    batch_send(hub, &touched);
    run_calls(&calls, SIZE_MAX);
    uint64_t now = 0; /* one clock read per batch, and only when something went out */
    for (size_t i = 0; i < n; i++) {
        if (v[i].hit && v[i].frame->born_ns != 0) {
            if (now == 0)
                now = uv_hrtime();
            hsc_timing_observe(&hub->st_publish_delivery,
                               now > v[i].frame->born_ns ? now - v[i].frame->born_ns : 0);
        }
        hsc_frame_unref(v[i].frame);
        hsc_engine_release(hub->engine, v[i].chan);
    }
    if (hub->scratch_cap > 65536) { /* a burst is over: give the memory back */
        free(hub->scratch);
        hub->scratch = NULL;
        hub->scratch_cap = 0;
    }
    hub->spare = v;
    hub->spare_cap = cap;
}

/* The sink the engine sees (engine.h): any thread, maybe under the engine's lock. */
static bool hub_deliver(void *ctx, hsc_chan_t *chan, uint64_t seq, hsc_frame_t *f)
{
    hsc_hub_t *hub = ctx;
    uv_mutex_lock(&hub->mu);
    if (hub->inbox_n == hub->inbox_cap) {
        size_t cap = hub->inbox_cap ? hub->inbox_cap * 2 : 64;
        hsc_delivery_t *v = realloc(hub->inbox, cap * sizeof *v);
        if (v == NULL) {
            uv_mutex_unlock(&hub->mu);
            return false;
        }
        hub->inbox = v;
        hub->inbox_cap = cap;
    }
    hub->inbox[hub->inbox_n++] = (hsc_delivery_t){chan, hsc_frame_ref(f), seq, false};
    uv_mutex_unlock(&hub->mu);
    return true;
}

static void hub_flush(void *ctx)
{
    hsc_hub_t *hub = ctx;
    uv_async_send(&hub->wake);
}

static void hub_call(void *ctx, hsc_engine_call_t *c)
{
    hsc_hub_t *hub = ctx;
    uv_mutex_lock(&hub->mu);
    c->next = NULL;
    c->at = hub->inbox_n;
    *hub->calls_tail = c;
    hub->calls_tail = &c->next;
    uv_mutex_unlock(&hub->mu);
    uv_async_send(&hub->wake);
}

static const hsc_engine_sink_t hub_sink = {hub_deliver, hub_flush, hub_call};

/* ---- subscribing ----------------------------------------------------------------------------- */

/* Unregisters and frees a live subscriber; its response is left to the caller. */
static void sub_free(hsc_sub_t *s)
{
    hsc_hub_t *hub = s->hub;
    hsc_chan_t **chans = sub_chans(s);
    for (unsigned i = 0; i < s->nlinks; i++) {
        hsc_link_t *l = &s->links[i];
        if (l->prev)
            l->prev->next = l->next;
        else
            chans[i]->slot[hub->index] = l->next;
        if (l->next)
            l->next->prev = l->prev;
    }
    hsc_engine_unsubscribe(hub->engine, hub->index, chans, s->nlinks);
    if (s->prev)
        s->prev->next = s->next;
    else
        hub->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    hub->nsubs--;
    atomic_store_explicit(&hub->st_subscribers,
                          atomic_load_explicit(&hub->st_subscribers, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    while (s->bl_count > 0) {
        hsc_frame_unref(s->bl[s->bl_head]);
        s->bl_head = (s->bl_head + 1) % s->bl_cap;
        s->bl_count--;
    }
    free(s->bl);
    free(s);
}

static void sub_on_close(hsc_res_t *res, void *user)
{
    (void)res;
    hsc_sub_t *s = user;
    if (s->pending)
        s->closed = true; /* freed when the engine answers */
    else
        sub_free(s);
}

static void sub_on_drain(hsc_res_t *res, void *user)
{
    (void)res;
    sub_flush(user);
}

/* A subscribe on its way to the engine. */
typedef struct sub_op_s {
    hsc_subscribe_t req;
    hsc_sub_t *s;
    hsc_hub_start_fn start;
} sub_op_t;

static void replay_free(hsc_subscribe_t *r)
{
    for (size_t i = 0; i < r->nreplay; i++)
        hsc_frame_unref(r->replay[i].frame);
    free(r->replay);
}

/* The engine's answer (on this loop): link the subscriber, start the stream, queue the replay. */
static void on_subscribed(hsc_subscribe_t *r)
{
    sub_op_t *op = r->user;
    hsc_sub_t *s = op->s;
    hsc_hub_t *hub = s->hub;
    hsc_res_t *res = s->res;
    s->pending = false;
    if (s->closed || r->rc != 0) {
        if (!s->closed) {
            res->on_close = NULL;
            res->on_drain = NULL;
            op->start(hub, res, r); /* answers the error */
        } else if (r->rc == 0) {
            hsc_engine_unsubscribe(hub->engine, hub->index, sub_chans(s), s->nlinks);
        }
        replay_free(r);
        free(s);
        free(op);
        return;
    }
    hsc_chan_t **chans = sub_chans(s);
    for (unsigned i = 0; i < s->nlinks; i++) {
        hsc_link_t *l = &s->links[i];
        *l = (hsc_link_t){.sub = s, .next = chans[i]->slot[hub->index]};
        if (l->next)
            l->next->prev = l;
        chans[i]->slot[hub->index] = l;
    }
    s->next = hub->subs;
    if (s->next)
        s->next->prev = s;
    hub->subs = s;
    hub->nsubs++;
    HSC_STAT_ADD(hub->st_subscribers, 1);
    s->min_seq = r->cut;
    if (op->start(hub, res, r) != 0) {
        replay_free(r);
        sub_free(s);
        free(op);
        return;
    }
    s->chunked = res->mode == HSC_BODY_CHUNKED;
    size_t replay_bytes = 0;
    for (size_t i = 0; i < r->nreplay; i++) {
        hsc_chan_t *c = r->replay[i].chan;
        if (s->tag && (i == 0 || c != r->replay[i - 1].chan))
            replay_bytes += c->tag->len;
        replay_bytes += r->replay[i].frame->len;
    }
    s->bl_limit = replay_bytes + hub->cfg->max_queue_bytes;
    /* The replay goes through the backlog so that flow control applies to it as to live events. */
    for (size_t i = 0; i < r->nreplay && !s->dropped; i++) {
        hsc_chan_t *c = r->replay[i].chan;
        if (s->tag && c != s->tag_chan) {
            s->tag_chan = c;
            if (!sub_backlog(s, c->tag)) {
                sub_drop(s);
                break;
            }
        }
        if (!sub_backlog(s, r->replay[i].frame))
            sub_drop(s);
    }
    replay_free(r);
    free(op);
    sub_flush(s);
}

int hsc_hub_subscribe(hsc_hub_t *hub, hsc_res_t *res, const hsc_hub_sub_t *o,
                      hsc_hub_start_fn start)
{
    /* Exactly the links this subscription needs: idle subscribers are most of the memory. */
    size_t n = o->n;
    size_t sl = o->subject ? strlen(o->subject) + 1 : 0;
    size_t at = sizeof(hsc_sub_t) + n * (sizeof(hsc_link_t) + sizeof(hsc_chan_t *));
    hsc_sub_t *s = calloc(1, at + sl);
    sub_op_t *op = s ? malloc(sizeof *op) : NULL;
    if (op == NULL) {
        free(s);
        return HSC_ENOMEM;
    }
    if (sl > 0) {
        memcpy((char *)s + at, o->subject, sl);
        s->subject = (char *)s + at;
    }
    s->res = res;
    s->hub = hub;
    s->nlinks = (unsigned)n;
    s->pending = true;
    s->tag = o->tag;
    res->user = s;
    res->on_close = sub_on_close;
    res->on_drain = sub_on_drain;
    op->s = s;
    op->start = start;
    op->req = (hsc_subscribe_t){.names = o->names,
                                .stride = o->stride,
                                .n = n,
                                .last = o->last,
                                .last_len = o->last_len,
                                .recent = o->recent,
                                .tag = o->tag,
                                .create = {.limit = hub->create_limit, .client = o->client},
                                .hub = hub->index,
                                .cb = on_subscribed,
                                .user = op,
                                .chans = sub_chans(s)};
    hsc_engine_subscribe(hub->engine, &op->req);
    return 0;
}

/* ---- keep-alive and shutdown ----------------------------------------------------------------- */

uint64_t hsc_hub_random(hsc_hub_t *hub, uint64_t n)
{
    hub->rng ^= hub->rng << 13;
    hub->rng ^= hub->rng >> 7;
    hub->rng ^= hub->rng << 17;
    return hub->rng % n;
}

static void on_keepalive(uv_timer_t *t)
{
    hsc_hub_t *hub = t->data;
    for (hsc_sub_t *s = hub->subs; s != NULL; s = s->next) {
        if (!s->active && !s->dropped && s->bl_count == 0 && hsc_res_writable(s->res))
            hsc_res_write(s->res, HSC_SSE_KEEPALIVE, HSC_SSE_KEEPALIVE_LEN);
        s->active = false;
    }
}

void hsc_hub_init(hsc_hub_t *hub, uv_loop_t *loop, unsigned index, const hsc_server_config_t *cfg,
                  hsc_engine_t *engine)
{
    memset(hub, 0, sizeof *hub);
    hub->loop = loop;
    hub->index = index;
    hub->cfg = cfg;
    hub->engine = engine;
    hub->calls_tail = &hub->calls;
    hub->rng = (uint64_t)uv_hrtime() ^ ((uint64_t)index + 1) * 0x9e3779b97f4a7c15u;
    if (hub->rng == 0)
        hub->rng = 1;
    uv_mutex_init(&hub->mu);
    uv_async_init(loop, &hub->wake, on_inbox);
    hub->wake.data = hub;
    uv_timer_init(loop, &hub->keepalive);
    hub->keepalive.data = hub;
    if (cfg->keepalive_ms > 0)
        uv_timer_start(&hub->keepalive, on_keepalive, cfg->keepalive_ms, cfg->keepalive_ms);
    hsc_engine_attach(engine, index, &hub_sink, hub);
    hub->ready = true;
}

/* Ends a subscription for the shutdown, telling the client when to come back. */
static void sub_end(hsc_sub_t *s, uint64_t retry_ms)
{
    hsc_res_t *res = s->res;
    bool writable = !s->dropped && s->bl_count == 0 && hsc_res_writable(res);
    sub_free(s); /* a backlog not yet written is dropped: the client resumes from history */
    res->on_close = NULL;
    res->on_drain = NULL;
    if (writable) {
        char line[48];
        int n = snprintf(line, sizeof line, "retry: %llu\n\n", (unsigned long long)retry_ms);
        hsc_res_write(res, line, (size_t)n);
    }
    hsc_res_end(res);
}

void hsc_hub_each_subscriber(hsc_hub_t *hub, hsc_chan_t *chan,
                             void (*fn)(void *user, const char *subject), void *user)
{
    for (hsc_link_t *l = chan->slot[hub->index]; l != NULL; l = l->next)
        if (!l->sub->dropped)
            fn(user, l->sub->subject);
}

size_t hsc_hub_disconnect(hsc_hub_t *hub, hsc_chan_t *chan)
{
    size_t n = 0;
    uint64_t retry = hub->cfg->retry_ms;
    for (hsc_link_t *l = chan->slot[hub->index], *next; l != NULL; l = next) {
        next = l->next; /* sub_end() unlinks l (and the subscriber's links on other channels) */
        if (l->sub->dropped)
            continue; /* closing already */
        sub_end(l->sub, retry + hsc_hub_random(hub, retry / 2 + 1));
        n++;
    }
    return n;
}

/* The drain's timer period: about 100 ticks over the window, at least 10 ms apart. */
static uint64_t drain_tick(const hsc_hub_t *hub)
{
    return hub->drain_window / 100 < 10 ? 10 : hub->drain_window / 100;
}

/*
 * Each tick ends the subscribers due before the next tick, so the ends are spread over the
 * window, the first at once and the last within it; a window no longer than a tick (a few
 * subscribers, or a drain timeout of a few milliseconds) is ended whole by the first tick.
 */
static void on_drain_tick(uv_timer_t *t)
{
    hsc_hub_t *hub = t->data;
    uint64_t elapsed = uv_now(hub->loop) - hub->drain_start;
    uint64_t until = elapsed + drain_tick(hub);
    size_t due = until >= hub->drain_window
                     ? hub->drain_total
                     : (size_t)(((uint64_t)hub->drain_total * until + hub->drain_window - 1) /
                                hub->drain_window);
    uint64_t retry = hub->cfg->retry_ms;
    uint64_t base = retry + (elapsed < hub->drain_window ? hub->drain_window - elapsed : 0);
    while (hub->subs != NULL && hub->drain_closed < due) {
        sub_end(hub->subs, base + hsc_hub_random(hub, hub->drain_window + retry / 2 + 1));
        hub->drain_closed++;
    }
    if (hub->subs == NULL || hub->drain_closed >= hub->drain_total)
        uv_timer_stop(t);
}

void hsc_hub_drain(hsc_hub_t *hub)
{
    uint64_t limit = hub->cfg->drain_timeout_ms / 4 * 3;
    hub->draining = true;
    hub->drain_total = hub->nsubs;
    hub->drain_closed = 0;
    hub->drain_start = uv_now(hub->loop);
    hub->drain_window = hub->nsubs < limit ? hub->nsubs : limit; /* about 1 ms per subscriber */
    uv_timer_stop(&hub->keepalive);
    if (hub->drain_total > 0)
        uv_timer_start(&hub->keepalive, on_drain_tick, 0, drain_tick(hub));
}

void hsc_hub_close(hsc_hub_t *hub)
{
    if (!hub->ready)
        return;
    hub->ready = false;
    uv_close((uv_handle_t *)&hub->wake, NULL);
    uv_close((uv_handle_t *)&hub->keepalive, NULL);
}

void hsc_hub_dispose(hsc_hub_t *hub)
{
    if (hub->engine == NULL)
        return; /* never initialised */
    hsc_engine_call_t *calls = hub->calls;
    hub->calls = NULL;
    hub->calls_tail = &hub->calls;
    run_calls(&calls, SIZE_MAX);
    for (size_t i = 0; i < hub->inbox_n; i++) {
        hsc_frame_unref(hub->inbox[i].frame);
        hsc_engine_release(hub->engine, hub->inbox[i].chan);
    }
    free(hub->inbox);
    free(hub->spare);
    free(hub->scratch);
    hub->scratch = NULL;
    hub->inbox = hub->spare = NULL;
    hub->inbox_n = 0;
    uv_mutex_destroy(&hub->mu);
    hub->engine = NULL;
}
