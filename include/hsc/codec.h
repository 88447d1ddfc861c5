/**
 * Pure codecs: bytes in, bytes out. No loop, no socket, no global state, no allocation unless
 * the name says so. The server, the client and the tests share them.
 */
#ifndef HSC_CODEC_H
#define HSC_CODEC_H

#include "hsc.h"
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- chunked transfer coding (RFC 9112 §7.1) ---------------------------------------------- */

/** Longest chunk-size line hsc_chunked_header() writes: 16 hex digits plus CRLF. */
#define HSC_CHUNK_HEADER_MAX 18
/** The bytes that end every chunk's data. */
#define HSC_CHUNK_CRLF "\r\n"
/** The last chunk and the empty trailer section: ends a chunked body. */
#define HSC_CHUNK_LAST "0\r\n\r\n"

/**
 * Writes the size line of a chunk of `len` bytes ("1a\r\n") to `out`, which must hold
 * HSC_CHUNK_HEADER_MAX bytes. `len` must not be 0 (a zero-size chunk ends the body). Returns the
 * number of bytes written.
 */
HSC_EXPORT size_t hsc_chunked_header(char *out, size_t len);

/**
 * Encodes `len` bytes as one complete chunk into `out` (capacity `cap`). Returns the encoded
 * length, which may exceed `cap` (nothing is written then), as snprintf does. `len` 0 encodes
 * nothing and returns 0.
 */
HSC_EXPORT size_t hsc_chunked_encode(char *out, size_t cap, const void *data, size_t len);

/* ---- Server-Sent Events encoder (WHATWG HTML, "server-sent events") ------------------------ */

typedef struct hsc_sse_event_s {
    const char *type; /* "event:" field; NULL or "" for none (the default "message") */
    const char *id;   /* "id:" field; NULL for none */
    const char *data; /* the event's data; may contain CR, LF or CRLF line breaks */
    size_t data_len;
    long retry_ms; /* "retry:" field when >= 0; -1 for none */
} hsc_sse_event_t;

/**
 * Encodes one event into `out` (capacity `cap`); returns the encoded length, which may exceed
 * `cap` (nothing useful is written then), or HSC_EINVAL when `type` or `id` contains CR, LF or
 * NUL (they would forge or break fields). Each line of the data becomes one "data:" line, so a
 * payload with line breaks stays one event; data with no bytes still yields one empty "data:"
 * line. The event ends with an empty line.
 */
HSC_EXPORT ssize_t hsc_sse_encode(char *out, size_t cap, const hsc_sse_event_t *ev);

/**
 * Encodes a comment line (": text\n"), which every SSE parser ignores.
 * `text` must not contain CR or LF (HSC_EINVAL). Returns the length as hsc_sse_encode() does.
 */
HSC_EXPORT ssize_t hsc_sse_comment(char *out, size_t cap, const char *text);

/**
 * The keep-alive hscd writes on a silent event stream, answers and channels alike: a comment
 * line and the empty line that ends it, so that it stands alone as an event would. Every parser
 * ignores it; proxies and clients see bytes and keep the stream open. One spelling, this one.
 */
#define HSC_SSE_KEEPALIVE ": keep-alive\n\n"
/** Its length in bytes. */
#define HSC_SSE_KEEPALIVE_LEN (sizeof HSC_SSE_KEEPALIVE - 1)

/* ---- Server-Sent Events parser (WHATWG HTML, "interpreting an event stream") -------------- */

/*
 * An incremental event-stream parser that follows the WHATWG rules exactly: one leading BOM
 * stripped, CR, LF and CRLF line ends in any mix and cut anywhere between feeds, comments, fields
 * without a colon, one space after the colon stripped, "data" lines joined with LF, an event with
 * no data not dispatched (but its id still taken), the type reset after each event, an "id"
 * containing NUL ignored, "retry" taken only when it is all ASCII digits, unknown fields ignored,
 * an unterminated last event discarded. Bytes that are not UTF-8 become U+FFFD, as a browser's
 * decoder makes them, so every string handed out is valid UTF-8 (it may contain NUL).
 *
 * Feeding the same bytes in any pieces gives the same callbacks. Memory stays bounded whatever
 * the input: the partial line (max_line bytes), the data buffer (max_event + 1 bytes), and the
 * event type, id buffer and last event id, each at most one line (three times that when invalid
 * bytes become U+FFFD); buffers grow with what a stream actually sends, and large ones are given
 * back after use. No I/O, no global state; one parser per stream, not thread-safe.
 */

/**
 * One dispatched event. The strings live in the parser: valid during the callback only.
 *
 * The type and the data are kept byte-exact, U+0000 included, as the spec keeps them: each comes
 * with its length and is followed by a NUL that the length excludes. Compare a type with its
 * length (type_len == 4 && memcmp(type, "done", 4) == 0): strcmp() stops at a NUL inside it, so
 * "done\0x" would compare equal to "done". Only the id can hold no NUL (the spec ignores an "id"
 * field containing one), so it is a plain C string.
 */
typedef struct hsc_sse_msg_s {
    const char *type; /* "message" when the stream gave none (or an empty one) */
    size_t type_len;  /* bytes of type, never 0 */
    const char *data;
    size_t data_len;
    const char *id; /* the last event id after this event, "" when none; never holds a NUL */
} hsc_sse_msg_t;

typedef struct hsc_sse_parser_s hsc_sse_parser_t;

/*
 * Callbacks return 0 to go on; any other value stops hsc_sse_parser_feed(), which returns it.
 * The line that triggered the callback is fully processed (an event's buffers are already reset);
 * the bytes after it in that feed are dropped, and the parser stays usable. A callback may call
 * hsc_sse_parser_last_id() and hsc_sse_parser_set_last_id(), nothing else on its parser.
 */
typedef int (*hsc_sse_event_cb)(void *user, const hsc_sse_msg_t *msg);
/** A valid "retry:" field, in milliseconds (saturated at UINT64_MAX). */
typedef int (*hsc_sse_retry_cb)(void *user, uint64_t ms);
/** A comment line: the text after ':' as is (a leading space kept), U+FFFD for invalid bytes. */
typedef int (*hsc_sse_comment_cb)(void *user, const char *text, size_t len);

/**
 * Allocates a parser. `max_line` bounds one line (bytes as received, without its line end);
 * `max_event` bounds one event's data (bytes as dispatched: joined with LF, after U+FFFD
 * replacement), so no msg->data_len exceeds it. `on_event` may be NULL (events dropped), so may
 * `on_retry` and `on_comment`. Returns NULL when out of memory.
 */
HSC_EXPORT hsc_sse_parser_t *hsc_sse_parser_new(size_t max_line, size_t max_event,
                                                hsc_sse_event_cb on_event,
                                                hsc_sse_retry_cb on_retry,
                                                hsc_sse_comment_cb on_comment, void *user);

/**
 * Feeds bytes, calling back for each complete line's effect. Returns 0; HSC_ETOOBIG when a line
 * or an event exceeds its bound, or HSC_ENOMEM when a buffer cannot grow (the parser then refuses
 * every feed with that error until reset); or a callback's non-zero value.
 */
HSC_EXPORT int hsc_sse_parser_feed(hsc_sse_parser_t *p, const void *data, size_t len);

/**
 * End of stream: an unterminated event is discarded, and so is a last line without its line end
 * (the spec's "pending data"); an "id" of that event is forgotten. The parser is then as after
 * hsc_sse_parser_reset(): more bytes are a new stream.
 */
HSC_EXPORT void hsc_sse_parser_end(hsc_sse_parser_t *p);

/**
 * A new connection: forgets the partial line, a pending CR, the data and type buffers, an error
 * and the BOM state (a new stream may start with its own BOM), and KEEPS the last event id, the
 * one of the last dispatch (as hsc_sse_parser_last_id() reports it); the id buffer starts from it.
 */
HSC_EXPORT void hsc_sse_parser_reset(hsc_sse_parser_t *p);

/**
 * The last event id string: the id buffer as of the last dispatch (an empty line), "" when none.
 * This is what a client sends as Last-Event-ID when it reconnects.
 */
HSC_EXPORT const char *hsc_sse_parser_last_id(const hsc_sse_parser_t *p);

/**
 * Sets the last event id and the id buffer (e.g. from --last-event-id); NULL means "". Returns 0,
 * HSC_EINVAL for an id no stream could set (CR or LF, or not valid UTF-8), or HSC_ENOMEM.
 */
HSC_EXPORT int hsc_sse_parser_set_last_id(hsc_sse_parser_t *p, const char *id);

/** Frees a parser and its buffers; NULL is ignored. */
HSC_EXPORT void hsc_sse_parser_free(hsc_sse_parser_t *p);

/* ---- channel names, event types and event ids (docs/api.md, "Channels") ------------------ */

/** Longest channel name, in bytes. */
#define HSC_CHANNEL_MAX 128
/** Longest event type, in bytes. */
#define HSC_EVENT_TYPE_MAX 64
/** Longest event id hsc_event_id_format() writes, with its NUL. */
#define HSC_EVENT_ID_MAX 40

/** Returns 1 for a valid channel name: 1..128 bytes of A-Z a-z 0-9 and "-_.:@/". */
HSC_EXPORT int hsc_channel_name_valid(const char *p, size_t len);

/**
 * Returns 1 for a valid event type a publisher may use: 1..64 bytes of A-Z a-z 0-9 and "-_.:",
 * not starting with "hsc." (reserved for the server's own events).
 */
HSC_EXPORT int hsc_event_type_valid(const char *p, size_t len);

/**
 * Writes the id "EPOCH-SEQ" (epoch in base 36, lowercase; seq in decimal) to `out`, which must
 * hold HSC_EVENT_ID_MAX bytes. Returns its length.
 */
HSC_EXPORT size_t hsc_event_id_format(char *out, uint64_t epoch, uint64_t seq);

/**
 * Parses an id written by hsc_event_id_format(). Returns 0, or HSC_EINVAL for anything else
 * (wrong characters, a missing part, leading zeros, overflow).
 */
HSC_EXPORT int hsc_event_id_parse(const char *s, size_t len, uint64_t *epoch, uint64_t *seq);

/* ---- percent-decoding and query strings (RFC 3986, application/x-www-form-urlencoded) ----- */

/**
 * Percent-decodes `len` bytes of `in` into `out` (which needs `len` bytes; `out` may equal `in`).
 * With `plus_is_space`, '+' decodes to a space (query strings). Returns the decoded length or
 * HSC_EINVAL for a '%' not followed by two hex digits.
 */
HSC_EXPORT ssize_t hsc_url_decode(char *out, const char *in, size_t len, int plus_is_space);
/** The value of one hexadecimal digit (0-9, a-f, A-F), or -1 for any other byte. */
HSC_EXPORT int hsc_hex_value(unsigned char c);

/** A span of bytes inside a caller's buffer. */
typedef struct hsc_span_s {
    const char *p;
    size_t len;
} hsc_span_t;

/**
 * Iterates over the "key=value" pairs of a query string (without the '?'). `*pos` starts at 0.
 * Fills `key` and `value` with raw (still encoded) spans into `q`; a pair without '=' has an empty
 * value. Empty pairs ("a=1&&b=2") are skipped. Returns 1 for a pair, 0 at the end.
 */
HSC_EXPORT int hsc_query_next(const char *q, size_t qlen, size_t *pos, hsc_span_t *key,
                              hsc_span_t *value);

/**
 * Finds the first pair whose decoded key equals `name` and decodes its value into `out` (capacity
 * `cap`, NUL-terminated). Returns the decoded length, HSC_ENOTFOUND, HSC_ETOOBIG if the value does
 * not fit, or HSC_EINVAL for bad percent-encoding.
 */
HSC_EXPORT ssize_t hsc_query_get(const char *q, size_t qlen, const char *name, char *out,
                                 size_t cap);

/**
 * Copies the query `q` into `out` (capacity `qlen`) without the pairs whose decoded key equals
 * `name` (as hsc_query_get() matches keys, so a percent-encoded spelling is removed too). A query
 * without such a pair is copied byte for byte; otherwise the pairs kept are joined by '&'.
 * Returns the length written.
 */
HSC_EXPORT size_t hsc_query_without(char *out, const char *q, size_t qlen, const char *name);

/* ---- UTF-8 ------------------------------------------------------------------------------------
 */

/** Returns 1 when `len` bytes are well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
HSC_EXPORT int hsc_utf8_valid(const void *p, size_t len);

/**
 * Returns how many leading bytes of `p` can be emitted without cutting a multi-byte character:
 * `len` minus the bytes of an incomplete (but so far valid) sequence at the end. Used when a
 * stream of bytes is split into pieces that must each be valid text.
 */
HSC_EXPORT size_t hsc_utf8_complete_prefix(const void *p, size_t len);

/**
 * Copies `len` bytes to `out` (capacity 3 * len) replacing every maximal invalid subpart with
 * U+FFFD, as the WHATWG UTF-8 decoder does; valid input is copied unchanged. A sequence cut by
 * the end of input is replaced too: hold it back with hsc_utf8_complete_prefix() when more bytes
 * may follow. Returns the output length.
 */
HSC_EXPORT size_t hsc_utf8_repair(char *out, const void *in, size_t len);

/* ---- durations and sizes, as written on a command line ------------------------------------- */

/**
 * Parses a duration: a non-negative number with a unit ms, s, m or h ("250ms", "1.5s", "2m");
 * a bare number means seconds. Writes milliseconds to `*ms`. Returns 0 or HSC_EINVAL.
 */
HSC_EXPORT int hsc_parse_duration(const char *s, uint64_t *ms);

/**
 * Parses a byte size: a non-negative integer with an optional unit k, m or g (powers of 1024,
 * case-insensitive, an optional trailing 'b' or 'ib'). Returns 0 or HSC_EINVAL.
 */
HSC_EXPORT int hsc_parse_size(const char *s, uint64_t *bytes);

#ifdef __cplusplus
}
#endif
#endif
