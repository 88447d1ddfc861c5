/*
 * Unit tests for src/lib/codec/utf8.c: validation per RFC 3629 (and its Table 3-7 of well-formed
 * byte sequences) and the complete prefix used to cut a byte stream without splitting a character.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hsc/codec.h"

#include <string.h>

#define VALID(lit)   assert_int_equal(hsc_utf8_valid(lit, sizeof(lit) - 1), 1)
#define INVALID(lit) assert_int_equal(hsc_utf8_valid(lit, sizeof(lit) - 1), 0)

/* Encodes a code point (no checks: used to build surrogates and too-large values on purpose). */
static size_t encode_cp(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- hsc_utf8_valid ----------------------------------------------------------------------- */

static void test_valid_empty_and_ascii(void **state)
{
    (void)state;
    assert_int_equal(hsc_utf8_valid("", 0), 1);
    assert_int_equal(hsc_utf8_valid(NULL, 0), 1);
    VALID("hello, world");
    VALID("\x00\x01\x7f");
    VALID("\t\r\n");
}

static void test_valid_multibyte(void **state)
{
    (void)state;
    VALID("\xc2\x80");         /* U+0080, smallest 2-byte */
    VALID("\xc3\xa9");         /* é */
    VALID("\xdf\xbf");         /* U+07FF, largest 2-byte */
    VALID("\xe0\xa0\x80");     /* U+0800, smallest 3-byte */
    VALID("\xe9\x86\x92");     /* 醒 */
    VALID("\xed\x9f\xbf");     /* U+D7FF, just below the surrogates */
    VALID("\xee\x80\x80");     /* U+E000, just above them */
    VALID("\xef\xbf\xbf");     /* U+FFFF */
    VALID("\xf0\x90\x80\x80"); /* U+10000, smallest 4-byte */
    VALID("\xf0\x9f\x98\x80"); /* 😀 */
    VALID("\xf4\x8f\xbf\xbf"); /* U+10FFFF, the last code point */
    VALID("醒醒，Neo 😀 é");
}

static void test_valid_every_code_point(void **state)
{
    (void)state;
    unsigned char buf[4];
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        size_t n = encode_cp(cp, buf);
        int want = !(cp >= 0xd800 && cp <= 0xdfff);
        if (hsc_utf8_valid(buf, n) != want)
            fail_msg("U+%04X: hsc_utf8_valid() returned %d", (unsigned)cp, !want);
    }
}

static void test_invalid_overlongs(void **state)
{
    (void)state;
    INVALID("\xc0\x80");             /* NUL in two bytes */
    INVALID("\xc0\xaf");             /* '/' */
    INVALID("\xc1\xbf");             /* U+007F in two bytes */
    INVALID("\xe0\x80\x80");         /* NUL in three bytes */
    INVALID("\xe0\x80\xaf");         /* '/' in three bytes */
    INVALID("\xe0\x9f\xbf");         /* U+07FF in three bytes */
    INVALID("\xf0\x80\x80\x80");     /* NUL in four bytes */
    INVALID("\xf0\x8f\xbf\xbf");     /* U+FFFF in four bytes */
    INVALID("\xf8\x88\x80\x80\x80"); /* 5-byte forms are gone */
    INVALID("\xfc\x84\x80\x80\x80\x80");
}

static void test_invalid_surrogates(void **state)
{
    (void)state;
    INVALID("\xed\xa0\x80");             /* U+D800 */
    INVALID("\xed\xaf\xbf");             /* U+DBFF */
    INVALID("\xed\xb0\x80");             /* U+DC00 */
    INVALID("\xed\xbf\xbf");             /* U+DFFF */
    INVALID("\xed\xa0\xbd\xed\xb8\x80"); /* a CESU-8 pair */
}

static void test_invalid_above_max(void **state)
{
    (void)state;
    INVALID("\xf4\x90\x80\x80"); /* U+110000 */
    INVALID("\xf4\xbf\xbf\xbf");
    INVALID("\xf5\x80\x80\x80");
    INVALID("\xf7\xbf\xbf\xbf");
}

static void test_invalid_bytes(void **state)
{
    (void)state;
    INVALID("\xff");
    INVALID("\xfe");
    INVALID("a\xffz");
    for (unsigned c = 0xf5; c <= 0xff; c++) {
        unsigned char b[4] = {(unsigned char)c, 0x80, 0x80, 0x80};
        assert_int_equal(hsc_utf8_valid(b, 4), 0);
    }
}

static void test_invalid_lone_continuation(void **state)
{
    (void)state;
    INVALID("\x80");
    INVALID("\xbf");
    INVALID("a\x80");
    INVALID("\xc3\xa9\xa9"); /* one continuation too many */
    INVALID("\xe9\x86\x92\x92");
}

static void test_invalid_bad_continuation(void **state)
{
    (void)state;
    INVALID("\xc3\x41");
    INVALID("\xc3\xc3\xa9");
    INVALID("\xe9\x86\x41");
    INVALID("\xe9\x41\x92");
    INVALID("\xf0\x9f\x98\x41");
    INVALID("\xf0\x9f\x41\x80");
}

static void test_invalid_truncated(void **state)
{
    (void)state;
    INVALID("\xc3");
    INVALID("\xe9");
    INVALID("\xe9\x86");
    INVALID("\xf0");
    INVALID("\xf0\x9f");
    INVALID("\xf0\x9f\x98");
    INVALID("abc\xf0\x9f\x98");
}

static void test_valid_respects_len(void **state)
{
    (void)state;
    /* An invalid byte after `len` is never looked at; a character cut by `len` is invalid. */
    assert_int_equal(hsc_utf8_valid("ab\xff", 2), 1);
    assert_int_equal(hsc_utf8_valid("\xc3\xa9", 1), 0);
}

/* ASCII is checked eight bytes at a time: a bad byte, a character or a cut at every offset of a
 * long ASCII run is found as byte by byte, and nothing past `len` is read. */
static void test_valid_long_ascii_every_offset(void **state)
{
    (void)state;
    char b[40];
    for (size_t at = 0; at < 30; at++) {
        memset(b, 'a', sizeof b);
        b[at] = (char)0xff;
        assert_int_equal(hsc_utf8_valid(b, 30), 0);
        assert_int_equal(hsc_utf8_valid(b, at), 1);
        memset(b, 'a', sizeof b);
        memcpy(b + at, "\xe2\x82\xac", 3); /* U+20AC */
        assert_int_equal(hsc_utf8_valid(b, 33), 1);
        assert_int_equal(hsc_utf8_valid(b, at + 2), 0); /* cut */
        b[at + 1] = 'a';                                /* a bad continuation */
        assert_int_equal(hsc_utf8_valid(b, 33), 0);
    }
}

/* ---- hsc_utf8_complete_prefix ------------------------------------------------------------- */

/* Checks that every cut of `s` (prefix + character) keeps the prefix only, until it is whole. */
static void check_cuts(const char *ch, size_t chlen)
{
    static const char *prefixes[] = {"", "a", "ab", "abc", "abcd", "\xc3\xa9", "\xe9\x86\x92"};
    for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
        char buf[16];
        size_t pl = strlen(prefixes[p]);
        memcpy(buf, prefixes[p], pl);
        memcpy(buf + pl, ch, chlen);
        for (size_t cut = 1; cut < chlen; cut++)
            assert_int_equal(hsc_utf8_complete_prefix(buf, pl + cut), pl);
        assert_int_equal(hsc_utf8_complete_prefix(buf, pl + chlen), pl + chlen);
        assert_int_equal(hsc_utf8_complete_prefix(buf, pl), pl);
    }
}

static void test_prefix_ascii(void **state)
{
    (void)state;
    assert_int_equal(hsc_utf8_complete_prefix("", 0), 0);
    assert_int_equal(hsc_utf8_complete_prefix("a", 1), 1);
    assert_int_equal(hsc_utf8_complete_prefix("hello", 5), 5);
}

static void test_prefix_two_byte_cut(void **state)
{
    (void)state;
    check_cuts("\xc3\xa9", 2);
    check_cuts("\xc2\x80", 2);
}

static void test_prefix_three_byte_cut(void **state)
{
    (void)state;
    check_cuts("\xe9\x86\x92", 3);
    check_cuts("\xe0\xa0\x80", 3);
    check_cuts("\xed\x9f\xbf", 3);
}

static void test_prefix_four_byte_cut(void **state)
{
    (void)state;
    check_cuts("\xf0\x9f\x98\x80", 4);
    check_cuts("\xf0\x90\x80\x80", 4);
    check_cuts("\xf4\x8f\xbf\xbf", 4);
}

static void test_prefix_every_cut_of_text(void **state)
{
    (void)state;
    /* Cutting "醒醒，Neo 😀 é" at every byte: the kept prefix is always valid, and at most three
     * bytes are held back. */
    static const char s[] = "醒醒，Neo 😀 é";
    size_t len = sizeof s - 1;
    for (size_t cut = 0; cut <= len; cut++) {
        size_t k = hsc_utf8_complete_prefix(s, cut);
        assert_true(k <= cut);
        assert_true(cut - k <= 3);
        assert_int_equal(hsc_utf8_valid(s, k), 1);
        /* And nothing more than the cut character is held back: k is a character boundary and
         * the next character does not fit in cut. */
        if (k < cut)
            assert_int_equal(hsc_utf8_valid(s + k, cut - k), 0);
    }
}

static void test_prefix_invalid_tail_is_complete(void **state)
{
    (void)state;
    /* Bytes that can never become valid are not held back: holding them would stall a stream. */
    assert_int_equal(hsc_utf8_complete_prefix("a\xff", 2), 2);
    assert_int_equal(hsc_utf8_complete_prefix("a\x80", 2), 2);
    assert_int_equal(hsc_utf8_complete_prefix("a\xc0", 2), 2);
    assert_int_equal(hsc_utf8_complete_prefix("a\xc1", 2), 2);
    assert_int_equal(hsc_utf8_complete_prefix("a\xf5", 2), 2);
    assert_int_equal(hsc_utf8_complete_prefix("a\xe0\x80", 3), 3);     /* overlong start */
    assert_int_equal(hsc_utf8_complete_prefix("a\xed\xa0", 3), 3);     /* surrogate start */
    assert_int_equal(hsc_utf8_complete_prefix("a\xf4\x90", 3), 3);     /* > U+10FFFF start */
    assert_int_equal(hsc_utf8_complete_prefix("a\xf0\x80\x80", 4), 4); /* overlong start */
    assert_int_equal(hsc_utf8_complete_prefix("a\xe9\x41", 3), 3);     /* bad continuation */
    assert_int_equal(hsc_utf8_complete_prefix("a\xc3\xa9\xa9", 4), 4); /* extra continuation */
    assert_int_equal(hsc_utf8_complete_prefix("\x80\x80\x80", 3), 3);
    assert_int_equal(hsc_utf8_complete_prefix("\x80\x80\x80\x80\x80", 5), 5);
}

static void test_prefix_valid_start_cut_is_held(void **state)
{
    (void)state;
    /* The constrained second bytes at their limits are still valid starts. */
    assert_int_equal(hsc_utf8_complete_prefix("a\xe0\xa0", 3), 1);
    assert_int_equal(hsc_utf8_complete_prefix("a\xed\x9f", 3), 1);
    assert_int_equal(hsc_utf8_complete_prefix("a\xf0\x90", 3), 1);
    assert_int_equal(hsc_utf8_complete_prefix("a\xf4\x8f", 3), 1);
    assert_int_equal(hsc_utf8_complete_prefix("a\xf4\x8f\xbf", 4), 1);
}

/* hsc_utf8_repair(): in → expected out, the examples of the Unicode "substitution of maximal
 * subparts" practice the WHATWG decoder follows. */
#define REPAIRS(in, want)                                                                          \
    do {                                                                                           \
        char out_[3 * sizeof(in)];                                                                 \
        size_t n_ = hsc_utf8_repair(out_, in, sizeof(in) - 1);                                     \
        assert_int_equal(n_, sizeof(want) - 1);                                                    \
        assert_memory_equal(out_, want, n_);                                                       \
    } while (0)
#define R "\xef\xbf\xbd"

static void test_repair_valid_is_unchanged(void **state)
{
    (void)state;
    REPAIRS("", "");
    REPAIRS("plain", "plain");
    REPAIRS("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    REPAIRS("nul\0inside", "nul\0inside");
}

static void test_repair_maximal_subparts(void **state)
{
    (void)state;
    REPAIRS("\x80", R);
    REPAIRS("\xff\xfe", R R);
    REPAIRS("\xc0\xaf", R R);             /* C0 never leads: two bad bytes */
    REPAIRS("\xe0\x80\x80", R R R);       /* overlong: E0 needs A0..BF second */
    REPAIRS("\xed\xa0\x80", R R R);       /* a surrogate */
    REPAIRS("\xf4\x90\x80\x80", R R R R); /* above U+10FFFF */
    REPAIRS("\xe2\x9c"
            "A",
            R "A"); /* one FFFD for a cut 3-byte sequence */
    REPAIRS("\xf0\x9f\x98"
            "A",
            R "A");                                /* and for a cut 4-byte one */
    REPAIRS("\xf0\x9f\x98\xc3\xa9", R "\xc3\xa9"); /* the next lead starts afresh */
    REPAIRS("a\xc3", "a" R);                       /* cut by the end of input */
    REPAIRS("\xe2\x9c\x93\x93", "\xe2\x9c\x93" R);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_empty_and_ascii),
        cmocka_unit_test(test_valid_multibyte),
        cmocka_unit_test(test_valid_every_code_point),
        cmocka_unit_test(test_invalid_overlongs),
        cmocka_unit_test(test_invalid_surrogates),
        cmocka_unit_test(test_invalid_above_max),
        cmocka_unit_test(test_invalid_bytes),
        cmocka_unit_test(test_invalid_lone_continuation),
        cmocka_unit_test(test_invalid_bad_continuation),
        cmocka_unit_test(test_invalid_truncated),
        cmocka_unit_test(test_valid_respects_len),
        cmocka_unit_test(test_valid_long_ascii_every_offset),
        cmocka_unit_test(test_prefix_ascii),
        cmocka_unit_test(test_prefix_two_byte_cut),
        cmocka_unit_test(test_prefix_three_byte_cut),
        cmocka_unit_test(test_prefix_four_byte_cut),
        cmocka_unit_test(test_prefix_every_cut_of_text),
        cmocka_unit_test(test_prefix_invalid_tail_is_complete),
        cmocka_unit_test(test_prefix_valid_start_cut_is_held),
        cmocka_unit_test(test_repair_valid_is_unchanged),
        cmocka_unit_test(test_repair_maximal_subparts),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
