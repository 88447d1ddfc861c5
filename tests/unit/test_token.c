/*
 * Unit tests for src/client/token.c: tokens minted by hsc_token_mint() against known answers
 * computed apart with Python's hmac and json, and what it refuses: bad patterns, keys of the
 * wrong length, a subject that is not UTF-8. tests/integration/test_client_auth.py shows hscd
 * accepting them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hsc/client.h"

#include <stdlib.h>
#include <string.h>

static const char KEY[] = "an HS256 key of at least 32 bytes, for tests only";

static void check_mint(const hsc_token_claims_t *claims, const char *want)
{
    char *tok = (char *)"untouched";
    assert_int_equal(hsc_token_mint(claims, KEY, sizeof KEY - 1, &tok), 0);
    assert_string_equal(tok, want);
    free(tok);
}

static void check_refused(const hsc_token_claims_t *claims, const void *key, size_t key_len,
                          int want)
{
    char *tok = (char *)"untouched";
    assert_int_equal(hsc_token_mint(claims, key, key_len, &tok), want);
    assert_null(tok);
}

static void test_mint_known_answers(void **state)
{
    (void)state;
    const char *pub[] = {"user.42.outbox", NULL};
    const char *sub[] = {"news", "user.42.*", NULL};
    hsc_token_claims_t c = {
        .publish = pub, .subscribe = sub, .subject = "user-42", .expires = 1795358357};
    /* {"sub":"user-42","hsc_pub":["user.42.outbox"],"hsc_sub":["news","user.42.*"],
     *  "exp":1795358357} */
    check_mint(&c,
               "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
               "eyJzdWIiOiJ1c2VyLTQyIiwiaHNjX3B1YiI6WyJ1c2VyLjQyLm91dGJveCJdLCJoc2Nfc3ViIjpbIm5l"
               "d3MiLCJ1c2VyLjQyLioiXSwiZXhwIjoxNzk1MzU4MzU3fQ."
               "T0hpBuCLm2QfryibfOn18yilbhPiXReD_khdSLvDPaw");
    hsc_token_claims_t stream = {.stream = 1}; /* {"hsc_stream":true} */
    check_mint(&stream, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJoc2Nfc3RyZWFtIjp0cnVlfQ."
                        "00yh8eKLcxzkeAXYpqWroDsV-9HDmQlslTU9GScQlXk");
    const char *all[] = {"*", NULL};
    hsc_token_claims_t utf8 = {.subscribe = all, .subject = "caf\xc3\xa9", .expires = 1};
    check_mint(&utf8, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                      "eyJzdWIiOiJjYWbDqSIsImhzY19zdWIiOlsiKiJdLCJleHAiOjF9."
                      "W9rWXrDTzDViUHa1CQ3j2qMFsh6o89eQDM-NEOHceR0");
    hsc_token_claims_t none = {0}; /* {} */
    check_mint(&none, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30."
                      "vt0MPC58ZuhTAfT617wMowP7mfiiam5go7sXrHUXW0A");
}

static void test_patterns(void **state)
{
    (void)state;
    assert_true(hsc_token_pattern_valid("news"));
    assert_true(hsc_token_pattern_valid("user.42.*"));
    assert_true(hsc_token_pattern_valid("user.42*"));
    assert_true(hsc_token_pattern_valid("*"));
    assert_true(hsc_token_pattern_valid("a-b_c.d:e@f/g"));
    assert_false(hsc_token_pattern_valid(""));
    assert_false(hsc_token_pattern_valid("**"));
    assert_false(hsc_token_pattern_valid("*.news"));
    assert_false(hsc_token_pattern_valid("a*b"));
    assert_false(hsc_token_pattern_valid("bad name"));
    assert_false(hsc_token_pattern_valid("caf\xc3\xa9"));
}

static void test_mint_refuses(void **state)
{
    (void)state;
    const char *bad[] = {"news", "bad name", NULL};
    hsc_token_claims_t c = {.subscribe = bad};
    check_refused(&c, KEY, sizeof KEY - 1, HSC_EINVAL);
    c = (hsc_token_claims_t){.publish = bad};
    check_refused(&c, KEY, sizeof KEY - 1, HSC_EINVAL);
    c = (hsc_token_claims_t){.stream = 1, .subject = "bad \xff"};
    check_refused(&c, KEY, sizeof KEY - 1, HSC_EINVAL);
    c = (hsc_token_claims_t){.stream = 1, .expires = (uint64_t)INT64_MAX + 1};
    check_refused(&c, KEY, sizeof KEY - 1, HSC_EINVAL);
    c = (hsc_token_claims_t){.stream = 1};
    check_refused(&c, KEY, 31, HSC_EINVAL); /* hscd takes 32 to 4096 bytes */
    static char big[4097];
    check_refused(&c, big, sizeof big, HSC_EINVAL);
    char *tok = NULL;
    assert_int_equal(hsc_token_mint(&c, big, 4096, &tok), 0);
    free(tok);
    assert_int_equal(hsc_token_mint(&c, KEY, 32, &tok), 0);
    free(tok);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mint_known_answers),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_mint_refuses),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
