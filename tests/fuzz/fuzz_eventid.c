/*
 * Fuzz target for src/lib/codec/eventid.c: channel names, event types and event ids.
 *
 * Properties checked (abort() on a violation), on an exact-size heap copy of the input (so a
 * read past `len` is caught):
 *  - hsc_event_id_parse() returns 0 or HSC_EINVAL and agrees with the strict reference parser
 *    below on acceptance and on both values;
 *  - whenever it accepts, hsc_event_id_format() of the values reproduces exactly the input bytes
 *    (an id has one spelling), within HSC_EVENT_ID_MAX bytes with its NUL;
 *  - the first 16 bytes read as two 64-bit numbers (epoch, seq) format to the reference spelling,
 *    without writing past the NUL in a block of exactly HSC_EVENT_ID_MAX bytes, and parse back
 *    to the same numbers; so do the numbers shifted right by the next byte's bits;
 *  - hsc_channel_name_valid() and hsc_event_type_valid() agree with reference checks of the
 *    documented alphabets and lengths, on the whole input and on each of its prefixes up to 130
 *    bytes.
 *
 * Input layout: the whole input is the string the parser and validators see; its first 17 bytes
 * also give the numbers for the format round trip (zero-padded when shorter).
 */
#include "hsc/codec.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_eventid: %s:%d: property violated: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int ref_alnum(unsigned c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* 1..128 bytes of A-Z a-z 0-9 and "-_.:@/". */
static int ref_name(const unsigned char *p, size_t len)
{
    if (len < 1 || len > 128)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned c = p[i];
        if (!(ref_alnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '@' || c == '/'))
            return 0;
    }
    return 1;
}

/* 1..64 bytes of A-Z a-z 0-9 and "-_.:", not starting with "hsc.". */
static int ref_type(const unsigned char *p, size_t len)
{
    if (len < 1 || len > 64)
        return 0;
    if (len >= 4 && p[0] == 'h' && p[1] == 's' && p[2] == 'c' && p[3] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned c = p[i];
        if (!(ref_alnum(c) || c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

/* "EPOCH-SEQ": lowercase base 36, '-', decimal; no empty part, no leading zero, no overflow. */
static int ref_parse(const unsigned char *s, size_t len, uint64_t *epoch, uint64_t *seq)
{
    size_t dash = 0;
    while (dash < len && s[dash] != '-')
        dash++;
    if (dash == 0 || dash + 1 >= len)
        return -1;
    uint64_t e = 0, q = 0;
    for (size_t i = 0; i < dash; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'z')
            d = c - 'a' + 10;
        else
            return -1;
        if (i == 0 && d == 0 && dash > 1)
            return -1;
        if (e > (UINT64_MAX - d) / 36)
            return -1;
        e = e * 36 + d;
    }
    for (size_t i = dash + 1; i < len; i++) {
        unsigned c = s[i];
        if (c < '0' || c > '9')
            return -1;
        if (i == dash + 1 && c == '0' && len - dash - 1 > 1)
            return -1;
        if (q > (UINT64_MAX - (c - '0')) / 10)
            return -1;
        q = q * 10 + (c - '0');
    }
    *epoch = e;
    *seq = q;
    return 0;
}

static void ref_format(char *out, size_t cap, uint64_t epoch, uint64_t seq)
{
    char tmp[32];
    size_t n = sizeof tmp;
    tmp[--n] = '\0';
    do {
        tmp[--n] = "0123456789abcdefghijklmnopqrstuvwxyz"[epoch % 36];
        epoch /= 36;
    } while (epoch != 0);
    snprintf(out, cap, "%s-%" PRIu64, tmp + n, seq);
}

static void check_format(uint64_t epoch, uint64_t seq)
{
    char *out = malloc(HSC_EVENT_ID_MAX); /* exactly the documented capacity */
    CHECK(out != NULL);
    memset(out, 0x7e, HSC_EVENT_ID_MAX);
    size_t n = hsc_event_id_format(out, epoch, seq);
    CHECK(n < HSC_EVENT_ID_MAX);
    char want[64];
    ref_format(want, sizeof want, epoch, seq);
    CHECK(n == strlen(want));
    CHECK(memcmp(out, want, n + 1) == 0);
    for (size_t i = n + 1; i < HSC_EVENT_ID_MAX; i++)
        CHECK(out[i] == 0x7e);
    /* Parse back from an exact-size copy without the NUL. */
    char *copy = malloc(n);
    CHECK(copy != NULL);
    memcpy(copy, out, n);
    uint64_t e = ~epoch, s = ~seq;
    CHECK(hsc_event_id_parse(copy, n, &e, &s) == 0);
    CHECK(e == epoch && s == seq);
    free(copy);
    free(out);
}

static void check_parse(const unsigned char *s, size_t len)
{
    uint64_t e = 0, q = 0, re = 0, rq = 0;
    int got = hsc_event_id_parse((const char *)s, len, &e, &q);
    int want = ref_parse(s, len, &re, &rq);
    CHECK(got == 0 || got == HSC_EINVAL);
    CHECK((got == 0) == (want == 0));
    if (got != 0)
        return;
    CHECK(e == re && q == rq);
    char out[HSC_EVENT_ID_MAX];
    size_t n = hsc_event_id_format(out, e, q);
    CHECK(n == len); /* one spelling per id: the input is exactly what format writes */
    CHECK(memcmp(out, s, len) == 0);
}

static uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    /* An exact-size copy: a read one byte too far is caught. */
    unsigned char *s = malloc(size ? size : 1);
    CHECK(s != NULL);
    if (size > 0)
        memcpy(s, in, size);

    check_parse(s, size);

    CHECK(hsc_channel_name_valid((const char *)s, size) == ref_name(s, size));
    CHECK(hsc_event_type_valid((const char *)s, size) == ref_type(s, size));
    for (size_t n = 0; n <= size && n <= 130; n++) {
        CHECK(hsc_channel_name_valid((const char *)s, n) == ref_name(s, n));
        CHECK(hsc_event_type_valid((const char *)s, n) == ref_type(s, n));
    }

    uint8_t raw[17] = {0};
    memcpy(raw, in, size < sizeof raw ? size : sizeof raw);
    uint64_t epoch = load64(raw), seq = load64(raw + 8);
    check_format(epoch, seq);
    check_format(epoch >> (raw[16] & 63), seq >> (raw[16] >> 2 & 63));

    free(s);
    return 0;
}
