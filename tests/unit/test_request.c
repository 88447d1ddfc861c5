/*
 * Unit tests for src/lib/http/request.c's pure part: the request target as logged, with the value
 * of every query parameter whose key percent-decodes to access_token hidden.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http/conn.h"

#include <string.h>

static void check(const char *target, size_t cap, const char *want)
{
    char out[512];
    assert_true(cap <= sizeof out);
    memset(out, '#', sizeof out);
    hsc_req_log_target(target, strlen(target), out, cap);
    assert_string_equal(out, want);
}

static void test_plain_targets_unchanged(void **state)
{
    (void)state;
    check("/", 256, "/");
    check("/v1/events?channel=news&lastEventId=x-1", 256,
          "/v1/events?channel=news&lastEventId=x-1");
    check("/a?", 256, "/a?");
    check("/a?&&b", 256, "/a?&&b");
    check("/access_token=x", 256, "/access_token=x"); /* the path is not a query */
    check("/a?access_token_x=1&xaccess_token=2", 256, "/a?access_token_x=1&xaccess_token=2");
    check("/a?ACCESS_TOKEN=1&access+token=2", 256, "/a?ACCESS_TOKEN=1&access+token=2");
}

static void test_token_values_hidden(void **state)
{
    (void)state;
    check("/v1/events?access_token=s3cret", 256, "/v1/events?access_token=***");
    check("/v1/events?channel=a&access_token=s3cret&b=1", 256,
          "/v1/events?channel=a&access_token=***&b=1");
    check("/x?access_%74oken=s3cret", 256, "/x?access_%74oken=***");
    check("/x?%61ccess_token=s3cret", 256, "/x?%61ccess_token=***");
    check("/x?%61%63%63%65%73%73%5F%74%6F%6B%65%6E=s3cret", 256,
          "/x?%61%63%63%65%73%73%5F%74%6F%6B%65%6E=***");
    check("/x?access_token=a&access_token=s3cret", 256, "/x?access_token=***&access_token=***");
    check("/x?access_token", 256, "/x?access_token=***");
    check("/x?access_token=a=b", 256, "/x?access_token=***");
    check("http://h/x?access_token=s3cret", 256, "http://h/x?access_token=***");
}

static void test_truncated_never_shows_a_token(void **state)
{
    (void)state;
    const char *t = "/v1/events?channel=a&access_token=s3cret";
    for (size_t cap = 1; cap < 48; cap++) {
        char out[64];
        hsc_req_log_target(t, strlen(t), out, cap);
        assert_true(strlen(out) < cap);
        assert_null(strstr(out, "s3"));
    }
    check(t, 12, "/v1/events?");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_targets_unchanged),
        cmocka_unit_test(test_token_values_hidden),
        cmocka_unit_test(test_truncated_never_shows_a_token),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
