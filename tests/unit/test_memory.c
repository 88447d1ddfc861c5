/*
 * Unit tests for src/lib/pubsub/memory.c, the memory engine, alone: no loop, no hub. Each hub is
 * a recording sink (engine.h) that keeps what the engine hands it, so the tests see exactly which
 * events go where, in which order, with which channel handle; they give the channel references
 * back at the end, as a hub does. Under the ASan build a reference released twice, or never,
 * fails the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "policy/policy.h"
#include "pubsub/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a recording sink per hub ---------------------------------------------------------------- */

#define REC_MAX 256

typedef struct rec_s {
    struct {
        hsc_chan_t *chan;
        uint64_t seq;
        hsc_frame_t *frame;
    } d[REC_MAX];
    size_t n;
    unsigned flushes;
    bool refuse; /* deliver() answers false, as a hub out of memory would */
} rec_t;

static bool rec_deliver(void *ctx, hsc_chan_t *chan, uint64_t seq, hsc_frame_t *frame)
{
    rec_t *r = ctx;
    if (r->refuse)
        return false;
    assert_true(r->n < REC_MAX);
    r->d[r->n].chan = chan;
    r->d[r->n].seq = seq;
    r->d[r->n].frame = hsc_frame_ref(frame);
    r->n++;
    return true;
}

static void rec_flush(void *ctx)
{
    ((rec_t *)ctx)->flushes++;
}

static void rec_call(void *ctx, hsc_engine_call_t *call)
{
    (void)ctx;
    (void)call;
    fail_msg("the memory engine answers before returning: it never queues a call");
}

static const hsc_engine_sink_t rec_sink = {rec_deliver, rec_flush, rec_call};

/* Gives back what a recording holds, as a hub does once it has written the events. */
static void rec_release(hsc_engine_t *e, rec_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        hsc_frame_unref(r->d[i].frame);
        hsc_engine_release(e, r->d[i].chan);
    }
    r->n = 0;
}

/* ---- helpers --------------------------------------------------------------------------------- */

typedef struct world_s {
    hsc_engine_t *e;
    rec_t rec[2];
    hsc_server_config_t cfg;
} world_t;

static void world_init_aged(world_t *w, size_t history, size_t history_bytes, unsigned max_channels,
                            uint64_t age_ms)
{
    memset(w, 0, sizeof *w);
    hsc_server_config_init(&w->cfg);
    w->cfg.history = history;
    w->cfg.history_bytes = history_bytes;
    w->cfg.history_age_ms = age_ms;
    w->cfg.max_channels = max_channels;
    assert_int_equal(hsc_memory_engine_new(&w->cfg, 2, &w->e), 0);
    for (unsigned i = 0; i < 2; i++)
        hsc_engine_attach(w->e, i, &rec_sink, &w->rec[i]);
}

static void world_init(world_t *w, size_t history, size_t history_bytes, unsigned max_channels)
{
    world_init_aged(w, history, history_bytes, max_channels, 3600 * 1000);
}

static void world_free(world_t *w)
{
    for (unsigned i = 0; i < 2; i++)
        rec_release(w->e, &w->rec[i]);
    hsc_engine_free(w->e);
}

static int completions;

static void on_published(hsc_publish_t *p)
{
    (void)p;
    completions++;
}

/* Publishes `data` on `chan` from hub 0; the memory engine completes before returning. */
static hsc_publish_t pub(world_t *w, const char *chan, const char *type, const char *data)
{
    hsc_publish_t p = {.channel = chan,
                       .channel_len = strlen(chan),
                       .type = type,
                       .data = data,
                       .len = strlen(data),
                       .hub = 0,
                       .cb = on_published};
    int before = completions;
    hsc_engine_publish(w->e, &p);
    assert_int_equal(completions, before + 1);
    return p;
}

static uint64_t pub_ok(world_t *w, const char *chan, const char *data)
{
    hsc_publish_t p = pub(w, chan, NULL, data);
    assert_int_equal(p.rc, 0);
    return p.seq;
}

static void on_subscribed(hsc_subscribe_t *s)
{
    (void)s;
    completions++;
}

#define NAMES_MAX 4

typedef struct sub_s {
    char names[NAMES_MAX][HSC_CHANNEL_MAX + 1];
    hsc_chan_t *chans[NAMES_MAX];
    hsc_subscribe_t req;
} sub_t;

/* Subscribes hub `hub` to the comma-separated `names` from `last` (NULL: none), or, without one,
 * with the `recent` newest events; `tag`: with the channels' tags. */
static void sub_ex(world_t *w, sub_t *s, unsigned hub, const char *names, const char *last,
                   size_t recent, bool tag)
{
    memset(s, 0, sizeof *s);
    size_t n = 0;
    for (const char *p = names; *p != '\0'; n++) {
        assert_true(n < NAMES_MAX);
        size_t len = strcspn(p, ",");
        memcpy(s->names[n], p, len);
        p += len + (p[len] == ',');
    }
    s->req = (hsc_subscribe_t){.names = s->names[0],
                               .stride = sizeof s->names[0],
                               .n = n,
                               .last = last,
                               .last_len = last ? strlen(last) : 0,
                               .recent = recent,
                               .tag = tag,
                               .hub = hub,
                               .cb = on_subscribed,
                               .chans = s->chans};
    int before = completions;
    hsc_engine_subscribe(w->e, &s->req);
    assert_int_equal(completions, before + 1);
}

static void sub(world_t *w, sub_t *s, unsigned hub, const char *names, const char *last)
{
    sub_ex(w, s, hub, names, last, 0, false);
}

/* Checks that each replayed event names the channel it came from: `chans` has one letter per
 * event, the channel's name. */
static void check_replay_chans(sub_t *s, const char *chans)
{
    assert_int_equal(s->req.nreplay, strlen(chans));
    for (size_t i = 0; i < s->req.nreplay; i++) {
        size_t j = 0;
        while (j < s->req.n && s->names[j][0] != chans[i])
            j++;
        assert_true(j < s->req.n);
        assert_ptr_equal(s->req.replay[i].chan, s->chans[j]);
    }
}

/* Checks the replay's sequence numbers, then releases it as its new owner must. */
static void check_replay(sub_t *s, const uint64_t *seqs, size_t n)
{
    assert_int_equal(s->req.nreplay, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(s->req.replay[i].seq, seqs[i]);
        hsc_frame_unref(s->req.replay[i].frame);
    }
    free(s->req.replay);
    s->req.replay = NULL;
    s->req.nreplay = 0;
}

static void unsub(world_t *w, sub_t *s)
{
    hsc_engine_unsubscribe(w->e, s->req.hub, s->chans, s->req.n);
}

static void id_of(char *out, uint64_t epoch, uint64_t seq)
{
    hsc_event_id_format(out, epoch, seq);
}

static size_t channels(world_t *w)
{
    hsc_engine_stats_t st;
    hsc_engine_stats(w->e, &st);
    return st.channels;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_ids_increase_across_channels(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 10, 1 << 20, 100);
    const char *chans[] = {"a", "b", "a", "c", "b"};
    sub_t s;
    sub(&w, &s, 0, "x", NULL); /* for the epoch */
    for (uint64_t i = 0; i < 5; i++) {
        hsc_publish_t p = pub(&w, chans[i], NULL, "data");
        assert_int_equal(p.rc, 0);
        assert_int_equal(p.seq, i + 1);
        assert_int_equal(p.subscribers, 0);
        char want[HSC_EVENT_ID_MAX];
        id_of(want, s.req.epoch, i + 1);
        assert_string_equal(p.id, want);
        uint64_t epoch, seq;
        assert_int_equal(hsc_event_id_parse(p.id, strlen(p.id), &epoch, &seq), 0);
        assert_int_equal(seq, i + 1);
        assert_true(epoch >= HSC_EPOCH_MIN);
    }
    assert_int_equal(w.rec[0].n, 0); /* nobody on those channels */
    unsub(&w, &s);
    world_free(&w);
}

static void test_deliveries_reach_the_hubs_with_subscribers_in_order(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 10, 1 << 20, 100);
    sub_t s0, s1;
    sub(&w, &s0, 0, "a", NULL);
    sub(&w, &s1, 1, "b,a", NULL);
    assert_int_equal(s0.req.rc, 0);
    assert_int_equal(s1.req.rc, 0);
    assert_ptr_equal(s0.chans[0], s1.chans[1]); /* one handle per channel */
    assert_int_equal(pub(&w, "a", NULL, "1").subscribers, 2);
    assert_int_equal(pub(&w, "b", NULL, "2").subscribers, 1);
    assert_int_equal(pub(&w, "c", NULL, "3").subscribers, 0);
    assert_int_equal(pub(&w, "a", "t", "4").subscribers, 2);
    /* Hub 0: a's events; hub 1: a's and b's, in sequence order. */
    assert_int_equal(w.rec[0].n, 2);
    assert_int_equal(w.rec[0].d[0].seq, 1);
    assert_int_equal(w.rec[0].d[1].seq, 4);
    assert_ptr_equal(w.rec[0].d[0].chan, s0.chans[0]);
    assert_int_equal(w.rec[1].n, 3);
    const uint64_t want1[] = {1, 2, 4};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(w.rec[1].d[i].seq, want1[i]);
    assert_ptr_equal(w.rec[1].d[1].chan, s1.chans[0]);
    /* One wake-up per publish, for the hubs that got something. */
    assert_int_equal(w.rec[0].flushes, 2);
    assert_int_equal(w.rec[1].flushes, 3);
    /* The frame: one chunk holding the SSE event. */
    char id[HSC_EVENT_ID_MAX], want[128];
    id_of(id, s0.req.epoch, 4);
    int n = snprintf(want, sizeof want, "event: t\nid: %s\ndata: 4\n\n", id);
    char chunk[160];
    int m = snprintf(chunk, sizeof chunk, "%x\r\n%s\r\n", n, want);
    hsc_frame_t *f = w.rec[0].d[1].frame;
    assert_int_equal(f->len, m);
    assert_memory_equal(f->data, chunk, (size_t)m);
    /* A hub that cannot queue is skipped (the engine logs it); the references stay right. */
    w.rec[1].refuse = true;
    assert_int_equal(pub(&w, "a", NULL, "5").subscribers, 1);
    assert_int_equal(w.rec[1].n, 3);
    unsub(&w, &s0);
    unsub(&w, &s1);
    world_free(&w);
}

static void test_history_is_bounded_by_count_and_bytes(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 3, 1 << 20, 100);
    for (int i = 0; i < 5; i++)
        pub_ok(&w, "a", "0123456789");
    hsc_engine_stats_t st;
    hsc_engine_stats(w.e, &st);
    assert_int_equal(st.history_events, 3);
    assert_int_equal(st.published, 5);
    sub_t s;
    char last[HSC_EVENT_ID_MAX];
    sub(&w, &s, 0, "a", "x");
    id_of(last, s.req.epoch, 2);
    unsub(&w, &s);
    sub(&w, &s, 0, "a", last); /* 3, 4 and 5 are all there is after 2 */
    assert_int_equal(s.req.gap, HSC_GAP_NONE);
    check_replay(&s, (const uint64_t[]){3, 4, 5}, 3);
    unsub(&w, &s);
    id_of(last, s.req.epoch, 1);
    sub(&w, &s, 0, "a", last); /* 2 was evicted */
    assert_int_equal(s.req.gap, HSC_GAP_EXPIRED);
    check_replay(&s, (const uint64_t[]){3, 4, 5}, 3);
    unsub(&w, &s);
    world_free(&w);

    /* Bytes: a frame of "0123456789" takes about 40 bytes (chunk framing included): 100 hold
     * two. */
    world_init(&w, 100, 100, 100);
    for (int i = 0; i < 4; i++)
        pub_ok(&w, "a", "0123456789");
    hsc_engine_stats(w.e, &st);
    assert_int_equal(st.history_events, 2);
    assert_true(st.history_bytes <= 100);
    sub(&w, &s, 0, "a", "x");
    id_of(last, s.req.epoch, 2);
    unsub(&w, &s);
    sub(&w, &s, 0, "a", last);
    assert_int_equal(s.req.gap, HSC_GAP_NONE);
    check_replay(&s, (const uint64_t[]){3, 4}, 2);
    unsub(&w, &s);
    world_free(&w);
}

static void test_subscribe_replays_exactly_after_the_id_up_to_the_cut(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 100, 1 << 20, 100);
    const char *chans[] = {"a", "b", "c", "a", "b", "a", "c", "b"}; /* seq 1..8 */
    for (size_t i = 0; i < 8; i++)
        pub_ok(&w, chans[i], "x");
    sub_t s;
    sub(&w, &s, 0, "a,b", NULL);
    assert_int_equal(s.req.cut, 8);
    assert_int_equal(s.req.gap, HSC_GAP_NONE);
    assert_int_equal(s.req.nreplay, 0); /* no last id: live only */
    unsub(&w, &s);
    char last[HSC_EVENT_ID_MAX];
    id_of(last, s.req.epoch, 2);
    sub(&w, &s, 1, "b,a", last); /* merged across channels, by number */
    assert_int_equal(s.req.cut, 8);
    assert_int_equal(s.req.gap, HSC_GAP_NONE);
    check_replay(&s, (const uint64_t[]){4, 5, 6, 8}, 4);
    /* After the cut, events reach the hub live, and only those. */
    pub_ok(&w, "a", "x");
    pub_ok(&w, "c", "x");
    pub_ok(&w, "b", "x");
    assert_int_equal(w.rec[1].n, 2);
    assert_int_equal(w.rec[1].d[0].seq, 9);
    assert_int_equal(w.rec[1].d[1].seq, 11);
    unsub(&w, &s);
    id_of(last, s.req.epoch, 11);
    sub(&w, &s, 1, "a,b,c", last); /* the newest: nothing to replay */
    assert_int_equal(s.req.gap, HSC_GAP_NONE);
    check_replay(&s, NULL, 0);
    unsub(&w, &s);
    world_free(&w);
}

static void test_recent_events_are_the_newest_across_channels_up_to_the_cut(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 100, 1 << 20, 100);
    const char *chans[] = {"a", "b", "c", "a", "b", "a", "c", "b"}; /* seq 1..8 */
    for (size_t i = 0; i < 8; i++)
        pub_ok(&w, chans[i], "x");
    sub_t s;
    /* The 3 newest of a and b together, in number order, each naming its channel. */
    sub_ex(&w, &s, 1, "a,b", NULL, 3, false);
    assert_int_equal(s.req.rc, 0);
    assert_int_equal(s.req.cut, 8);
    assert_int_equal(s.req.gap, HSC_GAP_NONE);
    check_replay_chans(&s, "bab");
    check_replay(&s, (const uint64_t[]){5, 6, 8}, 3);
    /* After the cut, events reach the hub live, and only those: no gap, no duplicate. */
    pub_ok(&w, "a", "x");
    pub_ok(&w, "c", "x");
    assert_int_equal(w.rec[1].n, 1);
    assert_int_equal(w.rec[1].d[0].seq, 9);
    unsub(&w, &s);
    /* Everything ("earliest"), whatever the order of the names. */
    sub_ex(&w, &s, 0, "b,a", NULL, HSC_REPLAY_ALL, false);
    assert_int_equal(s.req.gap, HSC_GAP_NONE);
    check_replay_chans(&s, "abababa");
    check_replay(&s, (const uint64_t[]){1, 2, 4, 5, 6, 8, 9}, 7);
    unsub(&w, &s);
    /* More than a channel holds: what it holds. None: live only. */
    sub_ex(&w, &s, 0, "c", NULL, 50, false);
    check_replay(&s, (const uint64_t[]){3, 7, 10}, 3);
    unsub(&w, &s);
    sub_ex(&w, &s, 0, "a,b,c", NULL, 0, false);
    check_replay(&s, NULL, 0);
    unsub(&w, &s);
    /* With a last id, the resume wins: what follows the id, not the newest 1. */
    char last[HSC_EVENT_ID_MAX];
    id_of(last, s.req.epoch, 6);
    sub_ex(&w, &s, 0, "a,b", last, 1, false);
    assert_int_equal(s.req.gap, HSC_GAP_NONE);
    check_replay(&s, (const uint64_t[]){8, 9}, 2);
    unsub(&w, &s);
    /* A last id that cannot be resumed stays a resume: the gap says so, recent does not apply. */
    sub_ex(&w, &s, 0, "a", "garbage", HSC_REPLAY_ALL, false);
    assert_int_equal(s.req.gap, HSC_GAP_UNKNOWN);
    check_replay(&s, NULL, 0);
    unsub(&w, &s);
    world_free(&w);

    /* History that evicted events: what is left, and no gap (nothing was asked to be resumed). */
    world_init(&w, 2, 1 << 20, 100);
    for (size_t i = 0; i < 8; i++)
        pub_ok(&w, chans[i], "x");
    sub_ex(&w, &s, 0, "a,b", NULL, HSC_REPLAY_ALL, false);
    assert_int_equal(s.req.gap, HSC_GAP_NONE);
    check_replay(&s, (const uint64_t[]){4, 5, 6, 8}, 4);
    unsub(&w, &s);
    sub_ex(&w, &s, 0, "a,b,c", NULL, 2, false);
    check_replay(&s, (const uint64_t[]){7, 8}, 2);
    unsub(&w, &s);
    world_free(&w);
}

static void test_tags_are_made_once_per_channel_when_asked(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 10, 1 << 20, 100);
    pub_ok(&w, "a", "x");
    sub_t s0, s1, s2;
    sub(&w, &s0, 0, "a,b", NULL);
    assert_null(s0.chans[0]->tag); /* nobody asked */
    assert_null(s0.chans[1]->tag);
    sub_ex(&w, &s1, 1, "b,a", NULL, HSC_REPLAY_ALL, true);
    assert_int_equal(s1.req.rc, 0);
    assert_ptr_equal(s1.chans[1], s0.chans[0]);
    static const char want_b[] = "1c\r\nevent: hsc.channel\ndata: b\n\n\r\n";
    hsc_frame_t *tb = s1.chans[0]->tag;
    assert_non_null(tb);
    assert_int_equal(tb->len, sizeof want_b - 1);
    assert_memory_equal(tb->data, want_b, sizeof want_b - 1);
    assert_non_null(s1.chans[1]->tag);
    assert_memory_equal(s1.chans[1]->tag->data + 4, "event: hsc.channel\ndata: a\n\n", 28);
    check_replay_chans(&s1, "a");
    check_replay(&s1, (const uint64_t[]){1}, 1);
    /* The body of a tag, for HTTP/1.0, is the SSE event alone. */
    size_t off, end;
    hsc_event_frame_body(tb, &off, &end);
    assert_int_equal(end - off, 28);
    assert_memory_equal(tb->data + off, "event: hsc.channel\ndata: b\n\n", 28);
    /* One tag per channel: a later subscriber shares it. */
    sub_ex(&w, &s2, 0, "b", NULL, 0, true);
    assert_ptr_equal(s2.chans[0]->tag, tb);
    /* Deliveries carry the handle, hence its tag; the event's frame is the same for all. */
    pub_ok(&w, "b", "y");
    assert_int_equal(w.rec[0].n, 1);
    assert_int_equal(w.rec[1].n, 1);
    assert_ptr_equal(w.rec[0].d[0].frame, w.rec[1].d[0].frame);
    assert_ptr_equal(w.rec[0].d[0].chan->tag, tb);
    unsub(&w, &s0);
    unsub(&w, &s1);
    unsub(&w, &s2);
    world_free(&w); /* the tags go with their channels (ASan: nothing leaks) */
}

static void test_gap_kinds(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 100, 1 << 20, 100);
    for (int i = 0; i < 3; i++)
        pub_ok(&w, "a", "x");
    sub_t s;
    sub(&w, &s, 0, "a", NULL);
    uint64_t epoch = s.req.epoch;
    unsub(&w, &s);
    char last[HSC_EVENT_ID_MAX];

    id_of(last, epoch - 1, 99); /* an earlier run: everything in history follows */
    sub(&w, &s, 0, "a", last);
    assert_int_equal(s.req.gap, HSC_GAP_EPOCH);
    check_replay(&s, (const uint64_t[]){1, 2, 3}, 3);
    unsub(&w, &s);

    const char *unknown[] = {"garbage", "", "?", "0-1"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        sub(&w, &s, 0, "a", unknown[i]);
        assert_int_equal(s.req.gap, HSC_GAP_UNKNOWN);
        check_replay(&s, NULL, 0);
        unsub(&w, &s);
    }
    id_of(last, epoch + 1, 1); /* a later run */
    sub(&w, &s, 0, "a", last);
    assert_int_equal(s.req.gap, HSC_GAP_UNKNOWN);
    check_replay(&s, NULL, 0);
    unsub(&w, &s);
    id_of(last, epoch, 4); /* ahead of the newest event */
    sub(&w, &s, 0, "a", last);
    assert_int_equal(s.req.gap, HSC_GAP_UNKNOWN);
    check_replay(&s, NULL, 0);
    unsub(&w, &s);
    id_of(last, HSC_EPOCH_MIN - 1, 1); /* before 2020: not an id of ours */
    sub(&w, &s, 0, "a", last);
    assert_int_equal(s.req.gap, HSC_GAP_UNKNOWN);
    unsub(&w, &s);
    world_free(&w);

    /* Expired on a channel younger than the id, after a freed channel evicted past it. */
    world_init(&w, 0, 1 << 20, 100);
    sub(&w, &s, 0, "z", NULL);
    epoch = s.req.epoch;
    unsub(&w, &s);
    pub_ok(&w, "a", "x"); /* history 0: evicted at once, and the channel is freed */
    pub_ok(&w, "a", "x");
    assert_int_equal(channels(&w), 0);
    id_of(last, epoch, 1);
    sub(&w, &s, 0, "b", last);
    assert_int_equal(s.req.gap, HSC_GAP_EXPIRED);
    check_replay(&s, NULL, 0);
    unsub(&w, &s);
    world_free(&w);
}

static void test_unsubscribe_frees_channels(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 0, 1 << 20, 100);
    sub_t s0, s1;
    sub(&w, &s0, 0, "a,b", NULL);
    sub(&w, &s1, 1, "a", NULL);
    assert_int_equal(channels(&w), 2);
    pub_ok(&w, "a", "x");
    assert_int_equal(w.rec[0].n, 1);
    unsub(&w, &s0);
    assert_int_equal(channels(&w), 1); /* b is gone; a still has hub 1's subscriber */
    unsub(&w, &s1);
    assert_int_equal(channels(&w), 0);
    /* The deliveries still hold the channel: its handle stays readable until released. */
    assert_non_null(w.rec[0].d[0].chan->slot);
    assert_null(w.rec[0].d[0].chan->slot[0]);
    world_free(&w);

    /* With history, a channel stays until its history empties (sweep, by age). */
    world_init_aged(&w, 10, 1 << 20, 100, 1);
    sub(&w, &s0, 0, "a", NULL);
    pub_ok(&w, "a", "x");
    unsub(&w, &s0);
    assert_int_equal(channels(&w), 1);
    usleep(5000);
    hsc_engine_sweep(w.e);
    hsc_engine_stats_t st;
    hsc_engine_stats(w.e, &st);
    assert_int_equal(st.channels, 0);
    assert_int_equal(st.history_events, 0);
    assert_int_equal(st.history_bytes, 0);
    assert_int_equal(st.published, 1);
    world_free(&w);
}

static hsc_engine_stats_t stats(world_t *w)
{
    hsc_engine_stats_t st;
    hsc_engine_stats(w->e, &st);
    return st;
}

/* Resumes `name` from sequence number `after` on hub 1 and returns the gap (the replay freed). */
static hsc_gap_t resume_gap(world_t *w, const char *name, uint64_t epoch, uint64_t after,
                            size_t *nreplay)
{
    char last[HSC_EVENT_ID_MAX];
    id_of(last, epoch, after);
    sub_t s;
    sub(w, &s, 1, name, last);
    assert_int_equal(s.req.rc, 0);
    hsc_gap_t gap = s.req.gap;
    *nreplay = s.req.nreplay;
    for (size_t i = 0; i < s.req.nreplay; i++)
        hsc_frame_unref(s.req.replay[i].frame);
    free(s.req.replay);
    unsub(w, &s);
    return gap;
}

/* A full table makes room by dropping the least recently used channel without subscribers, with
 * its history: a later resume on it reports the gap (issue 21: no lockout by squatting). */
static void test_max_channels_evicts_the_least_recently_used_idle_channel(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 10, 1 << 20, 2);
    uint64_t a1 = pub_ok(&w, "a", "x");
    uint64_t b1 = pub_ok(&w, "b", "x");
    pub_ok(&w, "a", "x"); /* a is now the most recently used: b goes first */
    uint64_t c1 = pub_ok(&w, "c", "x");
    hsc_engine_stats_t st = stats(&w);
    assert_int_equal(st.channels, 2);
    assert_int_equal(st.evicted_channels, 1);
    assert_int_equal(st.evicted_events, 1);
    assert_int_equal(st.history_events, 3);
    sub_t s;
    sub(&w, &s, 0, "a", NULL);
    uint64_t epoch = s.req.epoch;
    unsub(&w, &s);
    size_t n;
    /* a kept both events; b lost its one; c is whole. */
    assert_int_equal(resume_gap(&w, "a", epoch, a1 - 1, &n), HSC_GAP_NONE);
    assert_int_equal(n, 2);
    assert_int_equal(resume_gap(&w, "c", epoch, c1 - 1, &n), HSC_GAP_NONE);
    assert_int_equal(n, 1);
    assert_int_equal(resume_gap(&w, "b", epoch, b1 - 1, &n), HSC_GAP_EXPIRED); /* drops a */
    assert_int_equal(n, 0);
    world_free(&w);
}

/* Channels with subscribers are never dropped: only then is a new channel refused. */
static void test_max_channels_refuses_only_when_every_channel_has_subscribers(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 10, 1 << 20, 2);
    sub_t sa, sb;
    sub(&w, &sa, 0, "a", NULL);
    pub_ok(&w, "a", "x");
    sub(&w, &sb, 0, "b", NULL);
    hsc_publish_t p = pub(&w, "c", NULL, "x");
    assert_int_equal(p.rc, HSC_EFULL);
    sub_t s;
    sub(&w, &s, 1, "a,c", NULL);
    assert_int_equal(s.req.rc, HSC_EFULL);
    assert_int_equal(s.req.nreplay, 0);
    assert_int_equal(pub_ok(&w, "a", "x"), 2); /* no number was used; nothing registered */
    hsc_engine_stats_t st = stats(&w);
    assert_int_equal(st.channels, 2);
    assert_int_equal(st.published, 2);
    assert_int_equal(st.evicted_channels, 0);
    /* b's subscriber leaves: b (no history) is freed, and there is room again. */
    unsub(&w, &sb);
    pub_ok(&w, "c", "x");
    /* a's subscriber leaves: a is idle, the least recently used, and makes room for d. */
    unsub(&w, &sa);
    pub_ok(&w, "c", "x");
    pub_ok(&w, "d", "x");
    st = stats(&w);
    assert_int_equal(st.channels, 2);
    assert_int_equal(st.evicted_channels, 1);
    world_free(&w);
}

/* The frame of a one-byte event with no type, as the engine encodes it, in bytes. */
static size_t frame_len(world_t *w)
{
    sub_t s;
    sub(w, &s, 0, "probe", NULL);
    pub_ok(w, "probe", "x");
    size_t len = w->rec[0].d[w->rec[0].n - 1].frame->len;
    unsub(w, &s);
    return len;
}

/* --history-total-bytes: whole idle channels go first, least recently used first; then the
 * oldest events of channels with subscribers; the gap is reported for both. */
static void test_history_total_bytes_evicts_idle_channels_first(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 100, 1 << 20, 100);
    size_t f = frame_len(&w); /* ids of one digit (seq 1); later ones are a byte longer */
    world_free(&w);
    memset(&w, 0, sizeof w);
    hsc_server_config_init(&w.cfg);
    w.cfg.history = 100;
    w.cfg.history_bytes = 1 << 20;
    w.cfg.history_age_ms = 3600 * 1000;
    w.cfg.max_channels = 100;
    w.cfg.history_total_bytes = 6 * (f + 1); /* room for 6 events */
    assert_int_equal(hsc_memory_engine_new(&w.cfg, 2, &w.e), 0);
    for (unsigned i = 0; i < 2; i++)
        hsc_engine_attach(w.e, i, &rec_sink, &w.rec[i]);
    sub_t live;
    sub(&w, &live, 0, "live", NULL);
    uint64_t epoch = live.req.epoch;
    uint64_t l1 = pub_ok(&w, "live", "1");
    pub_ok(&w, "live", "2");
    uint64_t x1 = pub_ok(&w, "x", "1");
    pub_ok(&w, "x", "2");
    uint64_t y1 = pub_ok(&w, "y", "1");
    pub_ok(&w, "y", "2"); /* 6 events: full */
    assert_int_equal(stats(&w).evicted_events, 0);
    pub_ok(&w, "live", "3"); /* x, the least recently used idle channel, goes whole */
    hsc_engine_stats_t st = stats(&w);
    assert_int_equal(st.evicted_channels, 1);
    assert_int_equal(st.evicted_events, 2);
    assert_int_equal(st.channels, 2);
    assert_true(st.history_bytes <= w.cfg.history_total_bytes);
    pub_ok(&w, "live", "4");
    pub_ok(&w, "live", "5"); /* then y */
    st = stats(&w);
    assert_int_equal(st.evicted_channels, 2);
    assert_int_equal(st.history_events, 5);
    pub_ok(&w, "live", "6");
    pub_ok(&w, "live", "7"); /* no idle channel left: live's own oldest events */
    st = stats(&w);
    assert_int_equal(st.evicted_channels, 2);
    assert_true(st.history_events <= 6);
    assert_true(st.history_bytes <= w.cfg.history_total_bytes);
    size_t n;
    assert_int_equal(resume_gap(&w, "x", epoch, x1 - 1, &n), HSC_GAP_EXPIRED);
    assert_int_equal(resume_gap(&w, "y", epoch, y1 - 1, &n), HSC_GAP_EXPIRED);
    assert_int_equal(resume_gap(&w, "live", epoch, l1 - 1, &n), HSC_GAP_EXPIRED);
    assert_int_equal(n, st.history_events);
    unsub(&w, &live);
    world_free(&w);
}

/* A create check: new channels take tokens from the client's bucket, existing ones none; a
 * refusal creates nothing and uses no number. */
static void test_create_check_limits_new_channels_only(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 10, 1 << 20, 100);
    hsc_ratelimit_t *rl;
    assert_int_equal(hsc_ratelimit_new(1, 2, 16, &rl), 0);
    hsc_create_check_t check = {.limit = rl, .client = 42};
    const char *names[] = {"a", "b", "c", "a"};
    int want[] = {0, 0, HSC_ELIMIT, 0};
    uint64_t seq = 0;
    for (int i = 0; i < 4; i++) {
        hsc_publish_t p = {.channel = names[i],
                           .channel_len = 1,
                           .data = "x",
                           .len = 1,
                           .create = check,
                           .cb = on_published};
        hsc_engine_publish(w.e, &p);
        assert_int_equal(p.rc, want[i]);
        if (p.rc == 0)
            assert_int_equal(p.seq, ++seq); /* the refused one used no number */
        else
            assert_true(p.create.retry_ms > 0 && p.create.retry_ms <= 1000);
    }
    assert_int_equal(stats(&w).channels, 2);
    sub_t s;
    memset(&s, 0, sizeof s);
    strcpy(s.names[0], "a");
    strcpy(s.names[1], "n1");
    s.req = (hsc_subscribe_t){.names = s.names[0],
                              .stride = sizeof s.names[0],
                              .n = 2,
                              .create = check,
                              .cb = on_subscribed,
                              .chans = s.chans};
    hsc_engine_subscribe(w.e, &s.req);
    assert_int_equal(s.req.rc, HSC_ELIMIT);
    assert_int_equal(stats(&w).channels, 2);
    s.req.n = 1; /* "a" exists: no token needed */
    hsc_engine_subscribe(w.e, &s.req);
    assert_int_equal(s.req.rc, 0);
    check.client = 7; /* another client has its own bucket */
    hsc_publish_t p = {.channel = "c",
                       .channel_len = 1,
                       .data = "x",
                       .len = 1,
                       .create = check,
                       .cb = on_published};
    hsc_engine_publish(w.e, &p);
    assert_int_equal(p.rc, 0);
    unsub(&w, &s);
    world_free(&w);
    hsc_ratelimit_free(rl);
}

static void test_stats_count_history_events_and_bytes(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 10, 1 << 20, 100);
    hsc_engine_stats_t st;
    hsc_engine_stats(w.e, &st);
    assert_int_equal(st.channels, 0);
    assert_int_equal(st.published, 0);
    sub_t s;
    sub(&w, &s, 0, "a", NULL);
    size_t bytes = 0;
    for (int i = 0; i < 4; i++)
        pub_ok(&w, i % 2 ? "a" : "b", "hello");
    for (size_t i = 0; i < w.rec[0].n; i++)
        bytes += w.rec[0].d[i].frame->len;
    hsc_engine_stats(w.e, &st);
    assert_int_equal(st.channels, 2);
    assert_int_equal(st.published, 4);
    assert_int_equal(st.history_events, 4);
    assert_int_equal(st.history_bytes, 2 * bytes); /* a's two frames, and b's of the same size */
    unsub(&w, &s);
    world_free(&w);
}

/* A listing's results: the names reported, and the records of the last one. */
typedef struct listing_s {
    hsc_channels_t q;
    char names[64][HSC_CHANNEL_MAX + 1];
    size_t n;
    hsc_chan_info_t last;
    int done;
} listing_t;

static void list_each(hsc_channels_t *q, const hsc_chan_info_t *info)
{
    listing_t *l = q->user;
    assert_true(l->n < 64);
    memcpy(l->names[l->n], info->name, info->name_len);
    l->names[l->n][info->name_len] = '\0';
    l->n++;
    l->last = *info;
}

static void list_done(hsc_channels_t *q)
{
    ((listing_t *)q->user)->done++;
}

/* Lists from hub 0: one channel (`one`) or a page of `limit` after `after` (NULL: first). */
static void list(world_t *w, listing_t *l, const char *after, size_t limit, bool one)
{
    memset(l, 0, sizeof *l);
    l->q = (hsc_channels_t){.name = after,
                            .name_len = after ? strlen(after) : 0,
                            .one = one,
                            .limit = limit,
                            .each = list_each,
                            .cb = list_done,
                            .user = l};
    hsc_engine_channels(w->e, &l->q);
    assert_int_equal(l->done, 1); /* before returning, as the memory engine does */
    assert_int_equal(l->q.rc, 0);
    assert_int_equal(l->q.found, l->n);
}

static void test_channels_are_listed_in_name_order_by_pages(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 10, 1 << 20, 100);
    assert_true(hsc_engine_can_list(w.e));
    static const char *names[] = {"m", "b", "a/b", "zz", "a", "ab", "z", "b:1"};
    for (size_t i = 0; i < 8; i++)
        pub_ok(&w, names[i], "x");
    sub_t s0, s1;
    sub(&w, &s0, 0, "m", NULL);
    sub(&w, &s1, 1, "m,q", NULL); /* q: subscribers, no history */
    listing_t l;
    list(&w, &l, NULL, 100, false);
    assert_int_equal(l.q.total, 9);
    assert_int_equal(l.n, 9);
    assert_false(l.q.more);
    /* Pages of 3 after a cursor: each channel exactly once, in order. */
    char after[HSC_CHANNEL_MAX + 1] = "";
    size_t seen = 0;
    static const char *all[] = {"a", "a/b", "ab", "b", "b:1", "m", "q", "z", "zz"};
    for (int page = 0; page < 3; page++) {
        list(&w, &l, page ? after : NULL, 3, false);
        assert_int_equal(l.n, 3);
        assert_int_equal(l.q.more, page < 2);
        for (size_t i = 0; i < l.n; i++)
            assert_string_equal(l.names[i], all[seen++]);
        strcpy(after, l.names[l.n - 1]);
    }
    list(&w, &l, "zz", 3, false);
    assert_int_equal(l.n, 0);
    assert_false(l.q.more);
    list(&w, &l, "b", 1, false); /* strictly after the cursor, which need not exist */
    assert_string_equal(l.names[0], "b:1");
    /* One channel: its record and a reference to its handle. */
    list(&w, &l, "m", 1, true);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.last.subscribers, 2);
    assert_int_equal(l.last.history_events, 1);
    assert_true(l.last.history_bytes > 0);
    assert_int_equal(l.last.first_seq, 1);
    assert_int_equal(l.last.last_seq, 1);
    assert_true(l.last.last_publish_ms > HSC_EPOCH_MIN);
    assert_ptr_equal(l.last.chan, s0.chans[0]);
    hsc_engine_release(w.e, l.last.chan);
    list(&w, &l, "q", 1, true);
    assert_int_equal(l.last.history_events, 0);
    assert_int_equal(l.last.first_seq, 0);
    assert_int_equal(l.last.last_publish_ms, 0);
    hsc_engine_release(w.e, l.last.chan);
    list(&w, &l, "nope", 1, true);
    assert_int_equal(l.n, 0);
    /* A handle listed outlives its channel until released. */
    list(&w, &l, "q", 1, true);
    unsub(&w, &s0);
    unsub(&w, &s1);
    assert_int_equal(channels(&w), 8); /* q is gone from the table */
    assert_null(l.last.chan->slot[0]);
    hsc_engine_release(w.e, l.last.chan);
    world_free(&w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_increase_across_channels),
        cmocka_unit_test(test_deliveries_reach_the_hubs_with_subscribers_in_order),
        cmocka_unit_test(test_history_is_bounded_by_count_and_bytes),
        cmocka_unit_test(test_subscribe_replays_exactly_after_the_id_up_to_the_cut),
        cmocka_unit_test(test_recent_events_are_the_newest_across_channels_up_to_the_cut),
        cmocka_unit_test(test_tags_are_made_once_per_channel_when_asked),
        cmocka_unit_test(test_gap_kinds),
        cmocka_unit_test(test_unsubscribe_frees_channels),
        cmocka_unit_test(test_max_channels_evicts_the_least_recently_used_idle_channel),
        cmocka_unit_test(test_max_channels_refuses_only_when_every_channel_has_subscribers),
        cmocka_unit_test(test_history_total_bytes_evicts_idle_channels_first),
        cmocka_unit_test(test_create_check_limits_new_channels_only),
        cmocka_unit_test(test_stats_count_history_events_and_bytes),
        cmocka_unit_test(test_channels_are_listed_in_name_order_by_pages),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
