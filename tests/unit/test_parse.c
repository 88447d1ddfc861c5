/*
 * Unit tests for src/lib/codec/parse.c: durations and byte sizes as written on a command line. Both
 * are strict, so every rejected form is checked to leave the output untouched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hsc/codec.h"

#define UNTOUCHED 0x5a5a5a5a5a5a5a5aull

static void check_duration(const char *s, uint64_t want_ms)
{
    uint64_t ms = UNTOUCHED;
    assert_int_equal(hsc_parse_duration(s, &ms), 0);
    assert_int_equal(ms, want_ms);
}

static void check_duration_fails(const char *s)
{
    uint64_t ms = UNTOUCHED;
    assert_int_equal(hsc_parse_duration(s, &ms), HSC_EINVAL);
    assert_int_equal(ms, UNTOUCHED);
}

static void check_size(const char *s, uint64_t want)
{
    uint64_t b = UNTOUCHED;
    assert_int_equal(hsc_parse_size(s, &b), 0);
    assert_int_equal(b, want);
}

static void check_size_fails(const char *s)
{
    uint64_t b = UNTOUCHED;
    assert_int_equal(hsc_parse_size(s, &b), HSC_EINVAL);
    assert_int_equal(b, UNTOUCHED);
}

/* ---- durations ---------------------------------------------------------------------------- */

static void test_duration_units(void **state)
{
    (void)state;
    check_duration("250ms", 250);
    check_duration("1s", 1000);
    check_duration("2m", 120000);
    check_duration("1h", 3600000);
    check_duration("24h", 86400000);
}

static void test_duration_bare_number_is_seconds(void **state)
{
    (void)state;
    check_duration("3", 3000);
    check_duration("0", 0);
    check_duration("30", 30000);
}

static void test_duration_fractions(void **state)
{
    (void)state;
    check_duration("1.5s", 1500);
    check_duration("0.25s", 250);
    check_duration(".5s", 500);
    check_duration("1.5m", 90000);
    check_duration("0.5h", 1800000);
    check_duration("2.5", 2500);
}

static void test_duration_zero(void **state)
{
    (void)state;
    check_duration("0ms", 0);
    check_duration("0s", 0);
    check_duration("0h", 0);
}

static void test_duration_case_insensitive_units(void **state)
{
    (void)state;
    check_duration("250MS", 250);
    check_duration("1S", 1000);
    check_duration("2M", 120000);
    check_duration("1H", 3600000);
}

static void test_duration_invalid(void **state)
{
    (void)state;
    check_duration_fails("");
    check_duration_fails("abc");
    check_duration_fails("-1");
    check_duration_fails("-1s");
    check_duration_fails("+1s");
    check_duration_fails("1x");
    check_duration_fails("1 s");
    check_duration_fails(" 1s");
    check_duration_fails("1s ");
    check_duration_fails("s");
    check_duration_fails("ms");
    check_duration_fails(".");
    check_duration_fails("1ss");
    check_duration_fails("1sms");
    check_duration_fails("1..5s");
}

static void test_duration_null(void **state)
{
    (void)state;
    uint64_t ms = UNTOUCHED;
    assert_int_equal(hsc_parse_duration(NULL, &ms), HSC_EINVAL);
    assert_int_equal(ms, UNTOUCHED);
}

static void test_duration_overflow(void **state)
{
    (void)state;
    check_duration_fails("1e300h");
    check_duration_fails("99999999999999999999999h");
    check_duration_fails("1e400");
}

/* ---- sizes -------------------------------------------------------------------------------- */

static void test_size_plain(void **state)
{
    (void)state;
    check_size("0", 0);
    check_size("1", 1);
    check_size("1000", 1000);
    check_size("1b", 1);
    check_size("512B", 512);
}

static void test_size_units(void **state)
{
    (void)state;
    check_size("16k", 16384);
    check_size("1m", 1048576);
    check_size("1g", 1073741824);
    check_size("3G", 3221225472ull);
    check_size("0k", 0);
}

static void test_size_unit_suffixes(void **state)
{
    (void)state;
    check_size("1kb", 1024);
    check_size("1KB", 1024);
    check_size("1kib", 1024);
    check_size("1KiB", 1024);
    check_size("1MiB", 1048576);
    check_size("1mb", 1048576);
    check_size("2GiB", 2147483648ull);
}

static void test_size_invalid(void **state)
{
    (void)state;
    check_size_fails("");
    check_size_fails("-1");
    check_size_fails("+1");
    check_size_fails(" 1");
    check_size_fails("k");
    check_size_fails("1t");
    check_size_fails("1T");
    check_size_fails("1x");
    check_size_fails("1 k");
    check_size_fails("1k ");
    check_size_fails("1kk");
    check_size_fails("1kbb");
    check_size_fails("1ki");
    check_size_fails("1ib");
    check_size_fails("1bb");
    check_size_fails("1.5k");
    check_size_fails("0x10");
}

static void test_size_null(void **state)
{
    (void)state;
    uint64_t b = UNTOUCHED;
    assert_int_equal(hsc_parse_size(NULL, &b), HSC_EINVAL);
    assert_int_equal(b, UNTOUCHED);
}

static void test_size_limits(void **state)
{
    (void)state;
    check_size("18446744073709551615", UINT64_MAX);
    check_size("17179869183g", 17179869183ull << 30);
    check_size("17592186044415m", 17592186044415ull << 20);
    check_size("18014398509481983k", 18014398509481983ull << 10);
}

static void test_size_overflow(void **state)
{
    (void)state;
    check_size_fails("18446744073709551616");
    check_size_fails("99999999999999999999999");
    check_size_fails("17179869184g"); /* 2^64 */
    check_size_fails("17592186044416m");
    check_size_fails("18014398509481984k");
}

/* Only decimal digits with one optional point: strtod's hex and exponent forms are typos here. */
static void test_duration_rejects_hex_and_exponent(void **state)
{
    (void)state;
    uint64_t ms = 42;
    assert_int_equal(hsc_parse_duration("0x10", &ms), HSC_EINVAL);
    assert_int_equal(hsc_parse_duration("0x1p4s", &ms), HSC_EINVAL);
    assert_int_equal(hsc_parse_duration("1e3", &ms), HSC_EINVAL);
    assert_int_equal(hsc_parse_duration("1.2.3s", &ms), HSC_EINVAL);
    assert_int_equal(hsc_parse_duration(".", &ms), HSC_EINVAL);
    assert_int_equal(ms, 42);
    assert_int_equal(hsc_parse_duration(".5s", &ms), 0);
    assert_int_equal(ms, 500);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_units),
        cmocka_unit_test(test_duration_bare_number_is_seconds),
        cmocka_unit_test(test_duration_fractions),
        cmocka_unit_test(test_duration_zero),
        cmocka_unit_test(test_duration_case_insensitive_units),
        cmocka_unit_test(test_duration_invalid),
        cmocka_unit_test(test_duration_null),
        cmocka_unit_test(test_duration_overflow),
        cmocka_unit_test(test_size_plain),
        cmocka_unit_test(test_size_units),
        cmocka_unit_test(test_size_unit_suffixes),
        cmocka_unit_test(test_size_invalid),
        cmocka_unit_test(test_size_null),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_size_overflow),
        cmocka_unit_test(test_duration_rejects_hex_and_exponent),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
