/*
 * Fuzz target for src/lib/pubsub/jrecord.c: the journal's record reader, as replay drives it.
 *
 * Properties checked (abort() on a violation), on an exact-size heap copy of the input (so a
 * read past it is caught):
 *  - hsc_jseg_check() on the input's start returns one of its statuses;
 *  - walking the input as replay does (decode; on OK skip the record, otherwise move one byte on)
 *    never reads outside it; every OK record lies inside the input, its fields inside the record;
 *  - an OK record re-encoded gives back exactly the bytes it was read from (one spelling), and
 *    decodes again to the same fields;
 *  - a record encoded from the input's bytes (kind, lengths and numbers taken from the first
 *    bytes) decodes to what was encoded.
 */
#include "pubsub/jrecord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_jrecord: %s:%d: property violated: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_record(const unsigned char *at, size_t used, const hsc_jrec_t *r)
{
    CHECK(used >= HSC_JREC_PREFIX_LEN + HSC_JREC_HEAD_LEN);
    const char *lo = (const char *)at, *hi = (const char *)at + used;
    CHECK(r->chan >= lo && r->chan + r->chan_len <= hi);
    CHECK(r->type == NULL || (r->type >= lo && r->type + r->type_len <= hi));
    CHECK(r->data >= lo && r->data + r->data_len <= hi);
    CHECK(hsc_jrec_size(r) == used);
    unsigned char *again = malloc(used);
    CHECK(again != NULL);
    CHECK(hsc_jrec_encode(again, r, 1) == used);
    CHECK(memcmp(again, at, used) == 0);
    hsc_jrec_t r2;
    size_t used2;
    CHECK(hsc_jrec_decode(again, used, &r2, &used2) == HSC_JREC_OK);
    CHECK(used2 == used && r2.kind == r->kind && r2.seq == r->seq && r2.time_ms == r->time_ms);
    free(again);
}

static void encode_from(const uint8_t *in, size_t size)
{
    if (size < 20)
        return;
    hsc_jrec_t r = {0};
    r.kind = HSC_JREC_EVENT + in[0] % 5;
    memcpy(&r.seq, in + 1, 8);
    memcpy(&r.time_ms, in + 9, 8);
    size_t rest = size - 20;
    const char *p = (const char *)in + 20;
    r.chan_len = r.kind == HSC_JREC_FREED || r.kind == HSC_JREC_LOST ? 0 : 1 + in[17] % 128;
    r.type_len = r.kind == HSC_JREC_EVENT ? in[18] % 65 : 0;
    if (r.chan_len + r.type_len > rest)
        return;
    r.chan = p;
    r.type = r.type_len ? p + r.chan_len : NULL;
    r.data = p + r.chan_len + r.type_len;
    r.data_len = rest - r.chan_len - r.type_len;
    size_t n = hsc_jrec_size(&r);
    unsigned char *buf = malloc(n);
    CHECK(buf != NULL);
    CHECK(hsc_jrec_encode(buf, &r, 1) == n);
    hsc_jrec_t out;
    size_t used;
    CHECK(hsc_jrec_decode(buf, n, &out, &used) == HSC_JREC_OK);
    CHECK(used == n && out.kind == r.kind && out.seq == r.seq && out.time_ms == r.time_ms);
    CHECK(out.chan_len == r.chan_len && memcmp(out.chan, r.chan, r.chan_len) == 0);
    CHECK(out.type_len == r.type_len && out.data_len == r.data_len);
    CHECK(memcmp(out.data, r.data, r.data_len) == 0);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    unsigned char *s = malloc(size ? size : 1);
    CHECK(s != NULL);
    if (size > 0)
        memcpy(s, in, size);
    uint32_t v;
    hsc_jrec_status_t st = hsc_jseg_check(s, size, &v);
    CHECK(st == HSC_JREC_OK || st == HSC_JREC_SHORT || st == HSC_JREC_BAD || st == HSC_JREC_NEWER);
    for (size_t off = 0; off < size;) {
        hsc_jrec_t r;
        size_t used = 0;
        st = hsc_jrec_decode(s + off, size - off, &r, &used);
        CHECK(st == HSC_JREC_OK || st == HSC_JREC_SHORT || st == HSC_JREC_BAD ||
              st == HSC_JREC_NEWER);
        if (st == HSC_JREC_OK) {
            CHECK(used > 0 && used <= size - off);
            check_record(s + off, used, &r);
            off += used;
        } else {
            off++;
        }
    }
    encode_from(in, size);
    free(s);
    return 0;
}
