/*
 * Fuzz target for src/lib/core/buf.c: bounded byte buffers.
 *
 * Properties checked (abort() on a violation), over a random sequence of operations checked
 * against a plain model (an array of `max` bytes):
 *  - append succeeds exactly when the bytes fit under the ceiling, then the contents are the
 *    model's; a refused append (HSC_ETOOBIG) leaves length and contents unchanged;
 *  - reserve succeeds exactly when len + extra <= max (without wrapping for huge `extra`), and
 * afterwards len <= cap <= max and `extra` more bytes can be written (AddressSanitizer checks the
 * storage really is that big);
 *  - consume drops exactly the first n bytes (all of them when n >= len);
 *  - len never exceeds max, and dispose releases everything (LeakSanitizer checks).
 *
 * Input layout: bytes 0-1: the ceiling (0..4095); then operations of three bytes: an opcode
 * (append, reserve, consume, or a reserve or append of nearly SIZE_MAX bytes that must be refused)
 * and a count (0..8191); appended bytes are taken from the input, cycling over it.
 */
#include "core/core.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_buf: %s:%d: property violated: %s\n", __FILE__, __LINE__,        \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_CEILING 4095 /* small enough to compare whole contents after every operation */
#define MAX_COUNT   8191 /* counts go past the ceiling */

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = ((size_t)in[0] << 8 | in[1]) & MAX_CEILING;
    unsigned char *model = malloc(max ? max : 1);
    unsigned char *src = malloc(MAX_COUNT + 256);
    CHECK(model != NULL && src != NULL);
    for (size_t i = 0; i < MAX_COUNT + 256; i++)
        src[i] = in[i % size];
    size_t mlen = 0;

    hsc_buf_t b;
    hsc_buf_init(&b, max);
    CHECK(b.len == 0 && b.max == max);
    for (size_t i = 2; i + 3 <= size; i += 3) {
        unsigned op = in[i] % 6;
        size_t n = ((size_t)in[i + 1] << 8 | in[i + 2]) & MAX_COUNT;
        const unsigned char *bytes = src + (i % 256);
        switch (op) {
        case 0:
        case 1: { /* append, the most frequent */
            int rc = hsc_buf_append(&b, bytes, n);
            if (mlen + n <= max) {
                CHECK(rc == 0);
                if (n > 0)
                    memcpy(model + mlen, bytes, n);
                mlen += n;
            } else {
                CHECK(rc == HSC_ETOOBIG);
            }
            break;
        }
        case 2: { /* reserve, then write into the room it made */
            int rc = hsc_buf_reserve(&b, n);
            if (mlen + n <= max) {
                CHECK(rc == 0);
                CHECK(b.cap >= b.len + n && b.cap <= max);
                if (n > 0)
                    memset(b.data + b.len, 0xa5, n);
            } else {
                CHECK(rc == HSC_ETOOBIG);
            }
            break;
        }
        case 3: /* consume */
            hsc_buf_consume(&b, n);
            if (n >= mlen) {
                mlen = 0;
            } else {
                memmove(model, model + n, mlen - n);
                mlen -= n;
            }
            break;
        case 4: /* a size near SIZE_MAX must not wrap around the ceiling check */
            CHECK(hsc_buf_reserve(&b, SIZE_MAX - n) == HSC_ETOOBIG);
            break;
        case 5: /* refused before a byte is read: the source is much shorter than claimed */
            CHECK(hsc_buf_append(&b, bytes, SIZE_MAX - n) == HSC_ETOOBIG);
            break;
        }
        CHECK(b.len == mlen && b.len <= b.max && b.max == max);
        CHECK(b.len <= b.cap);
        if (mlen > 0)
            CHECK(memcmp(b.data, model, mlen) == 0);
    }
    hsc_buf_dispose(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    free(src);
    free(model);
    return 0;
}
