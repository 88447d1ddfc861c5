/*
 * pubsub/jrecord.h: the journal's on-disk format (docs/internals/journal.md), pure: bytes in,
 * bytes out, no I/O, no lock, no allocation. jwriter.c and jsegment.c write segments with it,
 * jreplay.c reads them; tests/unit/test_jrecord.c and tests/fuzz/fuzz_jrecord.c exercise it alone.
 *
 * A segment file starts with a 16-byte header: the magic "HSCJRNL\n", the format version
 * (u32, little-endian) and 4 reserved bytes (0). Records follow back to back:
 *
 *   u32 len      bytes of the body that follows the checksum (HSC_JREC_HEAD_LEN to
 *                HSC_JREC_BODY_MAX)
 *   u32 crc      CRC32C (Castagnoli) of those `len` bytes
 *   body:
 *     u8  version    HSC_JOURNAL_VERSION
 *     u8  kind       HSC_JREC_EVENT, _FRAME, _EVICTED, _FREED or _LOST
 *     u8  type_len   an event type's length (0: none), at most HSC_EVENT_TYPE_MAX
 *     u8  0
 *     u16 chan_len   the channel name's length (0 for FREED and LOST, which name none)
 *     u16 0
 *     u64 seq        the event's sequence number (EVICTED, FREED: the newest one evicted)
 *     u64 time_ms    when it was published, wall clock, ms since 1970
 *     channel, type, then the data (the rest of the body)
 *
 * All integers little-endian. EVENT's data is the event's data as published (valid UTF-8);
 * FRAME's (written by compaction) is the event's SSE bytes as history holds them.
 */
#ifndef HSC_PUBSUB_JRECORD_H
#define HSC_PUBSUB_JRECORD_H

#include <stddef.h>
#include <stdint.h>

#define HSC_JOURNAL_VERSION 1
#define HSC_JSEG_MAGIC      "HSCJRNL\n"
#define HSC_JSEG_HEADER_LEN 16
#define HSC_JREC_PREFIX_LEN 8  /* len + crc */
#define HSC_JREC_HEAD_LEN   24 /* the body's fixed part */
#define HSC_JREC_BODY_MAX   (64u << 20)

enum {
    HSC_JREC_EVENT = 1,   /* a published event: channel, type, data */
    HSC_JREC_FRAME = 2,   /* an event as history holds it: channel, SSE bytes (compaction) */
    HSC_JREC_EVICTED = 3, /* a channel's history had evicted up to seq (compaction) */
    HSC_JREC_FREED = 4,   /* channels freed had evicted up to seq; no channel (compaction) */
    HSC_JREC_LOST = 5     /* records were lost before seq: resumes from before it get a gap;
                             no channel (compaction keeps what replay found) */
};

/** What hsc_jrec_decode() found at the start of its input. */
typedef enum hsc_jrec_status_e {
    HSC_JREC_OK,    /* a record: *used bytes */
    HSC_JREC_SHORT, /* the input ends inside a record (its length says more follows) */
    HSC_JREC_BAD,   /* a length out of range, a checksum mismatch or a malformed body */
    HSC_JREC_NEWER  /* a well-formed record of a newer format version */
} hsc_jrec_status_t;

/** A decoded record: the strings point into the decoder's input. */
typedef struct hsc_jrec_s {
    unsigned kind;
    uint64_t seq;
    uint64_t time_ms;
    const char *chan;
    size_t chan_len;
    const char *type; /* NULL when none */
    size_t type_len;
    const char *data;
    size_t data_len;
} hsc_jrec_t;

/** CRC32C of `n` bytes, continuing from `crc` (0 to start). */
uint32_t hsc_crc32c(uint32_t crc, const void *p, size_t n);

/** Bytes hsc_jrec_encode() writes for `r`. */
size_t hsc_jrec_size(const hsc_jrec_t *r);

/**
 * Writes `r` at `out` (hsc_jrec_size(r) bytes) with its checksum; with `crc` false the checksum
 * field is left 0 for hsc_jrec_seal() to fill later (the journal's writer thread does it, off the
 * engine's lock). Returns the bytes written.
 */
size_t hsc_jrec_encode(void *out, const hsc_jrec_t *r, int crc);
/** Fills in the checksum of the record encoded at `rec`. */
void hsc_jrec_seal(void *rec);

/**
 * Reads the record at the start of `p` (n bytes). Checks the length, the checksum, the version,
 * the kind and the field lengths; not the name's or the data's characters (jreplay.c checks
 * what it restores). On HSC_JREC_OK, *out and *used are set.
 */
hsc_jrec_status_t hsc_jrec_decode(const void *p, size_t n, hsc_jrec_t *out, size_t *used);

/** Writes a segment header (HSC_JSEG_HEADER_LEN bytes) of this format version. */
void hsc_jseg_header(void *out);

/**
 * Checks a segment header (the first n bytes of a file): HSC_JREC_OK when this code reads it,
 * HSC_JREC_NEWER for a newer version, HSC_JREC_SHORT when n is too small, HSC_JREC_BAD when it is
 * not a segment header. *version gets the version read (0 when none).
 */
hsc_jrec_status_t hsc_jseg_check(const void *p, size_t n, uint32_t *version);

#endif
