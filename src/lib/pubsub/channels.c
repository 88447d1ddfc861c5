/*
 * Channels: Server-Sent Events pub/sub with ids, history and exact resume (docs/api.md).
 *
 * The registry is shared by all worker threads and guarded by one mutex. A publish, under it,
 * assigns the next sequence number, encodes the event once into an immutable frame (already in
 * chunked framing, so the same bytes serve every HTTP/1.1 subscriber; HTTP/1.0 subscribers get a
 * slice of it), appends it to the channel's history ring and queues it to the inbox of each worker
 * that has subscribers on the channel. Because all of that happens under the one lock, every
 * inbox receives events in sequence order, so every subscription, single- or multi-channel, sees
 * ids increase. The worker then writes the frame to its own subscribers, on its own thread, with
 * no lock held: try to write at once, otherwise queue a reference (no copy).
 *
 * Exact resume: a subscription is registered under the lock, at the same moment the position
 * `cut` (the last sequence number assigned) is read and the history after the client's last id is
 * copied (frame references). Everything up to `cut` comes from history; everything after it
 * arrives through the inbox. A frame already waiting in the inbox with a number <= cut is skipped
 * for that subscriber (min_seq), so nothing is delivered twice and nothing falls between.
 *
 * Flow control: a subscriber writes directly while its connection is below the high-water mark;
 * otherwise frames wait in its backlog (references again) and go out on drain. A backlog larger
 * than the history it replays plus --max-queue-bytes means the client cannot keep up: it is
 * disconnected, counted, and resumes from history when it comes back. Nobody else waits for it.
 *
 * Backplane: hsc_registry_publish() is the only way an event enters; channel_deliver() is the only
 * way it reaches history and workers. A Redis backplane would sit between the two (publish to
 * Redis, deliver what Redis hands back with the id it assigned) without changing either side.
 */
#include "internal.h"

#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hsc_link_s hsc_link_t;

struct hsc_link_s {
    hsc_sub_t *sub;
    hsc_chan_t *chan;
    hsc_link_t *prev, *next; /* on chan->local[worker] */
};

struct hsc_chan_s {
    atomic_uint refs; /* the table's, and one per delivery on its way */
    hsc_chan_t *hnext;
    uint32_t hash;
    bool in_table;
    hsc_history_t hist;
    uint64_t since;      /* the last sequence number assigned before this channel existed */
    unsigned total_subs; /* under the lock */
    unsigned *nsubs;     /* per worker, under the lock */
    hsc_link_t **local;  /* per worker: that worker's subscribers, touched by its thread only */
    size_t name_len;
    char name[];
};

struct hsc_sub_s {
    hsc_res_t *res;
    hsc_worker_t *w;
    hsc_sub_t *prev, *next; /* on the worker's list */
    uint64_t min_seq;       /* deliveries at or below this came from history (or predate it) */
    bool chunked;
    bool dropped;
    bool active;   /* wrote something since the last keep-alive tick */
    bool in_batch; /* on the worker's list of subscribers with frames in this inbox batch */
    uint32_t bt_head, bt_tail; /* this subscriber's frames in the batch (indexes of pairs) */
    hsc_sub_t *bnext;
    /* Frames waiting for the connection to drain, oldest first. */
    hsc_frame_t **bl;
    size_t bl_head, bl_count, bl_cap, bl_bytes, bl_limit;
    unsigned nlinks;
    hsc_link_t links[];
};

struct hsc_registry_s {
    uv_mutex_t mu;
    hsc_chan_t **table;
    size_t tcap, nchans;
    uint64_t seq;        /* the last sequence number assigned */
    uint64_t freed_upto; /* newest number evicted from a channel that was then freed */
    uint64_t published;
    size_t hist_events, hist_bytes;
    /* Read by /metrics without the lock. */
    atomic_uint nsubs;
    atomic_uint_fast64_t resumes, missed;
    uint64_t epoch;
    char epoch_s[16];
    unsigned nworkers;
};

/* 2020-01-01T00:00:00Z in milliseconds: no run of hscd started earlier. */
#define HSC_EPOCH_MIN 1577836800000ull

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* ---- the channel table (all under reg->mu) --------------------------------------------------- */

static uint32_t hash_name(const char *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static void chan_unref(hsc_chan_t *ch)
{
    if (atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1)
        return;
    hsc_history_dispose(&ch->hist);
    free(ch->local); /* one block with nsubs */
    free(ch);
}

static hsc_chan_t *table_find(hsc_registry_t *reg, const char *name, size_t len, uint32_t h)
{
    for (hsc_chan_t *ch = reg->table[h & (reg->tcap - 1)]; ch != NULL; ch = ch->hnext)
        if (ch->hash == h && ch->name_len == len && memcmp(ch->name, name, len) == 0)
            return ch;
    return NULL;
}

static int table_grow(hsc_registry_t *reg)
{
    size_t cap = reg->tcap * 2;
    hsc_chan_t **t = calloc(cap, sizeof *t);
    if (t == NULL)
        return HSC_ENOMEM;
    for (size_t i = 0; i < reg->tcap; i++) {
        for (hsc_chan_t *ch = reg->table[i], *next; ch != NULL; ch = next) {
            next = ch->hnext;
            ch->hnext = t[ch->hash & (cap - 1)];
            t[ch->hash & (cap - 1)] = ch;
        }
    }
    free(reg->table);
    reg->table = t;
    reg->tcap = cap;
    return 0;
}

/* Finds or creates a channel. Returns NULL with *rc HSC_EFULL (--max-channels) or HSC_ENOMEM. */
static hsc_chan_t *chan_get(hsc_server_t *srv, const char *name, size_t len, int *rc)
{
    hsc_registry_t *reg = srv->reg;
    uint32_t h = hash_name(name, len);
    hsc_chan_t *ch = table_find(reg, name, len, h);
    if (ch != NULL)
        return ch;
    if (reg->nchans >= srv->cfg.max_channels) {
        *rc = HSC_EFULL;
        return NULL;
    }
    if (reg->nchans + 1 > reg->tcap / 4 * 3 && table_grow(reg) != 0) {
        *rc = HSC_ENOMEM;
        return NULL;
    }
    ch = calloc(1, sizeof *ch + len + 1);
    void *arrays = ch ? calloc(reg->nworkers, sizeof(unsigned) + sizeof(hsc_link_t *)) : NULL;
    if (arrays == NULL) {
        free(ch);
        *rc = HSC_ENOMEM;
        return NULL;
    }
    atomic_init(&ch->refs, 1);
    ch->hash = h;
    ch->in_table = true;
    /* The pointers first: after nworkers unsigned ints they would be misaligned when the
     * count is odd (found by fuzz_request, one worker). */
    ch->local = arrays;
    ch->nsubs = (unsigned *)(ch->local + reg->nworkers);
    hsc_history_init(&ch->hist, srv->cfg.history, srv->cfg.history_bytes, srv->cfg.history_age_ms);
    ch->since = reg->seq;
    ch->name_len = len;
    memcpy(ch->name, name, len);
    ch->hnext = reg->table[h & (reg->tcap - 1)];
    reg->table[h & (reg->tcap - 1)] = ch;
    reg->nchans++;
    return ch;
}

/* Frees a channel with no subscribers and no history (deliveries on their way keep it alive). */
static void chan_maybe_free(hsc_registry_t *reg, hsc_chan_t *ch)
{
    if (!ch->in_table || ch->total_subs > 0 || ch->hist.count > 0)
        return;
    hsc_chan_t **pp = &reg->table[ch->hash & (reg->tcap - 1)];
    while (*pp != ch)
        pp = &(*pp)->hnext;
    *pp = ch->hnext;
    ch->in_table = false;
    reg->nchans--;
    if (ch->hist.evicted_seq > reg->freed_upto)
        reg->freed_upto = ch->hist.evicted_seq;
    chan_unref(ch);
}

/* Runs a history operation and keeps the registry's totals in step. */
static void hist_account(hsc_registry_t *reg, hsc_chan_t *ch, size_t count0, size_t bytes0)
{
    reg->hist_events += ch->hist.count;
    reg->hist_events -= count0;
    reg->hist_bytes += ch->hist.bytes;
    reg->hist_bytes -= bytes0;
}

static void chan_expire(hsc_registry_t *reg, hsc_chan_t *ch, uint64_t now)
{
    size_t c0 = ch->hist.count, b0 = ch->hist.bytes;
    hsc_history_expire(&ch->hist, now);
    hist_account(reg, ch, c0, b0);
}

/* ---- the registry ---------------------------------------------------------------------------- */

int hsc_registry_new(hsc_server_t *srv)
{
    hsc_registry_t *reg = calloc(1, sizeof *reg);
    if (reg == NULL)
        return HSC_ENOMEM;
    reg->tcap = 64;
    reg->table = calloc(reg->tcap, sizeof *reg->table);
    if (reg->table == NULL) {
        free(reg);
        return HSC_ENOMEM;
    }
    uv_mutex_init(&reg->mu);
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    reg->epoch = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    char id[HSC_EVENT_ID_MAX];
    hsc_event_id_format(id, reg->epoch, 0);
    snprintf(reg->epoch_s, sizeof reg->epoch_s, "%.*s", (int)(strchr(id, '-') - id), id);
    reg->nworkers = srv->nworkers;
    srv->reg = reg;
    return 0;
}

void hsc_registry_free(hsc_server_t *srv)
{
    hsc_registry_t *reg = srv->reg;
    if (reg == NULL)
        return;
    for (size_t i = 0; i < reg->tcap; i++) {
        for (hsc_chan_t *ch = reg->table[i], *next; ch != NULL; ch = next) {
            next = ch->hnext;
            chan_unref(ch);
        }
    }
    free(reg->table);
    uv_mutex_destroy(&reg->mu);
    free(reg);
    srv->reg = NULL;
}

void hsc_registry_sweep(hsc_server_t *srv)
{
    hsc_registry_t *reg = srv->reg;
    uv_mutex_lock(&reg->mu);
    uint64_t now = now_ms(); /* after the lock: no publish stamped later than this can be pending */
    for (size_t i = 0; i < reg->tcap; i++) {
        for (hsc_chan_t *ch = reg->table[i], *next; ch != NULL; ch = next) {
            next = ch->hnext;
            chan_expire(reg, ch, now);
            chan_maybe_free(reg, ch);
        }
    }
    uv_mutex_unlock(&reg->mu);
}

/* ---- delivery -------------------------------------------------------------------------------- */

/* Queues an event for one worker (reg->mu held, so inboxes fill in sequence order). */
static bool inbox_push(hsc_worker_t *w, hsc_chan_t *ch, hsc_frame_t *f, uint64_t seq)
{
    hsc_chw_t *x = &w->ch;
    uv_mutex_lock(&x->mu);
    if (x->inbox_n == x->inbox_cap) {
        size_t cap = x->inbox_cap ? x->inbox_cap * 2 : 64;
        hsc_delivery_t *v = realloc(x->inbox, cap * sizeof *v);
        if (v == NULL) {
            uv_mutex_unlock(&x->mu);
            return false;
        }
        x->inbox = v;
        x->inbox_cap = cap;
    }
    atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
    x->inbox[x->inbox_n++] = (hsc_delivery_t){ch, hsc_frame_ref(f), seq};
    uv_mutex_unlock(&x->mu);
    return true;
}

/*
 * An event enters history and goes to every worker with subscribers on the channel (reg->mu
 * held). Returns the number of subscribers it was queued for; `wake` gets a bit per worker.
 */
static unsigned channel_deliver(hsc_server_t *srv, hsc_chan_t *ch, uint64_t seq, hsc_frame_t *f,
                                uint64_t *wake)
{
    hsc_registry_t *reg = srv->reg;
    size_t c0 = ch->hist.count, b0 = ch->hist.bytes;
    uint64_t now = now_ms();
    hsc_history_expire(&ch->hist, now);
    if (hsc_history_push(&ch->hist, seq, now, f) != 0) {
        HSC_LOG(HSC_LOG_ERROR, "channel %s: out of memory for history", ch->name);
        if (ch->hist.evicted_seq < seq)
            ch->hist.evicted_seq = seq; /* a resume across it must report the gap */
    }
    hist_account(reg, ch, c0, b0);
    unsigned n = 0;
    for (unsigned i = 0; i < reg->nworkers; i++) {
        if (ch->nsubs[i] == 0)
            continue;
        if (!inbox_push(&srv->workers[i], ch, f, seq)) {
            HSC_LOG(HSC_LOG_ERROR, "channel %s: out of memory queueing an event", ch->name);
            continue;
        }
        n += ch->nsubs[i];
        if (i < 64)
            *wake |= 1ull << i;
    }
    return n;
}

/* Encodes an event in chunked framing: "<size>\r\n" + SSE bytes + "\r\n". */
static hsc_frame_t *encode_event(const char *type, const char *id, const char *data, size_t len)
{
    hsc_sse_event_t ev = {.type = type, .id = id, .data = data, .data_len = len, .retry_ms = -1};
    char probe[1];
    ssize_t n = hsc_sse_encode(probe, 0, &ev);
    if (n < 0)
        return NULL;
    char head[HSC_CHUNK_HEADER_MAX];
    size_t hl = hsc_chunked_header(head, (size_t)n);
    hsc_frame_t *f = hsc_frame_try_new(hl + (size_t)n + 2);
    if (f == NULL)
        return NULL;
    memcpy(f->data, head, hl);
    hsc_sse_encode(f->data + hl, (size_t)n, &ev);
    memcpy(f->data + hl + n, "\r\n", 2);
    return f;
}

/* The SSE bytes inside a chunk-framed event (what HTTP/1.0 subscribers get). */
static void frame_body(const hsc_frame_t *f, size_t *off, size_t *end)
{
    const char *nl =
        memchr(f->data, '\n', f->len < HSC_CHUNK_HEADER_MAX ? f->len : HSC_CHUNK_HEADER_MAX);
    *off = nl ? (size_t)(nl - f->data) + 1 : 0;
    *end = f->len - 2;
}

static void wake_workers(hsc_server_t *srv, uint64_t wake)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (i >= 64 || (wake & (1ull << i)))
            uv_async_send(&srv->workers[i].ch.wake);
}

/**
 * Publishes one event. `type` is NULL or a valid type. Fills `id` (HSC_EVENT_ID_MAX bytes) and
 * *nsubs. Returns 0, HSC_EFULL (--max-channels) or HSC_ENOMEM; nothing is published on error.
 */
static int registry_publish(hsc_server_t *srv, const char *name, size_t name_len, const char *type,
                            const char *data, size_t len, char *id, unsigned *nsubs)
{
    hsc_registry_t *reg = srv->reg;
    int rc = 0;
    uint64_t wake = 0;
    uv_mutex_lock(&reg->mu);
    hsc_chan_t *ch = chan_get(srv, name, name_len, &rc);
    hsc_frame_t *f = NULL;
    if (ch != NULL) {
        uint64_t seq = reg->seq + 1;
        hsc_event_id_format(id, reg->epoch, seq);
        f = encode_event(type, id, data, len);
        if (f == NULL) {
            rc = HSC_ENOMEM;
        } else {
            reg->seq = seq;
            reg->published++;
            *nsubs = channel_deliver(srv, ch, seq, f, &wake);
        }
        chan_maybe_free(reg, ch);
    }
    uv_mutex_unlock(&reg->mu);
    hsc_frame_unref(f);
    wake_workers(srv, wake);
    return rc;
}

/* ---- subscribers ----------------------------------------------------------------------------- */

#define SUB_WRITE_MAX 64

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
            frame_body(f[i], &it[i].off, &it[i].end);
    }
    s->active = true;
    int k = hsc_res_send_slices(s->res, it, (unsigned)n);
    if (k < 0)
        return n; /* the connection is closing: nothing more will reach it */
    HSC_STAT_ADD(s->w->st_delivered, (uint64_t)k);
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
    HSC_STAT_ADD(s->w->st_slow_dropped, 1);
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

/*
 * A batch of deliveries is regrouped per subscriber (a list of frames each, threaded through the
 * worker's scratch array) so that a subscriber receiving several events gets them in one writev:
 * under a burst the number of system calls falls well below one per event per subscriber.
 */
typedef struct pair_s {
    hsc_frame_t *frame;
    uint32_t next;
} pair_t;

#define PAIR_END UINT32_MAX

static void batch_send(hsc_worker_t *w, hsc_sub_t **touched)
{
    pair_t *p = w->ch.scratch;
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
    w->ch.npairs = 0;
}

static void on_inbox(uv_async_t *a)
{
    hsc_worker_t *w = a->data;
    hsc_chw_t *x = &w->ch;
    uv_mutex_lock(&x->mu);
    hsc_delivery_t *v = x->inbox;
    size_t n = x->inbox_n, cap = x->inbox_cap;
    x->inbox = x->spare;
    x->inbox_cap = x->spare_cap;
    x->inbox_n = 0;
    uv_mutex_unlock(&x->mu);
    hsc_sub_t *touched = NULL;
    for (size_t i = 0; i < n; i++) {
        hsc_delivery_t *d = &v[i];
        for (hsc_link_t *l = d->chan->local[w->index]; l != NULL; l = l->next) {
            hsc_sub_t *s = l->sub;
            if (d->seq <= s->min_seq || s->dropped)
                continue;
            if (x->npairs == x->scratch_cap) {
                size_t ncap = x->scratch_cap ? x->scratch_cap * 2 : 1024;
                pair_t *np = ncap < PAIR_END ? realloc(x->scratch, ncap * sizeof *np) : NULL;
                if (np == NULL) {
                    batch_send(w, &touched); /* send what is grouped; start over */
                    sub_deliver(s, &d->frame, 1);
                    continue;
                }
                x->scratch = np;
                x->scratch_cap = ncap;
            }
            pair_t *p = x->scratch;
            uint32_t idx = (uint32_t)x->npairs++;
            p[idx] = (pair_t){d->frame, PAIR_END};
            if (!s->in_batch) {
                s->in_batch = true;
                s->bt_head = s->bt_tail = idx;
                s->bnext = touched;
                touched = s;
            } else {
                p[s->bt_tail].next = idx;
                s->bt_tail = idx;
            }
        }
    }
    batch_send(w, &touched);
    for (size_t i = 0; i < n; i++) {
        hsc_frame_unref(v[i].frame);
        chan_unref(v[i].chan);
    }
    if (x->scratch_cap > 65536) { /* a burst is over: give the memory back */
        free(x->scratch);
        x->scratch = NULL;
        x->scratch_cap = 0;
    }
    x->spare = v;
    x->spare_cap = cap;
}

/* Unregisters and frees a subscriber; its response is left to the caller. */
static void sub_free(hsc_sub_t *s)
{
    hsc_worker_t *w = s->w;
    hsc_registry_t *reg = w->srv->reg;
    uv_mutex_lock(&reg->mu);
    for (unsigned i = 0; i < s->nlinks; i++) {
        hsc_link_t *l = &s->links[i];
        hsc_chan_t *ch = l->chan;
        if (l->prev)
            l->prev->next = l->next;
        else
            ch->local[w->index] = l->next;
        if (l->next)
            l->next->prev = l->prev;
        ch->nsubs[w->index]--;
        ch->total_subs--;
        chan_maybe_free(reg, ch);
    }
    uv_mutex_unlock(&reg->mu);
    atomic_fetch_sub_explicit(&reg->nsubs, 1, memory_order_relaxed);
    if (s->prev)
        s->prev->next = s->next;
    else
        w->ch.subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->ch.nsubs--;
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
    sub_free(user);
}

static void sub_on_drain(hsc_res_t *res, void *user)
{
    (void)res;
    sub_flush(user);
}

/* A random number below `n` (n > 0) from the loop's own xorshift64 state. */
static uint64_t chw_random(hsc_chw_t *x, uint64_t n)
{
    x->rng ^= x->rng << 13;
    x->rng ^= x->rng >> 7;
    x->rng ^= x->rng << 17;
    return x->rng % n;
}

static void on_keepalive(uv_timer_t *t)
{
    static const char comment[] = ": keep-alive\n\n";
    hsc_worker_t *w = t->data;
    for (hsc_sub_t *s = w->ch.subs; s != NULL; s = s->next) {
        if (!s->active && !s->dropped && s->bl_count == 0 && hsc_res_writable(s->res))
            hsc_res_write(s->res, comment, sizeof comment - 1);
        s->active = false;
    }
}

void hsc_chw_init(hsc_worker_t *w)
{
    hsc_chw_t *x = &w->ch;
    x->rng = (uint64_t)uv_hrtime() ^ ((uint64_t)w->index + 1) * 0x9e3779b97f4a7c15u;
    if (x->rng == 0)
        x->rng = 1;
    uv_mutex_init(&x->mu);
    uv_async_init(&w->loop, &x->wake, on_inbox);
    x->wake.data = w;
    uv_timer_init(&w->loop, &x->keepalive);
    x->keepalive.data = w;
    uint64_t ka = w->srv->cfg.keepalive_ms;
    if (ka > 0)
        uv_timer_start(&x->keepalive, on_keepalive, ka, ka);
    x->ready = true;
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

/* Each tick ends the share of subscribers due by now, so the ends are spread over the window. */
static void on_drain_tick(uv_timer_t *t)
{
    hsc_worker_t *w = t->data;
    hsc_chw_t *x = &w->ch;
    uint64_t now = uv_now(&w->loop);
    uint64_t elapsed = now - x->drain_start;
    size_t due = elapsed >= x->drain_window
                     ? x->drain_total
                     : (size_t)(((uint64_t)x->drain_total * elapsed + x->drain_window - 1) /
                                x->drain_window);
    uint64_t base = w->srv->cfg.retry_ms +
                    (x->drain_window - (elapsed < x->drain_window ? elapsed : x->drain_window));
    while (x->subs != NULL && x->drain_closed < due) {
        sub_end(x->subs, base + chw_random(x, x->drain_window + w->srv->cfg.retry_ms / 2 + 1));
        x->drain_closed++;
    }
    if (x->subs == NULL || x->drain_closed >= x->drain_total)
        uv_timer_stop(t);
}

void hsc_chw_drain(hsc_worker_t *w)
{
    hsc_chw_t *x = &w->ch;
    uint64_t limit = w->srv->cfg.drain_timeout_ms / 4 * 3;
    x->drain_total = x->nsubs;
    x->drain_closed = 0;
    x->drain_start = uv_now(&w->loop);
    x->drain_window = x->nsubs < limit ? x->nsubs : limit; /* about 1 ms per subscriber */
    uv_timer_stop(&x->keepalive);
    if (x->drain_total == 0)
        return;
    if (x->drain_window < 2) { /* nothing to spread */
        x->drain_window = 1;
        on_drain_tick(&x->keepalive);
        return;
    }
    uint64_t tick = x->drain_window / 100 < 10 ? 10 : x->drain_window / 100;
    uv_timer_start(&x->keepalive, on_drain_tick, 0, tick);
}

static void on_chw_closed(uv_handle_t *h)
{
    (void)h;
}

void hsc_chw_close(hsc_worker_t *w)
{
    hsc_chw_t *x = &w->ch;
    if (!x->ready)
        return;
    x->ready = false;
    uv_close((uv_handle_t *)&x->wake, on_chw_closed);
    uv_close((uv_handle_t *)&x->keepalive, on_chw_closed);
}

/* After the loop has ended: what is left in the inbox is dropped. */
void hsc_chw_free(hsc_worker_t *w)
{
    hsc_chw_t *x = &w->ch;
    for (size_t i = 0; i < x->inbox_n; i++) {
        hsc_frame_unref(x->inbox[i].frame);
        chan_unref(x->inbox[i].chan);
    }
    free(x->inbox);
    free(x->spare);
    free(x->scratch);
    x->scratch = NULL;
    x->inbox = x->spare = NULL;
    x->inbox_n = 0;
    if (x->wake.type == UV_ASYNC)
        uv_mutex_destroy(&x->mu);
}

/* ---- the HTTP side --------------------------------------------------------------------------- */

static void fail(hsc_req_t *req, hsc_res_t *res, int status, const char *reason)
{
    (void)req;
    hsc_res_error(res, status, status == 503 ? "Retry-After: 1\r\n" : NULL, reason, false);
}

typedef struct names_s {
    char (*v)[HSC_CHANNEL_MAX + 1];
    size_t n, max;
} names_t;

/*
 * Collects the distinct `channel` parameters. Returns 0 or an HTTP status with *reason set.
 * `max` is the most names to accept (more is 400).
 */
static int parse_channels(const hsc_req_t *req, names_t *out, const char **reason)
{
    size_t pos = 0;
    hsc_span_t k, v;
    char key[16];
    while (hsc_query_next(req->query, req->query_len, &pos, &k, &v)) {
        if (k.len >= sizeof key)
            continue;
        ssize_t kl = hsc_url_decode(key, k.p, k.len, 1);
        if (kl < 0 || (size_t)kl != 7 || memcmp(key, "channel", 7) != 0)
            continue;
        char name[HSC_CHANNEL_MAX + 1];
        if (v.len > 3 * HSC_CHANNEL_MAX) {
            *reason = "channel name too long (at most 128 bytes)";
            return 400;
        }
        char tmp[3 * HSC_CHANNEL_MAX];
        ssize_t n = hsc_url_decode(tmp, v.p, v.len, 1);
        if (n < 0) {
            *reason = "bad percent-encoding in channel";
            return 400;
        }
        if (n == 0) {
            *reason = "empty channel name";
            return 400;
        }
        if (!hsc_channel_name_valid(tmp, (size_t)n)) {
            *reason = (size_t)n > HSC_CHANNEL_MAX
                          ? "channel name too long (at most 128 bytes)"
                          : "bad channel name: use 1-128 of A-Z a-z 0-9 - _ . : @ /";
            return 400;
        }
        memcpy(name, tmp, (size_t)n);
        name[n] = '\0';
        bool dup = false;
        for (size_t i = 0; i < out->n && !dup; i++)
            dup = strcmp(out->v[i], name) == 0;
        if (dup)
            continue;
        if (out->n == out->max) {
            *reason = out->max == 1 ? "publish to one channel at a time"
                                    : "too many channels in one subscription "
                                      "(see --max-subscription-channels)";
            return 400;
        }
        memcpy(out->v[out->n++], name, (size_t)n + 1);
    }
    if (out->n == 0) {
        *reason = "missing channel parameter: ?channel=NAME";
        return 400;
    }
    return 0;
}

static void publish(hsc_worker_t *w, hsc_req_t *req, hsc_res_t *res)
{
    hsc_server_t *srv = w->srv;
    char name[HSC_CHANNEL_MAX + 1];
    names_t names = {.v = &name, .max = 1};
    const char *reason = NULL;
    int status = parse_channels(req, &names, &reason);
    if (status != 0) {
        fail(req, res, status, reason);
        return;
    }
    if (hsc_auth_require(&srv->cfg, req, res, HSC_AUTH_PUBLISH, name, sizeof name, 1) != 0)
        return;
    char type[HSC_EVENT_TYPE_MAX * 3 + 1];
    ssize_t tl = hsc_query_get(req->query, req->query_len, "event", type, sizeof type);
    if (tl == HSC_ETOOBIG || tl == HSC_EINVAL ||
        (tl >= 0 && !hsc_event_type_valid(type, (size_t)tl))) {
        fail(req, res, 400,
             "bad event type: use 1-64 of A-Z a-z 0-9 - _ . : (not starting with \"hsc.\")");
        return;
    }
    const char *data = req->body.data ? req->body.data : "";
    size_t len = req->body.len;
    if (len > srv->cfg.max_event_bytes) {
        char why[128];
        snprintf(why, sizeof why, "event data is %zu bytes; the limit is %zu (--max-event-bytes)",
                 len, srv->cfg.max_event_bytes);
        fail(req, res, 413, why);
        return;
    }
    if (!hsc_utf8_valid(data, len)) {
        fail(req, res, 400, "event data is not valid UTF-8");
        return;
    }
    char id[HSC_EVENT_ID_MAX];
    unsigned nsubs = 0;
    int rc = registry_publish(srv, name, strlen(name), tl > 0 ? type : NULL, data, len, id, &nsubs);
    if (rc == HSC_EFULL) {
        fail(req, res, 503, "too many channels (see --max-channels)");
        return;
    }
    if (rc != 0) {
        fail(req, res, 503, "out of memory");
        return;
    }
    json_t *j =
        json_pack("{s:s,s:s,s:I}", "id", id, "channel", name, "subscribers", (json_int_t)nsubs);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (body == NULL) {
        fail(req, res, 500, "out of memory");
        return;
    }
    size_t bl = strlen(body);
    body[bl] = '\n';
    hsc_res_send(res, 200, "application/json", "Cache-Control: no-store\r\n", body, bl + 1);
    free(body);
}

typedef enum gap_e { GAP_NONE, GAP_EPOCH, GAP_EXPIRED, GAP_UNKNOWN } gap_t;

typedef struct replay_s {
    uint64_t seq;
    hsc_frame_t *frame;
} replay_t;

static int replay_cmp(const void *a, const void *b)
{
    uint64_t x = ((const replay_t *)a)->seq, y = ((const replay_t *)b)->seq;
    return x < y ? -1 : x > y;
}

/*
 * Registers the subscriber on its channels and decides what to replay (reg->mu held).
 * Returns 0 or HSC_EFULL / HSC_ENOMEM with nothing registered.
 */
static int subscribe_locked(hsc_server_t *srv, hsc_sub_t *s, const names_t *names, const char *last,
                            size_t last_len, gap_t *gap, replay_t **out, size_t *nout)
{
    hsc_registry_t *reg = srv->reg;
    hsc_worker_t *w = s->w;
    int rc = 0;
    for (size_t i = 0; i < names->n; i++) {
        hsc_chan_t *ch = chan_get(srv, names->v[i], strlen(names->v[i]), &rc);
        if (ch == NULL) {
            for (size_t j = 0; j < i; j++)
                chan_maybe_free(reg, s->links[j].chan);
            return rc;
        }
        s->links[i] = (hsc_link_t){.sub = s, .chan = ch};
    }
    uint64_t cut = reg->seq;
    s->min_seq = cut;
    *gap = GAP_NONE;
    bool replay = false;
    uint64_t after = 0;
    if (last != NULL) {
        uint64_t epoch, seq;
        /* An epoch is a start time: one before 2020 is a string that merely looks like an id. */
        if (hsc_event_id_parse(last, last_len, &epoch, &seq) != 0 || epoch > reg->epoch ||
            epoch < HSC_EPOCH_MIN || (epoch == reg->epoch && seq > cut)) {
            *gap = GAP_UNKNOWN;
        } else if (epoch < reg->epoch) {
            *gap = GAP_EPOCH;
            replay = true;
        } else {
            replay = true;
            after = seq;
        }
    }
    size_t total = 0;
    uint64_t now = now_ms();
    for (size_t i = 0; replay && i < names->n; i++) {
        hsc_chan_t *ch = s->links[i].chan;
        chan_expire(reg, ch, now);
        if (*gap == GAP_NONE &&
            (ch->hist.evicted_seq > after || (ch->since > after && reg->freed_upto > after)))
            *gap = GAP_EXPIRED;
        total += ch->hist.count - hsc_history_first_after(&ch->hist, after);
    }
    replay_t *v = NULL;
    if (total > 0 && (v = malloc(total * sizeof *v)) == NULL) {
        for (size_t i = 0; i < names->n; i++)
            chan_maybe_free(reg, s->links[i].chan);
        return HSC_ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; replay && i < names->n; i++) {
        hsc_history_t *h = &s->links[i].chan->hist;
        for (size_t k = hsc_history_first_after(h, after); k < h->count; k++) {
            const hsc_hist_entry_t *e = hsc_history_at(h, k);
            v[n++] = (replay_t){e->seq, hsc_frame_ref(e->frame)};
        }
    }
    if (names->n > 1 && n > 1)
        qsort(v, n, sizeof *v, replay_cmp);
    for (size_t i = 0; i < names->n; i++) {
        hsc_link_t *l = &s->links[i];
        hsc_chan_t *ch = l->chan;
        l->next = ch->local[w->index];
        if (l->next)
            l->next->prev = l;
        ch->local[w->index] = l;
        ch->nsubs[w->index]++;
        ch->total_subs++;
    }
    s->nlinks = (unsigned)names->n;
    *out = v;
    *nout = n;
    return 0;
}

/* The client's last event id: the Last-Event-ID header, else lastEventId= (decoded into buf). */
static const char *last_event_id(const hsc_req_t *req, char *buf, size_t cap, size_t *len)
{
    const char *h = hsc_req_header(req, "Last-Event-ID");
    if (h != NULL && h[0] != '\0') {
        *len = strlen(h);
        return h;
    }
    ssize_t n = hsc_query_get(req->query, req->query_len, "lastEventId", buf, cap);
    if (n > 0) {
        *len = (size_t)n;
        return buf;
    }
    if (n == HSC_ETOOBIG || n == HSC_EINVAL) {
        *len = 1;
        return "?"; /* unparseable: reported as an unknown id */
    }
    return NULL;
}

static void write_gap(hsc_sub_t *s, gap_t gap, const char *last, size_t last_len, size_t n)
{
    static const char *reasons[] = {"", "epoch", "expired", "unknown"};
    hsc_registry_t *reg = s->w->srv->reg;
    char shown[65];
    size_t k = 0;
    for (; k < last_len && k < sizeof shown - 1; k++)
        shown[k] = last[k] >= 0x20 && last[k] < 0x7f ? last[k] : '?';
    shown[k] = '\0';
    json_t *j = json_pack("{s:s,s:s,s:s,s:I}", "reason", reasons[gap], "requested", shown, "epoch",
                          reg->epoch_s, "replayed", (json_int_t)n);
    char *data = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    if (data == NULL)
        return;
    hsc_sse_event_t ev = {
        .type = "hsc.gap", .data = data, .data_len = strlen(data), .retry_ms = -1};
    char buf[512];
    ssize_t len = hsc_sse_encode(buf, sizeof buf, &ev);
    if (len > 0 && (size_t)len <= sizeof buf)
        hsc_res_write(s->res, buf, (size_t)len);
    free(data);
}

static void subscribe(hsc_worker_t *w, hsc_req_t *req, hsc_res_t *res)
{
    hsc_server_t *srv = w->srv;
    hsc_registry_t *reg = srv->reg;
    size_t max = srv->cfg.max_subscription_channels ? srv->cfg.max_subscription_channels : 1;
    names_t names = {.v = calloc(max, sizeof *names.v), .max = max};
    if (names.v == NULL) {
        fail(req, res, 503, "out of memory");
        return;
    }
    const char *reason = NULL;
    int status = parse_channels(req, &names, &reason);
    if (status != 0) {
        free(names.v);
        fail(req, res, status, reason);
        return;
    }
    /* Exactly the links this subscription needs: idle subscribers are most of the memory. */
    hsc_sub_t *s = calloc(1, sizeof *s + names.n * sizeof(hsc_link_t));
    if (s == NULL) {
        free(names.v);
        fail(req, res, 503, "out of memory");
        return;
    }
    if (hsc_auth_require(&srv->cfg, req, res, HSC_AUTH_SUBSCRIBE, names.v[0], sizeof names.v[0],
                         names.n) != 0) {
        free(names.v);
        free(s);
        return;
    }
    if (w->http.draining) { /* shutting down: come back to the next instance */
        free(names.v);
        free(s);
        fail(req, res, 503, "shutting down");
        return;
    }
    char lbuf[128];
    size_t last_len = 0;
    const char *last = last_event_id(req, lbuf, sizeof lbuf, &last_len);

    s->res = res;
    s->w = w;
    s->chunked = false;
    gap_t gap = GAP_NONE;
    replay_t *replay = NULL;
    size_t nreplay = 0;
    uv_mutex_lock(&reg->mu);
    int rc = subscribe_locked(srv, s, &names, last, last_len, &gap, &replay, &nreplay);
    uv_mutex_unlock(&reg->mu);
    free(names.v);
    if (rc != 0) {
        free(s);
        fail(req, res, 503,
             rc == HSC_EFULL ? "too many channels (see --max-channels)" : "out of memory");
        return;
    }
    atomic_fetch_add_explicit(&reg->nsubs, 1, memory_order_relaxed);
    s->next = w->ch.subs;
    if (s->next)
        s->next->prev = s;
    w->ch.subs = s;
    w->ch.nsubs++;
    if (last != NULL)
        atomic_fetch_add_explicit(gap == GAP_NONE ? &reg->resumes : &reg->missed, 1,
                                  memory_order_relaxed);

    res->user = s;
    res->on_close = sub_on_close;
    res->on_drain = sub_on_drain;
    rc = hsc_res_start(res, 200, "text/event-stream; charset=utf-8",
                       "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n", HSC_STREAMING);
    if (rc != 0) {
        res->on_close = NULL;
        res->on_drain = NULL;
        for (size_t i = 0; i < nreplay; i++)
            hsc_frame_unref(replay[i].frame);
        free(replay);
        sub_free(s);
        hsc_res_abort(res);
        return;
    }
    s->chunked = res->mode == HSC_BODY_CHUNKED;
    size_t replay_bytes = 0;
    for (size_t i = 0; i < nreplay; i++)
        replay_bytes += replay[i].frame->len;
    s->bl_limit = replay_bytes + srv->cfg.max_queue_bytes;
    {
        char pre[96];
        uint64_t retry = srv->cfg.retry_ms + chw_random(&w->ch, srv->cfg.retry_ms / 2 + 1);
        int n = snprintf(pre, sizeof pre, "retry: %llu\n: hsc %s\n\n", (unsigned long long)retry,
                         reg->epoch_s);
        hsc_res_write(res, pre, (size_t)n);
        if (gap != GAP_NONE)
            write_gap(s, gap, last, last_len, nreplay);
    }
    /* The replay goes through the backlog so that flow control applies to it as to live events. */
    for (size_t i = 0; i < nreplay; i++) {
        if (!s->dropped && !sub_backlog(s, replay[i].frame))
            sub_drop(s);
        hsc_frame_unref(replay[i].frame);
    }
    free(replay);
    sub_flush(s);
}

void hsc_events_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    if (req->method == HSC_M_POST)
        publish(ctx, req, res);
    else
        subscribe(ctx, req, res);
}

/* ---- statistics ----------------------------------------------------------------------------- */

void hsc_registry_stats(hsc_registry_t *reg, hsc_pubsub_stats_t *out)
{
    uv_mutex_lock(&reg->mu);
    out->channels = reg->nchans;
    out->history_events = reg->hist_events;
    out->history_bytes = reg->hist_bytes;
    out->published = reg->published;
    uv_mutex_unlock(&reg->mu);
    out->subscribers = atomic_load_explicit(&reg->nsubs, memory_order_relaxed);
    out->resumes = atomic_load_explicit(&reg->resumes, memory_order_relaxed);
    out->missed = atomic_load_explicit(&reg->missed, memory_order_relaxed);
}
