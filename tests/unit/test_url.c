/*
 * Unit tests for src/lib/codec/url.c: strict percent-decoding, query-string iteration and lookup.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hsc/codec.h"

#include <string.h>

/* Decodes a literal and checks the result (or the error, when want is NULL). */
static void check_decode(const char *in, int plus_is_space, const char *want, size_t want_len)
{
    char out[128];
    size_t len = strlen(in);
    assert_true(len <= sizeof out);
    memset(out, '#', sizeof out);
    ssize_t n = hsc_url_decode(out, in, len, plus_is_space);
    if (want == NULL) {
        assert_int_equal(n, HSC_EINVAL);
        return;
    }
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
}
#define DECODE(in, plus, lit) check_decode(in, plus, lit, sizeof(lit) - 1)
#define DECODE_FAILS(in)      check_decode(in, 0, NULL, 0)

/* ---- hsc_url_decode ----------------------------------------------------------------------- */

static void test_decode_plain(void **state)
{
    (void)state;
    DECODE("", 0, "");
    DECODE("abc", 0, "abc");
    DECODE("/a/b.html", 0, "/a/b.html");
}

static void test_decode_percent_upper_and_lower(void **state)
{
    (void)state;
    DECODE("%41", 0, "A");
    DECODE("%4a%4A", 0, "JJ");
    DECODE("%2f%2F", 0, "//");
    DECODE("a%20b", 0, "a b");
    DECODE("%e9%86%92", 0, "\xe9\x86\x92");
    DECODE("%FF%fF%Ff", 0, "\xff\xff\xff");
    DECODE("%25", 0, "%");
    DECODE("%2541", 0, "%41"); /* decoded once, never twice */
}

static void test_decode_nul_byte(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(hsc_url_decode(out, "a%00b", 5, 0), 3);
    assert_memory_equal(out, "a\0b", 3);
}

static void test_decode_plus(void **state)
{
    (void)state;
    DECODE("a+b", 1, "a b");
    DECODE("a+b", 0, "a+b");
    DECODE("+++", 1, "   ");
    DECODE("%2B", 1, "+"); /* an encoded plus is a plus, whatever the mode */
    DECODE("%2b+", 1, "+ ");
}

static void test_decode_truncated_percent(void **state)
{
    (void)state;
    DECODE_FAILS("%");
    DECODE_FAILS("%4");
    DECODE_FAILS("abc%");
    DECODE_FAILS("abc%4");
    DECODE_FAILS("%41%");
}

static void test_decode_bad_hex(void **state)
{
    (void)state;
    DECODE_FAILS("%G1");
    DECODE_FAILS("%1G");
    DECODE_FAILS("%g1");
    DECODE_FAILS("% 1");
    DECODE_FAILS("%-1");
    DECODE_FAILS("%%41");
    DECODE_FAILS("ok%zzok");
    DECODE_FAILS("%+1");
}

static void test_decode_respects_len(void **state)
{
    (void)state;
    /* The byte after `len` is a '%' that would fail if it were read. */
    char out[8];
    assert_int_equal(hsc_url_decode(out, "ab%", 2, 0), 2);
    assert_memory_equal(out, "ab", 2);
    /* "%41" cut after two bytes is truncated, even though the third byte is a hex digit. */
    assert_int_equal(hsc_url_decode(out, "%41", 2, 0), HSC_EINVAL);
}

static void test_decode_in_place(void **state)
{
    (void)state;
    char buf[] = "%E9%86%92+x%2Fy";
    ssize_t n = hsc_url_decode(buf, buf, strlen(buf), 1);
    assert_int_equal(n, 7);
    assert_memory_equal(buf, "\xe9\x86\x92 x/y", 7);

    char buf2[] = "plain";
    assert_int_equal(hsc_url_decode(buf2, buf2, 5, 0), 5);
    assert_memory_equal(buf2, "plain", 5);
}

static void test_decode_every_byte(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        static const char hex[] = "0123456789ABCDEF";
        char in[3] = {'%', hex[c >> 4], hex[c & 15]};
        char out[3];
        assert_int_equal(hsc_url_decode(out, in, 3, 0), 1);
        assert_int_equal((unsigned char)out[0], c);
    }
}

/* ---- hsc_query_next ----------------------------------------------------------------------- */

typedef struct pair_s {
    const char *key, *value;
} pair_t;

static void check_pairs(const char *q, const pair_t *want, size_t nwant)
{
    size_t qlen = strlen(q), pos = 0, i = 0;
    hsc_span_t k, v;
    while (hsc_query_next(q, qlen, &pos, &k, &v)) {
        assert_true(i < nwant);
        assert_int_equal(k.len, strlen(want[i].key));
        assert_memory_equal(k.p, want[i].key, k.len);
        assert_int_equal(v.len, strlen(want[i].value));
        assert_memory_equal(v.p, want[i].value, v.len);
        /* Spans point into q. */
        assert_true(k.p >= q && k.p + k.len <= q + qlen);
        assert_true(v.p >= q && v.p + v.len <= q + qlen);
        assert_true(pos <= qlen);
        i++;
    }
    assert_int_equal(i, nwant);
    assert_int_equal(pos, qlen);
    /* At the end it stays at the end. */
    assert_int_equal(hsc_query_next(q, qlen, &pos, &k, &v), 0);
}

static void test_query_next_pairs(void **state)
{
    (void)state;
    static const pair_t want[] = {{"a", "1"}, {"b", "2"}, {"c", "x%20y"}};
    check_pairs("a=1&b=2&c=x%20y", want, 3);
}

static void test_query_next_empty(void **state)
{
    (void)state;
    check_pairs("", NULL, 0);
    check_pairs("&", NULL, 0);
    check_pairs("&&&", NULL, 0);
}

static void test_query_next_skips_empty_pairs(void **state)
{
    (void)state;
    static const pair_t want[] = {{"a", "1"}, {"b", "2"}};
    check_pairs("a=1&&b=2", want, 2);
    check_pairs("&&a=1&&&b=2&&", want, 2);
}

static void test_query_next_no_equals(void **state)
{
    (void)state;
    static const pair_t want[] = {{"flag", ""}, {"a", "1"}, {"other", ""}};
    check_pairs("flag&a=1&other", want, 3);
}

static void test_query_next_empty_value_and_key(void **state)
{
    (void)state;
    static const pair_t want[] = {{"a", ""}, {"", "v"}, {"", ""}};
    check_pairs("a=&=v&=", want, 3);
}

static void test_query_next_trailing_ampersand(void **state)
{
    (void)state;
    static const pair_t want[] = {{"a", "1"}};
    check_pairs("a=1&", want, 1);
}

static void test_query_next_second_equals_in_value(void **state)
{
    (void)state;
    static const pair_t want[] = {{"a", "b=c"}, {"d", "=="}};
    check_pairs("a=b=c&d===", want, 2);
}

static void test_query_next_respects_len(void **state)
{
    (void)state;
    const char *q = "a=1&b=2";
    size_t pos = 0;
    hsc_span_t k, v;
    assert_int_equal(hsc_query_next(q, 5, &pos, &k, &v), 1);
    assert_int_equal(hsc_query_next(q, 5, &pos, &k, &v), 1);
    assert_int_equal(k.len, 1);
    assert_memory_equal(k.p, "b", 1);
    assert_int_equal(v.len, 0);
    assert_int_equal(hsc_query_next(q, 5, &pos, &k, &v), 0);
}

/* ---- hsc_query_get ------------------------------------------------------------------------ */

static void check_get(const char *q, const char *name, const char *want)
{
    char out[128];
    memset(out, '#', sizeof out);
    ssize_t n = hsc_query_get(q, strlen(q), name, out, sizeof out);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void test_query_get_basic(void **state)
{
    (void)state;
    check_get("a=1&b=2", "a", "1");
    check_get("a=1&b=2", "b", "2");
    check_get("text=hello+world&x=%41", "text", "hello world");
    check_get("text=hello+world&x=%41", "x", "A");
}

static void test_query_get_first_match_wins(void **state)
{
    (void)state;
    check_get("a=1&a=2&a=3", "a", "1");
    check_get("b=0&a=first&a=second", "a", "first");
}

static void test_query_get_key_is_decoded(void **state)
{
    (void)state;
    check_get("%6Bey=v", "key", "v");
    check_get("%6bey=v", "key", "v");
    check_get("my+key=1", "my key", "1");
    check_get("my%20key=1", "my key", "1");
    check_get("a%3Db=1", "a=b", "1");
    /* The decoded key must equal the name, not merely start with it. */
    check_get("ab=1&a=2", "a", "2");
    check_get("a=1&ab=2", "ab", "2");
}

static void test_query_get_empty_value(void **state)
{
    (void)state;
    check_get("a=&b=2", "a", "");
    check_get("flag&b=2", "flag", "");
}

static void test_query_get_missing(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(hsc_query_get("a=1&b=2", 7, "c", out, sizeof out), HSC_ENOTFOUND);
    assert_int_equal(hsc_query_get("", 0, "a", out, sizeof out), HSC_ENOTFOUND);
    assert_int_equal(hsc_query_get("A=1", 3, "a", out, sizeof out), HSC_ENOTFOUND);
    assert_int_equal(hsc_query_get("a=1", 1, "a", out, sizeof out), 0); /* only "a" is seen */
    assert_string_equal(out, "");
}

static void test_query_get_value_too_big(void **state)
{
    (void)state;
    char out[4];
    /* "abc" needs 4 bytes with its NUL: fits; "abcd" does not. */
    assert_int_equal(hsc_query_get("v=abc", 5, "v", out, sizeof out), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(hsc_query_get("v=abcd", 6, "v", out, sizeof out), HSC_ETOOBIG);
    /* Sized by the decoded value, not the encoded one: 9 encoded bytes, 3 decoded. */
    assert_int_equal(hsc_query_get("v=%41%42%43", 11, "v", out, sizeof out), 3);
    assert_string_equal(out, "ABC");
    assert_int_equal(hsc_query_get("v=%41%42%43%44", 14, "v", out, sizeof out), HSC_ETOOBIG);
}

static void test_query_get_too_big_stays_in_cap(void **state)
{
    (void)state;
    char out[16];
    for (size_t cap = 1; cap < 8; cap++) {
        memset(out, '#', sizeof out);
        assert_int_equal(hsc_query_get("v=%41bcdefgh", 12, "v", out, cap), HSC_ETOOBIG);
        for (size_t i = cap; i < sizeof out; i++)
            assert_int_equal(out[i], '#');
    }
}

static void test_query_get_bad_encoding(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(hsc_query_get("v=%G1", 5, "v", out, sizeof out), HSC_EINVAL);
    assert_int_equal(hsc_query_get("v=ab%4", 6, "v", out, sizeof out), HSC_EINVAL);
    assert_int_equal(hsc_query_get("v=ab%", 5, "v", out, sizeof out), HSC_EINVAL);
    /* A bad escape in another pair's value does not matter. */
    assert_int_equal(hsc_query_get("w=%zz&v=ok", 10, "v", out, sizeof out), 2);
    assert_string_equal(out, "ok");
}

static void test_query_get_utf8_value(void **state)
{
    (void)state;
    /* "醒醒，Neo", percent-encoded as a browser sends it. */
    static const char q[] = "text=%E9%86%92%E9%86%92%EF%BC%8CNeo&lang=zh";
    char out[64];
    ssize_t n = hsc_query_get(q, sizeof q - 1, "text", out, sizeof out);
    assert_int_equal(n, 12);
    assert_string_equal(out, "醒醒，Neo");
    assert_int_equal(hsc_utf8_valid(out, (size_t)n), 1);
    /* Exactly big enough, and one byte short. */
    assert_int_equal(hsc_query_get(q, sizeof q - 1, "text", out, 13), 12);
    assert_int_equal(hsc_query_get(q, sizeof q - 1, "text", out, 12), HSC_ETOOBIG);
}

static void test_query_get_long_key_skipped(void **state)
{
    (void)state;
    char q[600];
    memset(q, 'k', 300);
    memcpy(q + 300, "=1&k=2", 6);
    char out[8];
    assert_int_equal(hsc_query_get(q, 306, "k", out, sizeof out), 1);
    assert_string_equal(out, "2");
}

/* A zero-capacity output cannot even hold the NUL: refused, nothing written. */
static void test_query_get_zero_capacity(void **state)
{
    (void)state;
    char out[1] = {'x'};
    assert_int_equal(hsc_query_get("v=", 2, "v", out, 0), HSC_ETOOBIG);
    assert_int_equal(hsc_query_get("v", 1, "v", out, 0), HSC_ETOOBIG);
    assert_int_equal(out[0], 'x');
}

/* hsc_query_without(): what a responder gets instead of the query (docs/responders.md). */
static void check_without(const char *q, const char *name, const char *want)
{
    char out[256];
    size_t n = hsc_query_without(out, q, strlen(q), name);
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void test_query_without_token(void **state)
{
    (void)state;
    check_without("", "access_token", "");
    check_without("q=1", "access_token", "q=1");
    check_without("a=1&&b=2&", "access_token", "a=1&&b=2&"); /* nothing removed: byte for byte */
    check_without("access_token=s3cret", "access_token", "");
    check_without("q=1&access_token=s3cret&x", "access_token", "q=1&x");
    check_without("access_%74oken=s&q=1", "access_token", "q=1");
    check_without("%61%63%63%65%73%73%5f%74%6f%6b%65%6e=s&q=1", "access_token", "q=1");
    check_without("access_token&q=1&access_token=a&access%5Ftoken=b", "access_token", "q=1");
    check_without("access_tokens=s&xaccess_token=s", "access_token",
                  "access_tokens=s&xaccess_token=s");
    check_without("access_token%=s&q=1", "access_token", "access_token%=s&q=1");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_plain),
        cmocka_unit_test(test_decode_percent_upper_and_lower),
        cmocka_unit_test(test_decode_nul_byte),
        cmocka_unit_test(test_decode_plus),
        cmocka_unit_test(test_decode_truncated_percent),
        cmocka_unit_test(test_decode_bad_hex),
        cmocka_unit_test(test_decode_respects_len),
        cmocka_unit_test(test_decode_in_place),
        cmocka_unit_test(test_decode_every_byte),
        cmocka_unit_test(test_query_without_token),
        cmocka_unit_test(test_query_next_pairs),
        cmocka_unit_test(test_query_next_empty),
        cmocka_unit_test(test_query_next_skips_empty_pairs),
        cmocka_unit_test(test_query_next_no_equals),
        cmocka_unit_test(test_query_next_empty_value_and_key),
        cmocka_unit_test(test_query_next_trailing_ampersand),
        cmocka_unit_test(test_query_next_second_equals_in_value),
        cmocka_unit_test(test_query_next_respects_len),
        cmocka_unit_test(test_query_get_basic),
        cmocka_unit_test(test_query_get_first_match_wins),
        cmocka_unit_test(test_query_get_key_is_decoded),
        cmocka_unit_test(test_query_get_empty_value),
        cmocka_unit_test(test_query_get_missing),
        cmocka_unit_test(test_query_get_value_too_big),
        cmocka_unit_test(test_query_get_too_big_stays_in_cap),
        cmocka_unit_test(test_query_get_bad_encoding),
        cmocka_unit_test(test_query_get_utf8_value),
        cmocka_unit_test(test_query_get_long_key_skipped),
        cmocka_unit_test(test_query_get_zero_capacity),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
