/*
 * Unit tests for src/lib/pubsub/history.c: a channel's history ring of reference-counted frames,
 * bounded by count, bytes and age, searched by sequence number.
 *
 * The tests hold their own reference to every frame they push, so the history's reference is
 * visible in f->refs (2 while the history holds it, 1 once it let go); the tests then drop theirs.
 * Under the ASan build a frame released twice, or never, fails the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pubsub/pubsub.h"

#include <stdlib.h>
#include <string.h>

#define BIG     ((size_t)1 << 40)
#define FOREVER ((uint64_t)1 << 62)

static hsc_frame_t *mk(size_t len)
{
    hsc_frame_t *f = hsc_frame_try_new(len);
    assert_non_null(f);
    memset(f->data, 'x', len);
    return f;
}

static unsigned refs(hsc_frame_t *f)
{
    return atomic_load(&f->refs);
}

/* Checks the history's invariants and that it holds exactly `seqs` (oldest first). */
static void check_seqs(const hsc_history_t *h, const uint64_t *seqs, size_t n)
{
    assert_int_equal(h->count, n);
    assert_true(h->count <= h->cap);
    assert_true(h->count <= h->max_count);
    assert_true(h->bytes <= h->max_bytes);
    if (h->cap > 0)
        assert_true(h->head < h->cap);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const hsc_hist_entry_t *e = hsc_history_at(h, i);
        assert_int_equal(e->seq, seqs[i]);
        assert_non_null(e->frame);
        bytes += e->frame->len;
    }
    assert_int_equal(h->bytes, bytes);
}

static void test_init_is_empty(void **state)
{
    (void)state;
    hsc_history_t h;
    memset(&h, 0xa5, sizeof h); /* init must set every field */
    hsc_history_init(&h, 10, 1000, 5000);
    assert_null(h.ring);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.cap, 0);
    assert_int_equal(h.head, 0);
    assert_int_equal(h.bytes, 0);
    assert_int_equal(h.evicted_seq, 0);
    assert_int_equal(h.max_count, 10);
    assert_int_equal(h.max_bytes, 1000);
    assert_int_equal(h.max_age_ms, 5000);
    assert_int_equal(hsc_history_first_after(&h, 0), 0);
    assert_int_equal(hsc_history_first_after(&h, UINT64_MAX), 0);
    assert_int_equal(hsc_history_expire(&h, UINT64_MAX), 0);
    assert_null(h.ring);
    hsc_history_dispose(&h);
    hsc_history_dispose(&h); /* twice, or untouched, is harmless */
    assert_null(h.ring);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.cap, 0);
}

static void test_push_keeps_seq_time_and_frame(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 10, BIG, FOREVER);
    hsc_frame_t *a = mk(7), *b = mk(0), *c = mk(300);
    assert_int_equal(hsc_history_push(&h, 1, 100, a), 0);
    assert_int_equal(hsc_history_push(&h, 2, 150, b), 0);
    assert_int_equal(hsc_history_push(&h, 9, 150, c), 0);
    check_seqs(&h, (const uint64_t[]){1, 2, 9}, 3);
    assert_ptr_equal(hsc_history_at(&h, 0)->frame, a);
    assert_ptr_equal(hsc_history_at(&h, 1)->frame, b);
    assert_ptr_equal(hsc_history_at(&h, 2)->frame, c);
    assert_int_equal(hsc_history_at(&h, 0)->time_ms, 100);
    assert_int_equal(hsc_history_at(&h, 1)->time_ms, 150);
    assert_int_equal(hsc_history_at(&h, 2)->time_ms, 150);
    assert_int_equal(h.bytes, 307);
    assert_int_equal(h.evicted_seq, 0);
    assert_int_equal(refs(a), 2);
    assert_int_equal(refs(b), 2);
    assert_int_equal(refs(c), 2);
    hsc_history_dispose(&h);
    assert_int_equal(refs(a), 1);
    assert_int_equal(refs(b), 1);
    assert_int_equal(refs(c), 1);
    hsc_frame_unref(a);
    hsc_frame_unref(b);
    hsc_frame_unref(c);
}

static void test_count_bound(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 3, BIG, FOREVER);
    hsc_frame_t *f[6];
    for (size_t i = 0; i < 6; i++) {
        f[i] = mk(10 + i);
        assert_int_equal(hsc_history_push(&h, i + 1, 0, f[i]), 0);
    }
    check_seqs(&h, (const uint64_t[]){4, 5, 6}, 3);
    assert_int_equal(h.bytes, 13 + 14 + 15);
    assert_int_equal(h.evicted_seq, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(refs(f[i]), 1); /* evicted: the history let go */
    for (size_t i = 3; i < 6; i++)
        assert_int_equal(refs(f[i]), 2);
    hsc_history_dispose(&h);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(refs(f[i]), 1);
        hsc_frame_unref(f[i]);
    }
}

static void test_count_bound_of_one(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 1, BIG, FOREVER);
    for (uint64_t s = 1; s <= 50; s++) {
        hsc_frame_t *f = mk(s);
        assert_int_equal(hsc_history_push(&h, s, s, f), 0);
        hsc_frame_unref(f);
        check_seqs(&h, (const uint64_t[]){s}, 1);
        assert_int_equal(h.bytes, s);
        assert_int_equal(h.evicted_seq, s - 1);
        assert_int_equal(h.cap, 1); /* the ring never grows past max_count */
    }
    hsc_history_dispose(&h);
}

static void test_byte_bound(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 100, 100, FOREVER);
    hsc_frame_t *f40a = mk(40), *f40b = mk(40), *f40c = mk(40), *f20 = mk(20), *f60 = mk(60);

    assert_int_equal(hsc_history_push(&h, 1, 0, f40a), 0);
    assert_int_equal(hsc_history_push(&h, 2, 0, f40b), 0);
    check_seqs(&h, (const uint64_t[]){1, 2}, 2);
    assert_int_equal(h.bytes, 80);

    /* 80 + 40 > 100: the oldest leaves. */
    assert_int_equal(hsc_history_push(&h, 3, 0, f40c), 0);
    check_seqs(&h, (const uint64_t[]){2, 3}, 2);
    assert_int_equal(h.bytes, 80);
    assert_int_equal(h.evicted_seq, 1);
    assert_int_equal(refs(f40a), 1);

    /* 80 + 20 == 100: fits exactly, nothing leaves. */
    assert_int_equal(hsc_history_push(&h, 4, 0, f20), 0);
    check_seqs(&h, (const uint64_t[]){2, 3, 4}, 3);
    assert_int_equal(h.bytes, 100);
    assert_int_equal(h.evicted_seq, 1);

    /* 100 + 60: seqs 2 and 3 must leave (40 + 60 = 100 still fits after that). */
    assert_int_equal(hsc_history_push(&h, 5, 0, f60), 0);
    check_seqs(&h, (const uint64_t[]){4, 5}, 2);
    assert_int_equal(h.bytes, 80);
    assert_int_equal(h.evicted_seq, 3);
    assert_int_equal(refs(f40b), 1);
    assert_int_equal(refs(f40c), 1);

    /* A zero-length frame costs no bytes. */
    hsc_frame_t *z = mk(0);
    assert_int_equal(hsc_history_push(&h, 6, 0, z), 0);
    check_seqs(&h, (const uint64_t[]){4, 5, 6}, 3);
    assert_int_equal(h.bytes, 80);

    hsc_history_dispose(&h);
    hsc_frame_t *all[] = {f40a, f40b, f40c, f20, f60, z};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(refs(all[i]), 1);
        hsc_frame_unref(all[i]);
    }
}

static void test_frame_of_exactly_max_bytes_fits_alone(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 100, 100, FOREVER);
    hsc_frame_t *a = mk(30), *b = mk(30), *c = mk(100);
    assert_int_equal(hsc_history_push(&h, 1, 0, a), 0);
    assert_int_equal(hsc_history_push(&h, 2, 0, b), 0);
    assert_int_equal(hsc_history_push(&h, 3, 0, c), 0);
    check_seqs(&h, (const uint64_t[]){3}, 1);
    assert_int_equal(h.bytes, 100);
    assert_int_equal(h.evicted_seq, 2);
    assert_int_equal(refs(a), 1);
    assert_int_equal(refs(b), 1);
    assert_int_equal(refs(c), 2);
    hsc_history_dispose(&h);
    hsc_frame_unref(a);
    hsc_frame_unref(b);
    hsc_frame_unref(c);
}

static void test_frame_larger_than_max_bytes(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 100, 100, FOREVER);
    hsc_frame_t *a = mk(10), *b = mk(10), *huge = mk(101), *after = mk(5);
    assert_int_equal(hsc_history_push(&h, 1, 0, a), 0);
    assert_int_equal(hsc_history_push(&h, 2, 0, b), 0);
    /* Never fits: the history empties and records it as evicted, without keeping a reference. */
    assert_int_equal(hsc_history_push(&h, 3, 0, huge), 0);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.bytes, 0);
    assert_int_equal(h.evicted_seq, 3);
    assert_int_equal(hsc_history_first_after(&h, 0), 0);
    assert_int_equal(refs(a), 1);
    assert_int_equal(refs(b), 1);
    assert_int_equal(refs(huge), 1);
    /* The history goes on working after it. */
    assert_int_equal(hsc_history_push(&h, 4, 0, after), 0);
    check_seqs(&h, (const uint64_t[]){4}, 1);
    assert_int_equal(h.evicted_seq, 3);
    hsc_history_dispose(&h);
    hsc_frame_unref(a);
    hsc_frame_unref(b);
    hsc_frame_unref(huge);
    assert_int_equal(refs(after), 1);
    hsc_frame_unref(after);
}

static void test_max_count_zero_keeps_nothing(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 0, BIG, FOREVER);
    for (uint64_t s = 1; s <= 20; s++) {
        hsc_frame_t *f = mk(8);
        assert_int_equal(hsc_history_push(&h, s * 10, s, f), 0);
        assert_int_equal(refs(f), 1);
        hsc_frame_unref(f);
        assert_int_equal(h.count, 0);
        assert_int_equal(h.bytes, 0);
        assert_int_equal(h.evicted_seq, s * 10);
        assert_null(h.ring); /* nothing allocated for a history that keeps nothing */
        assert_int_equal(hsc_history_first_after(&h, 0), 0);
    }
    hsc_history_dispose(&h);
}

static void test_max_bytes_zero_keeps_nothing(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 10, 0, FOREVER);
    hsc_frame_t *f = mk(1);
    assert_int_equal(hsc_history_push(&h, 7, 0, f), 0);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.evicted_seq, 7);
    assert_int_equal(refs(f), 1);
    hsc_frame_unref(f);
    hsc_history_dispose(&h);
}

static void test_age_bound(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 100, BIG, 1000);
    hsc_frame_t *f[4];
    const uint64_t t[4] = {10000, 10100, 10500, 11000};
    for (size_t i = 0; i < 4; i++) {
        f[i] = mk(3);
        assert_int_equal(hsc_history_push(&h, i + 1, t[i], f[i]), 0);
    }
    /* Pushing never looks at age: only expire() does. */
    check_seqs(&h, (const uint64_t[]){1, 2, 3, 4}, 4);

    /* The oldest is 999 ms old: not yet. */
    assert_int_equal(hsc_history_expire(&h, 10999), 0);
    check_seqs(&h, (const uint64_t[]){1, 2, 3, 4}, 4);
    assert_int_equal(h.evicted_seq, 0);
    /* Exactly max_age_ms old: gone. */
    assert_int_equal(hsc_history_expire(&h, 11000), 1);
    check_seqs(&h, (const uint64_t[]){2, 3, 4}, 3);
    assert_int_equal(h.evicted_seq, 1);
    assert_int_equal(refs(f[0]), 1);
    /* 1400 and 1000 ms old leave; 500 ms old stays. */
    assert_int_equal(hsc_history_expire(&h, 11500), 2);
    check_seqs(&h, (const uint64_t[]){4}, 1);
    assert_int_equal(h.evicted_seq, 3);
    assert_int_equal(h.bytes, 3);
    assert_non_null(h.ring); /* not empty: the ring stays */
    /* Again at the same time: nothing more. */
    assert_int_equal(hsc_history_expire(&h, 11500), 0);
    check_seqs(&h, (const uint64_t[]){4}, 1);

    hsc_history_dispose(&h);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(refs(f[i]), 1);
        hsc_frame_unref(f[i]);
    }
}

static void test_expire_stops_at_first_young_entry(void **state)
{
    (void)state;
    /* Entries are in publish order, so expire stops at the first entry young enough. */
    hsc_history_t h;
    hsc_history_init(&h, 100, BIG, 100);
    for (uint64_t s = 1; s <= 10; s++) {
        hsc_frame_t *f = mk(1);
        assert_int_equal(hsc_history_push(&h, s, s * 10, f), 0);
        hsc_frame_unref(f);
    }
    /* now 155: ages 145, 135, ..., 55; the first five (ages >= 100) leave. */
    assert_int_equal(hsc_history_expire(&h, 155), 5);
    check_seqs(&h, (const uint64_t[]){6, 7, 8, 9, 10}, 5);
    assert_int_equal(h.evicted_seq, 5);
    assert_int_equal(h.bytes, 5);
    hsc_history_dispose(&h);
}

static void test_expire_frees_the_ring_when_empty(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 10, BIG, 1000);
    hsc_frame_t *a = mk(4), *b = mk(4);
    assert_int_equal(hsc_history_push(&h, 1, 0, a), 0);
    assert_int_equal(hsc_history_push(&h, 2, 500, b), 0);
    assert_non_null(h.ring);
    assert_int_equal(hsc_history_expire(&h, 2000), 2);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.bytes, 0);
    assert_null(h.ring);
    assert_int_equal(h.cap, 0);
    assert_int_equal(h.head, 0);
    assert_int_equal(h.evicted_seq, 2);
    assert_int_equal(refs(a), 1);
    assert_int_equal(refs(b), 1);
    /* An empty history that still holds a ring (emptied by eviction) gives it back too. */
    hsc_history_t g;
    hsc_history_init(&g, 10, BIG, 1000);
    assert_int_equal(hsc_history_push(&g, 1, 0, a), 0);
    hsc_history_evict_oldest(&g);
    assert_int_equal(g.count, 0);
    assert_non_null(g.ring);
    assert_int_equal(hsc_history_expire(&g, 0), 0);
    assert_null(g.ring);
    assert_int_equal(g.cap, 0);
    /* The history is usable again afterwards, from a fresh ring. */
    assert_int_equal(hsc_history_push(&h, 3, 3000, a), 0);
    check_seqs(&h, (const uint64_t[]){3}, 1);
    assert_int_equal(hsc_history_at(&h, 0)->time_ms, 3000);
    assert_int_equal(refs(a), 2);
    hsc_history_dispose(&h);
    hsc_history_dispose(&g);
    assert_int_equal(refs(a), 1);
    hsc_frame_unref(a);
    hsc_frame_unref(b);
}

static void test_expire_ignores_entries_newer_than_now(void **state)
{
    (void)state;
    /*
     * "Evicts entries at least max_age_ms old": an entry stamped after `now` (a caller that read
     * its clock just before another thread pushed) is not old at all and must stay. A plain
     * unsigned `now - time` would wrap around and call it ancient.
     */
    hsc_history_t h;
    hsc_history_init(&h, 10, BIG, 1000);
    hsc_frame_t *f = mk(4);
    assert_int_equal(hsc_history_push(&h, 1, 5000, f), 0);
    assert_int_equal(hsc_history_expire(&h, 4990), 0);
    check_seqs(&h, (const uint64_t[]){1}, 1);
    assert_int_equal(h.evicted_seq, 0);
    assert_int_equal(hsc_history_expire(&h, 0), 0);
    check_seqs(&h, (const uint64_t[]){1}, 1);
    assert_int_equal(hsc_history_expire(&h, 5999), 0);
    check_seqs(&h, (const uint64_t[]){1}, 1);
    assert_int_equal(hsc_history_expire(&h, 6000), 1);
    assert_int_equal(h.count, 0);
    hsc_history_dispose(&h);
    assert_int_equal(refs(f), 1);
    hsc_frame_unref(f);
}

static void test_evict_oldest(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 10, BIG, FOREVER);
    hsc_frame_t *a = mk(5), *b = mk(6);
    assert_int_equal(hsc_history_push(&h, 40, 0, a), 0);
    assert_int_equal(hsc_history_push(&h, 41, 0, b), 0);
    hsc_history_evict_oldest(&h);
    check_seqs(&h, (const uint64_t[]){41}, 1);
    assert_int_equal(h.bytes, 6);
    assert_int_equal(h.evicted_seq, 40);
    assert_int_equal(refs(a), 1);
    assert_int_equal(refs(b), 2);
    hsc_history_evict_oldest(&h);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.bytes, 0);
    assert_int_equal(h.evicted_seq, 41);
    assert_int_equal(refs(b), 1);
    hsc_history_dispose(&h);
    hsc_frame_unref(a);
    hsc_frame_unref(b);
}

static void test_evicted_seq_tracking(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 2, 100, FOREVER);
    assert_int_equal(h.evicted_seq, 0);
    const uint64_t seqs[] = {10, 20, 30, 45, 46};
    for (size_t i = 0; i < 5; i++) {
        hsc_frame_t *f = mk(10);
        assert_int_equal(hsc_history_push(&h, seqs[i], 0, f), 0);
        hsc_frame_unref(f);
        assert_int_equal(h.evicted_seq, i < 2 ? 0 : seqs[i - 2]);
        /* The resume rule: after the entry just before the oldest kept, nothing is lost. */
        uint64_t oldest = hsc_history_at(&h, 0)->seq;
        assert_true(h.evicted_seq < oldest);
    }
    /* A frame that never fits counts as evicted... */
    hsc_frame_t *huge = mk(101);
    assert_int_equal(hsc_history_push(&h, 50, 0, huge), 0);
    assert_int_equal(h.evicted_seq, 50);
    /* ...and evicted_seq only ever grows. */
    assert_int_equal(hsc_history_push(&h, 49, 0, huge), 0);
    assert_int_equal(h.evicted_seq, 50);
    hsc_frame_unref(huge);
    /* Expiry and dispose update it as well. */
    hsc_frame_t *f = mk(1);
    assert_int_equal(hsc_history_push(&h, 60, 0, f), 0);
    assert_int_equal(hsc_history_push(&h, 61, 0, f), 0);
    assert_int_equal(h.evicted_seq, 50);
    h.max_age_ms = 10;
    assert_int_equal(hsc_history_expire(&h, 10), 2);
    assert_int_equal(h.evicted_seq, 61);
    assert_int_equal(hsc_history_push(&h, 62, 0, f), 0);
    hsc_history_dispose(&h);
    assert_int_equal(h.evicted_seq, 62);
    assert_int_equal(refs(f), 1);
    hsc_frame_unref(f);
}

static size_t linear_first_after(const hsc_history_t *h, uint64_t seq)
{
    size_t i = 0;
    while (i < h->count && hsc_history_at(h, i)->seq <= seq)
        i++;
    return i;
}

static void test_first_after(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 10, BIG, FOREVER);
    assert_int_equal(hsc_history_first_after(&h, 0), 0); /* empty */
    assert_int_equal(hsc_history_first_after(&h, 5), 0);
    const uint64_t seqs[] = {10, 20, 30, 40, 50};
    for (size_t i = 0; i < 5; i++) {
        hsc_frame_t *f = mk(1);
        assert_int_equal(hsc_history_push(&h, seqs[i], 0, f), 0);
        hsc_frame_unref(f);
    }
    /* Before the oldest. */
    assert_int_equal(hsc_history_first_after(&h, 0), 0);
    assert_int_equal(hsc_history_first_after(&h, 9), 0);
    /* Exact hits: the entry after it. */
    assert_int_equal(hsc_history_first_after(&h, 10), 1);
    assert_int_equal(hsc_history_first_after(&h, 20), 2);
    assert_int_equal(hsc_history_first_after(&h, 30), 3);
    assert_int_equal(hsc_history_first_after(&h, 40), 4);
    /* In the gaps between sequence numbers. */
    assert_int_equal(hsc_history_first_after(&h, 11), 1);
    assert_int_equal(hsc_history_first_after(&h, 19), 1);
    assert_int_equal(hsc_history_first_after(&h, 25), 2);
    assert_int_equal(hsc_history_first_after(&h, 49), 4);
    /* The newest and after it: nothing to replay. */
    assert_int_equal(hsc_history_first_after(&h, 50), 5);
    assert_int_equal(hsc_history_first_after(&h, 51), 5);
    assert_int_equal(hsc_history_first_after(&h, UINT64_MAX), 5);
    for (uint64_t s = 0; s <= 60; s++)
        assert_int_equal(hsc_history_first_after(&h, s), linear_first_after(&h, s));
    hsc_history_dispose(&h);
}

static void test_first_after_every_shape(void **state)
{
    (void)state;
    /* Every count 1..17, every head position, gaps of 1..3: binary search = linear scan. */
    for (size_t n = 1; n <= 17; n++) {
        for (size_t shift = 0; shift < 20; shift++) {
            hsc_history_t h;
            hsc_history_init(&h, n, BIG, FOREVER);
            uint64_t seq = 0;
            for (size_t i = 0; i < n + shift; i++) {
                seq += 1 + (i * 7 + n) % 3;
                hsc_frame_t *f = mk(1);
                assert_int_equal(hsc_history_push(&h, seq, 0, f), 0);
                hsc_frame_unref(f);
            }
            assert_int_equal(h.count, n);
            for (uint64_t s = 0; s <= seq + 2; s++) {
                size_t k = hsc_history_first_after(&h, s);
                assert_int_equal(k, linear_first_after(&h, s));
                if (k < h.count)
                    assert_true(hsc_history_at(&h, k)->seq > s);
                if (k > 0)
                    assert_true(hsc_history_at(&h, k - 1)->seq <= s);
            }
            hsc_history_dispose(&h);
        }
    }
}

static void test_first_after_large_seqs(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 4, BIG, FOREVER);
    const uint64_t seqs[] = {UINT64_MAX - 3, UINT64_MAX - 2, UINT64_MAX};
    for (size_t i = 0; i < 3; i++) {
        hsc_frame_t *f = mk(1);
        assert_int_equal(hsc_history_push(&h, seqs[i], 0, f), 0);
        hsc_frame_unref(f);
    }
    assert_int_equal(hsc_history_first_after(&h, 0), 0);
    assert_int_equal(hsc_history_first_after(&h, UINT64_MAX - 3), 1);
    assert_int_equal(hsc_history_first_after(&h, UINT64_MAX - 1), 2);
    assert_int_equal(hsc_history_first_after(&h, UINT64_MAX), 3);
    hsc_history_dispose(&h);
}

static void test_wrap_around(void **state)
{
    (void)state;
    /* A full ring keeps turning: head wraps many times, order and bounds hold throughout. */
    hsc_history_t h;
    hsc_history_init(&h, 5, BIG, FOREVER);
    hsc_frame_t *kept[5] = {0};
    for (uint64_t s = 1; s <= 1000; s++) {
        hsc_frame_t *f = mk((size_t)(s % 13));
        assert_int_equal(hsc_history_push(&h, s, s, f), 0);
        hsc_frame_unref(f);
        size_t n = s < 5 ? (size_t)s : 5;
        assert_int_equal(h.count, n);
        assert_true(h.cap <= 5);
        size_t bytes = 0;
        for (size_t i = 0; i < n; i++) {
            const hsc_hist_entry_t *e = hsc_history_at(&h, i);
            uint64_t want = s - n + 1 + i;
            assert_int_equal(e->seq, want);
            assert_int_equal(e->time_ms, want);
            assert_int_equal(e->frame->len, want % 13);
            assert_int_equal(refs(e->frame), 1); /* the history's own reference */
            bytes += e->frame->len;
        }
        assert_int_equal(h.bytes, bytes);
        assert_int_equal(h.evicted_seq, s - n);
        assert_int_equal(hsc_history_first_after(&h, s - 2), n < 2 ? n : n - 2);
    }
    assert_int_equal(h.cap, 5);
    for (size_t i = 0; i < 5; i++)
        kept[i] = hsc_frame_ref(hsc_history_at(&h, i)->frame);
    hsc_history_dispose(&h);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(refs(kept[i]), 1);
        hsc_frame_unref(kept[i]);
    }
}

static void test_growth_while_wrapped(void **state)
{
    (void)state;
    /* Growth copies a wrapped ring in order; capacity doubles from 4 up to max_count. */
    hsc_history_t h;
    hsc_history_init(&h, 100, BIG, FOREVER);
    uint64_t seq = 0, oldest = 1;
    size_t last_cap = 0;
    const size_t caps[] = {4, 8, 16, 32, 64, 100};
    size_t ncap = 0, wrapped_growths = 0;
    for (int round = 0; round < 400; round++) {
        if (h.cap > 0 && h.count == h.cap && h.cap < 100 && h.head != 0)
            wrapped_growths++; /* this push grows a ring whose entries wrap around its end */
        hsc_frame_t *f = mk(2);
        assert_int_equal(hsc_history_push(&h, ++seq, 0, f), 0);
        hsc_frame_unref(f);
        if (seq - oldest + 1 > 100)
            oldest = seq - 99; /* the count bound */
        if (h.cap != last_cap) {
            assert_true(ncap < 6);
            assert_int_equal(h.cap, caps[ncap++]);
            last_cap = h.cap;
        }
        if (round % 3 == 2) { /* drop one now and then, so head moves and the ring wraps */
            hsc_history_evict_oldest(&h);
            oldest++;
        }
        assert_int_equal(h.count, seq - oldest + 1);
        for (size_t i = 0; i < h.count; i++)
            assert_int_equal(hsc_history_at(&h, i)->seq, oldest + i);
        assert_int_equal(h.bytes, 2 * h.count);
    }
    assert_int_equal(ncap, 6);
    assert_int_equal(h.cap, 100);
    assert_true(wrapped_growths >= 3);
    hsc_history_dispose(&h);
}

static void test_one_frame_in_several_histories(void **state)
{
    (void)state;
    /* One encoded event is shared: each history holds one reference and lets go of it once. */
    hsc_history_t a, b;
    hsc_history_init(&a, 1, BIG, FOREVER);
    hsc_history_init(&b, 10, BIG, FOREVER);
    hsc_frame_t *f = mk(16), *g = mk(16);
    assert_int_equal(hsc_history_push(&a, 1, 0, f), 0);
    assert_int_equal(hsc_history_push(&b, 1, 0, f), 0);
    assert_int_equal(refs(f), 3);
    assert_int_equal(hsc_history_push(&a, 2, 0, g), 0); /* evicts f from a */
    assert_int_equal(refs(f), 2);
    assert_int_equal(hsc_history_push(&b, 2, 0, g), 0);
    assert_int_equal(refs(g), 3);
    hsc_history_dispose(&b);
    assert_int_equal(refs(f), 1);
    assert_int_equal(refs(g), 2);
    hsc_history_dispose(&a);
    assert_int_equal(refs(g), 1);
    hsc_frame_unref(f);
    hsc_frame_unref(g);
}

static void test_pushed_then_evicted_frame_is_freed_once(void **state)
{
    (void)state;
    /* The history's reference is the only one: eviction frees the frame (ASan checks it is
     * freed exactly once and that nothing else is left at exit). */
    hsc_history_t h;
    hsc_history_init(&h, 2, BIG, FOREVER);
    for (uint64_t s = 1; s <= 100; s++) {
        hsc_frame_t *f = mk(32);
        assert_int_equal(hsc_history_push(&h, s, 0, f), 0);
        assert_int_equal(refs(f), 2);
        hsc_frame_unref(f);
        assert_int_equal(refs(f), 1); /* still alive: the history holds it */
    }
    hsc_history_dispose(&h);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.bytes, 0);
}

static void test_dispose_releases_everything(void **state)
{
    (void)state;
    hsc_history_t h;
    hsc_history_init(&h, 8, BIG, FOREVER);
    hsc_frame_t *f[20];
    for (size_t i = 0; i < 20; i++) {
        f[i] = mk(i);
        assert_int_equal(hsc_history_push(&h, i + 1, 0, f[i]), 0);
    }
    check_seqs(&h, (const uint64_t[]){13, 14, 15, 16, 17, 18, 19, 20}, 8);
    hsc_history_dispose(&h);
    assert_null(h.ring);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.cap, 0);
    assert_int_equal(h.bytes, 0);
    assert_int_equal(h.evicted_seq, 20);
    for (size_t i = 0; i < 20; i++) {
        assert_int_equal(refs(f[i]), 1);
        hsc_frame_unref(f[i]);
    }
}

/* ---- a model: the same operations on a plain array, compared after each step ----------- */

typedef struct {
    uint64_t seq, time;
    size_t len;
} model_entry_t;

static uint64_t rng_state;

static uint64_t rnd(uint64_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (rng_state >> 33) % n;
}

static void test_against_model(void **state)
{
    (void)state;
    rng_state = 42;
    for (int run = 0; run < 60; run++) {
        size_t max_count = (size_t)rnd(12);
        size_t max_bytes = (size_t)rnd(200);
        uint64_t max_age = 1 + rnd(50);
        hsc_history_t h;
        hsc_history_init(&h, max_count, max_bytes, max_age);
        model_entry_t m[16];
        size_t mn = 0, mbytes = 0;
        uint64_t mevicted = 0, seq = 0, now = 1000;
        for (int step = 0; step < 500; step++) {
            uint64_t op = rnd(10);
            if (op < 7) {
                seq += 1 + rnd(3);
                now += rnd(5);
                size_t len = (size_t)rnd(max_bytes / 2 + 20);
                hsc_frame_t *f = mk(len);
                assert_int_equal(hsc_history_push(&h, seq, now, f), 0);
                if (max_count == 0 || len > max_bytes) {
                    mn = 0;
                    mbytes = 0;
                    mevicted = seq;
                    assert_int_equal(refs(f), 1);
                } else {
                    while (mn > 0 && (mn >= max_count || mbytes + len > max_bytes)) {
                        mevicted = m[0].seq;
                        mbytes -= m[0].len;
                        memmove(m, m + 1, --mn * sizeof *m);
                    }
                    m[mn++] = (model_entry_t){seq, now, len};
                    mbytes += len;
                    assert_int_equal(refs(f), 2);
                }
                hsc_frame_unref(f);
            } else if (op < 9) {
                now += rnd(30);
                size_t gone = 0;
                while (mn > 0 && now - m[0].time >= max_age) {
                    mevicted = m[0].seq;
                    mbytes -= m[0].len;
                    memmove(m, m + 1, --mn * sizeof *m);
                    gone++;
                }
                assert_int_equal(hsc_history_expire(&h, now), gone);
                if (mn == 0)
                    assert_null(h.ring);
            } else if (mn > 0) {
                hsc_history_evict_oldest(&h);
                mevicted = m[0].seq;
                mbytes -= m[0].len;
                memmove(m, m + 1, --mn * sizeof *m);
            }
            assert_int_equal(h.count, mn);
            assert_int_equal(h.bytes, mbytes);
            assert_int_equal(h.evicted_seq, mevicted);
            assert_true(h.count <= h.cap || h.cap == 0);
            for (size_t i = 0; i < mn; i++) {
                const hsc_hist_entry_t *e = hsc_history_at(&h, i);
                assert_int_equal(e->seq, m[i].seq);
                assert_int_equal(e->time_ms, m[i].time);
                assert_int_equal(e->frame->len, m[i].len);
                assert_int_equal(refs(e->frame), 1);
            }
            uint64_t probe = seq >= 3 ? seq - rnd(seq / 2 + 3) : 0;
            size_t k = 0;
            while (k < mn && m[k].seq <= probe)
                k++;
            assert_int_equal(hsc_history_first_after(&h, probe), k);
        }
        hsc_history_dispose(&h);
        assert_int_equal(h.count, 0);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty),
        cmocka_unit_test(test_push_keeps_seq_time_and_frame),
        cmocka_unit_test(test_count_bound),
        cmocka_unit_test(test_count_bound_of_one),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_frame_of_exactly_max_bytes_fits_alone),
        cmocka_unit_test(test_frame_larger_than_max_bytes),
        cmocka_unit_test(test_max_count_zero_keeps_nothing),
        cmocka_unit_test(test_max_bytes_zero_keeps_nothing),
        cmocka_unit_test(test_age_bound),
        cmocka_unit_test(test_expire_stops_at_first_young_entry),
        cmocka_unit_test(test_expire_frees_the_ring_when_empty),
        cmocka_unit_test(test_expire_ignores_entries_newer_than_now),
        cmocka_unit_test(test_evict_oldest),
        cmocka_unit_test(test_evicted_seq_tracking),
        cmocka_unit_test(test_first_after),
        cmocka_unit_test(test_first_after_every_shape),
        cmocka_unit_test(test_first_after_large_seqs),
        cmocka_unit_test(test_wrap_around),
        cmocka_unit_test(test_growth_while_wrapped),
        cmocka_unit_test(test_one_frame_in_several_histories),
        cmocka_unit_test(test_pushed_then_evicted_frame_is_freed_once),
        cmocka_unit_test(test_dispose_releases_everything),
        cmocka_unit_test(test_against_model),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
