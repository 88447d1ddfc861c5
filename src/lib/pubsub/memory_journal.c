/*
 * The memory engine's side of the journal (memory.c has the engine, memory_int.h what they
 * share).
 *
 * Journal (journal.h, docs/internals/journal.md): with one attached, a publish's record is written
 * before its event enters history (--fsync batch, off: hsc_journal_write() under the lock), or
 * queued and committed later by the journal's writer thread (always: hsc_memory_commit(), the
 * channel kept by `pending` meanwhile); the cut of a subscription is the newest committed number.
 * On start the journal replays into the histories (hsc_memory_restore*()), and compaction reads
 * them back (hsc_memory_snapshot()).
 */
#include "pubsub/memory_int.h"
#include "pubsub/jrecord.h" /* record kinds, for the snapshot */

#include <stdlib.h>

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
        ch->pins++; /* as a publish holds it: on no list while it grows */
        hsc_memory_lru_unlink(ch);
        if (pe->rc == 0) {
            pe->subscribers = hsc_memory_chan_deliver(m, ch, pe->seq, pe->frame, &wake);
            m->committed = pe->seq;
            m->published++;
        }
        ch->pending--;
        hsc_memory_unpin(m, ch);
        hsc_memory_chan_unref(ch); /* the publish's reference */
        hsc_frame_unref(pe->frame);
        pe->frame = NULL;
        pe->chan = NULL;
        pe->call.fn = commit_done;
        hsc_engine_hub_t *hub = &m->base.hubs[pe->p->hub];
        hub->sink->call(hub->ctx, &pe->call);
    }
    uv_mutex_unlock(&m->mu);
    hsc_memory_flush_hubs(e, wake);
}

int hsc_memory_restore(hsc_engine_t *e, const char *name, size_t len, uint64_t seq, uint64_t age_ms,
                       hsc_frame_t *f)
{
    memory_t *m = (memory_t *)e;
    int rc = 0;
    uv_mutex_lock(&m->mu);
    mchan_t *ch = hsc_memory_chan_get(m, name, len, NULL, &rc);
    if (ch != NULL) {
        if (seq > m->seq)
            m->seq = seq;
        if (seq - 1 < ch->since) /* it existed then: replay order is not creation order */
            ch->since = seq - 1;
        size_t count = ch->hist.count;
        if (seq > ch->hist.evicted_seq &&
            (count == 0 || hsc_history_at(&ch->hist, count - 1)->seq < seq)) {
            size_t c0 = count, b0 = ch->hist.bytes;
            uint64_t now = now_ms(), t = age_ms < now ? now - age_ms : 0;
            if (hsc_history_push(&ch->hist, seq, t, f) != 0)
                rc = HSC_ENOMEM;
            hsc_memory_hist_account(m, ch, c0, b0);
            ch->last_pub = t;
            hsc_memory_keep_budget(m, ch);
        }
        hsc_memory_unpin(m, ch);
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
        mchan_t *ch = hsc_memory_chan_get(m, name, len, NULL, &rc);
        if (ch != NULL && seq > ch->hist.evicted_seq)
            ch->hist.evicted_seq = seq;
        if (ch != NULL && seq - 1 < ch->since)
            ch->since = seq - 1;
        if (ch != NULL)
            hsc_memory_unpin(m, ch);
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
    hsc_memory_sweep(e);
}

uint64_t hsc_memory_snapshot(hsc_engine_t *e, hsc_memory_visit_fn fn, void *ctx, int *stopped)
{
    memory_t *m = (memory_t *)e;
    *stopped = 0;
    uv_mutex_lock(&m->mu);
    uint64_t mono = now_ms(), wall = hsc_memory_wall_ms();
    *stopped = fn(ctx, 0, NULL, 0, m->committed, wall, NULL);
    for (size_t i = 0; i < m->chans.cap && !*stopped; i++) {
        for (mchan_t *ch = ment(m->chans.slots[i]); ch != NULL && !*stopped;
             ch = ment(ch->hent.next)) {
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
