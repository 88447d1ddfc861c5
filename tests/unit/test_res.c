/*
 * Unit tests for src/lib/http/res.c, the response writer, on a real loop
 * (tests/unit/http_harness.h): what the peer receives for each body framing (Content-Length,
 * chunked on HTTP/1.1, close-delimited on HTTP/1.0, none for HEAD), an aborted chunked body, error
 * responses, the owner's headers in every response, a head too large for its buffer, and
 * pipelined requests answered in order on one keep-alive connection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http_harness.h"

static struct {
    hsc_res_t *res; /* a response the test answers later */
    int rc;         /* a call's result, as the handler saw it */
    bool started, ended;
} st;

/* ---- handlers ------------------------------------------------------------------------------ */

static void hello_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    st.rc = hsc_res_send(res, 200, "text/plain", NULL, "hello world", 11);
}

/* A streamed body in two pieces (and an empty write, which sends nothing). */
static void pieces_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    assert_int_equal(hsc_res_start(res, 200, "text/plain", NULL, HSC_STREAMING), 0);
    assert_int_equal(hsc_res_write(res, "hello", 5), 0);
    assert_int_equal(hsc_res_write(res, "", 0), 0);
    assert_int_equal(hsc_res_write(res, " world", 6), 0);
    assert_int_equal(hsc_res_end(res), 0);
}

static void abort_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    assert_int_equal(hsc_res_start(res, 200, "text/plain", NULL, HSC_STREAMING), 0);
    assert_int_equal(hsc_res_write(res, "partial", 7), 0);
    hsc_res_abort(res);
}

/* Promises 10 bytes, writes 4: hsc_res_end() refuses and aborts. */
static void short_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    assert_int_equal(hsc_res_start(res, 200, "text/plain", NULL, 10), 0);
    assert_int_equal(hsc_res_write(res, "abcd", 4), 0);
    assert_int_equal(hsc_res_write(res, "0123456789", 10), HSC_EINVAL); /* past the length */
    st.rc = hsc_res_end(res);
}

static void error_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    st.rc = hsc_res_error(res, 422, "X-Extra: 1\r\n", "bad thing", true);
}

static void long_error_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    char reason[600];
    memset(reason, 'x', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    st.rc = hsc_res_error(res, 400, NULL, reason, false);
}

/* An extra header line longer than the head's 2 KiB buffer. */
static char *big_extra(void)
{
    static char extra[2200];
    memcpy(extra, "X-Big: ", 7);
    memset(extra + 7, 'b', sizeof extra - 10);
    memcpy(extra + sizeof extra - 3, "\r\n", 3);
    return extra;
}

/* hsc_res_start() fails on the head; the response is still unstarted, so a 500 can follow. */
static void big_start_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    st.rc = hsc_res_start(res, 200, "text/plain", big_extra(), HSC_STREAMING);
    st.started = res->started;
    st.ended = res->ended;
    assert_int_equal(hsc_res_error(res, 500, NULL, "head too large", false), 0);
}

/* hsc_res_send() fails on the head: nothing can be sent, the connection closes. */
static void big_send_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    st.rc = hsc_res_send(res, 200, "text/plain", big_extra(), "x", 1);
    st.started = res->started;
    st.ended = res->ended;
}

/* Answered later, by the test. */
static void slow_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    st.res = res;
}

static void fast_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    assert_int_equal(hsc_res_send(res, 200, "text/plain", NULL, "fast", 4), 0);
}

static const hsc_route_t routes[] = {
    {"/hello", HSC_M_GET | HSC_M_HEAD, hello_handler, 0},
    {"/pieces", HSC_M_GET | HSC_M_HEAD, pieces_handler, 0},
    {"/abort", HSC_M_GET, abort_handler, 0},
    {"/short", HSC_M_GET, short_handler, 0},
    {"/error", HSC_M_GET, error_handler, 0},
    {"/long-error", HSC_M_GET, long_error_handler, 0},
    {"/big-start", HSC_M_GET, big_start_handler, 0},
    {"/big-send", HSC_M_GET, big_send_handler, 0},
    {"/slow", HSC_M_GET, slow_handler, 0},
    {"/fast", HSC_M_GET, fast_handler, 0},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static harness_t *start(const char *request)
{
    memset(&st, 0, sizeof st);
    harness_t *h = harness_new(routes, NROUTES);
    harness_connect(h, 0);
    harness_send(h, request);
    return h;
}

/* The bytes after the head must be exactly `want`. */
static void check_raw_body(const harness_t *h, const char *want)
{
    size_t n;
    const char *body = harness_after_head(h, &n);
    assert_non_null(body);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(body, want, n);
}

/* ---- body framing -------------------------------------------------------------------------- */

static void test_content_length_body(void **state)
{
    (void)state;
    harness_t *h = start("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 1);
    assert_int_equal(st.rc, 0);
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->err, HPE_OK);
    assert_int_equal(rs->n, 1);
    const resp_t *r = &rs->r[0];
    assert_int_equal(r->status, 200);
    assert_int_equal(r->major, 1);
    assert_int_equal(r->minor, 1);
    assert_string_equal(resp_header(r, "Content-Length"), "11");
    assert_string_equal(resp_header(r, "Content-Type"), "text/plain");
    assert_non_null(resp_header(r, "Date"));
    assert_non_null(resp_header(r, "Server"));
    assert_null(resp_header(r, "Transfer-Encoding"));
    assert_null(resp_header(r, "Connection")); /* HTTP/1.1 keeps the connection by default */
    assert_string_equal(r->body, "hello world");
    check_raw_body(h, "hello world");
    resps_free(rs);
    harness_spin(h, true, 20);
    assert_false(h->eof);
    assert_int_equal(h->http.nconns, 1);
    harness_free(h);
}

static void test_chunked_streaming(void **state)
{
    (void)state;
    harness_t *h = start("GET /pieces HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 1);
    resps_t *rs = harness_parse(h, 0);
    const resp_t *r = &rs->r[0];
    assert_int_equal(r->status, 200);
    assert_string_equal(resp_header(r, "Transfer-Encoding"), "chunked");
    assert_null(resp_header(r, "Content-Length"));
    assert_string_equal(r->body, "hello world");
    resps_free(rs);
    check_raw_body(h, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    harness_spin(h, true, 20);
    assert_false(h->eof); /* the last chunk ended it: the connection stays */
    harness_free(h);
}

static void test_http10_close_delimited(void **state)
{
    (void)state;
    harness_t *h = start("GET /pieces HTTP/1.0\r\n\r\n");
    HARNESS_UNTIL(h, true, h->eof || h->reset);
    assert_true(h->eof); /* an orderly close ends the body, not a reset */
    check_raw_body(h, "hello world");
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->err, HPE_OK);
    const resp_t *r = &rs->r[0];
    assert_true(r->complete);
    assert_string_equal(resp_header(r, "Connection"), "close");
    assert_null(resp_header(r, "Transfer-Encoding"));
    assert_null(resp_header(r, "Content-Length"));
    assert_string_equal(r->body, "hello world");
    resps_free(rs);
    /* The server lingers after its shutdown until the peer closes too. */
    assert_int_equal(h->closed, 0);
    harness_close_peer(h);
    HARNESS_UNTIL(h, false, h->closed == 1);
    harness_free(h);
}

static void test_head_has_no_body(void **state)
{
    (void)state;
    /* A whole response and a streamed one: the same heads, no body bytes, not even a last chunk. */
    harness_t *h = start("HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                         "HEAD /pieces HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, harness_complete(h, 3) == 2);
    resps_t *rs = harness_parse(h, 3);
    assert_int_equal(rs->err, HPE_OK);
    assert_int_equal(rs->n, 2);
    assert_string_equal(resp_header(&rs->r[0], "Content-Length"), "11");
    assert_int_equal(rs->r[0].body_len, 0);
    assert_string_equal(resp_header(&rs->r[1], "Transfer-Encoding"), "chunked");
    assert_int_equal(rs->r[1].body_len, 0);
    resps_free(rs);
    /* Each head ends the bytes of its response. */
    const char *second = strstr(h->in, "\r\n\r\n") + 4;
    assert_memory_equal(second, "HTTP/1.1 200 OK\r\n", 17);
    const char *end = strstr(second, "\r\n\r\n") + 4;
    assert_int_equal((size_t)(end - h->in), h->in_len);
    harness_free(h);
}

/* ---- ends that are not complete ---------------------------------------------------------- */

static void test_abort_chunked(void **state)
{
    (void)state;
    harness_t *h = start("GET /abort HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, h->eof || h->reset);
    assert_true(h->eof);
    check_raw_body(h, "7\r\npartial\r\n"); /* no last chunk */
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->n, 1);
    assert_false(rs->r[0].complete);
    assert_int_not_equal(rs->err, HPE_OK); /* a client can tell it from a complete body */
    assert_string_equal(rs->r[0].body, "partial");
    resps_free(rs);
    /* The server lingers after its shutdown until the peer closes too. */
    assert_int_equal(h->closed, 0);
    harness_close_peer(h);
    HARNESS_UNTIL(h, false, h->closed == 1);
    harness_free(h);
}

static void test_short_length_body_aborts(void **state)
{
    (void)state;
    harness_t *h = start("GET /short HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, h->eof || h->reset);
    assert_int_equal(st.rc, HSC_EINVAL);
    check_raw_body(h, "abcd");
    resps_t *rs = harness_parse(h, 0);
    assert_false(rs->r[0].complete);
    assert_int_not_equal(rs->err, HPE_OK);
    resps_free(rs);
    harness_free(h);
}

/* ---- errors -------------------------------------------------------------------------------- */

static void test_error_reason_and_close(void **state)
{
    (void)state;
    harness_t *h = start("GET /error HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, h->eof || h->reset);
    assert_true(h->eof);
    assert_int_equal(st.rc, 0);
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->err, HPE_OK);
    assert_int_equal(rs->n, 1);
    const resp_t *r = &rs->r[0];
    assert_int_equal(r->status, 422);
    assert_true(r->complete);
    assert_string_equal(resp_header(r, "Content-Type"), "text/plain; charset=utf-8");
    assert_string_equal(resp_header(r, "Content-Length"), "10");
    assert_string_equal(resp_header(r, "Connection"), "close");
    assert_string_equal(resp_header(r, "X-Extra"), "1");
    assert_string_equal(r->body, "bad thing\n");
    resps_free(rs);
    assert_memory_equal(h->in, "HTTP/1.1 422 Unprocessable Content\r\n", 36);
    harness_free(h);
}

static void test_error_long_reason_is_cut(void **state)
{
    (void)state;
    harness_t *h = start("GET /long-error HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 1);
    resps_t *rs = harness_parse(h, 0);
    const resp_t *r = &rs->r[0];
    assert_int_equal(r->status, 400);
    assert_int_equal(r->body_len, 511); /* still one line */
    assert_int_equal(r->body[510], '\n');
    assert_null(memchr(r->body, '\n', 510));
    assert_null(resp_header(r, "Connection")); /* close=false: the connection stays */
    resps_free(rs);
    harness_free(h);
}

/* ---- the owner's headers ------------------------------------------------------------------- */

static void test_owner_headers_in_every_response(void **state)
{
    (void)state;
    memset(&st, 0, sizeof st);
    harness_t *h = harness_new(routes, NROUTES);
    h->owner_headers = "X-Owner: test\r\nVary: Origin\r\n";
    harness_connect(h, 0);
    /* A whole response, a stream, a 404 from the owner, a parse error from the transport. */
    harness_send(h, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /pieces HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n");
    HARNESS_UNTIL(h, true, h->eof || h->reset);
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->err, HPE_OK);
    assert_int_equal(rs->n, 4);
    static const int want[] = {200, 200, 404, 400};
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(rs->r[i].status, want[i]);
        assert_true(rs->r[i].complete);
        assert_string_equal(resp_header(&rs->r[i], "X-Owner"), "test");
        assert_string_equal(resp_header(&rs->r[i], "Vary"), "Origin");
    }
    assert_string_equal(resp_header(&rs->r[3], "Connection"), "close");
    resps_free(rs);
    harness_free(h);
}

/* ---- a head too large ---------------------------------------------------------------------- */

static void test_start_head_too_large(void **state)
{
    (void)state;
    harness_t *h = start("GET /big-start HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 1);
    assert_int_equal(st.rc, HSC_ETOOBIG);
    assert_false(st.started); /* nothing was sent or marked: the handler could still answer */
    assert_false(st.ended);
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->n, 1);
    assert_int_equal(rs->r[0].status, 500);
    assert_null(resp_header(&rs->r[0], "X-Big"));
    assert_string_equal(rs->r[0].body, "head too large\n");
    resps_free(rs);
    harness_free(h);
}

static void test_send_head_too_large_closes(void **state)
{
    (void)state;
    harness_t *h = start("GET /big-send HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, h->eof || h->reset);
    assert_int_equal(st.rc, HSC_ETOOBIG);
    assert_false(st.started);
    assert_true(st.ended);
    assert_int_equal(h->in_len, 0); /* no half of a head, just the end of the connection */
    harness_free(h);
}

/* ---- keep-alive ---------------------------------------------------------------------------- */

static void test_pipelined_requests_in_order(void **state)
{
    (void)state;
    /* Both requests arrive at once; the first is answered later than the second could be. */
    harness_t *h = start("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
                         "GET /fast HTTP/1.1\r\nHost: t\r\n\r\n");
    HARNESS_UNTIL(h, true, st.res != NULL);
    harness_spin(h, true, 50);
    assert_int_equal(h->requests, 1); /* the second waits for the first's response to end */
    assert_int_equal(h->in_len, 0);

    assert_int_equal(hsc_res_send(st.res, 200, "text/plain", NULL, "slow", 4), 0);
    HARNESS_UNTIL(h, true, harness_complete(h, 0) == 2);
    assert_int_equal(h->requests, 2);
    resps_t *rs = harness_parse(h, 0);
    assert_int_equal(rs->err, HPE_OK);
    assert_int_equal(rs->n, 2);
    assert_string_equal(rs->r[0].body, "slow");
    assert_string_equal(rs->r[1].body, "fast");
    assert_null(resp_header(&rs->r[0], "Connection"));
    assert_null(resp_header(&rs->r[1], "Connection"));
    resps_free(rs);
    /* One connection served both and still waits for more. */
    harness_spin(h, true, 20);
    assert_false(h->eof);
    assert_int_equal(h->http.nconns, 1);
    assert_int_equal(h->closed, 0);
    harness_free(h);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_body),
        cmocka_unit_test(test_chunked_streaming),
        cmocka_unit_test(test_http10_close_delimited),
        cmocka_unit_test(test_head_has_no_body),
        cmocka_unit_test(test_abort_chunked),
        cmocka_unit_test(test_short_length_body_aborts),
        cmocka_unit_test(test_error_reason_and_close),
        cmocka_unit_test(test_error_long_reason_is_cut),
        cmocka_unit_test(test_owner_headers_in_every_response),
        cmocka_unit_test(test_start_head_too_large),
        cmocka_unit_test(test_send_head_too_large_closes),
        cmocka_unit_test(test_pipelined_requests_in_order),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
