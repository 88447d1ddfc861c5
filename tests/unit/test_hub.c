/*
 * Unit tests for src/lib/pubsub/hub.c with the memory engine and the HTTP side (events.c), and
 * no server: one uv loop in the test thread, one hsc_http_t whose owner hands every request to
 * hsc_events_handle() with the hub, and clients on Unix socketpairs (hsc_http_adopt()) that the
 * test writes and reads between turns of the loop.
 *
 * The engine is the memory engine behind a thin test engine that can hold completions back (as a
 * journal or Redis engine answers later: then they come through the hub's call()), or publish
 * events around a subscribe: just before it registers, and just after its cut. That puts events
 * in the hub's inbox on both sides of the cut, where exact resume must neither lose nor repeat
 * one. Every test ends with every handle closed and uv_loop_close() returning 0.
 */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pubsub/pubsub.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the test engine ------------------------------------------------------------------------- */

typedef struct test_engine_s test_engine_t;

/* A completion the test engine holds back, then has the hub run (call()). */
typedef struct held_s {
    hsc_engine_call_t call;
    test_engine_t *te;
    hsc_publish_t *p; /* or */
    hsc_subscribe_t *s;
    hsc_publish_cb pcb;
    hsc_subscribe_cb scb;
    void *user;
    bool posted;
} held_t;

struct test_engine_s {
    hsc_engine_t base;
    hsc_engine_t *mem;
    bool hold_publish;    /* publish completions wait for release_held() */
    bool hold_subscribe;  /* subscribe completions wait for release_held() */
    bool defer_subscribe; /* subscribe completions go through the hub's call() at once */
    bool publish_around;  /* each subscribe: two events before it, two right after its cut */
    held_t held[16];
    size_t nheld;
    unsigned ran; /* held completions run */
};

static void noop_published(hsc_publish_t *p)
{
    assert_int_equal(p->rc, 0);
}

/* Publishes `data` on `chan` through `e`, from hub 0. */
static void publish_direct(hsc_engine_t *e, const char *chan, const char *data)
{
    hsc_publish_t p = {.channel = chan,
                       .channel_len = strlen(chan),
                       .data = data,
                       .len = strlen(data),
                       .cb = noop_published};
    hsc_engine_publish(e, &p);
}

static void run_held(hsc_engine_call_t *call)
{
    held_t *h = (held_t *)call;
    h->te->ran++;
    if (h->p != NULL) {
        h->p->cb = h->pcb;
        h->p->user = h->user;
        h->p->cb(h->p);
    } else {
        h->s->cb = h->scb;
        h->s->user = h->user;
        h->s->cb(h->s);
    }
}

static void post(test_engine_t *te, held_t *h)
{
    hsc_engine_hub_t *hub = &te->base.hubs[h->p ? h->p->hub : h->s->hub];
    h->posted = true;
    hub->sink->call(hub->ctx, &h->call);
}

static void release_held(test_engine_t *te)
{
    for (size_t i = 0; i < te->nheld; i++)
        if (!te->held[i].posted)
            post(te, &te->held[i]);
}

static held_t *hold(test_engine_t *te)
{
    assert_true(te->nheld < sizeof te->held / sizeof te->held[0]);
    held_t *h = &te->held[te->nheld++];
    *h = (held_t){.call.fn = run_held, .te = te};
    return h;
}

static void te_published(hsc_publish_t *p)
{
    (void)p; /* held: the completion runs when released */
}

static void te_publish(hsc_engine_t *e, hsc_publish_t *p)
{
    test_engine_t *te = (test_engine_t *)e;
    if (!te->hold_publish) {
        hsc_engine_publish(te->mem, p);
        return;
    }
    held_t *h = hold(te);
    h->p = p;
    h->pcb = p->cb;
    h->user = p->user;
    p->cb = te_published;
    hsc_engine_publish(te->mem, p);
}

static void te_subscribed(hsc_subscribe_t *s)
{
    held_t *h = s->user;
    test_engine_t *te = h->te;
    if (te->defer_subscribe)
        post(te, h); /* at the cut, ahead of any later delivery, as the contract asks */
    if (te->publish_around) {
        publish_direct(te->mem, "a", "after-a");
        publish_direct(te->mem, "b", "after-b");
    }
    if (!te->defer_subscribe && !te->hold_subscribe) {
        te->nheld--;
        s->cb = h->scb;
        s->user = h->user;
        s->cb(s);
    }
}

static void te_subscribe(hsc_engine_t *e, hsc_subscribe_t *s)
{
    test_engine_t *te = (test_engine_t *)e;
    if (te->publish_around) {
        publish_direct(te->mem, "a", "before-a");
        publish_direct(te->mem, "b", "before-b");
    }
    held_t *h = hold(te);
    h->s = s;
    h->scb = s->cb;
    h->user = s->user;
    s->cb = te_subscribed;
    s->user = h;
    hsc_engine_subscribe(te->mem, s);
}

static void te_unsubscribe(hsc_engine_t *e, unsigned hub, hsc_chan_t *const *chans, size_t n)
{
    hsc_engine_unsubscribe(((test_engine_t *)e)->mem, hub, chans, n);
}

static void te_release(hsc_engine_t *e, hsc_chan_t *chan)
{
    hsc_engine_release(((test_engine_t *)e)->mem, chan);
}

static void te_sweep(hsc_engine_t *e)
{
    hsc_engine_sweep(((test_engine_t *)e)->mem);
}

static void te_stats(hsc_engine_t *e, hsc_engine_stats_t *out)
{
    hsc_engine_stats(((test_engine_t *)e)->mem, out);
}

static void te_free(hsc_engine_t *e)
{
    hsc_engine_free(((test_engine_t *)e)->mem);
}

static const hsc_engine_vt_t te_vt = {te_publish, te_subscribe, te_unsubscribe, te_release,
                                      te_sweep,   te_stats,     te_free};

/* ---- the world: a loop, a hub, a transport, clients ------------------------------------------ */

typedef struct client_s {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
    bool paused; /* not read: a subscriber that does not keep up */
} client_t;

typedef struct world_s {
    uv_loop_t loop;
    hsc_server_config_t cfg;
    test_engine_t te;
    hsc_hub_t hub;
    hsc_http_t http;
    atomic_uint nconns;
    atomic_uint_fast64_t next_id;
    unsigned closed; /* connections closed (the owner's on_closed) */
    client_t *clients[16];
    size_t nclients;
} world_t;

static void on_request(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    world_t *w = ctx;
    hsc_events_handle(&w->hub, req, res);
}

static void on_closed(void *ctx)
{
    ((world_t *)ctx)->closed++;
}

static const hsc_http_owner_t owner = {on_request, NULL, on_closed};

/* A world with the default configuration, which the test may change before world_start(). */
static world_t *world_new(void)
{
    signal(SIGPIPE, SIG_IGN); /* as hscd does: a closed peer is an error return, not a signal */
    world_t *w = calloc(1, sizeof *w);
    assert_non_null(w);
    hsc_server_config_init(&w->cfg);
    return w;
}

static void world_start(world_t *w)
{
    assert_int_equal(uv_loop_init(&w->loop), 0);
    assert_int_equal(hsc_memory_engine_new(&w->cfg, 1, &w->te.mem), 0);
    w->te.base = (hsc_engine_t){&te_vt, w->te.mem->nhubs, w->te.mem->hubs}; /* one attach */
    hsc_hub_init(&w->hub, &w->loop, 0, &w->cfg, &w->te.base);
    hsc_http_init(&w->http, &w->loop, &w->cfg, &owner, w, &w->nconns, &w->next_id);
}

static void client_read(client_t *c)
{
    for (;;) {
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 1 << 17;
            c->buf = realloc(c->buf, c->cap + 1);
            assert_non_null(c->buf);
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
            continue;
        }
        if (n == 0)
            c->eof = true;
        else
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNRESET);
        return;
    }
}

/* One turn of the loop, then whatever the clients can read. */
static void pump(world_t *w)
{
    uv_run(&w->loop, UV_RUN_NOWAIT);
    for (size_t i = 0; i < w->nclients; i++) {
        client_t *c = w->clients[i];
        if (c->fd >= 0 && !c->paused && !c->eof)
            client_read(c);
    }
    usleep(100);
}

#define RUN_UNTIL(w, cond)                                                                         \
    do {                                                                                           \
        uint64_t deadline_ = uv_hrtime() + 5000000000ull;                                          \
        while (!(cond)) {                                                                          \
            if (uv_hrtime() > deadline_)                                                           \
                fail_msg("timed out waiting for: %s", #cond);                                      \
            pump(w);                                                                               \
        }                                                                                          \
    } while (0)

/* A client on a socketpair the transport serves; `small`: tiny socket buffers. */
static client_t *client_open(world_t *w, bool small)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    if (small) {
        int size = 4096;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    assert_int_equal(hsc_http_adopt(&w->http, sv[0]), 0);
    client_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = sv[1];
    assert_true(w->nclients < sizeof w->clients / sizeof w->clients[0]);
    w->clients[w->nclients++] = c;
    return c;
}

static void client_send(client_t *c, const char *fmt, ...)
{
    char req[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(req, sizeof req, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof req);
    assert_int_equal(write(c->fd, req, (size_t)n), n);
}

static void client_close(client_t *c)
{
    close(c->fd);
    c->fd = -1;
}

static client_t *subscriber(world_t *w, const char *query, const char *last)
{
    client_t *c = client_open(w, false);
    client_send(c, "GET /v1/events?%s HTTP/1.1\r\nHost: t\r\n%s%s%s\r\n", query,
                last ? "Last-Event-ID: " : "", last ? last : "", last ? "\r\n" : "");
    return c;
}

static bool has(const client_t *c, const char *needle)
{
    return c->len > 0 && memmem(c->buf, c->len, needle, strlen(needle)) != NULL;
}

/* The sequence numbers of the events a subscriber received, in order ("id: EPOCH-SEQ" lines). */
static size_t ids(const client_t *c, uint64_t *out, size_t max)
{
    size_t n = 0;
    for (const char *p = c->buf; p != NULL && c->len > 0;) {
        p = memmem(p, c->len - (size_t)(p - c->buf), "\nid: ", 5);
        if (p == NULL)
            break;
        const char *dash = memchr(p + 5, '-', 40);
        assert_non_null(dash);
        if (n < max)
            out[n] = strtoull(dash + 1, NULL, 10);
        n++;
        p += 5;
    }
    return n;
}

static size_t nids(const client_t *c)
{
    return ids(c, NULL, 0);
}

static void check_ids(const client_t *c, const uint64_t *want, size_t n)
{
    uint64_t got[64];
    assert_int_equal(ids(c, got, 64), n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

/* Every client goes away; then the hub; every handle closed, the loop closes. */
static void world_end(world_t *w)
{
    for (size_t i = 0; i < w->nclients; i++)
        if (w->clients[i]->fd >= 0)
            client_close(w->clients[i]);
    RUN_UNTIL(w, w->http.nconns == 0);
    assert_int_equal(w->hub.nsubs, 0);
    assert_int_equal(atomic_load(&w->hub.st_subscribers), 0);
    hsc_hub_close(&w->hub);
    for (int i = 0; i < 100 && uv_loop_alive(&w->loop); i++)
        uv_run(&w->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&w->loop), 0);
    hsc_hub_dispose(&w->hub);
    hsc_engine_free(&w->te.base);
    for (size_t i = 0; i < w->nclients; i++) {
        free(w->clients[i]->buf);
        free(w->clients[i]);
    }
    free(w);
}

static uint64_t published(world_t *w)
{
    hsc_engine_stats_t st;
    hsc_engine_stats(&w->te.base, &st);
    return st.published;
}

/*
 * What a subscriber received, in order, as text: each event's SEQ, each channel tag as [NAME];
 * e.g. "[a] 3 4 [b] 5". At most `cap` bytes.
 */
static const char *trace(const client_t *c, char *out, size_t cap)
{
    static const char tag[] = "\nevent: hsc.channel\ndata: ", id[] = "\nid: ";
    size_t o = 0;
    out[0] = '\0';
    const char *end = c->buf + c->len;
    for (const char *p = c->buf; c->len > 0 && p < end;) {
        const char *t = memmem(p, (size_t)(end - p), tag, sizeof tag - 1);
        const char *i = memmem(p, (size_t)(end - p), id, sizeof id - 1);
        if (t == NULL && i == NULL)
            break;
        int n;
        if (t != NULL && (i == NULL || t < i)) {
            p = t + sizeof tag - 1;
            n = snprintf(out + o, cap - o, "%s[%.*s]", o ? " " : "", (int)strcspn(p, "\n"), p);
        } else {
            p = memchr(i + sizeof id - 1, '-', 40);
            assert_non_null(p);
            n = snprintf(out + o, cap - o, "%s%llu", o ? " " : "",
                         (unsigned long long)strtoull(p + 1, NULL, 10));
        }
        assert_true(n > 0 && (size_t)n < cap - o);
        o += (size_t)n;
    }
    return out;
}

/* The epoch a subscriber was told (": hsc EPOCH"), for Last-Event-ID. */
static void epoch_of(const client_t *c, char *out, size_t cap)
{
    const char *p = memmem(c->buf, c->len, ": hsc ", 6);
    assert_non_null(p);
    size_t n = strcspn(p + 6, "\n");
    assert_true(n < cap);
    memcpy(out, p + 6, n);
    out[n] = '\0';
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_publish_and_subscribe_over_socketpairs(void **state)
{
    (void)state;
    world_t *w = world_new();
    w->cfg.keepalive_ms = 30;
    world_start(w);
    client_t *sub = subscriber(w, "channel=a", NULL);
    RUN_UNTIL(w, has(sub, ": hsc "));
    assert_memory_equal(sub->buf, "HTTP/1.1 200 OK\r\n", 17);
    assert_true(has(sub, "Content-Type: text/event-stream; charset=utf-8\r\n"));
    assert_true(has(sub, "\r\nretry: "));
    client_t *pub = client_open(w, false);
    client_send(pub, "POST /v1/events?channel=a&event=greeting HTTP/1.1\r\nHost: t\r\n"
                     "Content-Length: 5\r\n\r\nhello");
    RUN_UNTIL(w, has(pub, "}\n"));
    assert_memory_equal(pub->buf, "HTTP/1.1 200 OK\r\n", 17);
    assert_true(has(pub, "-1\",\"channel\":\"a\",\"subscribers\":1}\n"));
    RUN_UNTIL(w, has(sub, "data: hello\n\n"));
    assert_true(has(sub, "event: greeting\nid: "));
    check_ids(sub, (const uint64_t[]){1}, 1);
    /* Silence brings the keep-alive comment, exactly these bytes, as one chunk. */
    RUN_UNTIL(w, has(sub, "e\r\n: keep-alive\n\n\r\n"));
    /* A refused publish publishes nothing. */
    client_send(pub, "POST /v1/events?channel=a%%20b HTTP/1.1\r\nHost: t\r\n"
                     "Content-Length: 1\r\n\r\nx");
    RUN_UNTIL(w, has(pub, "HTTP/1.1 400 "));
    assert_int_equal(published(w), 1);
    assert_int_equal(atomic_load(&w->hub.st_delivered), 1);
    assert_int_equal(atomic_load(&w->hub.st_subscribers), 1);
    world_end(w);
}

static void test_multi_channel_subscription_sees_ids_in_order(void **state)
{
    (void)state;
    world_t *w = world_new();
    world_start(w);
    client_t *abc = subscriber(w, "channel=a&channel=b&channel=c", NULL);
    client_t *b = subscriber(w, "channel=b", NULL);
    RUN_UNTIL(w, has(abc, ": hsc ") && has(b, ": hsc "));
    /* One burst, in one inbox batch: a, b, c, d, a, b, c, d, ... (d is nobody's). */
    static const char *const chans[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 48; i++)
        publish_direct(&w->te.base, chans[i % 4], "x");
    RUN_UNTIL(w, nids(abc) == 36 && nids(b) == 12);
    uint64_t want[36], k = 0;
    for (uint64_t seq = 1; seq <= 48; seq++)
        if (seq % 4 != 0)
            want[k++] = seq;
    check_ids(abc, want, 36);
    for (uint64_t i = 0; i < 12; i++)
        want[i] = 4 * i + 2;
    check_ids(b, want, 12);
    world_end(w);
}

static void test_resume_cut_neither_loses_nor_repeats(void **state)
{
    (void)state;
    world_t *w = world_new();
    world_start(w);
    client_t *a = subscriber(w, "channel=a", NULL);
    RUN_UNTIL(w, has(a, ": hsc "));
    publish_direct(&w->te.base, "a", "1");
    publish_direct(&w->te.base, "a", "2");
    RUN_UNTIL(w, nids(a) == 2);
    char epoch[32], last[64];
    epoch_of(a, epoch, sizeof epoch);
    snprintf(last, sizeof last, "%s-1", epoch);
    /*
     * Around the subscription: 3 (a) reaches the hub's inbox before the cut, for `a` only, and
     * would be seen again by the new subscriber from there; 4 (b) is only in history; the cut is
     * 4; 5 (a) and 6 (b) reach the inbox after it. The new subscriber gets 2, 3, 4 from history,
     * then 5 and 6 live: each once.
     */
    w->te.publish_around = true;
    client_t *ab = subscriber(w, "channel=a&channel=b", last);
    RUN_UNTIL(w, nids(ab) >= 5 && nids(a) >= 4);
    check_ids(ab, (const uint64_t[]){2, 3, 4, 5, 6}, 5);
    check_ids(a, (const uint64_t[]){1, 2, 3, 5}, 4);
    assert_false(has(ab, "hsc.gap"));
    assert_int_equal(atomic_load(&w->hub.st_resumes), 1);
    for (int i = 0; i < 20; i++)
        pump(w); /* and nothing more arrives */
    assert_int_equal(nids(ab), 5);
    world_end(w);
}

static void test_recent_events_then_live_with_no_gap_or_duplicate(void **state)
{
    (void)state;
    world_t *w = world_new();
    world_start(w);
    publish_direct(&w->te.base, "a", "1");
    publish_direct(&w->te.base, "b", "2");
    publish_direct(&w->te.base, "c", "3");
    publish_direct(&w->te.base, "a", "4");
    /*
     * Around the subscription, as for a resume: 5 (a) and 6 (b) are published just before it
     * registers, 7 (a) and 8 (b) just after its cut (6). The 3 newest of a and b up to the cut
     * are 4, 5, 6; then 7 and 8 live: each once, and no hsc.gap (nothing was resumed).
     */
    w->te.publish_around = true;
    client_t *ab = subscriber(w, "channel=a&channel=b&history=3", NULL);
    RUN_UNTIL(w, nids(ab) >= 5);
    check_ids(ab, (const uint64_t[]){4, 5, 6, 7, 8}, 5);
    w->te.publish_around = false;
    /* lastEventId=earliest: everything the channels hold; as the header value too. */
    client_t *all = subscriber(w, "channel=b&channel=a&lastEventId=earliest", NULL);
    client_t *hdr = subscriber(w, "channel=a", "earliest");
    RUN_UNTIL(w, nids(all) >= 7 && nids(hdr) >= 4);
    check_ids(all, (const uint64_t[]){1, 2, 4, 5, 6, 7, 8}, 7);
    check_ids(hdr, (const uint64_t[]){1, 4, 5, 7}, 4);
    /* A real id wins over history=: a resume, exactly after it. */
    char epoch[32], last[64];
    epoch_of(ab, epoch, sizeof epoch);
    snprintf(last, sizeof last, "%s-6", epoch);
    client_t *res = subscriber(w, "channel=a&channel=b&history=1&lastEventId=earliest", last);
    RUN_UNTIL(w, nids(res) >= 2);
    check_ids(res, (const uint64_t[]){7, 8}, 2);
    publish_direct(&w->te.base, "a", "9");
    RUN_UNTIL(w, nids(ab) == 6 && nids(all) == 8 && nids(hdr) == 5 && nids(res) == 3);
    for (int i = 0; i < 20; i++)
        pump(w); /* and nothing more arrives */
    assert_int_equal(nids(ab) + nids(all) + nids(hdr) + nids(res), 22);
    for (size_t i = 0; i < w->nclients; i++)
        assert_false(has(w->clients[i], "hsc.gap"));
    assert_int_equal(atomic_load(&w->hub.st_resumes), 1); /* only the real id */
    assert_int_equal(atomic_load(&w->hub.st_missed), 0);
    world_end(w);
}

static void test_tags_say_each_events_channel_once_per_run(void **state)
{
    (void)state;
    world_t *w = world_new();
    world_start(w);
    publish_direct(&w->te.base, "a", "1");
    publish_direct(&w->te.base, "b", "2");
    publish_direct(&w->te.base, "b", "3");
    client_t *tagged = subscriber(w, "channel=a&channel=b&tag=channel&history=3", NULL);
    client_t *plain = subscriber(w, "channel=a&channel=b", NULL);
    client_t *old = client_open(w, false); /* HTTP/1.0: close-delimited, no chunk framing */
    client_send(old, "GET /v1/events?channel=b&channel=a&tag=channel HTTP/1.0\r\n\r\n");
    RUN_UNTIL(w, nids(tagged) == 3 && has(plain, ": hsc ") && has(old, ": hsc "));
    uint64_t delivered = atomic_load(&w->hub.st_delivered);
    /* One burst, one inbox batch: a tag only where the channel changes. */
    static const char *const chans[] = {"a", "a", "b", "c", "a", "b", "b"}; /* 4..10 */
    for (int i = 0; i < 7; i++)
        publish_direct(&w->te.base, chans[i], "x");
    RUN_UNTIL(w, nids(tagged) == 9 && nids(plain) == 6 && nids(old) == 6);
    char got[256];
    assert_string_equal(trace(tagged, got, sizeof got),
                        "[a] 1 [b] 2 3 [a] 4 5 [b] 6 [a] 8 [b] 9 10");
    assert_string_equal(trace(plain, got, sizeof got), "4 5 6 8 9 10");
    assert_string_equal(trace(old, got, sizeof got), "[a] 4 5 [b] 6 [a] 8 [b] 9 10");
    /* The tag is a whole event of its own, with no id; the events' bytes are everyone's. */
    assert_true(has(tagged, "\r\n1c\r\nevent: hsc.channel\ndata: a\n\n\r\n"));
    assert_true(has(old, "\n\nevent: hsc.channel\ndata: b\n\nid: "));
    assert_false(has(old, "1c\r\n"));
    /* Tags are not events: the delivered counter counts the 18 events, not the 5 tags. */
    assert_int_equal(atomic_load(&w->hub.st_delivered) - delivered, 18);
    world_end(w);
}

static void test_bad_history_or_tag_is_400(void **state)
{
    (void)state;
    world_t *w = world_new();
    w->cfg.history = 50;
    world_start(w);
    static const char *const bad[] = {"history=51", "history=",   "history=-1",
                                      "history=1x", "history=+3", "history=99999999999999999999999",
                                      "tag=",       "tag=chan",   "tag=channel,type"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        client_t *c = client_open(w, false);
        client_send(c, "GET /v1/events?channel=a&%s HTTP/1.1\r\nHost: t\r\n\r\n", bad[i]);
        RUN_UNTIL(w, has(c, "\r\n\r\nbad ") && c->buf[c->len - 1] == '\n');
        assert_memory_equal(c->buf, "HTTP/1.1 400 ", 13);
        assert_true(has(c, i < 6
                               ? "\r\n\r\nbad history: use history=N, N from 0 to 50 (--history)\n"
                               : "\r\n\r\nbad tag: the only one is tag=channel\n"));
    }
    client_t *ok = subscriber(w, "channel=a&history=50&history=7&tag=channel", NULL);
    RUN_UNTIL(w, has(ok, ": hsc "));
    assert_memory_equal(ok->buf, "HTTP/1.1 200 ", 13);
    assert_int_equal(w->hub.nsubs, 1);
    world_end(w);
}

static void test_subscribe_answered_later_comes_before_later_deliveries(void **state)
{
    (void)state;
    world_t *w = world_new();
    world_start(w);
    w->te.defer_subscribe = true;
    w->te.publish_around = true;
    client_t *ab = subscriber(w, "channel=a&channel=b", NULL);
    /* 1 and 2 precede the subscription; 3 and 4 follow the completion through the inbox. */
    RUN_UNTIL(w, nids(ab) >= 2);
    check_ids(ab, (const uint64_t[]){3, 4}, 2);
    assert_int_equal(w->te.ran, 1);
    world_end(w);
}

static void test_publish_answered_later_and_client_gone_first(void **state)
{
    (void)state;
    world_t *w = world_new();
    world_start(w);
    w->te.hold_publish = true;
    client_t *sub = subscriber(w, "channel=a", NULL);
    RUN_UNTIL(w, has(sub, ": hsc "));
    client_t *p1 = client_open(w, false);
    client_send(p1, "POST /v1/events?channel=a HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx");
    RUN_UNTIL(w, nids(sub) == 1); /* delivered; not yet acknowledged */
    for (int i = 0; i < 20; i++)
        pump(w);
    assert_int_equal(p1->len, 0);
    release_held(&w->te);
    RUN_UNTIL(w, has(p1, "\"subscribers\":1}\n"));
    assert_memory_equal(p1->buf, "HTTP/1.1 200 OK\r\n", 17);

    /* The client goes away before the completion: it is dropped, nothing is touched. */
    client_t *p2 = client_open(w, false);
    client_send(p2, "POST /v1/events?channel=a HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\ny");
    RUN_UNTIL(w, w->te.nheld == 2);
    unsigned closed = w->closed;
    client_close(p2);
    RUN_UNTIL(w, w->closed == closed + 1);
    release_held(&w->te);
    RUN_UNTIL(w, w->te.ran == 2);
    assert_int_equal(published(w), 2);
    RUN_UNTIL(w, nids(sub) == 2);
    world_end(w);
}

static void test_subscribe_client_gone_before_the_answer(void **state)
{
    (void)state;
    world_t *w = world_new();
    world_start(w);
    w->te.hold_subscribe = true;
    client_t *c = subscriber(w, "channel=a", NULL);
    RUN_UNTIL(w, w->te.nheld == 1);
    hsc_engine_stats_t st;
    hsc_engine_stats(&w->te.base, &st);
    assert_int_equal(st.channels, 1); /* registered in the engine */
    client_close(c);
    RUN_UNTIL(w, w->closed == 1);
    release_held(&w->te);
    RUN_UNTIL(w, w->te.ran == 1);
    hsc_engine_stats(&w->te.base, &st);
    assert_int_equal(st.channels, 0); /* unregistered: the channel is gone */
    assert_int_equal(w->hub.nsubs, 0);
    world_end(w);
}

static void test_subscriber_that_does_not_read_is_dropped(void **state)
{
    (void)state;
    world_t *w = world_new();
    w->cfg.max_queue_bytes = 8192;
    world_start(w);
    client_t *reader = subscriber(w, "channel=a", NULL);
    client_t *stalled = client_open(w, true);
    client_send(stalled, "GET /v1/events?channel=a HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(w, has(reader, ": hsc ") && w->hub.nsubs == 2);
    stalled->paused = true;
    char data[1001];
    memset(data, 'x', 1000);
    data[1000] = '\0';
    for (int i = 0; i < 300; i++) {
        publish_direct(&w->te.base, "a", data);
        if (i % 10 == 9)
            pump(w);
    }
    RUN_UNTIL(w, nids(reader) == 300 && atomic_load(&w->hub.st_slow_dropped) == 1 &&
                     w->hub.nsubs == 1 && w->closed == 1);
    uint64_t got[300];
    assert_int_equal(ids(reader, got, 300), 300);
    for (uint64_t i = 0; i < 300; i++)
        assert_int_equal(got[i], i + 1);
    world_end(w);
}

static void test_drain_ends_subscriptions_then_refuses_new_ones(void **state)
{
    (void)state;
    world_t *w = world_new();
    w->cfg.drain_timeout_ms = 40;
    world_start(w);
    client_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = subscriber(w, "channel=a", NULL);
    RUN_UNTIL(w, w->hub.nsubs == 3);
    hsc_http_drain(&w->http);
    hsc_hub_drain(&w->hub);
    for (int i = 0; i < 3; i++)
        RUN_UNTIL(w, c[i]->eof);
    for (int i = 0; i < 3; i++) {
        /* The first retry: line opens the stream; the last one ends it, before the last chunk. */
        const char *first = memmem(c[i]->buf, c[i]->len, "retry: ", 7);
        assert_non_null(first);
        assert_true(memmem(first + 7, c[i]->len - (size_t)(first + 7 - c[i]->buf),
                           "\r\nretry: ", 9) != NULL);
        assert_true(c[i]->len > 5);
        assert_memory_equal(c[i]->buf + c[i]->len - 5, "0\r\n\r\n", 5);
    }
    assert_int_equal(w->hub.nsubs, 0);
    client_t *late = subscriber(w, "channel=a", NULL);
    RUN_UNTIL(w, has(late, "shutting down\n"));
    assert_memory_equal(late->buf, "HTTP/1.1 503 ", 13);
    world_end(w);
}

/* One subscriber is a window shorter than a tick: it ends at the first tick, never at the drain
 * timeout (a minute here, far beyond RUN_UNTIL's 5 s). */
static void test_drain_ends_a_lone_subscriber_at_once(void **state)
{
    (void)state;
    world_t *w = world_new();
    w->cfg.drain_timeout_ms = 60000;
    world_start(w);
    client_t *c = subscriber(w, "channel=a", NULL);
    RUN_UNTIL(w, w->hub.nsubs == 1);
    hsc_http_drain(&w->http);
    hsc_hub_drain(&w->hub);
    RUN_UNTIL(w, c->eof);
    assert_non_null(memmem(c->buf, c->len, "\r\nretry: ", 9));
    assert_true(c->len > 5);
    assert_memory_equal(c->buf + c->len - 5, "0\r\n\r\n", 5);
    assert_int_equal(w->hub.nsubs, 0);
    world_end(w);
}

static void take_chan(hsc_channels_t *q, const hsc_chan_info_t *info)
{
    *(hsc_chan_t **)q->user = info->chan;
}

static void listed(hsc_channels_t *q)
{
    (void)q;
}

static void count_subscriber(void *user, const char *subject)
{
    assert_null(subject); /* no JWT here: anonymous */
    (*(int *)user)++;
}

/* The admin API's hub half: presence visits a channel's subscribers; disconnect ends them as
 * the drain does (a parting retry:, the last chunk), a multi-channel subscription whole, and
 * leaves the other channels' subscribers alone. */
static void test_disconnect_ends_a_channels_subscribers_as_the_drain_does(void **state)
{
    (void)state;
    world_t *w = world_new();
    world_start(w);
    client_t *c[4] = {subscriber(w, "channel=a", NULL), subscriber(w, "channel=a", NULL),
                      subscriber(w, "channel=a&channel=b", NULL), subscriber(w, "channel=b", NULL)};
    RUN_UNTIL(w, w->hub.nsubs == 4);
    hsc_chan_t *a = NULL;
    hsc_channels_t q = {.name = "a",
                        .name_len = 1,
                        .one = true,
                        .limit = 1,
                        .each = take_chan,
                        .cb = listed,
                        .user = &a};
    hsc_engine_channels(w->te.mem, &q);
    assert_non_null(a);
    int n = 0;
    hsc_hub_each_subscriber(&w->hub, a, count_subscriber, &n);
    assert_int_equal(n, 3);
    assert_int_equal(hsc_hub_disconnect(&w->hub, a), 3);
    assert_int_equal(w->hub.nsubs, 1);
    for (int i = 0; i < 3; i++) {
        RUN_UNTIL(w, c[i]->len > 5 && memcmp(c[i]->buf + c[i]->len - 5, "0\r\n\r\n", 5) == 0);
        assert_non_null(memmem(c[i]->buf, c[i]->len, "\r\nretry: ", 9));
    }
    n = 0;
    hsc_hub_each_subscriber(&w->hub, a, count_subscriber, &n);
    assert_int_equal(n, 0);
    assert_int_equal(hsc_hub_disconnect(&w->hub, a), 0);
    hsc_engine_release(w->te.mem, a);
    publish_direct(w->te.mem, "b", "still");
    RUN_UNTIL(w, has(c[3], "data: still\n"));
    world_end(w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_and_subscribe_over_socketpairs),
        cmocka_unit_test(test_multi_channel_subscription_sees_ids_in_order),
        cmocka_unit_test(test_resume_cut_neither_loses_nor_repeats),
        cmocka_unit_test(test_recent_events_then_live_with_no_gap_or_duplicate),
        cmocka_unit_test(test_tags_say_each_events_channel_once_per_run),
        cmocka_unit_test(test_bad_history_or_tag_is_400),
        cmocka_unit_test(test_subscribe_answered_later_comes_before_later_deliveries),
        cmocka_unit_test(test_publish_answered_later_and_client_gone_first),
        cmocka_unit_test(test_subscribe_client_gone_before_the_answer),
        cmocka_unit_test(test_subscriber_that_does_not_read_is_dropped),
        cmocka_unit_test(test_drain_ends_subscriptions_then_refuses_new_ones),
        cmocka_unit_test(test_drain_ends_a_lone_subscriber_at_once),
        cmocka_unit_test(test_disconnect_ends_a_channels_subscribers_as_the_drain_does),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
