/*
 * The journal's record codec (jrecord.h): pure, so the unit test and the fuzz target drive it
 * without files. Every length is checked against the input before it is read; a record is
 * accepted only when its checksum matches, so a torn or damaged record is never taken for data.
 *
 * CRC32C: the SSE 4.2 instruction when the CPU has it (checked once), otherwise a table built on
 * first use. Both give the same values (the unit test checks the published test vectors).
 */
#include "pubsub/jrecord.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

/* ---- CRC32C ---------------------------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int crc_hw;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t c, const unsigned char *p,
                                                            size_t n)
{
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = (uint32_t)__builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

uint32_t hsc_crc32c(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    uint32_t c = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (crc_hw)
        return ~crc_sse42(c, p, n);
#endif
    while (n-- > 0)
        c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

/* ---- little-endian fields -------------------------------------------------------------------- */

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- records --------------------------------------------------------------------------------- */

size_t hsc_jrec_size(const hsc_jrec_t *r)
{
    return HSC_JREC_PREFIX_LEN + HSC_JREC_HEAD_LEN + r->chan_len + r->type_len + r->data_len;
}

size_t hsc_jrec_encode(void *out, const hsc_jrec_t *r, int crc)
{
    unsigned char *p = out;
    size_t body = HSC_JREC_HEAD_LEN + r->chan_len + r->type_len + r->data_len;
    unsigned char *b = p + HSC_JREC_PREFIX_LEN;
    put32(p, (uint32_t)body);
    put32(p + 4, 0);
    b[0] = HSC_JOURNAL_VERSION;
    b[1] = (unsigned char)r->kind;
    b[2] = (unsigned char)r->type_len;
    b[3] = 0;
    put16(b + 4, (uint16_t)r->chan_len);
    put16(b + 6, 0);
    put64(b + 8, r->seq);
    put64(b + 16, r->time_ms);
    unsigned char *q = b + HSC_JREC_HEAD_LEN;
    if (r->chan_len > 0)
        memcpy(q, r->chan, r->chan_len);
    q += r->chan_len;
    if (r->type_len > 0)
        memcpy(q, r->type, r->type_len);
    q += r->type_len;
    if (r->data_len > 0)
        memcpy(q, r->data, r->data_len);
    if (crc)
        hsc_jrec_seal(p);
    return HSC_JREC_PREFIX_LEN + body;
}

void hsc_jrec_seal(void *rec)
{
    unsigned char *p = rec;
    put32(p + 4, hsc_crc32c(0, p + HSC_JREC_PREFIX_LEN, get32(p)));
}

hsc_jrec_status_t hsc_jrec_decode(const void *in, size_t n, hsc_jrec_t *out, size_t *used)
{
    const unsigned char *p = in;
    if (n < HSC_JREC_PREFIX_LEN)
        return HSC_JREC_SHORT;
    uint32_t len = get32(p);
    if (len < HSC_JREC_HEAD_LEN || len > HSC_JREC_BODY_MAX)
        return HSC_JREC_BAD;
    if (n - HSC_JREC_PREFIX_LEN < len)
        return HSC_JREC_SHORT;
    const unsigned char *b = p + HSC_JREC_PREFIX_LEN;
    if (hsc_crc32c(0, b, len) != get32(p + 4))
        return HSC_JREC_BAD;
    if (b[0] > HSC_JOURNAL_VERSION)
        return HSC_JREC_NEWER;
    unsigned kind = b[1];
    size_t type_len = b[2], chan_len = get16(b + 4);
    if (b[0] != HSC_JOURNAL_VERSION || b[3] != 0 || get16(b + 6) != 0 || kind < HSC_JREC_EVENT ||
        kind > HSC_JREC_LOST || type_len > 64 || chan_len > 128 ||
        HSC_JREC_HEAD_LEN + chan_len + type_len > len)
        return HSC_JREC_BAD;
    bool chanless = kind == HSC_JREC_FREED || kind == HSC_JREC_LOST;
    if (chanless != (chan_len == 0) || (kind != HSC_JREC_EVENT && type_len > 0))
        return HSC_JREC_BAD;
    const char *s = (const char *)b + HSC_JREC_HEAD_LEN;
    *out = (hsc_jrec_t){
        .kind = kind,
        .seq = get64(b + 8),
        .time_ms = get64(b + 16),
        .chan = s,
        .chan_len = chan_len,
        .type = type_len > 0 ? s + chan_len : NULL,
        .type_len = type_len,
        .data = s + chan_len + type_len,
        .data_len = len - HSC_JREC_HEAD_LEN - chan_len - type_len,
    };
    *used = HSC_JREC_PREFIX_LEN + len;
    return HSC_JREC_OK;
}

/* ---- segment headers ------------------------------------------------------------------------- */

void hsc_jseg_header(void *out)
{
    unsigned char *p = out;
    memcpy(p, HSC_JSEG_MAGIC, 8);
    put32(p + 8, HSC_JOURNAL_VERSION);
    put32(p + 12, 0);
}

hsc_jrec_status_t hsc_jseg_check(const void *in, size_t n, uint32_t *version)
{
    const unsigned char *p = in;
    *version = 0;
    if (n < HSC_JSEG_HEADER_LEN)
        return memcmp(p, HSC_JSEG_MAGIC, n < 8 ? n : 8) == 0 ? HSC_JREC_SHORT : HSC_JREC_BAD;
    if (memcmp(p, HSC_JSEG_MAGIC, 8) != 0)
        return HSC_JREC_BAD;
    *version = get32(p + 8);
    if (*version > HSC_JOURNAL_VERSION)
        return HSC_JREC_NEWER;
    if (*version != HSC_JOURNAL_VERSION || get32(p + 12) != 0)
        return HSC_JREC_BAD;
    return HSC_JREC_OK;
}
