/*
 * The memory engine's listings (memory.c has the engine, memory_int.h what they share).
 *
 * Listings (the admin API): one pass over the table under the lock keeps the `limit` smallest
 * names after the cursor in a max-heap allocated beforehand, so a page costs O(channels x log
 * limit) time and memory for one page.
 */
#include "pubsub/memory_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- listings (the admin API) ---------------------------------------------------------------- */

/* Bytewise name order, the shorter first on a tie. */
static int name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c != 0 ? c : (al > bl) - (al < bl);
}

static int chan_cmp(const mchan_t *a, const mchan_t *b)
{
    return name_cmp(a->name, a->name_len, b->name, b->name_len);
}

/* Restores the max-heap (by name) below index i of h[0..n). */
static void heap_down(mchan_t **h, size_t n, size_t i)
{
    for (;;) {
        size_t big = i, l = 2 * i + 1, r = l + 1;
        if (l < n && chan_cmp(h[l], h[big]) > 0)
            big = l;
        if (r < n && chan_cmp(h[r], h[big]) > 0)
            big = r;
        if (big == i)
            return;
        mchan_t *t = h[i];
        h[i] = h[big];
        h[big] = t;
        i = big;
    }
}

static void heap_up(mchan_t **h, size_t i)
{
    while (i > 0 && chan_cmp(h[(i - 1) / 2], h[i]) < 0) {
        mchan_t *t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static void report(hsc_channels_t *q, mchan_t *ch, uint64_t now, uint64_t wall)
{
    const hsc_history_t *h = &ch->hist;
    hsc_chan_info_t info = {
        .name = ch->name,
        .name_len = ch->name_len,
        .subscribers = ch->total_subs,
        .history_events = h->count,
        .history_bytes = h->bytes,
        .first_seq = h->count ? hsc_history_at(h, 0)->seq : 0,
        .last_seq = h->count ? hsc_history_at(h, h->count - 1)->seq : 0,
        .last_publish_ms = ch->last_pub ? wall - (now - ch->last_pub) : 0,
    };
    if (q->one) {
        atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
        info.chan = &ch->pub;
    }
    q->each(q, &info);
    q->found++;
}

/*
 * One channel, or a page after the cursor: one pass over the table keeps the `limit` smallest
 * names after the cursor in a max-heap (allocated before the lock), then reports them in order.
 * O(channels x log limit) under the lock per page; memory for one page.
 */
void hsc_memory_channels(hsc_engine_t *e, hsc_channels_t *q)
{
    memory_t *m = (memory_t *)e;
    q->rc = 0;
    q->found = 0;
    q->more = false;
    q->epoch = m->epoch;
    mchan_t **heap = NULL;
    if (!q->one && (heap = malloc((q->limit ? q->limit : 1) * sizeof *heap)) == NULL) {
        q->rc = HSC_ENOMEM;
        q->cb(q);
        return;
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    uint64_t wall = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    uv_mutex_lock(&m->mu);
    uint64_t now = now_ms();
    q->total = m->chans.n;
    if (q->one) {
        mchan_t *ch = hsc_memory_table_find(m, q->name, q->name_len,
                                            hsc_siphash(m->hash_key, q->name, q->name_len));
        if (ch != NULL) {
            hsc_memory_chan_expire(m, ch, now);
            report(q, ch, now, wall);
        }
    } else {
        size_t n = 0;
        for (size_t i = 0; i < m->chans.cap; i++) {
            for (mchan_t *ch = ment(m->chans.slots[i]); ch != NULL; ch = ment(ch->hent.next)) {
                if (q->name != NULL && name_cmp(ch->name, ch->name_len, q->name, q->name_len) <= 0)
                    continue;
                if (n < q->limit) {
                    heap[n] = ch;
                    heap_up(heap, n++);
                } else if (q->limit > 0) {
                    q->more = true;
                    if (chan_cmp(ch, heap[0]) < 0) {
                        heap[0] = ch;
                        heap_down(heap, n, 0);
                    }
                }
            }
        }
        for (size_t k = n; k > 1; k--) { /* heap sort: ascending names */
            mchan_t *t = heap[0];
            heap[0] = heap[k - 1];
            heap[k - 1] = t;
            heap_down(heap, k - 1, 0);
        }
        for (size_t k = 0; k < n; k++)
            report(q, heap[k], now, wall);
    }
    uv_mutex_unlock(&m->mu);
    free(heap);
    q->cb(q);
}
