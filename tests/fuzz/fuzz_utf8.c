/*
 * Fuzz target for src/lib/codec/utf8.c: validation and the complete prefix.
 *
 * Properties checked (abort() on a violation):
 *  - hsc_utf8_valid() agrees with the plain reference decoder below (RFC 3629: a code point per
 *    sequence, rejecting overlong forms, surrogates and anything above U+10FFFF);
 *  - k = hsc_utf8_complete_prefix(p, len) satisfies len - 3 <= k <= len, and the held-back tail
 *    p[k..len) is exactly what the reference calls "a proper prefix of some valid sequence" (an
 *    interval test on the code points the tail can still become), or empty when none is;
 *  - for valid text cut at any byte, the complete prefix is valid text, ends on a character
 *    boundary of the original, and the tail is a proper prefix of the character that was cut.
 *
 * Input layout: bytes 0-1 choose where the valid text is cut; the rest is the bytes to check. The
 * valid text is those bytes with every invalid sequence replaced by U+FFFD.
 */
#include "hsc/codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_utf8: %s:%d: property violated: %s\n", __FILE__, __LINE__,       \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Sequence length announced by a lead byte (0 for a continuation or 0xf8..0xff). */
static size_t lead_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c < 0xc0)
        return 0;
    if (c < 0xe0)
        return 2;
    if (c < 0xf0)
        return 3;
    if (c < 0xf8)
        return 4;
    return 0;
}

static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};

static int cp_ok(uint32_t cp, size_t n)
{
    return cp >= min_cp[n] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
}

/* Decodes one sequence at s; returns its length when complete and valid, 0 otherwise. */
static size_t ref_decode_one(const unsigned char *s, size_t avail)
{
    size_t n = lead_len(s[0]);
    if (n == 0 || n > avail)
        return 0;
    uint32_t cp = n == 1 ? s[0] : s[0] & (0x7f >> n);
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    return cp_ok(cp, n) ? n : 0;
}

static int ref_valid(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = ref_decode_one(s + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

/* Whether t bytes are a proper prefix of some valid sequence: a lead announcing more than t
 * bytes, continuations after it, and some valid code point among those the prefix can become. */
static int ref_proper_prefix(const unsigned char *s, size_t t)
{
    size_t n = lead_len(s[0]);
    if (n <= t)
        return 0;
    uint32_t lo = s[0] & (0x7f >> n);
    for (size_t k = 1; k < t; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        lo = lo << 6 | (s[k] & 0x3f);
    }
    uint32_t hi = lo;
    for (size_t k = t; k < n; k++) {
        lo = lo << 6;
        hi = hi << 6 | 0x3f;
    }
    /* The completions are exactly [lo, hi]; intersect with the valid code points for n bytes. */
    uint32_t a = lo > min_cp[n] ? lo : min_cp[n];
    uint32_t b = hi < 0x10ffff ? hi : 0x10ffff;
    if (a > b)
        return 0;
    return !(a >= 0xd800 && b <= 0xdfff);
}

static size_t ref_complete_prefix(const unsigned char *s, size_t len)
{
    for (size_t t = 1; t <= 3 && t <= len; t++)
        if (ref_proper_prefix(s + len - t, t))
            return len - t;
    return len;
}

static void check_prefix(const unsigned char *s, size_t len)
{
    size_t k = hsc_utf8_complete_prefix(s, len);
    CHECK(k <= len);
    CHECK(k + 3 >= len);
    CHECK(k == ref_complete_prefix(s, len));
    if (k < len)
        CHECK(ref_proper_prefix(s + k, len - k));
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 2)
        return 0;
    size_t cut_seed = (size_t)in[0] << 8 | in[1];
    size_t len = size - 2;
    /* Exact-size copies, so a read one byte too far is caught. */
    unsigned char *s = malloc(len ? len : 1);
    CHECK(s != NULL);
    memcpy(s, in + 2, len);

    int valid = hsc_utf8_valid(s, len);
    CHECK(valid == 0 || valid == 1);
    CHECK(valid == ref_valid(s, len));
    check_prefix(s, len);

    /* Valid text: each invalid byte replaced by U+FFFD (at most three bytes for one). */
    unsigned char *text = malloc(3 * len + 1);
    CHECK(text != NULL);
    size_t tlen = 0;
    for (size_t i = 0; i < len;) {
        size_t n = ref_decode_one(s + i, len - i);
        if (n == 0) {
            memcpy(text + tlen, "\xef\xbf\xbd", 3);
            tlen += 3;
            i++;
        } else {
            memcpy(text + tlen, s + i, n);
            tlen += n;
            i += n;
        }
    }
    CHECK(hsc_utf8_valid(text, tlen) == 1);
    CHECK(hsc_utf8_complete_prefix(text, tlen) == tlen);

    size_t cut = cut_seed % (tlen + 1);
    unsigned char *piece = malloc(cut ? cut : 1);
    CHECK(piece != NULL);
    memcpy(piece, text, cut);
    size_t k = hsc_utf8_complete_prefix(piece, cut);
    CHECK(k <= cut && k + 3 >= cut);
    CHECK(hsc_utf8_valid(piece, k) == 1);
    /* k is a character boundary of the whole text: a complete character starts there, or the end.
     */
    CHECK(k == tlen || ref_decode_one(text + k, tlen - k) > 0);
    if (k < cut) {
        size_t whole = ref_decode_one(text + k, tlen - k);
        CHECK(whole > cut - k); /* the tail is a proper prefix of the character that was cut */
        CHECK(ref_proper_prefix(piece + k, cut - k));
    } else {
        /* Nothing held back: the cut fell on a boundary. */
        CHECK(cut == tlen || ref_decode_one(text + cut, tlen - cut) > 0);
    }
    check_prefix(piece, cut);

    free(piece);
    free(text);
    free(s);
    return 0;
}
