/*
 * The memory engine (engine.h): channels, ids and history in this process, behind one mutex.
 *
 * A publish, under the lock, assigns the next sequence number, encodes the event once into an
 * immutable frame, appends it to the channel's history ring and queues it to each hub that has
 * subscribers on the channel (the sink's deliver(): the hub's inbox). Because all of that happens
 * under the one lock, every hub receives events in sequence order, across channels. The hubs are
 * woken (flush()) after the lock is released, and the publish completes before returning.
 *
 * Exact resume: a subscription is registered under the lock, at the same moment the cut (the last
 * sequence number assigned) is read and the history after the client's last id is copied (frame
 * references, merged by sequence number). Everything up to the cut comes from that replay;
 * everything after it reaches the hub as deliveries. A delivery already in the hub's inbox with a
 * number at or below the cut is the hub's to skip.
 *
 * Recent events (a subscriber without a last id asking for the newest N, or all): the same
 * moment, the same cut; each channel offers its newest N, and of those merged by number the
 * newest N are kept.
 *
 * Tags: a channel's tag frame (engine.h, "Tags") is made under the lock by the first subscribe
 * that asks for it and lives as long as the channel.
 *
 * Gaps are detected, not guessed: each history remembers the newest number it ever evicted; if
 * that is above the client's id, or the channel is younger than the id and some freed channel had
 * evicted past it, the resume reports HSC_GAP_EXPIRED.
 *
 * Memory is bounded: histories by count, bytes and age; the table by --max-channels; a channel
 * with no subscribers and no history is freed (a delivery on its way holds a reference, given
 * back through release()).
 */
#include "pubsub/engine.h"
#include "pubsub/jrecord.h" /* record kinds, for the snapshot */
#include "pubsub/journal.h" /* the persistence hook: journal.c */
#include "pubsub/pubsub.h"  /* the history rings */

#include <stdlib.h>
#include <string.h>

typedef struct mchan_s mchan_t;

struct mchan_s {
    hsc_chan_t pub;   /* what hubs see: their slots */
    atomic_uint refs; /* the table's, and one per delivery on its way */
    mchan_t *hnext;
    uint32_t hash;
    bool in_table;
    hsc_history_t hist;
    uint64_t since;      /* the last sequence number assigned before this channel existed */
    unsigned total_subs; /* under the lock */
    unsigned pending;    /* publishes waiting for the journal, under the lock */
    unsigned *nsubs;     /* per hub, under the lock */
    size_t name_len;
    char name[];
};

typedef struct memory_s {
    hsc_engine_t base;
    uv_mutex_t mu;
    mchan_t **table;
    size_t tcap, nchans;
    uint64_t seq;           /* the last sequence number assigned */
    uint64_t committed;     /* the last one in history and delivered: subscriptions' cut */
    uint64_t lost_upto;     /* a resume from below it crosses records the journal lost */
    hsc_journal_t *journal; /* NULL: memory only */
    uint64_t freed_upto;    /* newest number evicted from a channel that was then freed */
    uint64_t published;
    size_t hist_events, hist_bytes;
    uint64_t epoch;
    /* Limits, copied from the configuration. */
    size_t history, history_bytes;
    uint64_t history_age_ms;
    unsigned max_channels;
} memory_t;

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static mchan_t *mchan(hsc_chan_t *c)
{
    return (mchan_t *)((char *)c - offsetof(mchan_t, pub));
}

/* ---- the channel table (all under m->mu) ----------------------------------------------------- */

static uint32_t hash_name(const char *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static void chan_unref(mchan_t *ch)
{
    if (atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1)
        return;
    hsc_history_dispose(&ch->hist);
    hsc_frame_unref(ch->pub.tag);
    free(ch->pub.slot); /* one block with nsubs */
    free(ch);
}

static mchan_t *table_find(memory_t *m, const char *name, size_t len, uint32_t h)
{
    for (mchan_t *ch = m->table[h & (m->tcap - 1)]; ch != NULL; ch = ch->hnext)
        if (ch->hash == h && ch->name_len == len && memcmp(ch->name, name, len) == 0)
            return ch;
    return NULL;
}

static int table_grow(memory_t *m)
{
    size_t cap = m->tcap * 2;
    mchan_t **t = calloc(cap, sizeof *t);
    if (t == NULL)
        return HSC_ENOMEM;
    for (size_t i = 0; i < m->tcap; i++) {
        for (mchan_t *ch = m->table[i], *next; ch != NULL; ch = next) {
            next = ch->hnext;
            ch->hnext = t[ch->hash & (cap - 1)];
            t[ch->hash & (cap - 1)] = ch;
        }
    }
    free(m->table);
    m->table = t;
    m->tcap = cap;
    return 0;
}

/* Finds or creates a channel. Returns NULL with *rc HSC_EFULL (--max-channels) or HSC_ENOMEM. */
static mchan_t *chan_get(memory_t *m, const char *name, size_t len, int *rc)
{
    uint32_t h = hash_name(name, len);
    mchan_t *ch = table_find(m, name, len, h);
    if (ch != NULL)
        return ch;
    if (m->nchans >= m->max_channels) {
        *rc = HSC_EFULL;
        return NULL;
    }
    if (m->nchans + 1 > m->tcap / 4 * 3 && table_grow(m) != 0) {
        *rc = HSC_ENOMEM;
        return NULL;
    }
    unsigned nhubs = m->base.nhubs;
    ch = calloc(1, sizeof *ch + len + 1);
    void *arrays = ch ? calloc(nhubs, sizeof(void *) + sizeof(unsigned)) : NULL;
    if (arrays == NULL) {
        free(ch);
        *rc = HSC_ENOMEM;
        return NULL;
    }
    atomic_init(&ch->refs, 1);
    ch->hash = h;
    ch->in_table = true;
    /* The pointers first: after nhubs unsigned ints they would be misaligned when the count is
     * odd (found by fuzz_request, one worker). */
    ch->pub.slot = arrays;
    ch->nsubs = (unsigned *)(ch->pub.slot + nhubs);
    hsc_history_init(&ch->hist, m->history, m->history_bytes, m->history_age_ms);
    ch->since = m->seq;
    ch->name_len = len;
    memcpy(ch->name, name, len);
    ch->hnext = m->table[h & (m->tcap - 1)];
    m->table[h & (m->tcap - 1)] = ch;
    m->nchans++;
    return ch;
}

/* Frees a channel with no subscribers and no history (deliveries on their way keep it alive). */
static void chan_maybe_free(memory_t *m, mchan_t *ch)
{
    if (!ch->in_table || ch->total_subs > 0 || ch->hist.count > 0 || ch->pending > 0)
        return;
    mchan_t **pp = &m->table[ch->hash & (m->tcap - 1)];
    while (*pp != ch)
        pp = &(*pp)->hnext;
    *pp = ch->hnext;
    ch->in_table = false;
    m->nchans--;
    if (ch->hist.evicted_seq > m->freed_upto)
        m->freed_upto = ch->hist.evicted_seq;
    chan_unref(ch);
}

/* Keeps the engine's history totals in step after a history operation on `ch`. */
static void hist_account(memory_t *m, mchan_t *ch, size_t count0, size_t bytes0)
{
    m->hist_events += ch->hist.count;
    m->hist_events -= count0;
    m->hist_bytes += ch->hist.bytes;
    m->hist_bytes -= bytes0;
}

static void chan_expire(memory_t *m, mchan_t *ch, uint64_t now)
{
    size_t c0 = ch->hist.count, b0 = ch->hist.bytes;
    hsc_history_expire(&ch->hist, now);
    hist_account(m, ch, c0, b0);
}

/* ---- publish --------------------------------------------------------------------------------- */

/*
 * An event enters history and goes to every hub with subscribers on the channel (m->mu held).
 * Returns the number of subscribers it was queued for; `wake` gets a bit per hub (all past 64).
 */
static unsigned chan_deliver(memory_t *m, mchan_t *ch, uint64_t seq, hsc_frame_t *f, uint64_t *wake)
{
    size_t c0 = ch->hist.count, b0 = ch->hist.bytes;
    uint64_t now = now_ms();
    hsc_history_expire(&ch->hist, now);
    if (hsc_history_push(&ch->hist, seq, now, f) != 0) {
        HSC_LOG(HSC_LOG_ERROR, "channel %s: out of memory for history", ch->name);
        if (ch->hist.evicted_seq < seq)
            ch->hist.evicted_seq = seq; /* a resume across it must report the gap */
    }
    hist_account(m, ch, c0, b0);
    unsigned n = 0;
    for (unsigned i = 0; i < m->base.nhubs; i++) {
        if (ch->nsubs[i] == 0)
            continue;
        hsc_engine_hub_t *hub = &m->base.hubs[i];
        atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
        if (!hub->sink->deliver(hub->ctx, &ch->pub, seq, f)) {
            atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_relaxed); /* the table's stays */
            HSC_LOG(HSC_LOG_ERROR, "channel %s: out of memory queueing an event", ch->name);
            continue;
        }
        n += ch->nsubs[i];
        if (i < 64)
            *wake |= 1ull << i;
    }
    return n;
}

static void flush_hubs(hsc_engine_t *e, uint64_t wake)
{
    for (unsigned i = 0; i < e->nhubs; i++)
        if (i >= 64 || (wake & (1ull << i)))
            e->hubs[i].sink->flush(e->hubs[i].ctx);
}

/* The wall clock in milliseconds: what a journal record's time says. */
static uint64_t wall_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/*
 * With a journal: the number and the frame now, under the lock, so records queue in sequence
 * order; history, deliveries and the completion once the writer has written the record
 * (hsc_memory_commit()). Returns 0 when the publish is the journal's, else an error to answer.
 */
static int publish_journaled(memory_t *m, hsc_publish_t *p)
{
    hsc_jpending_t *pe = malloc(sizeof *pe);
    if (pe == NULL)
        return HSC_ENOMEM;
    int rc = 0;
    uv_mutex_lock(&m->mu);
    mchan_t *ch = chan_get(m, p->channel, p->channel_len, &rc);
    hsc_frame_t *f = NULL;
    if (ch != NULL) {
        uint64_t seq = m->seq + 1;
        hsc_event_id_format(p->id, m->epoch, seq);
        f = hsc_event_frame_new(p->type, p->id, p->data, p->len);
        *pe = (hsc_jpending_t){.p = p, .chan = &ch->pub, .frame = f, .seq = seq};
        if (f == NULL)
            rc = HSC_ENOMEM;
        else if ((rc = hsc_journal_append(m->journal, pe, wall_ms())) == 0) {
            m->seq = seq;
            p->seq = seq;
            ch->pending++;
            atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
        }
        chan_maybe_free(m, ch);
    }
    uv_mutex_unlock(&m->mu);
    if (rc != 0) {
        hsc_frame_unref(f);
        free(pe);
    }
    return rc;
}

static void mem_publish(hsc_engine_t *e, hsc_publish_t *p)
{
    memory_t *m = (memory_t *)e;
    int rc = 0;
    uint64_t wake = 0;
    unsigned n = 0;
    hsc_frame_t *f = NULL;
    if (m->journal != NULL && !hsc_journal_direct(m->journal)) {
        if ((rc = publish_journaled(m, p)) == 0)
            return;
        p->rc = rc;
        p->subscribers = 0;
        p->cb(p);
        return;
    }
    uv_mutex_lock(&m->mu);
    mchan_t *ch = chan_get(m, p->channel, p->channel_len, &rc);
    if (ch != NULL) {
        uint64_t seq = m->seq + 1;
        hsc_event_id_format(p->id, m->epoch, seq);
        f = hsc_event_frame_new(p->type, p->id, p->data, p->len);
        if (f == NULL) {
            rc = HSC_ENOMEM;
        } else if (m->journal != NULL &&
                   (rc = hsc_journal_write(m->journal, p, seq, wall_ms())) != 0) {
            /* not written: not published (the number is taken by the next one) */
        } else {
            m->seq = m->committed = seq;
            m->published++;
            p->seq = seq;
            n = chan_deliver(m, ch, seq, f, &wake);
        }
        chan_maybe_free(m, ch);
    }
    uv_mutex_unlock(&m->mu);
    hsc_frame_unref(f);
    flush_hubs(e, wake);
    p->rc = rc;
    p->subscribers = n;
    p->cb(p);
}

/* ---- subscribe ------------------------------------------------------------------------------- */

static int replay_cmp(const void *a, const void *b)
{
    uint64_t x = ((const hsc_replay_t *)a)->seq, y = ((const hsc_replay_t *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Forgets the channels s->chans[0..n) were found for, as if never asked (m->mu held). */
static void unwind(memory_t *m, hsc_subscribe_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        chan_maybe_free(m, mchan(s->chans[i]));
}

/*
 * How many events of `ch`'s history go into a replay, from index *from on (m->mu held): those
 * after `after` for a resume; for recent events, at most `recent` of the newest (the merge in
 * subscribe_locked() keeps the newest across channels).
 */
static size_t replay_span(const hsc_subscribe_t *s, mchan_t *ch, uint64_t after, size_t *from)
{
    size_t count = ch->hist.count;
    if (s->last != NULL)
        *from = hsc_history_first_after(&ch->hist, after);
    else
        *from = count - (s->recent < count ? s->recent : count);
    return count - *from;
}

/* Registers the subscription and fills its replay (m->mu held). Nothing registered on error. */
static int subscribe_locked(memory_t *m, hsc_subscribe_t *s)
{
    int rc = 0;
    for (size_t i = 0; i < s->n; i++) {
        const char *name = s->names + i * s->stride;
        mchan_t *ch = chan_get(m, name, strlen(name), &rc);
        if (ch == NULL) {
            unwind(m, s, i);
            return rc;
        }
        s->chans[i] = &ch->pub;
        if (s->tag && ch->pub.tag == NULL &&
            (ch->pub.tag = hsc_chan_tag_new(ch->name, ch->name_len)) == NULL) {
            unwind(m, s, i + 1);
            return HSC_ENOMEM;
        }
    }
    s->epoch = m->epoch;
    s->cut = m->committed;
    uint64_t after = 0;
    bool replay = s->recent > 0;
    if (s->last != NULL) {
        s->gap = hsc_resume_point(s->last, s->last_len, m->epoch, s->cut, &after);
        replay = s->gap != HSC_GAP_UNKNOWN;
        if (s->gap == HSC_GAP_NONE && after < m->lost_upto)
            s->gap = HSC_GAP_EXPIRED;
    }
    size_t total = 0, from;
    uint64_t now = now_ms();
    for (size_t i = 0; replay && i < s->n; i++) {
        mchan_t *ch = mchan(s->chans[i]);
        chan_expire(m, ch, now);
        if (s->last != NULL && s->gap == HSC_GAP_NONE &&
            (ch->hist.evicted_seq > after || (ch->since > after && m->freed_upto > after)))
            s->gap = HSC_GAP_EXPIRED;
        total += replay_span(s, ch, after, &from);
    }
    hsc_replay_t *v = NULL;
    if (total > 0 && (v = malloc(total * sizeof *v)) == NULL) {
        unwind(m, s, s->n);
        return HSC_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; replay && i < s->n; i++) {
        mchan_t *ch = mchan(s->chans[i]);
        for (replay_span(s, ch, after, &from); from < ch->hist.count; from++) {
            const hsc_hist_entry_t *en = hsc_history_at(&ch->hist, from);
            v[k++] = (hsc_replay_t){en->seq, en->frame, &ch->pub};
        }
    }
    if (s->n > 1 && k > 1)
        qsort(v, k, sizeof *v, replay_cmp);
    /* Recent events across several channels: the newest `recent` of what each offered. */
    size_t skip = s->last == NULL && k > s->recent ? k - s->recent : 0;
    if (skip > 0)
        memmove(v, v + skip, (k - skip) * sizeof *v);
    k -= skip;
    for (size_t i = 0; i < k; i++)
        hsc_frame_ref(v[i].frame);
    for (size_t i = 0; i < s->n; i++) {
        mchan_t *ch = mchan(s->chans[i]);
        ch->nsubs[s->hub]++;
        ch->total_subs++;
    }
    s->replay = v;
    s->nreplay = k;
    return 0;
}

static void mem_subscribe(hsc_engine_t *e, hsc_subscribe_t *s)
{
    memory_t *m = (memory_t *)e;
    s->gap = HSC_GAP_NONE;
    s->replay = NULL;
    s->nreplay = 0;
    s->epoch = m->epoch;
    s->cut = 0;
    uv_mutex_lock(&m->mu);
    s->rc = subscribe_locked(m, s);
    uv_mutex_unlock(&m->mu);
    s->cb(s);
}

static void mem_unsubscribe(hsc_engine_t *e, unsigned hub, hsc_chan_t *const *chans, size_t n)
{
    memory_t *m = (memory_t *)e;
    uv_mutex_lock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        mchan_t *ch = mchan(chans[i]);
        ch->nsubs[hub]--;
        ch->total_subs--;
        chan_maybe_free(m, ch);
    }
    uv_mutex_unlock(&m->mu);
}

static void mem_release(hsc_engine_t *e, hsc_chan_t *chan)
{
    (void)e;
    chan_unref(mchan(chan));
}

/* ---- upkeep ---------------------------------------------------------------------------------- */

static void mem_sweep(hsc_engine_t *e)
{
    memory_t *m = (memory_t *)e;
    uv_mutex_lock(&m->mu);
    uint64_t now = now_ms(); /* after the lock: no publish stamped later than this can be pending */
    for (size_t i = 0; i < m->tcap; i++) {
        for (mchan_t *ch = m->table[i], *next; ch != NULL; ch = next) {
            next = ch->hnext;
            chan_expire(m, ch, now);
            chan_maybe_free(m, ch);
        }
    }
    uv_mutex_unlock(&m->mu);
}

static void mem_stats(hsc_engine_t *e, hsc_engine_stats_t *out)
{
    memory_t *m = (memory_t *)e;
    uv_mutex_lock(&m->mu);
    out->channels = m->nchans;
    out->history_events = m->hist_events;
    out->history_bytes = m->hist_bytes;
    out->published = m->published;
    uv_mutex_unlock(&m->mu);
}

static void mem_free(hsc_engine_t *e)
{
    memory_t *m = (memory_t *)e;
    for (size_t i = 0; i < m->tcap; i++) {
        for (mchan_t *ch = m->table[i], *next; ch != NULL; ch = next) {
            next = ch->hnext;
            chan_unref(ch);
        }
    }
    free(m->table);
    free(m->base.hubs);
    uv_mutex_destroy(&m->mu);
    free(m);
}

/* ---- the journal's side (journal.h) ---------------------------------------------------------- */

void hsc_memory_set_journal(hsc_engine_t *e, hsc_journal_t *j)
{
    ((memory_t *)e)->journal = j;
}

/* On the publisher's loop: the results, then the publisher's callback. */
static void commit_done(hsc_engine_call_t *c)
{
    hsc_jpending_t *pe = (hsc_jpending_t *)((char *)c - offsetof(hsc_jpending_t, call));
    hsc_publish_t *p = pe->p;
    p->rc = pe->rc;
    p->subscribers = pe->subscribers;
    free(pe);
    p->cb(p);
}

void hsc_memory_commit(hsc_engine_t *e, hsc_jpending_t **v, size_t n)
{
    memory_t *m = (memory_t *)e;
    uint64_t wake = 0;
    uv_mutex_lock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        hsc_jpending_t *pe = v[i];
        mchan_t *ch = mchan(pe->chan);
        if (pe->rc == 0) {
            pe->subscribers = chan_deliver(m, ch, pe->seq, pe->frame, &wake);
            m->committed = pe->seq;
            m->published++;
        }
        ch->pending--;
        chan_maybe_free(m, ch);
        chan_unref(ch); /* the publish's reference */
        hsc_frame_unref(pe->frame);
        pe->frame = NULL;
        pe->chan = NULL;
        pe->call.fn = commit_done;
        hsc_engine_hub_t *hub = &m->base.hubs[pe->p->hub];
        hub->sink->call(hub->ctx, &pe->call);
    }
    uv_mutex_unlock(&m->mu);
    flush_hubs(e, wake);
}

int hsc_memory_restore(hsc_engine_t *e, const char *name, size_t len, uint64_t seq, uint64_t age_ms,
                       hsc_frame_t *f)
{
    memory_t *m = (memory_t *)e;
    int rc = 0;
    uv_mutex_lock(&m->mu);
    mchan_t *ch = chan_get(m, name, len, &rc);
    if (ch != NULL) {
        if (seq > m->seq)
            m->seq = seq;
        if (seq - 1 < ch->since) /* it existed then: replay order is not creation order */
            ch->since = seq - 1;
        size_t count = ch->hist.count;
        if (seq > ch->hist.evicted_seq &&
            (count == 0 || hsc_history_at(&ch->hist, count - 1)->seq < seq)) {
            size_t c0 = count, b0 = ch->hist.bytes;
            uint64_t now = now_ms();
            if (hsc_history_push(&ch->hist, seq, age_ms < now ? now - age_ms : 0, f) != 0)
                rc = HSC_ENOMEM;
            hist_account(m, ch, c0, b0);
        }
        chan_maybe_free(m, ch);
    }
    uv_mutex_unlock(&m->mu);
    hsc_frame_unref(f);
    return rc;
}

void hsc_memory_restore_evicted(hsc_engine_t *e, const char *name, size_t len, uint64_t seq)
{
    memory_t *m = (memory_t *)e;
    int rc = 0;
    uv_mutex_lock(&m->mu);
    if (seq > m->seq)
        m->seq = seq;
    if (name == NULL) {
        if (seq > m->freed_upto)
            m->freed_upto = seq;
    } else {
        mchan_t *ch = chan_get(m, name, len, &rc);
        if (ch != NULL && seq > ch->hist.evicted_seq)
            ch->hist.evicted_seq = seq;
        if (ch != NULL && seq - 1 < ch->since)
            ch->since = seq - 1;
        if (ch != NULL)
            chan_maybe_free(m, ch);
    }
    uv_mutex_unlock(&m->mu);
}

void hsc_memory_restore_done(hsc_engine_t *e, uint64_t epoch, uint64_t seq, uint64_t lost_upto)
{
    memory_t *m = (memory_t *)e;
    uv_mutex_lock(&m->mu);
    m->epoch = epoch;
    if (seq > m->seq)
        m->seq = seq;
    m->committed = m->seq;
    m->lost_upto = lost_upto;
    uv_mutex_unlock(&m->mu);
    mem_sweep(e);
}

uint64_t hsc_memory_snapshot(hsc_engine_t *e, hsc_memory_visit_fn fn, void *ctx, int *stopped)
{
    memory_t *m = (memory_t *)e;
    *stopped = 0;
    uv_mutex_lock(&m->mu);
    uint64_t mono = now_ms(), wall = wall_ms();
    *stopped = fn(ctx, 0, NULL, 0, m->committed, wall, NULL);
    for (size_t i = 0; i < m->tcap && !*stopped; i++) {
        for (mchan_t *ch = m->table[i]; ch != NULL && !*stopped; ch = ch->hnext) {
            for (size_t k = 0; k < ch->hist.count && !*stopped; k++) {
                const hsc_hist_entry_t *en = hsc_history_at(&ch->hist, k);
                uint64_t age = mono > en->time_ms ? mono - en->time_ms : 0;
                *stopped = fn(ctx, HSC_JREC_FRAME, ch->name, ch->name_len, en->seq,
                              wall > age ? wall - age : 0, en->frame);
            }
            /* After its events: replayed onto a channel with history, the mark stays its own
             * (a channel left empty is freed and its mark becomes the freed channels'). */
            if (!*stopped && ch->hist.evicted_seq > 0)
                *stopped = fn(ctx, HSC_JREC_EVICTED, ch->name, ch->name_len, ch->hist.evicted_seq,
                              wall, NULL);
        }
    }
    if (!*stopped && m->freed_upto > 0)
        *stopped = fn(ctx, HSC_JREC_FREED, NULL, 0, m->freed_upto, wall, NULL);
    if (!*stopped && m->lost_upto > 0)
        *stopped = fn(ctx, HSC_JREC_LOST, NULL, 0, m->lost_upto, wall, NULL);
    uint64_t cut = m->committed;
    uv_mutex_unlock(&m->mu);
    return cut;
}

static const hsc_engine_vt_t memory_vt = {
    mem_publish, mem_subscribe, mem_unsubscribe, mem_release, mem_sweep, mem_stats, mem_free,
};

int hsc_memory_engine_new(const hsc_server_config_t *cfg, unsigned nhubs, hsc_engine_t **out)
{
    *out = NULL;
    memory_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return HSC_ENOMEM;
    m->tcap = 64;
    m->table = calloc(m->tcap, sizeof *m->table);
    m->base.hubs = calloc(nhubs ? nhubs : 1, sizeof *m->base.hubs);
    if (m->table == NULL || m->base.hubs == NULL) {
        free(m->table);
        free(m->base.hubs);
        free(m);
        return HSC_ENOMEM;
    }
    m->base.vt = &memory_vt;
    m->base.nhubs = nhubs;
    uv_mutex_init(&m->mu);
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    m->epoch = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    m->history = cfg->history;
    m->history_bytes = cfg->history_bytes;
    m->history_age_ms = cfg->history_age_ms;
    m->max_channels = cfg->max_channels;
    *out = &m->base;
    return 0;
}
