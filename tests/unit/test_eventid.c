/*
 * Unit tests for src/lib/codec/eventid.c: channel names, event types and event ids, the identifiers
 * a client sends back to the server. Inputs are copied into heap blocks of exactly their length (no
 * NUL after them), so under ASan a read past `len` fails the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hsc/codec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An exact-size heap copy of `len` bytes. */
static char *dup_n(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    assert_non_null(p);
    memcpy(p, s, len);
    return p;
}

static int name_valid(const char *s, size_t len)
{
    char *p = dup_n(s, len);
    int r = hsc_channel_name_valid(p, len);
    free(p);
    return r;
}

static int type_valid(const char *s, size_t len)
{
    char *p = dup_n(s, len);
    int r = hsc_event_type_valid(p, len);
    free(p);
    return r;
}

static int parse(const char *s, size_t len, uint64_t *epoch, uint64_t *seq)
{
    char *p = dup_n(s, len);
    int r = hsc_event_id_parse(p, len, epoch, seq);
    free(p);
    return r;
}

#define NAME_OK(lit)  assert_int_equal(name_valid(lit, sizeof(lit) - 1), 1)
#define NAME_BAD(lit) assert_int_equal(name_valid(lit, sizeof(lit) - 1), 0)
#define TYPE_OK(lit)  assert_int_equal(type_valid(lit, sizeof(lit) - 1), 1)
#define TYPE_BAD(lit) assert_int_equal(type_valid(lit, sizeof(lit) - 1), 0)

static int ref_alnum(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* The documented alphabets, spelled out byte by byte. */
static int ref_name_char(int c)
{
    return ref_alnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '@' || c == '/';
}

static int ref_type_char(int c)
{
    return ref_alnum(c) || c == '-' || c == '_' || c == '.' || c == ':';
}

/* ---- channel names ----------------------------------------------------------------------- */

static void test_name_allowed_classes(void **state)
{
    (void)state;
    const char *classes[] = {"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz",
                             "0123456789", "-_.:@/"};
    for (size_t k = 0; k < 4; k++) {
        size_t n = strlen(classes[k]);
        assert_int_equal(name_valid(classes[k], n), 1); /* the whole class */
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(name_valid(classes[k] + i, 1), 1); /* each character alone */
            char mid[3] = {'a', classes[k][i], 'z'};
            assert_int_equal(name_valid(mid, 3), 1);
        }
    }
    NAME_OK("chat");
    NAME_OK("user:42/inbox");
    NAME_OK("team@example.com/alerts");
    NAME_OK("a-b_c.d:e@f/g");
    NAME_OK("...");
    NAME_OK("/");
    NAME_OK("0");
}

static void test_name_every_byte(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        char one = (char)c;
        char mid[5] = {'a', 'b', (char)c, 'c', 'd'};
        char end[3] = {'a', 'b', (char)c};
        int want = ref_name_char(c);
        if (name_valid(&one, 1) != want || name_valid(mid, 5) != want || name_valid(end, 3) != want)
            fail_msg("channel name with byte 0x%02x: expected %s", c, want ? "valid" : "invalid");
    }
}

static void test_name_disallowed_examples(void **state)
{
    (void)state;
    NAME_BAD("a b");
    NAME_BAD("a\tb");
    NAME_BAD("a\r\nb");
    NAME_BAD("a\nid: 1");
    NAME_BAD("a\0b");
    NAME_BAD("a%2Fb");
    NAME_BAD("a+b");
    NAME_BAD("a?b");
    NAME_BAD("a&b");
    NAME_BAD("a=b");
    NAME_BAD("a#b");
    NAME_BAD("a\\b");
    NAME_BAD("a,b");
    NAME_BAD("caf\xc3\xa9"); /* non-ASCII, even as valid UTF-8 */
    NAME_BAD("\x7f");
    NAME_BAD("\xff");
}

static void test_name_lengths(void **state)
{
    (void)state;
    char buf[HSC_CHANNEL_MAX + 2];
    memset(buf, 'n', sizeof buf);
    assert_int_equal(name_valid(buf, 0), 0);
    assert_int_equal(name_valid(buf, 1), 1);
    assert_int_equal(name_valid(buf, 127), 1);
    assert_int_equal(name_valid(buf, 128), 1);
    assert_int_equal(name_valid(buf, 129), 0);
    assert_int_equal(name_valid(buf, 130), 0);
    assert_int_equal(HSC_CHANNEL_MAX, 128);
    /* Only `len` bytes count: a bad byte just after them does not matter. */
    assert_int_equal(hsc_channel_name_valid("ab cd", 2), 1);
    assert_int_equal(hsc_channel_name_valid("ab cd", 3), 0);
    assert_int_equal(hsc_channel_name_valid("", 0), 0);
}

/* ---- event types ------------------------------------------------------------------------- */

static void test_type_allowed_classes(void **state)
{
    (void)state;
    const char *classes[] = {"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz",
                             "0123456789", "-_.:"};
    for (size_t k = 0; k < 4; k++) {
        size_t n = strlen(classes[k]);
        assert_int_equal(type_valid(classes[k], n), 1);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(type_valid(classes[k] + i, 1), 1);
            char mid[3] = {'a', classes[k][i], 'z'};
            assert_int_equal(type_valid(mid, 3), 1);
        }
    }
    TYPE_OK("message");
    TYPE_OK("chat.message");
    TYPE_OK("user-joined");
    TYPE_OK("ns:kind_2");
}

static void test_type_every_byte(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        char one = (char)c;
        char mid[5] = {'a', 'b', (char)c, 'c', 'd'};
        char end[3] = {'a', 'b', (char)c};
        int want = ref_type_char(c);
        if (type_valid(&one, 1) != want || type_valid(mid, 5) != want || type_valid(end, 3) != want)
            fail_msg("event type with byte 0x%02x: expected %s", c, want ? "valid" : "invalid");
    }
    /* '@' and '/' are channel characters, not type characters. */
    TYPE_BAD("a@b");
    TYPE_BAD("a/b");
    TYPE_BAD("a b");
    TYPE_BAD("a\nb");
    TYPE_BAD("a\rb");
    TYPE_BAD("a\0b");
}

static void test_type_reserved_prefix(void **state)
{
    (void)state;
    TYPE_BAD("hsc.");
    TYPE_BAD("hsc.gap");
    TYPE_BAD("hsc.anything-else");
    TYPE_BAD("hsc..");
    TYPE_OK("hsc");
    TYPE_OK("hscx");
    TYPE_OK("hsc-gap");
    TYPE_OK("hsc:gap");
    TYPE_OK("hsc_gap");
    TYPE_OK("xhsc.gap");
    TYPE_OK("a.hsc.gap");
    TYPE_OK("hs.c");
    TYPE_OK("h");
    TYPE_OK("hs");
    /* The prefix is compared byte for byte, as event types are case-sensitive in SSE. */
    TYPE_OK("HSC.gap");
    TYPE_OK("Hsc.gap");
    /* Only `len` bytes count: "hsc" cut from "hsc.gap" is allowed. */
    assert_int_equal(type_valid("hsc.gap", 3), 1);
    assert_int_equal(type_valid("hsc.gap", 4), 0);
}

static void test_type_lengths(void **state)
{
    (void)state;
    char buf[HSC_EVENT_TYPE_MAX + 2];
    memset(buf, 't', sizeof buf);
    assert_int_equal(type_valid(buf, 0), 0);
    assert_int_equal(type_valid(buf, 1), 1);
    assert_int_equal(type_valid(buf, 63), 1);
    assert_int_equal(type_valid(buf, 64), 1);
    assert_int_equal(type_valid(buf, 65), 0);
    assert_int_equal(type_valid(buf, 66), 0);
    assert_int_equal(HSC_EVENT_TYPE_MAX, 64);
    assert_int_equal(hsc_event_type_valid("", 0), 0);
}

/* ---- event ids --------------------------------------------------------------------------- */

/* The reference spelling: base 36 lowercase, '-', decimal. */
static void ref_format(char *out, size_t cap, uint64_t epoch, uint64_t seq)
{
    char tmp[80];
    size_t n = sizeof tmp;
    tmp[--n] = '\0';
    uint64_t v = epoch;
    do {
        tmp[--n] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
        v /= 36;
    } while (v != 0);
    snprintf(out, cap, "%s-%" PRIu64, tmp + n, seq);
}

static void check_round_trip(uint64_t epoch, uint64_t seq)
{
    char *out = malloc(HSC_EVENT_ID_MAX); /* exactly the documented capacity */
    assert_non_null(out);
    memset(out, 'X', HSC_EVENT_ID_MAX);
    size_t n = hsc_event_id_format(out, epoch, seq);
    char want[128];
    ref_format(want, sizeof want, epoch, seq);
    assert_true(n < HSC_EVENT_ID_MAX);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n + 1); /* the spelling and its NUL */
    for (size_t i = n + 1; i < HSC_EVENT_ID_MAX; i++)
        assert_int_equal(out[i], 'X'); /* nothing written past the NUL */
    uint64_t e = 1, s = 1;
    if (parse(out, n, &e, &s) != 0)
        fail_msg("%s does not parse back", want);
    assert_int_equal(e, epoch);
    assert_int_equal(s, seq);
    free(out);
}

static void test_id_format_known(void **state)
{
    (void)state;
    char out[HSC_EVENT_ID_MAX];
    assert_int_equal(hsc_event_id_format(out, 0, 0), 3);
    assert_string_equal(out, "0-0");
    assert_int_equal(hsc_event_id_format(out, 35, 9), 3);
    assert_string_equal(out, "z-9");
    assert_int_equal(hsc_event_id_format(out, 36, 10), 5);
    assert_string_equal(out, "10-10");
    assert_int_equal(hsc_event_id_format(out, 1700000000000ull, 42), 11);
    assert_string_equal(out, "loyw3v28-42");
    assert_int_equal(hsc_event_id_format(out, UINT64_MAX, UINT64_MAX), 34);
    assert_string_equal(out, "3w5e11264sgsf-18446744073709551615");
    assert_true(34 + 1 <= HSC_EVENT_ID_MAX); /* the longest id fits */
}

static void test_id_round_trip(void **state)
{
    (void)state;
    uint64_t vals[400];
    size_t n = 0;
    vals[n++] = 0;
    vals[n++] = UINT64_MAX;
    vals[n++] = UINT64_MAX - 1;
    for (int b = 0; b < 64; b++) {
        uint64_t p = (uint64_t)1 << b;
        vals[n++] = p;
        vals[n++] = p - 1;
        vals[n++] = p + 1;
    }
    for (uint64_t p = 10; p <= UINT64_MAX / 10; p *= 10) {
        vals[n++] = p;
        vals[n++] = p - 1;
    }
    for (uint64_t p = 36; p <= UINT64_MAX / 36; p *= 36) {
        vals[n++] = p;
        vals[n++] = p - 1;
        vals[n++] = p + 35;
    }
    vals[n++] = 1700000000000ull; /* epochs as the server makes them (ms since 1970) */
    vals[n++] = 1732262400123ull;
    vals[n++] = 4102444800000ull;
    assert_true(n <= 400);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            check_round_trip(vals[i], vals[j]);
    /* And a pseudo-random sweep over the whole range and over small numbers. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t e = x, s = x * 0x2545f4914f6cdd1dull;
        check_round_trip(e, s);
        check_round_trip(e >> (i % 64), s >> ((i * 7) % 64));
    }
    for (uint64_t s = 0; s < 2000; s++)
        check_round_trip(s, s);
}

static void test_id_parse_accepts(void **state)
{
    (void)state;
    uint64_t e, s;
    assert_int_equal(parse("0-0", 3, &e, &s), 0);
    assert_int_equal(e, 0);
    assert_int_equal(s, 0);
    assert_int_equal(parse("z-9", 3, &e, &s), 0);
    assert_int_equal(e, 35);
    assert_int_equal(s, 9);
    assert_int_equal(parse("loyw3v28-42", 11, &e, &s), 0);
    assert_int_equal(e, 1700000000000ull);
    assert_int_equal(s, 42);
    const char *max = "3w5e11264sgsf-18446744073709551615";
    assert_int_equal(parse(max, strlen(max), &e, &s), 0);
    assert_true(e == UINT64_MAX);
    assert_true(s == UINT64_MAX);
    /* Only `len` bytes count: a prefix of a longer string is parsed on its own. */
    assert_int_equal(hsc_event_id_parse("12-345", 5, &e, &s), 0);
    assert_int_equal(e, 38);
    assert_int_equal(s, 34);
}

static void test_id_parse_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len; /* 0: strlen */
    } bad[] = {
        {"", 0},
        {"-", 0},
        {"0", 0},
        {"abc", 0},
        {"123", 0},
        /* empty parts */
        {"-1", 0},
        {"1-", 0},
        {"--", 0},
        /* uppercase, in either part */
        {"A-1", 0},
        {"Z-1", 0},
        {"lOyw3v28-42", 0},
        {"loyw3v28-4E", 0},
        /* letters in the decimal seq */
        {"1-a", 0},
        {"1-z", 0},
        {"1-1e3", 0},
        /* leading zeros */
        {"00-0", 0},
        {"01-1", 0},
        {"0a-1", 0},
        {"1-00", 0},
        {"1-01", 0},
        {"1-0000000000000000000001", 0},
        /* overflow */
        {"1-18446744073709551616", 0},
        {"1-18446744073709551620", 0},
        {"1-99999999999999999999", 0},
        {"1-100000000000000000000", 0},
        {"3w5e11264sgsg-1", 0},
        {"3w5e11264sgsz-1", 0},
        {"3w5e11264sgsf0-1", 0},
        {"zzzzzzzzzzzzz-1", 0},
        {"1zzzzzzzzzzzzzzzzzzzz-1", 0},
        /* extra dashes */
        {"1-2-3", 0},
        {"1--2", 0},
        {"-1-2", 0},
        {"1-2-", 0},
        /* spaces and other bytes */
        {" 1-2", 0},
        {"1-2 ", 0},
        {"1 -2", 0},
        {"1- 2", 0},
        {"1-2\n", 0},
        {"1-2\r", 0},
        {"\t1-2", 0},
        {"+1-2", 0},
        {"1-+2", 0},
        {"1_2", 0},
        {"1:2", 0},
        {"0x1-2", 0},
        {"1-0x2", 0},
        {"1.5-2", 0},
        {"1-2.0", 0},
        /* bytes just outside the digit and letter ranges */
        {"/-1", 0},
        {":-1", 0},
        {"`-1", 0},
        {"{-1", 0},
        {"@-1", 0},
        {"[-1", 0},
        {"1-/", 0},
        {"1-:", 0},
        {"\xff-1", 0},
        {"1-\x80", 0},
        /* NUL inside or at the end */
        {"1\0-2", 4},
        {"1-\0"
         "2",
         4},
        {"1-2\0", 4},
        {"\0"
         "1-2",
         4},
        {"1\0"
         "2-3",
         5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].s);
        uint64_t e = 7, s = 7;
        if (parse(bad[i].s, len, &e, &s) != HSC_EINVAL)
            fail_msg("id #%zu (\"%.*s\", %zu bytes) was accepted as %" PRIu64 "-%" PRIu64, i,
                     (int)len, bad[i].s, len, e, s);
    }
}

/* A strict reference parser, written independently: one spelling per id. */
static int ref_parse(const char *s, size_t len, uint64_t *epoch, uint64_t *seq)
{
    size_t dash = 0;
    while (dash < len && s[dash] != '-')
        dash++;
    if (dash == 0 || dash == len || dash + 1 == len)
        return -1;
    uint64_t e = 0, q = 0;
    for (size_t i = 0; i < dash; i++) {
        int c = (unsigned char)s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'z')
            d = c - 'a' + 10;
        else
            return -1;
        if (i == 0 && d == 0 && dash > 1)
            return -1;
        if (e > UINT64_MAX / 36 || e * 36 > UINT64_MAX - (uint64_t)d)
            return -1;
        e = e * 36 + (uint64_t)d;
    }
    for (size_t i = dash + 1; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c < '0' || c > '9')
            return -1;
        if (i == dash + 1 && c == '0' && len - dash - 1 > 1)
            return -1;
        if (q > UINT64_MAX / 10 || q * 10 > UINT64_MAX - (uint64_t)(c - '0'))
            return -1;
        q = q * 10 + (uint64_t)(c - '0');
    }
    *epoch = e;
    *seq = q;
    return 0;
}

static void test_id_parse_exhaustive_short(void **state)
{
    (void)state;
    /* Every string of up to 5 bytes over an alphabet of edge bytes agrees with the reference,
     * and every accepted one is exactly what format writes. */
    static const char alpha[] = {'0', '1', '9', 'a', 'z', 'A', '-', '/', ':', '`', '{', ' ', '\0'};
    const size_t na = sizeof alpha;
    char s[5];
    size_t accepted = 0;
    for (size_t len = 0; len <= 5; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++)
            total *= na;
        for (size_t k = 0; k < total; k++) {
            size_t v = k;
            for (size_t i = 0; i < len; i++) {
                s[i] = alpha[v % na];
                v /= na;
            }
            uint64_t e = 0, q = 0, re = 0, rq = 0;
            int got = hsc_event_id_parse(s, len, &e, &q);
            int want = ref_parse(s, len, &re, &rq);
            if ((got == 0) != (want == 0))
                fail_msg("\"%.*s\" (%zu bytes): parse says %d, reference %d", (int)len, s, len, got,
                         want);
            assert_true(got == 0 || got == HSC_EINVAL);
            if (got == 0) {
                accepted++;
                assert_int_equal(e, re);
                assert_int_equal(q, rq);
                char out[HSC_EVENT_ID_MAX];
                assert_int_equal(hsc_event_id_format(out, e, q), len);
                assert_memory_equal(out, s, len);
            }
        }
    }
    /* The sweep reached every valid id it could: epochs over {0,1,9,a,z} and seqs over {0,1,9}
     * without leading zeros, 4 bytes at most besides the dash: 15 + 30 + 90 + 60 + 120 + 300. */
    assert_int_equal(accepted, 615);
}

static void test_id_parse_long_inputs(void **state)
{
    (void)state;
    /* Long digit runs overflow rather than wrap, whatever their length. */
    char buf[200];
    for (size_t n = 1; n < 150; n++) {
        memcpy(buf, "1-", 2);
        memset(buf + 2, '9', n);
        uint64_t e, s;
        int r = parse(buf, n + 2, &e, &s);
        if (n <= 19) {
            assert_int_equal(r, 0);
            assert_int_equal(e, 1);
        } else {
            assert_int_equal(r, HSC_EINVAL);
        }
        memset(buf, 'z', n);
        memcpy(buf + n, "-1", 2);
        r = parse(buf, n + 2, &e, &s);
        assert_int_equal(r, n <= 12 ? 0 : HSC_EINVAL); /* 36^13 - 1 > 2^64 - 1 */
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_allowed_classes),
        cmocka_unit_test(test_name_every_byte),
        cmocka_unit_test(test_name_disallowed_examples),
        cmocka_unit_test(test_name_lengths),
        cmocka_unit_test(test_type_allowed_classes),
        cmocka_unit_test(test_type_every_byte),
        cmocka_unit_test(test_type_reserved_prefix),
        cmocka_unit_test(test_type_lengths),
        cmocka_unit_test(test_id_format_known),
        cmocka_unit_test(test_id_round_trip),
        cmocka_unit_test(test_id_parse_accepts),
        cmocka_unit_test(test_id_parse_rejects),
        cmocka_unit_test(test_id_parse_exhaustive_short),
        cmocka_unit_test(test_id_parse_long_inputs),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
