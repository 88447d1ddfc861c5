/*
 * Fuzz target for src/lib/codec/chunked.c, the chunked transfer coding encoder.
 *
 * Properties checked (abort() on a violation):
 *  - hsc_chunked_header(out, len) for any non-zero size writes at most HSC_CHUNK_HEADER_MAX bytes
 *    (into a heap block of exactly that size): lower-case hex digits without a leading zero that
 *    read back as `len`, then CRLF;
 *  - hsc_chunked_encode() of the data, read back by the small chunk parser below (RFC 9112 §7.1),
 *    is exactly one chunk holding the data; 0 bytes encode to nothing;
 *  - with a capacity too small (a heap block of exactly `cap` bytes) it returns the full length
 *    and writes nothing at all, as its contract says.
 *
 * Input layout: bytes 0-7: the size given to hsc_chunked_header(), bytes 8-9 choose the small
 * capacity, the rest is the chunk's data.
 */
#include "hsc/codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_chunked: %s:%d: property violated: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Reads a size line "<hex>\r\n" at p; returns its length (0 if malformed), the size in *size. */
static size_t read_size_line(const char *p, size_t avail, uint64_t *size)
{
    size_t i = 0;
    uint64_t v = 0;
    for (; i < avail && i < 16; i++) {
        char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            break;
        v = v << 4 | d;
    }
    if (i == 0 || (i > 1 && p[0] == '0'))
        return 0;
    if (avail - i < 2 || p[i] != '\r' || p[i + 1] != '\n')
        return 0;
    *size = v;
    return i + 2;
}

static void check_header(uint64_t len)
{
    if (len == 0)
        return; /* a zero-size chunk ends the body: not the header's job */
    char *out = malloc(HSC_CHUNK_HEADER_MAX);
    CHECK(out != NULL);
    size_t n = hsc_chunked_header(out, (size_t)len);
    CHECK(n >= 3 && n <= HSC_CHUNK_HEADER_MAX);
    uint64_t v = 0;
    CHECK(read_size_line(out, n, &v) == n);
    CHECK(v == len);
    free(out);
}

static void check_encode(const char *data, size_t len, unsigned cap_seed)
{
    char one;
    size_t total = hsc_chunked_encode(&one, 0, data, len);
    if (len == 0) {
        CHECK(total == 0);
        return;
    }
    CHECK(total > len + 4 && total <= len + HSC_CHUNK_HEADER_MAX + 2);
    char *wire = malloc(total);
    CHECK(wire != NULL);
    CHECK(hsc_chunked_encode(wire, total, data, len) == total);

    uint64_t size = 0;
    size_t hl = read_size_line(wire, total, &size);
    CHECK(hl > 0 && size == len);
    CHECK(hl + len + 2 == total);
    CHECK(memcmp(wire + hl, data, len) == 0);
    CHECK(wire[total - 2] == '\r' && wire[total - 1] == '\n');

    size_t cap = cap_seed % total;
    char *small = malloc(cap ? cap : 1);
    CHECK(small != NULL);
    memset(small, 0x5a, cap);
    CHECK(hsc_chunked_encode(small, cap, data, len) == total);
    for (size_t i = 0; i < cap; i++)
        CHECK((unsigned char)small[i] == 0x5a);
    free(small);
    free(wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 10)
        return 0;
    uint64_t hlen;
    memcpy(&hlen, in, sizeof hlen);
    unsigned cap_seed = (unsigned)in[8] << 8 | in[9];
    size_t len = size - 10;
    /* An exact-size copy: a read one byte too far is caught. */
    char *data = malloc(len ? len : 1);
    CHECK(data != NULL);
    memcpy(data, in + 10, len);

    check_header(hlen);
    check_header(len);
    check_encode(data, len, cap_seed);

    free(data);
    return 0;
}
