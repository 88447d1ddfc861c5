/*
 * Fuzz target for src/lib/codec/url.c: percent-decoding and query strings.
 *
 * Properties checked (abort() on a violation):
 *  - hsc_url_decode() writes at most `len` bytes (the output is a heap block of exactly `len`
 *    bytes), returns a length <= `len` or HSC_EINVAL, and agrees with the reference decoder below
 *    on both the result and the bytes;
 *  - decoding in place gives the same result as decoding out of place;
 *  - any input, percent-encoded byte by byte (every '%', every '+' when '+' means a space, and
 *    the other bytes as the input chooses) with upper or lower case hex, decodes back to itself;
 *  - hsc_query_next() iterates over spans inside the input: the skipped bytes between pairs are
 *    all '&', each pair is key ["=" value] with no '&' inside, and together they tile the input
 *    exactly; the position only moves forward and ends at the input's length;
 *  - hsc_query_get() with every small capacity (heap blocks of exactly `cap` bytes) never writes
 *    past `cap`, NUL-terminates what it returns, and agrees with a reference lookup: the first
 *    pair whose decoded key equals the name, HSC_ETOOBIG when the value and its NUL do not fit,
 *    HSC_EINVAL (or HSC_ETOOBIG, whichever the decoder reaches first) for a bad escape.
 *
 * Input layout: byte 0 holds flags (bit 0: '+' means a space, bit 1: lower-case hex when
 * re-encoding), byte 1 chooses which pair's key to look up, the rest is the string itself. The
 * string's bits also choose which plain bytes the re-encoding escapes.
 */
#include "hsc/codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_url: %s:%d: property violated: %s\n", __FILE__, __LINE__,        \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* hsc_query_get() skips keys longer than its 256-byte key buffer: a documented-in-code limit the
 * reference mirrors. */
#define KEY_MAX 256

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1); /* a one-byte block still traps a write when n is 0 */
    CHECK(p != NULL);
    return p;
}

/* The reference: RFC 3986 percent-decoding, strict about escapes. Returns the length or -1. */
static long ref_decode(unsigned char *out, const unsigned char *in, size_t len, int plus)
{
    static const char hex[] = "0123456789abcdef0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%') {
            if (len - i < 3)
                return -1;
            const char *hi = in[i + 1] ? memchr(hex, in[i + 1], 32) : NULL;
            const char *lo = in[i + 2] ? memchr(hex, in[i + 2], 32) : NULL;
            if (hi == NULL || lo == NULL)
                return -1;
            out[o++] = (unsigned char)(((hi - hex) % 16) * 16 + (lo - hex) % 16);
            i += 2;
        } else {
            out[o++] = plus && in[i] == '+' ? ' ' : in[i];
        }
    }
    return (long)o;
}

static void check_decode(const uint8_t *s, size_t len, int plus, int lower)
{
    char *out = xmalloc(len);
    ssize_t n = hsc_url_decode(out, (const char *)s, len, plus);
    CHECK(n == HSC_EINVAL || (n >= 0 && (size_t)n <= len));

    unsigned char *ref = xmalloc(len);
    long rn = ref_decode(ref, s, len, plus);
    CHECK(rn < 0 ? n == HSC_EINVAL : n == rn);
    if (n >= 0)
        CHECK(memcmp(out, ref, (size_t)n) == 0);

    char *inplace = xmalloc(len);
    memcpy(inplace, s, len);
    ssize_t m = hsc_url_decode(inplace, inplace, len, plus);
    CHECK(m == n);
    if (n >= 0)
        CHECK(memcmp(inplace, out, (size_t)n) == 0);

    /* Re-encode the raw input (escape what must be, and some more) and decode it back. */
    const char *digits = lower ? "0123456789abcdef" : "0123456789ABCDEF";
    char *enc = xmalloc(3 * len);
    size_t e = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        int must = c == '%' || (plus && c == '+');
        int chosen = (s[(i * 7 + 3) % len] >> (i % 8)) & 1;
        if (must || chosen) {
            enc[e++] = '%';
            enc[e++] = digits[c >> 4];
            enc[e++] = digits[c & 15];
        } else {
            enc[e++] = (char)c;
        }
    }
    char *back = xmalloc(e);
    ssize_t b = hsc_url_decode(back, enc, e, plus);
    CHECK(b >= 0 && (size_t)b == len);
    CHECK(memcmp(back, s, len) == 0);

    free(back);
    free(enc);
    free(inplace);
    free(ref);
    free(out);
}

/* Walks the pairs and checks they tile the string. Returns the number of pairs. */
static size_t check_query_next(const char *q, size_t qlen)
{
    size_t pos = 0, cursor = 0, pairs = 0;
    hsc_span_t k, v;
    for (;;) {
        size_t before = pos;
        int more = hsc_query_next(q, qlen, &pos, &k, &v);
        CHECK(more == 0 || more == 1);
        CHECK(pos >= before && pos <= qlen);
        if (!more)
            break;
        CHECK(pairs++ <= qlen);
        CHECK(k.p >= q + cursor && k.p <= q + qlen);
        size_t start = (size_t)(k.p - q);
        for (size_t i = cursor; i < start; i++)
            CHECK(q[i] == '&');
        CHECK(k.len <= qlen - start);
        CHECK(memchr(k.p, '=', k.len) == NULL && memchr(k.p, '&', k.len) == NULL);
        size_t after_key = start + k.len, end;
        if (after_key < qlen && q[after_key] == '=') {
            CHECK(v.p == q + after_key + 1);
            CHECK(v.len <= qlen - after_key - 1);
            CHECK(memchr(v.p, '&', v.len) == NULL);
            end = after_key + 1 + v.len;
        } else {
            CHECK(v.p == q + after_key && v.len == 0);
            end = after_key;
        }
        CHECK(end > start); /* empty pairs are skipped */
        CHECK(end == qlen || q[end] == '&');
        CHECK(pos == end);
        cursor = end;
    }
    for (size_t i = cursor; i < qlen; i++)
        CHECK(q[i] == '&');
    CHECK(pos == qlen);
    return pairs;
}

/* The reference lookup: fills *val with the raw value span of the first pair whose key decodes
 * to `name`. Returns 1 when found. */
static int ref_find(const char *q, size_t qlen, const char *name, hsc_span_t *val)
{
    size_t pos = 0, nlen = strlen(name);
    hsc_span_t k, v;
    unsigned char key[KEY_MAX];
    while (hsc_query_next(q, qlen, &pos, &k, &v)) {
        if (k.len > KEY_MAX)
            continue;
        long kl = ref_decode(key, (const unsigned char *)k.p, k.len, 1);
        if (kl >= 0 && (size_t)kl == nlen && memcmp(key, name, nlen) == 0) {
            *val = v;
            return 1;
        }
    }
    return 0;
}

static void check_query_get(const char *q, size_t qlen, size_t pairs, unsigned which)
{
    /* The name: the decoded key of one pair, or a name that is probably absent. */
    char name[KEY_MAX + 1] = "q";
    if (pairs > 0 && which % 8 != 7) {
        size_t pos = 0, target = which % pairs;
        hsc_span_t k, v;
        for (size_t i = 0; i <= target; i++)
            CHECK(hsc_query_next(q, qlen, &pos, &k, &v) == 1);
        if (k.len <= KEY_MAX) {
            long kl = ref_decode((unsigned char *)name, (const unsigned char *)k.p, k.len, 1);
            if (kl >= 0 && memchr(name, '\0', (size_t)kl) == NULL)
                name[kl] = '\0';
            else
                strcpy(name, "q");
        }
    }

    hsc_span_t v;
    int found = ref_find(q, qlen, name, &v);
    unsigned char *want = NULL;
    long want_len = -1;
    if (found) {
        want = xmalloc(v.len);
        want_len = ref_decode(want, (const unsigned char *)v.p, v.len, 1);
    }
    size_t max_cap = want_len >= 0 ? (size_t)want_len + 3 : 8;
    if (max_cap > 72)
        max_cap = 72;
    for (size_t cap = 0; cap <= max_cap; cap++) {
        char *out = xmalloc(cap);
        ssize_t n = hsc_query_get(q, qlen, name, out, cap);
        if (!found) {
            CHECK(n == HSC_ENOTFOUND);
        } else if (want_len < 0) {
            CHECK(n == HSC_EINVAL || n == HSC_ETOOBIG);
        } else if ((size_t)want_len + 1 > cap) {
            CHECK(n == HSC_ETOOBIG);
        } else {
            CHECK(n == want_len);
            CHECK(memcmp(out, want, (size_t)n) == 0 && out[n] == '\0');
        }
        free(out);
    }
    /* A large buffer gives the whole answer. */
    if (found && want_len >= 0) {
        char *out = xmalloc((size_t)want_len + 1);
        CHECK(hsc_query_get(q, qlen, name, out, (size_t)want_len + 1) == want_len);
        free(out);
    }
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 2)
        return 0;
    int plus = in[0] & 1, lower = (in[0] >> 1) & 1;
    unsigned which = in[1];
    size_t len = size - 2;
    /* An exact-size copy: a read one byte too far is caught. */
    char *s = xmalloc(len);
    memcpy(s, in + 2, len);

    check_decode((const uint8_t *)s, len, plus, lower);
    size_t pairs = check_query_next(s, len);
    check_query_get(s, len, pairs, which);

    free(s);
    return 0;
}
