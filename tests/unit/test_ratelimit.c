/*
 * Unit tests for src/lib/policy/ratelimit.c: per-client token buckets, refilled with time,
 * capped at the burst, and a bounded table that forgets the least recently seen client.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "policy/policy.h"

#include <string.h>

static void test_burst_then_rate(void **state)
{
    (void)state;
    hsc_ratelimit_t *rl;
    assert_int_equal(hsc_ratelimit_new(10, 5, 4, &rl), 0); /* 10 a second, bursts of 5 */
    uint64_t t = 1000000;
    for (int i = 0; i < 5; i++)
        assert_int_equal(hsc_ratelimit_take(rl, 1, 1, t), 0);
    assert_int_equal(hsc_ratelimit_take(rl, 1, 1, t), 100); /* one token every 100 ms */
    assert_int_equal(hsc_ratelimit_take(rl, 1, 1, t + 50), 50);
    assert_int_equal(hsc_ratelimit_take(rl, 1, 1, t + 100), 0);
    assert_int_equal(hsc_ratelimit_take(rl, 1, 3, t + 100), 300); /* all or nothing */
    /* A long pause refills to the burst, never past it. */
    t += 3600 * 1000;
    for (int i = 0; i < 5; i++)
        assert_int_equal(hsc_ratelimit_take(rl, 1, 1, t), 0);
    assert_int_not_equal(hsc_ratelimit_take(rl, 1, 1, t), 0);
    /* More than a burst at once costs a full bucket rather than never passing. */
    t += 3600 * 1000;
    assert_int_equal(hsc_ratelimit_take(rl, 1, 50, t), 0);
    assert_int_not_equal(hsc_ratelimit_take(rl, 1, 1, t), 0);
    hsc_ratelimit_free(rl);
}

static void test_clients_are_apart_and_the_table_is_bounded(void **state)
{
    (void)state;
    hsc_ratelimit_t *rl;
    assert_int_equal(hsc_ratelimit_new(1, 1, 2, &rl), 0); /* two clients at most */
    uint64_t t = 5000;
    assert_int_equal(hsc_ratelimit_take(rl, 1, 1, t), 0);
    assert_int_equal(hsc_ratelimit_take(rl, 2, 1, t), 0);
    assert_int_not_equal(hsc_ratelimit_take(rl, 1, 1, t), 0); /* 1 is now the most recent */
    assert_int_not_equal(hsc_ratelimit_take(rl, 2, 1, t), 0);
    /* A third client takes the least recently seen entry (1's): 1 starts again, full. */
    assert_int_equal(hsc_ratelimit_take(rl, 3, 1, t), 0);
    assert_int_not_equal(hsc_ratelimit_take(rl, 2, 1, t), 0);
    assert_int_equal(hsc_ratelimit_take(rl, 1, 1, t), 0);
    hsc_ratelimit_free(rl);
}

static void test_no_limit_and_keys(void **state)
{
    (void)state;
    hsc_ratelimit_t *rl = (hsc_ratelimit_t *)&rl;
    assert_int_equal(hsc_ratelimit_new(0, 10, 16, &rl), 0);
    assert_null(rl);
    assert_int_equal(hsc_ratelimit_take(NULL, 1, 1000, 0), 0);
    hsc_ratelimit_free(NULL);
    assert_int_equal(hsc_ratelimit_new(1, 1, 16, &rl), 0);
    hsc_client_id_t a = {.len = 11}, b = {.len = 11};
    memcpy(a.b, "ip:10.0.0.1", 11);
    memcpy(b.b, "ip:10.0.0.2", 11);
    assert_int_equal(hsc_ratelimit_key(rl, &a), hsc_ratelimit_key(rl, &a));
    assert_int_not_equal(hsc_ratelimit_key(rl, &a), hsc_ratelimit_key(rl, &b));
    hsc_ratelimit_free(rl);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_clients_are_apart_and_the_table_is_bounded),
        cmocka_unit_test(test_no_limit_and_keys),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
