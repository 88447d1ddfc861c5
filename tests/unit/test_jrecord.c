/*
 * Unit tests for src/lib/pubsub/jrecord.c: the journal's record codec and CRC32C.
 *
 * CRC32C against the published check values (RFC 3720 appendix B.4 and the "123456789" check),
 * in one piece and split anywhere; records round-trip every kind; every truncation of a record
 * is SHORT, every flipped bit is BAD (or, for the length field, SHORT/BAD), never OK; a newer
 * version with a good checksum is NEWER; segment headers likewise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pubsub/jrecord.h"

#include <stdlib.h>
#include <string.h>

static void test_crc32c_vectors(void **state)
{
    (void)state;
    assert_int_equal(hsc_crc32c(0, "123456789", 9), 0xe3069283u);
    unsigned char zeros[32] = {0}, ones[32], inc[32], dec[32];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++) {
        inc[i] = (unsigned char)i;
        dec[i] = (unsigned char)(31 - i);
    }
    assert_int_equal(hsc_crc32c(0, zeros, 32), 0x8a9136aau);
    assert_int_equal(hsc_crc32c(0, ones, 32), 0x62a8ab43u);
    assert_int_equal(hsc_crc32c(0, inc, 32), 0x46dd794eu);
    assert_int_equal(hsc_crc32c(0, dec, 32), 0x113fdb5cu);
    assert_int_equal(hsc_crc32c(0, "", 0), 0);
    /* Continuing from a partial value gives the same as one call, wherever the split. */
    for (size_t k = 0; k <= 32; k++)
        assert_int_equal(hsc_crc32c(hsc_crc32c(0, inc, k), inc + k, 32 - k), 0x46dd794eu);
}

static size_t encode(unsigned char *buf, const hsc_jrec_t *r)
{
    size_t n = hsc_jrec_encode(buf, r, 1);
    assert_int_equal(n, hsc_jrec_size(r));
    return n;
}

static void test_round_trip(void **state)
{
    (void)state;
    const hsc_jrec_t recs[] = {
        {.kind = HSC_JREC_EVENT,
         .seq = 42,
         .time_ms = 1700000000123ull,
         .chan = "room",
         .chan_len = 4,
         .type = "msg",
         .type_len = 3,
         .data = "hello\nworld",
         .data_len = 11},
        {.kind = HSC_JREC_EVENT,
         .seq = UINT64_MAX,
         .time_ms = 0,
         .chan = "a",
         .chan_len = 1,
         .data = "",
         .data_len = 0},
        {.kind = HSC_JREC_FRAME,
         .seq = 7,
         .time_ms = 5,
         .chan = "x/y",
         .chan_len = 3,
         .data = "id: e-7\ndata: z\n\n",
         .data_len = 17},
        {.kind = HSC_JREC_EVICTED, .seq = 99, .chan = "room", .chan_len = 4},
        {.kind = HSC_JREC_FREED, .seq = 1234},
        {.kind = HSC_JREC_LOST, .seq = 77},
    };
    unsigned char buf[256];
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        size_t n = encode(buf, &recs[i]);
        hsc_jrec_t out;
        size_t used = 0;
        assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_OK);
        assert_int_equal(used, n);
        assert_int_equal(out.kind, recs[i].kind);
        assert_int_equal(out.seq, recs[i].seq);
        assert_int_equal(out.time_ms, recs[i].time_ms);
        assert_int_equal(out.chan_len, recs[i].chan_len);
        assert_memory_equal(out.chan, recs[i].chan ? recs[i].chan : "", out.chan_len);
        assert_int_equal(out.type_len, recs[i].type_len);
        if (recs[i].type_len > 0)
            assert_memory_equal(out.type, recs[i].type, out.type_len);
        else
            assert_null(out.type);
        assert_int_equal(out.data_len, recs[i].data_len);
        assert_memory_equal(out.data, recs[i].data ? recs[i].data : "", out.data_len);
        /* Followed by more bytes: only the record is used. */
        memset(buf + n, 0xee, 8);
        assert_int_equal(hsc_jrec_decode(buf, n + 8, &out, &used), HSC_JREC_OK);
        assert_int_equal(used, n);
    }
}

static const hsc_jrec_t sample = {.kind = HSC_JREC_EVENT,
                                  .seq = 5,
                                  .time_ms = 77,
                                  .chan = "news",
                                  .chan_len = 4,
                                  .type = "t",
                                  .type_len = 1,
                                  .data = "payload",
                                  .data_len = 7};

static void test_truncated_is_short(void **state)
{
    (void)state;
    unsigned char buf[128];
    size_t n = encode(buf, &sample);
    for (size_t k = 0; k < n; k++) {
        unsigned char *copy = malloc(k ? k : 1); /* exact size: a read past it is caught */
        memcpy(copy, buf, k);
        hsc_jrec_t out;
        size_t used;
        assert_int_equal(hsc_jrec_decode(copy, k, &out, &used), HSC_JREC_SHORT);
        free(copy);
    }
}

static void test_flipped_bits_are_refused(void **state)
{
    (void)state;
    unsigned char buf[128];
    size_t n = encode(buf, &sample);
    for (size_t i = 0; i < n; i++) {
        for (int b = 0; b < 8; b++) {
            buf[i] ^= (unsigned char)(1u << b);
            hsc_jrec_t out;
            size_t used;
            hsc_jrec_status_t st = hsc_jrec_decode(buf, n, &out, &used);
            if (i < 4) /* the length: too long for the input, or a checksum over other bytes */
                assert_true(st == HSC_JREC_SHORT || st == HSC_JREC_BAD);
            else
                assert_int_equal(st, HSC_JREC_BAD);
            buf[i] ^= (unsigned char)(1u << b);
        }
    }
}

/* Writes a body by hand (for what the encoder never writes) and seals it. */
static size_t handmade(unsigned char *buf, unsigned version, unsigned kind, unsigned type_len,
                       unsigned chan_len, size_t body)
{
    memset(buf, 0, 8 + body);
    buf[0] = (unsigned char)body;
    buf[1] = (unsigned char)(body >> 8);
    buf[8] = (unsigned char)version;
    buf[9] = (unsigned char)kind;
    buf[10] = (unsigned char)type_len;
    buf[12] = (unsigned char)chan_len;
    buf[13] = (unsigned char)(chan_len >> 8);
    memset(buf + 8 + HSC_JREC_HEAD_LEN, 'a', body - HSC_JREC_HEAD_LEN);
    hsc_jrec_seal(buf);
    return 8 + body;
}

static void test_malformed_bodies(void **state)
{
    (void)state;
    unsigned char buf[512];
    hsc_jrec_t out;
    size_t used;
    size_t n = handmade(buf, HSC_JOURNAL_VERSION + 1, HSC_JREC_EVENT, 0, 1, 30);
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_NEWER);
    n = handmade(buf, 0, HSC_JREC_EVENT, 0, 1, 30);
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    n = handmade(buf, HSC_JOURNAL_VERSION, 9, 0, 1, 30); /* unknown kind */
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    n = handmade(buf, HSC_JOURNAL_VERSION, HSC_JREC_EVENT, 0, 10, 30); /* name past the end */
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    n = handmade(buf, HSC_JOURNAL_VERSION, HSC_JREC_EVENT, 65, 1, 200); /* type too long */
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    n = handmade(buf, HSC_JOURNAL_VERSION, HSC_JREC_EVENT, 0, 129, 200); /* name too long */
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    n = handmade(buf, HSC_JOURNAL_VERSION, HSC_JREC_FREED, 0, 1, 30); /* FREED names none */
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    n = handmade(buf, HSC_JOURNAL_VERSION, HSC_JREC_LOST, 0, 1, 30); /* nor does LOST */
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    n = handmade(buf, HSC_JOURNAL_VERSION, 6, 0, 1, 30); /* past the last kind */
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    n = handmade(buf, HSC_JOURNAL_VERSION, HSC_JREC_EVENT, 0, 0, 30); /* EVENT names one */
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    n = handmade(buf, HSC_JOURNAL_VERSION, HSC_JREC_FRAME, 2, 1, 30); /* FRAME has no type */
    assert_int_equal(hsc_jrec_decode(buf, n, &out, &used), HSC_JREC_BAD);
    /* A length below the fixed part, or above the maximum. */
    memset(buf, 0, 16);
    buf[0] = HSC_JREC_HEAD_LEN - 1;
    assert_int_equal(hsc_jrec_decode(buf, 16, &out, &used), HSC_JREC_BAD);
    buf[0] = 0xff, buf[1] = 0xff, buf[2] = 0xff, buf[3] = 0xff;
    assert_int_equal(hsc_jrec_decode(buf, 16, &out, &used), HSC_JREC_BAD);
}

static void test_segment_header(void **state)
{
    (void)state;
    unsigned char h[HSC_JSEG_HEADER_LEN];
    uint32_t v;
    hsc_jseg_header(h);
    assert_memory_equal(h, HSC_JSEG_MAGIC, 8);
    assert_int_equal(hsc_jseg_check(h, sizeof h, &v), HSC_JREC_OK);
    assert_int_equal(v, HSC_JOURNAL_VERSION);
    for (size_t k = 0; k < sizeof h; k++)
        assert_int_equal(hsc_jseg_check(h, k, &v), HSC_JREC_SHORT);
    h[8] = HSC_JOURNAL_VERSION + 1;
    assert_int_equal(hsc_jseg_check(h, sizeof h, &v), HSC_JREC_NEWER);
    assert_int_equal(v, HSC_JOURNAL_VERSION + 1);
    h[8] = 0;
    assert_int_equal(hsc_jseg_check(h, sizeof h, &v), HSC_JREC_BAD);
    hsc_jseg_header(h);
    h[0] = 'X';
    assert_int_equal(hsc_jseg_check(h, sizeof h, &v), HSC_JREC_BAD);
    assert_int_equal(hsc_jseg_check(h, 3, &v), HSC_JREC_BAD);
}

int main(int argc, char **argv)
{
    /* One per line: tests/CMakeLists.txt registers each line's test with ctest. */
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncated_is_short),
        cmocka_unit_test(test_flipped_bits_are_refused),
        cmocka_unit_test(test_malformed_bodies),
        cmocka_unit_test(test_segment_header),
    };
    /* clang-format on */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
