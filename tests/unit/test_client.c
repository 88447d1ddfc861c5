/*
 * Unit tests for src/client/client.c's pure parts: what a bearer token and a request header may
 * hold (hsc_client_token_valid(), hsc_client_header_valid(), and hsc_client_new() refusing the
 * rest), and access_token redaction (hsc_client_redact()). No request is made.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hsc/client.h"

#include <string.h>

static void check_redact(const char *in, const char *want)
{
    char out[256];
    memset(out, '#', sizeof out);
    hsc_client_redact(out, sizeof out, in);
    assert_string_equal(out, want);
}

static void test_redact_plain_key(void **state)
{
    (void)state;
    check_redact("http://h:1/v1/events?access_token=s3cret",
                 "http://h:1/v1/events?access_token=***");
    check_redact("http://h/e?channel=a&access_token=s3cret&channel=b",
                 "http://h/e?channel=a&access_token=***&channel=b");
    check_redact("connected to http://h/e?access_token=s3cret (200)",
                 "connected to http://h/e?access_token=*** (200)");
    check_redact("http://h/e?access_token=s3cret#frag", "http://h/e?access_token=***#frag");
    check_redact("http://h/e?access_token=a&access_token=b",
                 "http://h/e?access_token=***&access_token=***");
    check_redact("http://h/e?access_token=", "http://h/e?access_token=***");
}

static void test_redact_encoded_key(void **state)
{
    (void)state;
    /* hscd decodes the key before comparing it: so must the redaction. */
    check_redact("http://h/e?access_%74oken=s3cret", "http://h/e?access_%74oken=***");
    check_redact("http://h/e?%61ccess%5Ftoken=s3cret", "http://h/e?%61ccess%5Ftoken=***");
    check_redact("http://h/e?x=1&ACCESS_TOKEN=s3cret", "http://h/e?x=1&ACCESS_TOKEN=***");
}

static void test_redact_leaves_other_keys(void **state)
{
    (void)state;
    check_redact("http://h/e?channel=access_token", "http://h/e?channel=access_token");
    check_redact("http://h/e?my_access_token=v", "http://h/e?my_access_token=v");
    check_redact("http://h/e?access_tokens=v", "http://h/e?access_tokens=v");
    check_redact("http://h/e?access_token", "http://h/e?access_token");
    check_redact("http://h/e?access_%7token=v", "http://h/e?access_%7token=v"); /* not an escape */
    check_redact("http://h/access_token=v", "http://h/access_token=v"); /* a path, not a query */
    check_redact("", "");
}

static void test_redact_cut_to_fit(void **state)
{
    (void)state;
    char out[24];
    const char *in = "http://h/e?access_token=s3cret-and-more";
    for (size_t cap = 1; cap <= sizeof out; cap++) {
        memset(out, '#', sizeof out);
        hsc_client_redact(out, cap, in);
        assert_true(strlen(out) < cap);
        assert_null(strstr(out, "s3"));
        assert_memory_equal(out, "http://h/e?access_token=***", strlen(out));
    }
}

static void test_token_valid(void **state)
{
    (void)state;
    assert_true(hsc_client_token_valid("s3cret"));
    assert_true(hsc_client_token_valid("eyJhbGciOiJIUzI1NiJ9.e30.sig-_~!"));
    assert_false(hsc_client_token_valid(""));
    assert_false(hsc_client_token_valid("has space"));
    assert_false(hsc_client_token_valid("tab\there"));
    assert_false(hsc_client_token_valid("line\r\nX-Injected: 1"));
    assert_false(hsc_client_token_valid("caf\xc3\xa9"));
    char big[4098];
    memset(big, 'a', sizeof big - 1);
    big[4097] = '\0';
    assert_false(hsc_client_token_valid(big));
    big[4096] = '\0';
    assert_true(hsc_client_token_valid(big));
}

static void test_header_valid(void **state)
{
    (void)state;
    assert_true(hsc_client_header_valid("X-Trace: 42"));
    assert_true(hsc_client_header_valid("X-Trace:42"));
    assert_true(hsc_client_header_valid("Accept:")); /* empty: removes a header */
    assert_true(hsc_client_header_valid("X-A: tab\tand caf\xc3\xa9"));
    assert_true(hsc_client_header_valid("x!#$%&'*+-.^_`|~0: v"));
    assert_false(hsc_client_header_valid(""));
    assert_false(hsc_client_header_valid(": v"));
    assert_false(hsc_client_header_valid("NoColon"));
    assert_false(hsc_client_header_valid("Bad Name: v"));
    assert_false(hsc_client_header_valid("Name : v"));
    assert_false(hsc_client_header_valid("Name; v"));
    assert_false(hsc_client_header_valid("X-A: a\r\nX-Injected: 1"));
    assert_false(hsc_client_header_valid("X-A: a\nb"));
    assert_false(hsc_client_header_valid("X-A: a\rb"));
    assert_false(hsc_client_header_valid("X-A: bell\a"));
    assert_false(hsc_client_header_valid("X-A: del\x7f"));
    assert_false(hsc_client_header_valid("N\xc3\xa4me: v"));
}

static void test_new_refuses_a_bad_token_or_header(void **state)
{
    (void)state;
    hsc_client_config_t cfg;
    hsc_client_config_init(&cfg);
    cfg.url = "http://127.0.0.1:1/";
    hsc_client_t *c = (hsc_client_t *)&cfg;
    cfg.token = "two words";
    assert_int_equal(hsc_client_new(&cfg, &c), HSC_EINVAL);
    assert_null(c);
    cfg.token = "ok";
    const char *bad[] = {"X-A: 1", "X-B: 2\r\nX-C: 3", NULL};
    cfg.headers = bad;
    assert_int_equal(hsc_client_new(&cfg, &c), HSC_EINVAL);
    assert_null(c);
    const char *good[] = {"X-A: 1", "Accept:", NULL};
    cfg.headers = good;
    assert_int_equal(hsc_client_new(&cfg, &c), 0);
    assert_non_null(c);
    hsc_client_free(c);
}

static void test_config_defaults_have_no_credentials(void **state)
{
    (void)state;
    hsc_client_config_t cfg;
    hsc_client_config_init(&cfg);
    assert_null(cfg.token);
    assert_null(cfg.headers);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_plain_key),
        cmocka_unit_test(test_redact_encoded_key),
        cmocka_unit_test(test_redact_leaves_other_keys),
        cmocka_unit_test(test_redact_cut_to_fit),
        cmocka_unit_test(test_token_valid),
        cmocka_unit_test(test_header_valid),
        cmocka_unit_test(test_new_refuses_a_bad_token_or_header),
        cmocka_unit_test(test_config_defaults_have_no_credentials),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
