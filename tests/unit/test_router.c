/*
 * Unit tests for src/lib/http/router.c: method names and bits, the Allow header's list, and route
 * matching (exact routes only, first match wins, 404 versus 405 with the allowed union).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http/http.h"

#include <string.h>

/* Distinct handlers, so a test can tell which route matched by more than its address. */
static void handler_a(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    (void)res;
}
static void handler_b(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    (void)res;
}
static void handler_c(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    (void)res;
}

static const hsc_route_t routes[] = {
    {"/v1/stream", HSC_M_POST, handler_a, 0},                   /* 0 */
    {"/v1/stream", HSC_M_GET, handler_b, 1},                    /* 1: same path, other method */
    {"/healthz", HSC_M_GET | HSC_M_HEAD, handler_a, 2},         /* 2 */
    {"/static/app.js", HSC_M_GET | HSC_M_HEAD, handler_c, 3},   /* 3 */
    {"/static/app.js", HSC_M_GET | HSC_M_DELETE, handler_b, 4}, /* 4: shadowed for GET by 3 */
    {"/", HSC_M_GET, handler_c, 5},                             /* 5 */
    {"/any", HSC_M_GET, handler_a, 6},                          /* 6 */
    {"/any", HSC_M_POST | HSC_M_PUT, handler_b, 7},             /* 7 */
};
#define NROUTES (sizeof routes / sizeof routes[0])

static int match(const char *path, unsigned method, const hsc_route_t **out, unsigned *allowed)
{
    *out = NULL;
    *allowed = 0xdead;
    return hsc_router_match(routes, NROUTES, path, strlen(path), method, out, allowed);
}

static void check_route(const char *path, unsigned method, size_t want_index)
{
    const hsc_route_t *r;
    unsigned allowed;
    assert_int_equal(match(path, method, &r, &allowed), 0);
    assert_ptr_equal(r, &routes[want_index]);
}

static void check_405(const char *path, unsigned method, unsigned want_allowed)
{
    const hsc_route_t *r;
    unsigned allowed;
    assert_int_equal(match(path, method, &r, &allowed), HSC_EMETHOD);
    assert_int_equal(allowed, want_allowed);
    assert_null(r);
}

static void check_404(const char *path, unsigned method)
{
    const hsc_route_t *r;
    unsigned allowed;
    assert_int_equal(match(path, method, &r, &allowed), HSC_ENOTFOUND);
    assert_int_equal(allowed, 0);
    assert_null(r);
}

/* ---- methods ------------------------------------------------------------------------------ */

static void test_method_bit(void **state)
{
    (void)state;
    assert_int_equal(hsc_method_bit("GET", 3), HSC_M_GET);
    assert_int_equal(hsc_method_bit("HEAD", 4), HSC_M_HEAD);
    assert_int_equal(hsc_method_bit("POST", 4), HSC_M_POST);
    assert_int_equal(hsc_method_bit("PUT", 3), HSC_M_PUT);
    assert_int_equal(hsc_method_bit("DELETE", 6), HSC_M_DELETE);
    assert_int_equal(hsc_method_bit("OPTIONS", 7), HSC_M_OPTIONS);
    assert_int_equal(hsc_method_bit("PATCH", 5), HSC_M_PATCH);
}

static void test_method_bit_unknown(void **state)
{
    (void)state;
    /* Method names are case-sensitive (RFC 9110 §9.1). */
    assert_int_equal(hsc_method_bit("get", 3), HSC_M_OTHER);
    assert_int_equal(hsc_method_bit("BREW", 4), HSC_M_OTHER);
    assert_int_equal(hsc_method_bit("CONNECT", 7), HSC_M_OTHER);
    assert_int_equal(hsc_method_bit("", 0), HSC_M_OTHER);
    /* Length matters, not the NUL: a prefix or a longer name is not the method. */
    assert_int_equal(hsc_method_bit("GETX", 3), HSC_M_GET);
    assert_int_equal(hsc_method_bit("GET", 2), HSC_M_OTHER);
    assert_int_equal(hsc_method_bit("GETS", 4), HSC_M_OTHER);
}

static void check_format(unsigned mask, const char *want)
{
    char out[128];
    memset(out, '#', sizeof out);
    size_t n = hsc_methods_format(mask, out, sizeof out);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void test_methods_format(void **state)
{
    (void)state;
    check_format(HSC_M_GET | HSC_M_HEAD | HSC_M_POST, "GET, HEAD, POST");
    check_format(HSC_M_POST | HSC_M_GET | HSC_M_HEAD, "GET, HEAD, POST");
    check_format(HSC_M_GET, "GET");
    check_format(HSC_M_DELETE | HSC_M_PUT, "PUT, DELETE");
    check_format(0, "");
    check_format(HSC_M_GET | HSC_M_HEAD | HSC_M_POST | HSC_M_PUT | HSC_M_DELETE | HSC_M_OPTIONS |
                     HSC_M_PATCH,
                 "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
}

static void test_methods_format_ignores_other(void **state)
{
    (void)state;
    check_format(HSC_M_OTHER, "");
    check_format(HSC_M_OTHER | HSC_M_POST, "POST");
}

static void test_methods_format_small_cap(void **state)
{
    (void)state;
    char out[16];
    const unsigned mask = HSC_M_GET | HSC_M_HEAD | HSC_M_POST;
    /* Whole names only, always NUL-terminated, never past cap. */
    static const struct {
        size_t cap;
        const char *want;
    } cases[] = {{1, ""},
                 {3, ""},
                 {4, "GET"},
                 {9, "GET"},
                 {10, "GET, HEAD"},
                 {15, "GET, HEAD"},
                 {16, "GET, HEAD, POST"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(out, '#', sizeof out);
        size_t n = hsc_methods_format(mask, out, cases[i].cap);
        assert_int_equal(n, strlen(cases[i].want));
        assert_string_equal(out, cases[i].want);
        for (size_t k = cases[i].cap; k < sizeof out; k++)
            assert_int_equal(out[k], '#');
    }
    memset(out, '#', sizeof out);
    assert_int_equal(hsc_methods_format(mask, out, 0), 0);
    assert_int_equal(out[0], '#');
}

/* ---- matching ----------------------------------------------------------------------------- */

static void test_exact_route(void **state)
{
    (void)state;
    check_route("/healthz", HSC_M_GET, 2);
    check_route("/healthz", HSC_M_HEAD, 2);
    check_route("/", HSC_M_GET, 5);
}

static void test_exact_route_needs_whole_path(void **state)
{
    (void)state;
    check_404("/healthz/", HSC_M_GET);
    check_404("/healthzz", HSC_M_GET);
    check_404("/health", HSC_M_GET);
    check_404("/HEALTHZ", HSC_M_GET);
    check_404("", HSC_M_GET);
}

static void test_exact_route_respects_len(void **state)
{
    (void)state;
    const hsc_route_t *r = NULL;
    unsigned allowed = 0;
    /* The path is a span: bytes after len (a query, say) are not part of it. */
    const char *target = "/healthz?verbose=1";
    assert_int_equal(hsc_router_match(routes, NROUTES, target, 8, HSC_M_GET, &r, &allowed), 0);
    assert_ptr_equal(r, &routes[2]);
}

static void test_no_prefix_match(void **state)
{
    (void)state;
    check_route("/static/app.js", HSC_M_HEAD, 3);
    check_404("/static/", HSC_M_GET);
    check_404("/static/app.js/x", HSC_M_GET);
    check_404("/static/app.j", HSC_M_GET);
    check_404("/any/x", HSC_M_GET);
}

static void test_first_match_wins(void **state)
{
    (void)state;
    /* Route 3 comes before route 4 and wins for the methods they share. */
    check_route("/static/app.js", HSC_M_GET, 3);
    /* Route 4 still serves the method route 3 lacks. */
    check_route("/static/app.js", HSC_M_DELETE, 4);
    /* Two routes for one path: each method finds its own, the first for a shared one. */
    check_route("/v1/stream", HSC_M_POST, 0);
    check_route("/v1/stream", HSC_M_GET, 1);
    check_route("/any", HSC_M_GET, 6);
    check_route("/any", HSC_M_PUT, 7);
}

static void test_first_match_wins_same_method(void **state)
{
    (void)state;
    static const hsc_route_t dup[] = {
        {"/x", HSC_M_GET, handler_a, 0},
        {"/x", HSC_M_GET, handler_b, 1},
    };
    const hsc_route_t *r = NULL;
    unsigned allowed = 0;
    assert_int_equal(hsc_router_match(dup, 2, "/x", 2, HSC_M_GET, &r, &allowed), 0);
    assert_ptr_equal(r, &dup[0]);
    assert_ptr_equal(r->handler, handler_a);
}

static void test_405_with_allowed_union(void **state)
{
    (void)state;
    check_405("/v1/stream", HSC_M_DELETE, HSC_M_POST | HSC_M_GET);
    check_405("/v1/stream", HSC_M_HEAD, HSC_M_POST | HSC_M_GET);
    check_405("/healthz", HSC_M_POST, HSC_M_GET | HSC_M_HEAD);
    check_405("/any", HSC_M_DELETE, HSC_M_GET | HSC_M_POST | HSC_M_PUT);
    check_405("/v1/stream", HSC_M_OTHER, HSC_M_POST | HSC_M_GET);
    /* Routes for one path add up; routes for other paths do not. */
    check_405("/static/app.js", HSC_M_POST, HSC_M_GET | HSC_M_HEAD | HSC_M_DELETE);
}

static void test_405_allow_header_text(void **state)
{
    (void)state;
    const hsc_route_t *r;
    unsigned allowed;
    assert_int_equal(match("/v1/stream", HSC_M_PUT, &r, &allowed), HSC_EMETHOD);
    char out[64];
    hsc_methods_format(allowed, out, sizeof out);
    assert_string_equal(out, "GET, POST");
}

static void test_404_unknown_path(void **state)
{
    (void)state;
    check_404("/nope", HSC_M_GET);
    check_404("/nope", HSC_M_POST);
    check_404("/v1/streams", HSC_M_POST);
    check_404("/v1", HSC_M_POST);
}

static void test_allowed_may_be_null(void **state)
{
    (void)state;
    const hsc_route_t *r = NULL;
    assert_int_equal(hsc_router_match(routes, NROUTES, "/healthz", 8, HSC_M_POST, &r, NULL),
                     HSC_EMETHOD);
    assert_int_equal(hsc_router_match(routes, NROUTES, "/nope", 5, HSC_M_GET, &r, NULL),
                     HSC_ENOTFOUND);
}

static void test_empty_table(void **state)
{
    (void)state;
    const hsc_route_t *r = NULL;
    unsigned allowed = 1;
    assert_int_equal(hsc_router_match(NULL, 0, "/", 1, HSC_M_GET, &r, &allowed), HSC_ENOTFOUND);
    assert_int_equal(allowed, 0);
    assert_null(r);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_bit),
        cmocka_unit_test(test_method_bit_unknown),
        cmocka_unit_test(test_methods_format),
        cmocka_unit_test(test_methods_format_ignores_other),
        cmocka_unit_test(test_methods_format_small_cap),
        cmocka_unit_test(test_exact_route),
        cmocka_unit_test(test_exact_route_needs_whole_path),
        cmocka_unit_test(test_exact_route_respects_len),
        cmocka_unit_test(test_no_prefix_match),
        cmocka_unit_test(test_first_match_wins),
        cmocka_unit_test(test_first_match_wins_same_method),
        cmocka_unit_test(test_405_with_allowed_union),
        cmocka_unit_test(test_405_allow_header_text),
        cmocka_unit_test(test_404_unknown_path),
        cmocka_unit_test(test_allowed_may_be_null),
        cmocka_unit_test(test_empty_table),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
