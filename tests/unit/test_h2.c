/*
 * Unit tests for HTTP/2 (src/lib/http/h2conn.c, h2recv.c, h2res.c) on a real loop
 * (tests/unit/http_harness.h): the peer writes the preface and frames by hand (HPACK literals
 * without indexing, plain strings) and reads the server's frames. Checked: a response through the
 * same API as HTTP/1.1 (HEADERS then DATA with END_STREAM; HEAD without DATA), cookie crumbs
 * joined into one Cookie field, a shared frame
 * sent to two streams is referenced, not copied, and its bytes are the DATA payloads, the
 * producer's backpressure follows the stream's window (hsc_res_writable(), on_drain after a
 * WINDOW_UPDATE), and a stream past --h2-max-streams is refused with REFUSED_STREAM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http_harness.h"

enum { F_DATA = 0, F_HEADERS = 1, F_RST = 3, F_SETTINGS = 4, F_WINDOW = 8 };

static struct {
    hsc_frame_t *shared;
    hsc_res_t *held[4];
    unsigned nheld, drains, closes;
    size_t written; /* bytes /big wrote before hsc_res_writable() said no */
} st;

/* ---- handlers ------------------------------------------------------------------------------ */

static void on_close(hsc_res_t *res, void *user)
{
    (void)res, (void)user;
    st.closes++;
}

static void on_drain(hsc_res_t *res, void *user)
{
    (void)res, (void)user;
    st.drains++;
}

static void hello_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    assert_int_equal(req->http_major, 2);
    assert_string_equal(hsc_req_header(req, "host"), "example");
    assert_int_equal(hsc_res_send(res, 200, "text/plain", NULL, "hello world", 11), 0);
}

static void shared_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx, (void)req;
    assert_int_equal(hsc_res_start(res, 200, "text/event-stream", NULL, HSC_STREAMING), 0);
    assert_int_equal(res->mode, HSC_BODY_H2);
    res->on_close = on_close;
    res->on_drain = on_drain;
    st.held[st.nheld++] = res;
    hsc_outq_item_t it = {st.shared, 0, st.shared->len};
    assert_int_equal(hsc_res_send_slices(res, &it, 1), 1);
}

static void big_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx, (void)req;
    static char chunk[4096];
    assert_int_equal(hsc_res_start(res, 200, "text/plain", NULL, HSC_STREAMING), 0);
    res->on_close = on_close;
    res->on_drain = on_drain;
    st.held[st.nheld++] = res;
    while (hsc_res_writable(res)) {
        assert_int_equal(hsc_res_write(res, chunk, sizeof chunk), 0);
        st.written += sizeof chunk;
    }
}

static void cookie_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    assert_string_equal(hsc_req_header(req, "cookie"), "a=1; hsc_token=t; b=2");
    assert_string_equal(hsc_req_header(req, "x-other"), "y");
    assert_int_equal(hsc_res_send(res, 204, NULL, NULL, "", 0), 0);
}

static const hsc_route_t routes[] = {
    {"/cookie", HSC_M_GET, cookie_handler, 0},
    {"/hello", HSC_M_GET | HSC_M_HEAD, hello_handler, 0},
    {"/shared", HSC_M_GET, shared_handler, 0},
    {"/big", HSC_M_GET, big_handler, 0},
};

/* ---- the peer's frames ----------------------------------------------------------------------- */

static void put(harness_t *h, const void *p, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t k = write(h->peer, (const char *)p + off, n - off);
        assert_true(k > 0);
        off += (size_t)k;
    }
}

static void put_frame(harness_t *h, uint8_t type, uint8_t flags, uint32_t sid, const void *p,
                      size_t n)
{
    uint8_t hd[9] = {
        (uint8_t)(n >> 16),   (uint8_t)(n >> 8),    (uint8_t)n,          type,        flags,
        (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
    put(h, hd, 9);
    if (n > 0)
        put(h, p, n);
}

static size_t literal(uint8_t *out, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value); /* under 127: one-byte lengths */
    out[0] = 0;
    out[1] = (uint8_t)nl;
    memcpy(out + 2, name, nl);
    out[2 + nl] = (uint8_t)vl;
    memcpy(out + 3 + nl, value, vl);
    return 3 + nl + vl;
}

static void put_request(harness_t *h, uint32_t sid, const char *method, const char *path)
{
    uint8_t block[512];
    size_t n = literal(block, ":method", method);
    n += literal(block + n, ":scheme", "http");
    n += literal(block + n, ":path", path);
    n += literal(block + n, ":authority", "example");
    put_frame(h, F_HEADERS, 0x5 /* END_STREAM | END_HEADERS */, sid, block, n);
}

/* A GET whose Cookie comes as three crumbs, as browsers send it over HTTP/2. */
static void put_cookie_request(harness_t *h, uint32_t sid)
{
    uint8_t block[512];
    size_t n = literal(block, ":method", "GET");
    n += literal(block + n, ":scheme", "http");
    n += literal(block + n, ":path", "/cookie");
    n += literal(block + n, ":authority", "example");
    n += literal(block + n, "cookie", "a=1");
    n += literal(block + n, "x-other", "y");
    n += literal(block + n, "cookie", "hsc_token=t");
    n += literal(block + n, "cookie", "b=2");
    put_frame(h, F_HEADERS, 0x5, sid, block, n);
}

static void put_window(harness_t *h, uint32_t sid, uint32_t inc)
{
    uint8_t p[4] = {(uint8_t)(inc >> 24), (uint8_t)(inc >> 16), (uint8_t)(inc >> 8), (uint8_t)inc};
    put_frame(h, F_WINDOW, 0, sid, p, 4);
}

/* The preface and SETTINGS, with SETTINGS_INITIAL_WINDOW_SIZE `window` when >= 0. */
static void put_preface(harness_t *h, long window)
{
    put(h, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    uint8_t s[6] = {0,
                    4,
                    (uint8_t)(window >> 24),
                    (uint8_t)(window >> 16),
                    (uint8_t)(window >> 8),
                    (uint8_t)window};
    put_frame(h, F_SETTINGS, 0, 0, s, window >= 0 ? 6 : 0);
}

typedef struct seen_s {
    uint8_t type, flags;
    uint32_t sid;
    const uint8_t *payload;
    size_t len;
} seen_t;

/* The i-th complete frame the peer has received; false when there is none. */
static bool frame_at(const harness_t *h, unsigned i, seen_t *f)
{
    size_t off = 0;
    for (unsigned k = 0;; k++) {
        if (off + 9 > h->in_len)
            return false;
        const uint8_t *p = (const uint8_t *)h->in + off;
        size_t len = (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
        if (off + 9 + len > h->in_len)
            return false;
        if (k == i) {
            *f = (seen_t){p[3], p[4],
                          (uint32_t)(p[5] & 0x7f) << 24 | (uint32_t)p[6] << 16 |
                              (uint32_t)p[7] << 8 | p[8],
                          p + 9, len};
            return true;
        }
        off += 9 + len;
    }
}

/* Whether a frame of `type` with all of `flags` came on stream `sid`. */
static bool has_frame(const harness_t *h, uint8_t type, uint8_t flags, uint32_t sid)
{
    seen_t f;
    for (unsigned i = 0; frame_at(h, i, &f); i++)
        if (f.type == type && f.sid == sid && (f.flags & flags) == flags)
            return true;
    return false;
}

/* The DATA payloads of stream `sid`, concatenated into `out`; returns their length. */
static size_t data_of(const harness_t *h, uint32_t sid, char *out, size_t cap)
{
    seen_t f;
    size_t n = 0;
    for (unsigned i = 0; frame_at(h, i, &f); i++)
        if (f.type == F_DATA && f.sid == sid && n + f.len <= cap) {
            memcpy(out + n, f.payload, f.len);
            n += f.len;
        }
    return n;
}

static harness_t *h2_harness(void)
{
    memset(&st, 0, sizeof st);
    harness_t *h = harness_new(routes, sizeof routes / sizeof routes[0]);
    h->cfg.http2 = 1;
    h->cfg.h2_max_streams = 10;
    return h;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_get_and_head(void **state)
{
    (void)state;
    harness_t *h = h2_harness();
    harness_connect(h, 0);
    put_preface(h, -1);
    put_request(h, 1, "GET", "/hello");
    put_request(h, 3, "HEAD", "/hello");
    HARNESS_UNTIL(h, true, has_frame(h, F_DATA, 0x1, 1) && has_frame(h, F_HEADERS, 0x1, 3));
    seen_t f;
    assert_true(frame_at(h, 0, &f));
    assert_int_equal(f.type, F_SETTINGS); /* the server's own SETTINGS come first */
    assert_int_equal(f.flags, 0);
    char body[64];
    assert_int_equal(data_of(h, 1, body, sizeof body), 11);
    assert_memory_equal(body, "hello world", 11);
    assert_true(has_frame(h, F_HEADERS, 0x4, 1));
    assert_int_equal(data_of(h, 3, body, sizeof body), 0); /* HEAD: no DATA */
    assert_int_equal(h->requests, 2);
    harness_free(h);
}

static void test_cookie_crumbs_are_joined(void **state)
{
    (void)state;
    harness_t *h = h2_harness();
    harness_connect(h, 0);
    put_preface(h, -1);
    put_cookie_request(h, 1);
    HARNESS_UNTIL(h, true, has_frame(h, F_HEADERS, 0x1, 1)); /* 204: HEADERS end the stream */
    assert_int_equal(h->requests, 1);
    harness_free(h);
}

static void test_shared_frame_is_referenced_not_copied(void **state)
{
    (void)state;
    harness_t *h = h2_harness();
    static const char ev[] = "id: 1\ndata: the same bytes for every subscriber\n\n";
    st.shared = hsc_frame_try_new(sizeof ev - 1);
    memcpy(st.shared->data, ev, sizeof ev - 1);
    harness_connect(h, 0);
    put_preface(h, 0); /* windows closed: the bytes wait on the streams */
    put_request(h, 1, "GET", "/shared");
    put_request(h, 3, "GET", "/shared");
    HARNESS_UNTIL(h, true, st.nheld == 2 && has_frame(h, F_HEADERS, 0x4, 3));
    harness_spin(h, true, 20);
    assert_int_equal(atomic_load(&st.shared->refs), 3); /* ours and one per stream: no copy */
    assert_false(has_frame(h, F_DATA, 0, 1));
    put_window(h, 1, 65536);
    put_window(h, 3, 65536);
    HARNESS_UNTIL(h, true, has_frame(h, F_DATA, 0, 1) && has_frame(h, F_DATA, 0, 3));
    HARNESS_UNTIL(h, true, atomic_load(&st.shared->refs) == 1); /* written: released */
    char body[256];
    for (uint32_t sid = 1; sid <= 3; sid += 2) {
        assert_int_equal(data_of(h, sid, body, sizeof body), sizeof ev - 1);
        assert_memory_equal(body, ev, sizeof ev - 1);
    }
    assert_int_equal(hsc_res_end(st.held[0]), 0);
    HARNESS_UNTIL(h, true, has_frame(h, F_DATA, 0x1, 1));
    harness_free(h);
    assert_int_equal(st.closes, 1); /* the stream still open when the connection closed */
    hsc_frame_unref(st.shared);
}

static void test_writable_and_drain_follow_the_window(void **state)
{
    (void)state;
    harness_t *h = h2_harness();
    h->cfg.max_queue_bytes = 64 * 1024; /* a stream's high mark: 32 KiB */
    harness_connect(h, 0);
    put_preface(h, 0);
    put_request(h, 1, "GET", "/big");
    HARNESS_UNTIL(h, true, st.nheld == 1);
    assert_true(st.written > 32 * 1024 && st.written <= 40 * 1024);
    harness_spin(h, true, 20);
    assert_false(hsc_res_writable(st.held[0]));
    assert_int_equal(st.drains, 0);
    put_window(h, 0, 1 << 20);
    put_window(h, 1, 1 << 20);
    HARNESS_UNTIL(h, true, st.drains == 1);
    assert_true(hsc_res_writable(st.held[0]));
    char *body = malloc(64 * 1024);
    HARNESS_UNTIL(h, true, data_of(h, 1, body, 64 * 1024) == st.written);
    free(body);
    harness_free(h);
}

static void test_streams_past_the_limit_are_refused(void **state)
{
    (void)state;
    harness_t *h = h2_harness();
    h->cfg.h2_max_streams = 2;
    static const char ev[] = "data: x\n\n";
    st.shared = hsc_frame_try_new(sizeof ev - 1);
    memcpy(st.shared->data, ev, sizeof ev - 1);
    harness_connect(h, 0);
    put_preface(h, -1);
    put_request(h, 1, "GET", "/shared");
    put_request(h, 3, "GET", "/shared");
    put_request(h, 5, "GET", "/shared");
    HARNESS_UNTIL(h, true, has_frame(h, F_RST, 0, 5));
    seen_t f;
    for (unsigned i = 0; frame_at(h, i, &f); i++)
        if (f.type == F_RST)
            assert_int_equal(f.payload[3], 7); /* REFUSED_STREAM */
    assert_int_equal(st.nheld, 2);
    /* The connection goes on: a stream ends, a new one is served. */
    assert_int_equal(hsc_res_end(st.held[0]), 0);
    HARNESS_UNTIL(h, true, has_frame(h, F_DATA, 0x1, 1));
    put_request(h, 7, "GET", "/hello");
    HARNESS_UNTIL(h, true, has_frame(h, F_DATA, 0x1, 7));
    harness_free(h);
    hsc_frame_unref(st.shared);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_and_head),
        cmocka_unit_test(test_cookie_crumbs_are_joined),
        cmocka_unit_test(test_shared_frame_is_referenced_not_copied),
        cmocka_unit_test(test_writable_and_drain_follow_the_window),
        cmocka_unit_test(test_streams_past_the_limit_are_refused),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
