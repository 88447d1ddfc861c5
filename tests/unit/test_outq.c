/*
 * Unit tests for src/lib/http/outq.c, the connection's output queue, through the response API on
 * a real loop (tests/unit/http_harness.h): a write the socket cannot take at once is queued and
 * arrives whole and in order; the watermarks (hsc_res_writable(), on_drain); shared frames sent
 * as slices keep references and stop at the high-water mark; overflow past --max-queue-bytes
 * closes the connection; cork gathers writes into one uv_write().
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http_harness.h"

/* What the handlers saw, for the test to check once the loop has run them. */
static struct {
    hsc_res_t *res;
    size_t queued;      /* the connection's queued bytes at the point of interest */
    size_t q_count;     /* queue items, likewise */
    unsigned in_flight; /* items in the uv_write() under way, likewise */
    unsigned pieces;    /* writes accepted */
    bool writable;
    unsigned drains;
    size_t queued_at_drain;
    unsigned closes; /* on_close calls */
    int err;         /* the first failed write's result */
    bool peer_empty; /* the peer had nothing to read while the writes were corked */
    unsigned in_flight_corked;
    bool corked_before, corked_after; /* around a piece past the cork's limit */
    /* send_slices */
    hsc_frame_t *frames[8];
    hsc_outq_item_t items[8];
    unsigned nitems, sent, taken;
    unsigned refs[8]; /* each frame's references right after the first hsc_res_send_slices() */
} st;

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 131u + i / 4093u);
}

static bool pattern_matches(const char *p, size_t len, size_t from)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] != pattern(from + i))
            return false;
    return true;
}

/* ---- a large write ------------------------------------------------------------------------- */

#define BIG       (768u << 10)
#define SMALL     1000u
#define SMALL_N   10u
#define BIG_TOTAL (BIG + SMALL * SMALL_N)

/* One large write, then small ones that must queue behind it: Content-Length BIG_TOTAL. */
static void big_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    hsc_conn_t *c = res->conn;
    assert_int_equal(hsc_res_start(res, 200, "application/octet-stream", NULL, BIG_TOTAL), 0);
    char *p = malloc(BIG);
    assert_non_null(p);
    for (size_t i = 0; i < BIG; i++)
        p[i] = (char)pattern(i);
    assert_int_equal(hsc_res_write(res, p, BIG), 0);
    memset(p, 0, BIG); /* borrowed: what the socket did not take was copied */
    free(p);
    st.queued = c->queued;
    for (size_t k = 0; k < SMALL_N; k++) {
        char s[SMALL];
        for (size_t i = 0; i < SMALL; i++)
            s[i] = (char)pattern(BIG + k * SMALL + i);
        assert_int_equal(hsc_res_write(res, s, SMALL), 0);
    }
    st.q_count = c->q_count;
    assert_int_equal(hsc_res_end(res), 0);
}

static void test_large_write_queued_arrives_in_order(void **state)
{
    (void)state;
    memset(&st, 0, sizeof st);
    static const hsc_route_t routes[] = {{"/big", HSC_M_GET, big_handler, 0}};
    harness_t *h = harness_new(routes, 1);
    hsc_conn_t *c = harness_connect(h, 4096);
    harness_send(h, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 1);

    /* The socket took part of the large write; the rest and every small write were queued. */
    assert_true(st.queued > 0);
    assert_true(st.queued < BIG);
    assert_int_equal(st.q_count, 1 + SMALL_N);

    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->err, HPE_OK);
    assert_int_equal(rs->n, 1);
    assert_int_equal(rs->r[0].status, 200);
    assert_int_equal(rs->r[0].body_len, BIG_TOTAL);
    assert_true(pattern_matches(rs->r[0].body, BIG_TOTAL, 0));
    resps_free(rs);

    HARNESS_UNTIL(h, true, c->q_count == 0);
    assert_int_equal(c->queued, 0);
    assert_int_equal(c->in_flight, 0);
    assert_int_equal(atomic_load(&h->http.st_bytes_out), h->in_len);
    assert_false(h->eof); /* keep-alive: the connection waits for the next request */
    harness_free(h);
}

/* ---- watermarks ---------------------------------------------------------------------------- */

static void stream_on_drain(hsc_res_t *res, void *user)
{
    (void)user;
    st.drains++;
    st.queued_at_drain = res->conn->queued;
}

/* A chunked stream that writes 2 KiB pieces while the queue is under its high mark. */
static void stream_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    st.res = res;
    res->on_drain = stream_on_drain;
    assert_int_equal(hsc_res_start(res, 200, "application/octet-stream", NULL, HSC_STREAMING), 0);
    char piece[2048];
    memset(piece, 'w', sizeof piece);
    while (st.pieces < 1000 && hsc_res_writable(res)) {
        assert_int_equal(hsc_res_write(res, piece, sizeof piece), 0);
        st.pieces++;
    }
    st.queued = res->conn->queued;
    st.writable = hsc_res_writable(res);
}

static void test_writable_watermarks_and_drain(void **state)
{
    (void)state;
    memset(&st, 0, sizeof st);
    static const hsc_route_t routes[] = {{"/stream", HSC_M_GET, stream_handler, 0}};
    harness_t *h = harness_new(routes, 1);
    h->cfg.max_queue_bytes = 64u << 10; /* high mark 32 KiB, low mark 8 KiB */
    hsc_conn_t *c = harness_connect(h, 4096);
    harness_send(h, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, false, st.res != NULL);

    assert_int_equal(hsc_conn_high_water(c), 32u << 10);
    assert_int_equal(hsc_conn_low_water(c), 8u << 10);
    assert_true(st.pieces > 0 && st.pieces < 1000);
    assert_false(st.writable);
    assert_true(st.queued > hsc_conn_high_water(c));
    assert_true(st.queued <= c->h->cfg->max_queue_bytes);

    /* While the peer reads nothing, the queue cannot fall: no on_drain. */
    harness_spin(h, false, 100);
    assert_int_equal(st.drains, 0);

    /* The peer reads: on_drain once the queue is down to the low mark, and only once. */
    HARNESS_UNTIL(h, true, st.drains == 1);
    assert_true(st.queued_at_drain <= hsc_conn_low_water(c));
    HARNESS_UNTIL(h, true, c->q_count == 0);
    harness_spin(h, true, 50);
    assert_int_equal(st.drains, 1);
    assert_true(hsc_res_writable(st.res));

    assert_int_equal(hsc_res_end(st.res), 0);
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 1);
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->r[0].body_len, (size_t)st.pieces * 2048);
    resps_free(rs);
    assert_int_equal(st.drains, 1);
    harness_free(h);
}

/* ---- shared frames --------------------------------------------------------------------------- */

#define FRAME_DATA (12u << 10)
#define NFRAMES    8u

/* Frame i: FRAME_DATA bytes of the pattern, chunk-framed as an HTTP/1.1 body needs it. */
static hsc_frame_t *chunk_frame(unsigned i, size_t *data_off)
{
    char head[HSC_CHUNK_HEADER_MAX];
    size_t hl = hsc_chunked_header(head, FRAME_DATA);
    hsc_frame_t *f = hsc_frame_try_new(hl + FRAME_DATA + 2);
    assert_non_null(f);
    memcpy(f->data, head, hl);
    for (size_t k = 0; k < FRAME_DATA; k++)
        f->data[hl + k] = (char)pattern(i * FRAME_DATA + k);
    memcpy(f->data + hl + FRAME_DATA, "\r\n", 2);
    *data_off = hl;
    return f;
}

/* Sends what is left of st.items; ends the response once everything is taken. */
static void slices_send_rest(hsc_res_t *res)
{
    int k = hsc_res_send_slices(res, st.items + st.sent, st.nitems - st.sent);
    assert_true(k >= 0);
    st.sent += (unsigned)k;
    if (st.sent == st.nitems)
        assert_int_equal(hsc_res_end(res), 0);
}

static void slices_on_drain(hsc_res_t *res, void *user)
{
    (void)user;
    st.drains++;
    slices_send_rest(res);
}

static void slices_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    hsc_conn_t *c = res->conn;
    st.res = res;
    res->on_drain = slices_on_drain;
    assert_int_equal(hsc_res_start(res, 200, "application/octet-stream", NULL, HSC_STREAMING), 0);
    bool http10 = req->http_minor == 0; /* close-delimited: the slices are the chunks' data */
    for (unsigned i = 0; i < NFRAMES; i++) {
        size_t off;
        st.frames[i] = chunk_frame(i, &off);
        st.items[i] = (hsc_outq_item_t){st.frames[i], 0, st.frames[i]->len};
        if (http10)
            st.items[i] = (hsc_outq_item_t){st.frames[i], off, off + FRAME_DATA};
    }
    st.nitems = NFRAMES;
    int k = hsc_res_send_slices(res, st.items, st.nitems);
    assert_true(k >= 0);
    st.taken = st.sent = (unsigned)k;
    st.queued = c->queued;
    st.q_count = c->q_count;
    for (unsigned i = 0; i < NFRAMES; i++)
        st.refs[i] = atomic_load(&st.frames[i]->refs);
    if (st.sent == st.nitems)
        assert_int_equal(hsc_res_end(res), 0);
}

static bool frames_released(void)
{
    for (unsigned i = 0; i < NFRAMES; i++)
        if (atomic_load(&st.frames[i]->refs) != 1)
            return false;
    return true;
}

static void check_slices(const char *request, bool http10)
{
    memset(&st, 0, sizeof st);
    static const hsc_route_t routes[] = {{"/slices", HSC_M_GET, slices_handler, 0}};
    harness_t *h = harness_new(routes, 1);
    h->cfg.max_queue_bytes = 64u << 10; /* high mark 32 KiB */
    hsc_conn_t *c = harness_connect(h, 4096);
    harness_send(h, request);
    HARNESS_UNTIL(h, false, st.res != NULL);

    /* The socket took part; references were queued until the queue passed its high mark. */
    assert_true(st.taken >= 1);
    assert_true(st.taken < NFRAMES);
    assert_true(st.queued > hsc_conn_high_water(c));
    assert_true(st.queued <= hsc_conn_high_water(c) + st.frames[0]->len);
    /* A queued slice holds its frame (no copy); a frame not taken is the caller's alone. */
    unsigned held = 0;
    for (unsigned i = 0; i < NFRAMES; i++) {
        assert_in_range(st.refs[i], 1, 2);
        held += st.refs[i] == 2;
        if (i >= st.taken)
            assert_int_equal(st.refs[i], 1);
    }
    assert_int_equal(held, st.q_count);

    /* The peer reads: on_drain sends the rest; everything arrives, in order. */
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 1);
    assert_true(st.drains >= 1);
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->err, HPE_OK);
    assert_int_equal(rs->r[0].body_len, (size_t)NFRAMES * FRAME_DATA);
    assert_true(pattern_matches(rs->r[0].body, (size_t)NFRAMES * FRAME_DATA, 0));
    resps_free(rs);
    assert_int_equal(h->eof, http10); /* HTTP/1.0: the body ended with the connection */

    /* Once written, the queue has let go of every frame. */
    HARNESS_UNTIL(h, true, frames_released());
    for (unsigned i = 0; i < NFRAMES; i++)
        hsc_frame_unref(st.frames[i]);
    harness_free(h);
}

static void test_send_slices_shared_frames(void **state)
{
    (void)state;
    check_slices("GET /slices HTTP/1.1\r\nHost: t\r\n\r\n", false);
}

/* HTTP/1.0: slices inside the frames (their chunk framing left out), as channels send them. */
static void test_send_slices_inner_ranges(void **state)
{
    (void)state;
    check_slices("GET /slices HTTP/1.0\r\n\r\n", true);
}

/* ---- overflow ------------------------------------------------------------------------------ */

static void flood_on_close(hsc_res_t *res, void *user)
{
    (void)res;
    (void)user;
    st.closes++;
}

/* Writes 4 KiB pieces, ignoring hsc_res_writable(), until a write fails. */
static void flood_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    st.res = res;
    res->on_close = flood_on_close;
    assert_int_equal(hsc_res_start(res, 200, "application/octet-stream", NULL, HSC_STREAMING), 0);
    char piece[4096];
    memset(piece, 'f', sizeof piece);
    for (unsigned i = 0; i < 1000; i++) {
        int rc = hsc_res_write(res, piece, sizeof piece);
        if (rc != 0) {
            st.err = rc;
            break;
        }
        st.pieces++;
        assert_true(res->conn->queued <= res->conn->h->cfg->max_queue_bytes);
    }
    /* The connection is going: nothing more is taken. */
    assert_int_equal(hsc_res_write(res, piece, sizeof piece), HSC_ECLOSED);
}

static void test_overflow_closes_connection(void **state)
{
    (void)state;
    memset(&st, 0, sizeof st);
    static const hsc_route_t routes[] = {{"/flood", HSC_M_GET, flood_handler, 0}};
    harness_t *h = harness_new(routes, 1);
    h->cfg.max_queue_bytes = 16u << 10;
    harness_connect(h, 4096);
    harness_send(h, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, false, h->closed == 1);

    assert_int_equal(st.err, HSC_EFULL);
    assert_true(st.pieces > 0);
    assert_int_equal(st.closes, 1); /* the producer was told */
    assert_int_equal(h->http.nconns, 0);

    /* The peer gets what was written, then end of file: a body without its last chunk. */
    HARNESS_UNTIL(h, true, h->eof || h->reset);
    assert_true(h->eof);
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->n, 1);
    assert_int_equal(rs->r[0].status, 200);
    assert_false(rs->r[0].complete);
    assert_int_not_equal(rs->err, HPE_OK);
    assert_true(rs->r[0].body_len < (size_t)(st.pieces + 1) * 4096);
    resps_free(rs);
    harness_free(h);
}

/* ---- cork ---------------------------------------------------------------------------------- */

static bool peer_has_nothing(void)
{
    hsc_conn_t *c = st.res->conn;
    harness_t *h = c->h->ctx;
    char b;
    return recv(h->peer, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* Corked: the head and three chunks wait in the queue, then leave in one uv_write(). */
static void cork_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    hsc_conn_t *c = res->conn;
    st.res = res;
    hsc_res_cork(res);
    assert_int_equal(hsc_res_start(res, 200, "text/plain", NULL, HSC_STREAMING), 0);
    assert_int_equal(hsc_res_write(res, "one", 3), 0);
    assert_int_equal(hsc_res_write(res, "two", 3), 0);
    assert_int_equal(hsc_res_write(res, "three", 5), 0);
    st.peer_empty = peer_has_nothing();
    st.q_count = c->q_count;
    st.in_flight_corked = c->in_flight;
    hsc_res_uncork(res);
    st.in_flight = c->in_flight;
    assert_int_equal(hsc_res_end(res), 0);
}

static void test_cork_gathers_writes(void **state)
{
    (void)state;
    memset(&st, 0, sizeof st);
    static const hsc_route_t routes[] = {{"/cork", HSC_M_GET, cork_handler, 0}};
    harness_t *h = harness_new(routes, 1);
    harness_connect(h, 0);
    harness_send(h, "GET /cork HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 1);

    assert_true(st.peer_empty);
    assert_int_equal(st.q_count, 4);          /* head, "one", "two", "three" */
    assert_int_equal(st.in_flight_corked, 0); /* nothing was written while corked */
    assert_int_equal(st.in_flight, 4);        /* one uv_write() for all four */

    size_t n;
    const char *body = harness_after_head(h, &n);
    assert_non_null(body);
    static const char want[] = "3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(body, want, n);
    harness_free(h);
}

/* Corked, a piece that takes the gathered bytes past 16 KiB lifts the cork. */
static void cork_big_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    hsc_conn_t *c = res->conn;
    st.res = res;
    hsc_res_cork(res);
    assert_int_equal(hsc_res_start(res, 200, "application/octet-stream", NULL, 20000), 0);
    st.corked_before = c->corked;
    char *p = malloc(20000);
    assert_non_null(p);
    for (size_t i = 0; i < 20000; i++)
        p[i] = (char)pattern(i);
    assert_int_equal(hsc_res_write(res, p, 20000), 0);
    free(p);
    st.corked_after = c->corked;
    assert_int_equal(hsc_res_end(res), 0);
}

static void test_cork_lifts_past_limit(void **state)
{
    (void)state;
    memset(&st, 0, sizeof st);
    static const hsc_route_t routes[] = {{"/big", HSC_M_GET, cork_big_handler, 0}};
    harness_t *h = harness_new(routes, 1);
    harness_connect(h, 0);
    harness_send(h, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 1);
    assert_true(st.corked_before);
    assert_false(st.corked_after);
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->r[0].body_len, 20000);
    assert_true(pattern_matches(rs->r[0].body, 20000, 0));
    resps_free(rs);
    harness_free(h);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_write_queued_arrives_in_order),
        cmocka_unit_test(test_writable_watermarks_and_drain),
        cmocka_unit_test(test_send_slices_shared_frames),
        cmocka_unit_test(test_send_slices_inner_ranges),
        cmocka_unit_test(test_overflow_closes_connection),
        cmocka_unit_test(test_cork_gathers_writes),
        cmocka_unit_test(test_cork_lifts_past_limit),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
