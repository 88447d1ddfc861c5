/*
 * Fuzz target for src/lib/codec/parse.c: durations and sizes as written on a command line.
 *
 * Properties checked (abort() on a violation), on a NUL-terminated copy of the input:
 *  - neither parser crashes, reads past the NUL, or writes its result when it fails;
 *  - an accepted duration has the documented shape (digits with at most one '.', then nothing,
 *    "ms", "s", "m", "min" or "h", any case), is at most 1e15 ms, and re-parses to the same value
 *    written as "<ms>ms" and, when whole, as "<s>s", "<s>" and "<min>m";
 *  - a duration made of 1 to 15 digits and a unit is accepted with exactly digits × unit;
 *  - hsc_parse_size() agrees exactly with the reference below: digits, then nothing, "b", or
 *    k/m/g optionally followed by "b" or "ib" (any case), accepted iff the value fits in 64 bits;
 *    an accepted size re-parses to itself as "<bytes>" and, when a multiple, as "<n>k", "<n>MiB".
 */
#include "hsc/codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_parse: %s:%d: property violated: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define UNTOUCHED 0x5a5a5a5a5a5a5a5aull

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static uint64_t reparse_duration(const char *fmt, unsigned long long v)
{
    char buf[64];
    snprintf(buf, sizeof buf, fmt, v);
    uint64_t ms = UNTOUCHED;
    CHECK(hsc_parse_duration(buf, &ms) == 0);
    return ms;
}

static void check_duration(const char *s)
{
    uint64_t ms = UNTOUCHED;
    int rc = hsc_parse_duration(s, &ms);
    CHECK(rc == 0 || rc == HSC_EINVAL);

    /* The shape, and for integers the exact value. */
    size_t i = 0, digits = 0, dots = 0;
    unsigned long long whole = 0;
    for (; is_digit(s[i]) || s[i] == '.'; i++) {
        if (s[i] == '.') {
            dots++;
        } else {
            digits++;
            if (whole <= 100000000000000000ull)
                whole = whole * 10 + (unsigned long long)(s[i] - '0');
        }
    }
    const char *unit = s + i;
    unsigned long long mult = 0;
    if (*unit == '\0' || strcasecmp(unit, "s") == 0)
        mult = 1000;
    else if (strcasecmp(unit, "ms") == 0)
        mult = 1;
    else if (strcasecmp(unit, "m") == 0 || strcasecmp(unit, "min") == 0)
        mult = 60000;
    else if (strcasecmp(unit, "h") == 0)
        mult = 3600000;
    int shape = digits > 0 && dots <= 1 && mult != 0;

    if (rc != 0) {
        CHECK(ms == UNTOUCHED);
        /* Integers of up to 15 digits within 1e15 ms must be accepted. */
        CHECK(!(shape && dots == 0 && digits <= 15 && whole <= 1000000000000000ull / mult));
        return;
    }
    CHECK(shape);
    CHECK(ms <= 1000000000000000ull);
    if (dots == 0 && digits <= 15)
        CHECK(ms == whole * mult);

    CHECK(reparse_duration("%llums", ms) == ms);
    CHECK(reparse_duration("%lluMS", ms) == ms);
    if (ms % 1000 == 0) {
        CHECK(reparse_duration("%llus", ms / 1000) == ms);
        CHECK(reparse_duration("%llu", ms / 1000) == ms);
    }
    if (ms % 60000 == 0)
        CHECK(reparse_duration("%llum", ms / 60000) == ms);
    if (ms % 3600000 == 0)
        CHECK(reparse_duration("%lluh", ms / 3600000) == ms);
}

/* The reference size parser. Returns 1 and sets *out when `s` is a valid size. */
static int ref_size(const char *s, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    int overflow = 0;
    for (; is_digit(s[i]); i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = 1;
        v = v * 10 + d;
    }
    if (i == 0 || overflow)
        return 0;
    const char *u = s + i;
    unsigned shift = 0;
    if (*u == '\0' || strcasecmp(u, "b") == 0) {
        shift = 0;
    } else {
        switch (*u) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            return 0;
        }
        u++;
        if (!(*u == '\0' || strcasecmp(u, "b") == 0 || strcasecmp(u, "ib") == 0))
            return 0;
        if (v > UINT64_MAX >> shift)
            return 0;
    }
    *out = v << shift;
    return 1;
}

static uint64_t reparse_size(const char *fmt, unsigned long long v)
{
    char buf[64];
    snprintf(buf, sizeof buf, fmt, v);
    uint64_t bytes = UNTOUCHED;
    CHECK(hsc_parse_size(buf, &bytes) == 0);
    return bytes;
}

static void check_size(const char *s)
{
    uint64_t bytes = UNTOUCHED, want = 0;
    int rc = hsc_parse_size(s, &bytes);
    CHECK(rc == 0 || rc == HSC_EINVAL);
    int ok = ref_size(s, &want);
    CHECK(ok == (rc == 0));
    if (rc != 0) {
        CHECK(bytes == UNTOUCHED);
        return;
    }
    CHECK(bytes == want);
    CHECK(reparse_size("%llu", bytes) == bytes);
    CHECK(reparse_size("%llub", bytes) == bytes);
    if (bytes % 1024 == 0)
        CHECK(reparse_size("%lluk", bytes / 1024) == bytes);
    if (bytes % (1024 * 1024) == 0)
        CHECK(reparse_size("%lluMiB", bytes / (1024 * 1024)) == bytes);
    if (bytes % (1024 * 1024 * 1024) == 0)
        CHECK(reparse_size("%llugb", bytes / (1024 * 1024 * 1024)) == bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    /* An exact-size NUL-terminated copy: reading past the NUL is caught. */
    char *s = malloc(size + 1);
    CHECK(s != NULL);
    memcpy(s, in, size);
    s[size] = '\0';
    check_duration(s);
    check_size(s);
    free(s);
    return 0;
}
