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
 * Memory is bounded: each history by count, bytes and age; all of them together by
 * --history-total-bytes; the table by --max-channels. A channel with no subscribers and no
 * history is freed (a delivery on its way holds a reference, given back through release()).
 *
 * Nobody is locked out by a full table or budget (issue 21): channels with history are on one of
 * two least-recently-used lists, O(1) to keep up under the lock. `idle` holds those without
 * subscribers, `busy` those with; a publish or a subscription moves a channel to its list's tail.
 * A publish past the global budget first drops whole idle channels from the head of `idle`, then
 * the oldest events of the channels at the head of `busy`; a new channel past --max-channels
 * drops the head of `idle`. Only when `idle` is empty (every channel has subscribers) is a new
 * channel refused (HSC_EFULL). Dropped history is evicted history: a resume across it reports
 * HSC_GAP_EXPIRED as above. A channel a request is working on is pinned (on no list) so that it
 * cannot be dropped under it.
 *
 * Here: the table (its chains are chantable.c's), the least-recently-used lists and eviction,
 * publish, subscribe and upkeep. The listings are in memory_list.c, the journal's side in
 * memory_journal.c; what the three share (the structs, the helpers they call) in memory_int.h.
 *
 * Names are hashed with SipHash under a key drawn per process (getrandom()), so a client cannot
 * choose names that pile up in one bucket.
 */
#include "pubsub/memory_int.h"
#include "policy/policy.h" /* hsc_ratelimit_take() */

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- the channel table (all under m->mu) ----------------------------------------------------- */

/* ---- the least-recently-used lists (all under m->mu) ----------------------------------------- */

/* The list `ch` belongs on: none while pinned, out of the table or without history. */
static lru_t *lru_wanted(memory_t *m, const mchan_t *ch)
{
    if (!ch->in_table || ch->pins > 0 || ch->hist.count == 0)
        return NULL;
    return ch->total_subs == 0 ? &m->idle : &m->busy;
}

void hsc_memory_lru_unlink(mchan_t *ch)
{
    lru_t *l = ch->lru;
    if (l == NULL)
        return;
    if (ch->lru_prev != NULL)
        ch->lru_prev->lru_next = ch->lru_next;
    else
        l->head = ch->lru_next;
    if (ch->lru_next != NULL)
        ch->lru_next->lru_prev = ch->lru_prev;
    else
        l->tail = ch->lru_prev;
    ch->lru = NULL;
    ch->lru_prev = ch->lru_next = NULL;
}

/* Puts `ch` on the list its state asks for; with `used`, at that list's tail (most recent). */
static void lru_update(memory_t *m, mchan_t *ch, bool used)
{
    lru_t *want = lru_wanted(m, ch);
    if (want == ch->lru && !used)
        return;
    hsc_memory_lru_unlink(ch);
    if (want == NULL)
        return;
    ch->lru = want;
    ch->lru_prev = want->tail;
    if (want->tail != NULL)
        want->tail->lru_next = ch;
    else
        want->head = ch;
    want->tail = ch;
}

void hsc_memory_chan_unref(mchan_t *ch)
{
    if (atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1)
        return;
    hsc_history_dispose(&ch->hist);
    hsc_frame_unref(ch->pub.tag);
    free(ch->pub.slot); /* one block with nsubs */
    free(ch);
}

mchan_t *hsc_memory_table_find(memory_t *m, const char *name, size_t len, uint64_t h)
{
    return ment(hsc_chantable_find(&m->chans, name, len, h));
}

static void evict_channel(memory_t *m, mchan_t *ch);

/* Whether the request's client may create `n` channels now (its tokens are taken if so). */
static bool may_create(hsc_create_check_t *c, size_t n)
{
    if (c == NULL || c->limit == NULL)
        return true;
    c->retry_ms = hsc_ratelimit_take(c->limit, c->client, n, now_ms());
    return c->retry_ms == 0;
}

/*
 * Finds or creates a channel, and pins it (hsc_memory_unpin() when done). A new channel is first
 * cleared with `check` (NULL: already cleared); past --max-channels the least recently used idle
 * channel makes room. Returns NULL with *rc HSC_ELIMIT, HSC_EFULL (every channel has subscribers)
 * or HSC_ENOMEM.
 */
mchan_t *hsc_memory_chan_get(memory_t *m, const char *name, size_t len, hsc_create_check_t *check,
                             int *rc)
{
    uint64_t h = hsc_siphash(m->hash_key, name, len);
    mchan_t *ch = hsc_memory_table_find(m, name, len, h);
    if (ch != NULL) {
        ch->pins++;
        hsc_memory_lru_unlink(ch);
        return ch;
    }
    if (!may_create(check, 1)) {
        *rc = HSC_ELIMIT;
        return NULL;
    }
    if (m->chans.n >= m->max_channels) {
        if (m->idle.head == NULL) {
            *rc = HSC_EFULL;
            return NULL;
        }
        evict_channel(m, m->idle.head);
    }
    if (hsc_chantable_reserve(&m->chans) != 0) {
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
    ch->hent.hash = h;
    ch->in_table = true;
    /* The pointers first: after nhubs unsigned ints they would be misaligned when the count is
     * odd (found by fuzz_request, one worker). */
    ch->pub.slot = arrays;
    ch->nsubs = (unsigned *)(ch->pub.slot + nhubs);
    hsc_history_init(&ch->hist, m->history, m->history_bytes, m->history_age_ms);
    ch->since = m->seq;
    ch->name_len = len;
    memcpy(ch->name, name, len);
    hsc_chantable_insert(&m->chans, &ch->hent);
    ch->pins = 1;
    return ch;
}

/* Frees a channel with no subscribers and no history (deliveries on their way keep it alive). */
static void chan_maybe_free(memory_t *m, mchan_t *ch)
{
    if (!ch->in_table || ch->pins > 0 || ch->total_subs > 0 || ch->hist.count > 0 ||
        ch->pending > 0)
        return;
    hsc_memory_lru_unlink(ch);
    hsc_chantable_remove(&m->chans, &ch->hent);
    ch->in_table = false;
    if (ch->hist.evicted_seq > m->freed_upto)
        m->freed_upto = ch->hist.evicted_seq;
    hsc_memory_chan_unref(ch);
}

/* Keeps the engine's history totals in step after a history operation on `ch`. */
void hsc_memory_hist_account(memory_t *m, mchan_t *ch, size_t count0, size_t bytes0)
{
    m->hist_events += ch->hist.count;
    m->hist_events -= count0;
    m->hist_bytes += ch->hist.bytes;
    m->hist_bytes -= bytes0;
}

void hsc_memory_chan_expire(memory_t *m, mchan_t *ch, uint64_t now)
{
    size_t c0 = ch->hist.count, b0 = ch->hist.bytes;
    hsc_history_expire(&ch->hist, now);
    hsc_memory_hist_account(m, ch, c0, b0);
    lru_update(m, ch, false); /* off `busy` once empty */
}

/* The end of a request's work on `ch`: back on its list, as the most recently used. */
void hsc_memory_unpin(memory_t *m, mchan_t *ch)
{
    ch->pins--;
    lru_update(m, ch, true);
    chan_maybe_free(m, ch);
}

/* Drops a whole idle channel's history, which frees it (m->mu held; not pinned). */
static void evict_channel(memory_t *m, mchan_t *ch)
{
    size_t c0 = ch->hist.count, b0 = ch->hist.bytes;
    while (ch->hist.count > 0)
        hsc_history_evict_oldest(&ch->hist);
    hsc_memory_hist_account(m, ch, c0, b0);
    m->evicted_events += c0;
    m->evicted_channels++;
    hsc_memory_lru_unlink(ch);
    chan_maybe_free(m, ch); /* records its evicted_seq in freed_upto */
}

/*
 * Makes room under --history-total-bytes (m->mu held): the least recently used idle channel as a
 * whole, else the oldest event of the least recently used channel with subscribers. Pinned
 * channels are on neither list. Returns false when there is nothing left to drop.
 */
static bool evict_for_budget(memory_t *m)
{
    if (m->idle.head != NULL) {
        evict_channel(m, m->idle.head);
        return true;
    }
    mchan_t *ch = m->busy.head;
    if (ch == NULL)
        return false;
    size_t c0 = ch->hist.count, b0 = ch->hist.bytes;
    hsc_history_evict_oldest(&ch->hist);
    hsc_memory_hist_account(m, ch, c0, b0);
    m->evicted_events++;
    lru_update(m, ch, false);
    return true;
}

/* The global budget after `ch` (pinned) grew: other channels' history first, then `ch`'s oldest. */
void hsc_memory_keep_budget(memory_t *m, mchan_t *ch)
{
    while (m->hist_bytes > m->history_total && evict_for_budget(m))
        ;
    while (m->hist_bytes > m->history_total && ch->hist.count > 0) {
        size_t c0 = ch->hist.count, b0 = ch->hist.bytes;
        hsc_history_evict_oldest(&ch->hist);
        hsc_memory_hist_account(m, ch, c0, b0);
        m->evicted_events++;
    }
}

/* ---- publish --------------------------------------------------------------------------------- */

/*
 * An event enters history and goes to every hub with subscribers on the channel (m->mu held).
 * Returns the number of subscribers it was queued for; `wake` gets a bit per hub (all past 64).
 */
unsigned hsc_memory_chan_deliver(memory_t *m, mchan_t *ch, uint64_t seq, hsc_frame_t *f,
                                 uint64_t *wake)
{
    size_t c0 = ch->hist.count, b0 = ch->hist.bytes;
    uint64_t now = now_ms();
    hsc_history_expire(&ch->hist, now);
    if (hsc_history_push(&ch->hist, seq, now, f) != 0) {
        HSC_LOG(HSC_LOG_ERROR, "channel %s: out of memory for history", ch->name);
        if (ch->hist.evicted_seq < seq)
            ch->hist.evicted_seq = seq; /* a resume across it must report the gap */
    }
    hsc_memory_hist_account(m, ch, c0, b0);
    ch->last_pub = now;
    hsc_memory_keep_budget(m, ch);
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

void hsc_memory_flush_hubs(hsc_engine_t *e, uint64_t wake)
{
    for (unsigned i = 0; i < e->nhubs; i++)
        if (i >= 64 || (wake & (1ull << i)))
            e->hubs[i].sink->flush(e->hubs[i].ctx);
}

/* The wall clock in milliseconds: what a journal record's time says. */
uint64_t hsc_memory_wall_ms(void)
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
    mchan_t *ch = hsc_memory_chan_get(m, p->channel, p->channel_len, &p->create, &rc);
    hsc_frame_t *f = NULL;
    if (ch != NULL) {
        uint64_t seq = m->seq + 1;
        hsc_event_id_format(p->id, m->epoch, seq);
        f = hsc_event_frame_new(p->type, p->id, p->data, p->len);
        if (f != NULL)
            f->born_ns = uv_hrtime(); /* hsc_publish_delivery_seconds starts here */
        *pe = (hsc_jpending_t){.p = p, .chan = &ch->pub, .frame = f, .seq = seq};
        if (f == NULL)
            rc = HSC_ENOMEM;
        else if ((rc = hsc_journal_append(m->journal, pe, hsc_memory_wall_ms())) == 0) {
            m->seq = seq;
            p->seq = seq;
            ch->pending++;
            atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
        }
        hsc_memory_unpin(m, ch);
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
    mchan_t *ch = hsc_memory_chan_get(m, p->channel, p->channel_len, &p->create, &rc);
    if (ch != NULL) {
        uint64_t seq = m->seq + 1;
        hsc_event_id_format(p->id, m->epoch, seq);
        f = hsc_event_frame_new(p->type, p->id, p->data, p->len);
        if (f != NULL)
            f->born_ns = uv_hrtime(); /* hsc_publish_delivery_seconds starts here */
        if (f == NULL) {
            rc = HSC_ENOMEM;
        } else if (m->journal != NULL &&
                   (rc = hsc_journal_write(m->journal, p, seq, hsc_memory_wall_ms())) != 0) {
            /* not written: not published (the number is taken by the next one) */
        } else {
            m->seq = m->committed = seq;
            m->published++;
            p->seq = seq;
            n = hsc_memory_chan_deliver(m, ch, seq, f, &wake);
        }
        hsc_memory_unpin(m, ch);
    }
    uv_mutex_unlock(&m->mu);
    hsc_frame_unref(f);
    hsc_memory_flush_hubs(e, wake);
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
        hsc_memory_unpin(m, mchan(s->chans[i]));
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
    if (s->create.limit != NULL) { /* the new channels are cleared together, before any is made */
        size_t missing = 0;
        for (size_t i = 0; i < s->n; i++) {
            const char *name = s->names + i * s->stride;
            size_t len = strlen(name);
            missing +=
                hsc_memory_table_find(m, name, len, hsc_siphash(m->hash_key, name, len)) == NULL;
        }
        if (missing > 0 && !may_create(&s->create, missing))
            return HSC_ELIMIT;
    }
    for (size_t i = 0; i < s->n; i++) {
        const char *name = s->names + i * s->stride;
        mchan_t *ch = hsc_memory_chan_get(m, name, strlen(name), NULL, &rc);
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
        hsc_memory_chan_expire(m, ch, now);
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
        hsc_memory_unpin(m, ch);
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
        lru_update(m, ch, true); /* to `idle` when it was the last subscriber */
        chan_maybe_free(m, ch);
    }
    uv_mutex_unlock(&m->mu);
}

static void mem_release(hsc_engine_t *e, hsc_chan_t *chan)
{
    (void)e;
    hsc_memory_chan_unref(mchan(chan));
}

/* ---- upkeep ---------------------------------------------------------------------------------- */

void hsc_memory_sweep(hsc_engine_t *e)
{
    memory_t *m = (memory_t *)e;
    uv_mutex_lock(&m->mu);
    uint64_t now = now_ms(); /* after the lock: no publish stamped later than this can be pending */
    for (size_t i = 0; i < m->chans.cap; i++) {
        for (mchan_t *ch = ment(m->chans.slots[i]), *next; ch != NULL; ch = next) {
            next = ment(ch->hent.next);
            hsc_memory_chan_expire(m, ch, now);
            chan_maybe_free(m, ch);
        }
    }
    uv_mutex_unlock(&m->mu);
}

static void mem_stats(hsc_engine_t *e, hsc_engine_stats_t *out)
{
    memory_t *m = (memory_t *)e;
    uv_mutex_lock(&m->mu);
    out->channels = m->chans.n;
    out->history_events = m->hist_events;
    out->history_bytes = m->hist_bytes;
    out->published = m->published;
    out->evicted_channels = m->evicted_channels;
    out->evicted_events = m->evicted_events;
    uv_mutex_unlock(&m->mu);
}

static void mem_free(hsc_engine_t *e)
{
    memory_t *m = (memory_t *)e;
    for (size_t i = 0; i < m->chans.cap; i++) {
        for (mchan_t *ch = ment(m->chans.slots[i]), *next; ch != NULL; ch = next) {
            next = ment(ch->hent.next);
            hsc_memory_chan_unref(ch);
        }
    }
    hsc_chantable_free(&m->chans);
    free(m->base.hubs);
    uv_mutex_destroy(&m->mu);
    free(m);
}
/* Copies the limits the engine keeps from `cfg`. */
static void take_limits(memory_t *m, const hsc_server_config_t *cfg)
{
    m->history = cfg->history;
    m->history_bytes = cfg->history_bytes;
    m->history_age_ms = cfg->history_age_ms;
    m->history_total = cfg->history_total_bytes > 0 ? cfg->history_total_bytes : SIZE_MAX;
    m->max_channels = cfg->max_channels;
}

/* A reload: every channel's ring takes the new bounds, then the global budget is enforced. */
static void mem_reconfigure(hsc_engine_t *e, const hsc_server_config_t *cfg)
{
    memory_t *m = (memory_t *)e;
    uv_mutex_lock(&m->mu);
    take_limits(m, cfg);
    uint64_t now = now_ms();
    for (size_t i = 0; i < m->chans.cap; i++) {
        for (mchan_t *ch = ment(m->chans.slots[i]), *next; ch != NULL; ch = next) {
            next = ment(ch->hent.next);
            hsc_history_t *h = &ch->hist;
            h->max_count = m->history;
            h->max_bytes = m->history_bytes;
            h->max_age_ms = m->history_age_ms;
            size_t c0 = h->count, b0 = h->bytes;
            while (h->count > 0 && (h->count > h->max_count || h->bytes > h->max_bytes))
                hsc_history_evict_oldest(h);
            m->evicted_events += c0 - h->count;
            hsc_memory_hist_account(m, ch, c0, b0);
            hsc_memory_chan_expire(m, ch, now);
            chan_maybe_free(m, ch);
        }
    }
    while (m->hist_bytes > m->history_total && evict_for_budget(m))
        ;
    uv_mutex_unlock(&m->mu);
}

static const hsc_engine_vt_t memory_vt = {
    mem_publish, mem_subscribe, mem_unsubscribe,     mem_release,     hsc_memory_sweep,
    mem_stats,   mem_free,      hsc_memory_channels, mem_reconfigure,
};

/* The hash key, per process: getrandom(), else (no entropy yet, an old kernel) the clock and
 * addresses, still unknown to a remote client. */
static void draw_key(unsigned char key[HSC_SIPHASH_KEY])
{
    if (getrandom(key, HSC_SIPHASH_KEY, GRND_NONBLOCK) == HSC_SIPHASH_KEY)
        return;
    HSC_LOG(HSC_LOG_WARN, "getrandom() failed: the channel hash key is from the clock");
    uint64_t a = uv_hrtime() ^ (uint64_t)(uintptr_t)key, b = (uint64_t)(uintptr_t)&a * 31 + a;
    memcpy(key, &a, 8);
    memcpy(key + 8, &b, 8);
}

int hsc_memory_engine_new(const hsc_server_config_t *cfg, unsigned nhubs, hsc_engine_t **out)
{
    *out = NULL;
    memory_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return HSC_ENOMEM;
    int trc = hsc_chantable_init(&m->chans, offsetof(mchan_t, name) - offsetof(mchan_t, hent),
                                 offsetof(mchan_t, name_len) - offsetof(mchan_t, hent));
    m->base.hubs = calloc(nhubs ? nhubs : 1, sizeof *m->base.hubs);
    if (trc != 0 || m->base.hubs == NULL) {
        hsc_chantable_free(&m->chans);
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
    take_limits(m, cfg);
    draw_key(m->hash_key);
    *out = &m->base;
    return 0;
}
