/*
 * A channel's history: a ring of the newest events, each an encoded frame with its sequence
 * number and publish time, bounded by count, bytes and age. Pure: no I/O, no locks (the channel
 * registry holds its lock around every call), so it is unit-tested on its own.
 *
 * Sequence numbers increase from the oldest entry to the newest, so "the events after id N" is a
 * binary search. `evicted_seq` remembers the newest sequence number ever evicted: a subscriber
 * resuming after N has lost nothing exactly when evicted_seq <= N.
 */
#include "pubsub/pubsub.h"

#include <stdlib.h>

void hsc_history_init(hsc_history_t *h, size_t max_count, size_t max_bytes, uint64_t max_age_ms)
{
    *h = (hsc_history_t){.max_count = max_count, .max_bytes = max_bytes, .max_age_ms = max_age_ms};
}

void hsc_history_dispose(hsc_history_t *h)
{
    while (h->count > 0)
        hsc_history_evict_oldest(h);
    free(h->ring);
    h->ring = NULL;
    h->cap = 0;
}

const hsc_hist_entry_t *hsc_history_at(const hsc_history_t *h, size_t i)
{
    return &h->ring[(h->head + i) % h->cap];
}

void hsc_history_evict_oldest(hsc_history_t *h)
{
    hsc_hist_entry_t *e = &h->ring[h->head];
    if (e->seq > h->evicted_seq)
        h->evicted_seq = e->seq;
    h->bytes -= e->frame->len;
    hsc_frame_unref(e->frame);
    e->frame = NULL;
    h->head = (h->head + 1) % h->cap;
    h->count--;
}

int hsc_history_push(hsc_history_t *h, uint64_t seq, uint64_t now_ms, hsc_frame_t *frame)
{
    if (h->max_count == 0 || frame->len > h->max_bytes) {
        /* Kept nowhere: whoever resumes from before it has missed it. */
        while (h->count > 0)
            hsc_history_evict_oldest(h);
        if (seq > h->evicted_seq)
            h->evicted_seq = seq;
        return 0;
    }
    while (h->count > 0 && (h->count >= h->max_count || h->bytes + frame->len > h->max_bytes))
        hsc_history_evict_oldest(h);
    if (h->count == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 4;
        if (cap > h->max_count)
            cap = h->max_count;
        hsc_hist_entry_t *ring = malloc(cap * sizeof *ring);
        if (ring == NULL)
            return HSC_ENOMEM;
        for (size_t i = 0; i < h->count; i++)
            ring[i] = h->ring[(h->head + i) % h->cap];
        free(h->ring);
        h->ring = ring;
        h->cap = cap;
        h->head = 0;
    }
    h->ring[(h->head + h->count) % h->cap] =
        (hsc_hist_entry_t){.seq = seq, .time_ms = now_ms, .frame = hsc_frame_ref(frame)};
    h->count++;
    h->bytes += frame->len;
    return 0;
}

size_t hsc_history_expire(hsc_history_t *h, uint64_t now_ms)
{
    size_t n = 0;
    while (h->count > 0 && now_ms >= hsc_history_at(h, 0)->time_ms &&
           now_ms - hsc_history_at(h, 0)->time_ms >= h->max_age_ms) {
        hsc_history_evict_oldest(h);
        n++;
    }
    if (h->count == 0 && h->cap > 0) {
        free(h->ring); /* an idle channel gives its memory back */
        h->ring = NULL;
        h->cap = 0;
        h->head = 0;
    }
    return n;
}

size_t hsc_history_first_after(const hsc_history_t *h, uint64_t seq)
{
    size_t lo = 0, hi = h->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (hsc_history_at(h, mid)->seq <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}
