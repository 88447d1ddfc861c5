/*
 * Fuzz target for src/lib/codec/sse.c, the Server-Sent Events encoder.
 *
 * Properties checked (abort() on a violation):
 *  - round trip: the encoding of an event, read by the small WHATWG event-stream parser below,
 *    yields exactly one event whose data is the input data with CRLF and CR turned into LF, whose
 *    type is the given one ("message" when none or empty) and whose last event id and retry are
 *    the given ones; an id: field appears exactly when an id was given;
 *  - a type or id containing CR or LF is refused with HSC_EINVAL, anything else is accepted;
 *  - the returned length does not depend on `cap`, and encoding into a buffer of exactly `cap`
 *    bytes never writes past it (the buffers are heap blocks of exactly `cap` bytes, so
 *    AddressSanitizer reports the first byte written too far);
 *  - hsc_sse_comment() refuses CR/LF, emits ":" [" " text] "\n" otherwise, which the parser
 *    ignores, and also respects `cap`.
 *
 * Input layout: byte 0 holds flags (bit 0: a type is given, bit 1: an id is given, bit 2: a retry
 * is given, bit 3: the comment text is NULL), bytes 1-2 choose the small capacity, then 8 bytes of
 * retry_ms when bit 2 is set. The rest is split at NUL bytes: the type up to the first NUL (when
 * given), then the id up to the next NUL (when given); what remains, NULs included, is the data.
 * The comment text is the data up to its first NUL.
 *
 * The parser handles what the encoder can emit plus the three line ends (CR, LF, CRLF); it works
 * on bytes, without the UTF-8 decoding step of a browser. The same wire then goes through
 * libhsc's own parser (sseparse.c, what hsc's client uses): for UTF-8 input, the same event comes
 * out, so whatever a publisher sends as data reaches a subscriber unchanged.
 */
#include "hsc/codec.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_sse: %s:%d: property violated: %s\n", __FILE__, __LINE__,        \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- a reference event-stream parser (WHATWG HTML, "interpreting an event stream") -------- */

typedef struct span_s {
    const unsigned char *p;
    size_t len;
} span_t;

typedef struct ref_s {
    int events;       /* events dispatched */
    int other_fields; /* lines that are neither comments nor known fields */
    int id_seen;      /* an id: field was seen */
    int retry_seen;   /* a retry: field with only digits was seen */
    unsigned long long retry;
    int retry_overflow;
    unsigned char *data; /* data buffer of the event being built */
    size_t data_len;
    span_t type; /* event type buffer */
    span_t id;   /* last event ID buffer */
    /* The first dispatched event. */
    unsigned char *ev_data;
    size_t ev_data_len;
    span_t ev_type; /* empty means "message" */
    span_t ev_id;
} ref_t;

static int span_is(span_t s, const char *lit)
{
    return s.len == strlen(lit) && (s.len == 0 || memcmp(s.p, lit, s.len) == 0);
}

static void ref_dispatch(ref_t *r)
{
    /* An event's last event ID is the id buffer at dispatch time; an empty data buffer
     * dispatches nothing. */
    if (r->data_len == 0) {
        r->type.len = 0;
        return;
    }
    r->data_len--; /* the buffer always ends with the LF appended after a data line */
    if (r->events == 0) {
        memcpy(r->ev_data, r->data, r->data_len);
        r->ev_data_len = r->data_len;
        r->ev_type = r->type;
        r->ev_id = r->id;
    }
    r->events++;
    r->data_len = 0;
    r->type.len = 0;
}

static void ref_line(ref_t *r, const unsigned char *line, size_t len)
{
    if (len == 0) {
        ref_dispatch(r);
        return;
    }
    if (line[0] == ':')
        return;
    span_t field = {line, len}, value = {line + len, 0};
    const unsigned char *colon = memchr(line, ':', len);
    if (colon != NULL) {
        field.len = (size_t)(colon - line);
        value.p = colon + 1;
        value.len = len - field.len - 1;
        if (value.len > 0 && value.p[0] == ' ') {
            value.p++;
            value.len--;
        }
    }
    if (span_is(field, "event")) {
        r->type = value;
    } else if (span_is(field, "data")) {
        memcpy(r->data + r->data_len, value.p, value.len);
        r->data_len += value.len;
        r->data[r->data_len++] = '\n';
    } else if (span_is(field, "id")) {
        if (memchr(value.p, '\0', value.len) == NULL) {
            r->id = value;
            r->id_seen = 1;
        }
    } else if (span_is(field, "retry")) {
        unsigned long long v = 0;
        size_t i = 0;
        while (i < value.len && value.p[i] >= '0' && value.p[i] <= '9') {
            unsigned d = (unsigned)(value.p[i] - '0');
            if (v > (ULLONG_MAX - d) / 10)
                r->retry_overflow = 1;
            v = v * 10 + d;
            i++;
        }
        if (value.len > 0 && i == value.len) {
            r->retry = v;
            r->retry_seen = 1;
        }
    } else {
        r->other_fields++;
    }
}

/* Parses a whole stream; a last line without its line end, and an event without its empty line,
 * are discarded as at the end of a real stream. */
static void ref_parse(ref_t *r, const unsigned char *wire, size_t len)
{
    memset(r, 0, sizeof *r);
    r->data = malloc(len + 1);
    r->ev_data = malloc(len + 1);
    CHECK(r->data != NULL && r->ev_data != NULL);
    size_t i = 0;
    while (i < len) {
        size_t eol = i;
        while (eol < len && wire[eol] != '\r' && wire[eol] != '\n')
            eol++;
        if (eol == len)
            break;
        ref_line(r, wire + i, eol - i);
        i = eol + 1;
        if (wire[eol] == '\r' && i < len && wire[i] == '\n')
            i++;
    }
}

static void ref_free(ref_t *r)
{
    free(r->data);
    free(r->ev_data);
}

/* ---- the target --------------------------------------------------------------------------- */

static int has_crlf(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/* CRLF and CR become LF, as the parser's line splitting does. Returns the new length. */
static size_t normalise(unsigned char *out, const unsigned char *in, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\r') {
            out[o++] = '\n';
            if (i + 1 < len && in[i + 1] == '\n')
                i++;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

/* Takes bytes up to the next NUL (or the end) as a fresh C string; advances past the NUL. */
static char *take_cstr(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
    size_t n = nul ? (size_t)(nul - *p) : (size_t)(end - *p);
    char *s = malloc(n + 1);
    CHECK(s != NULL);
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += nul ? n + 1 : n;
    return s;
}

/* Encodes into a heap block of exactly `cap` bytes and checks the length is the full one. */
static void check_small_cap(const hsc_sse_event_t *ev, size_t cap, ssize_t full)
{
    char *small = malloc(cap ? cap : 1);
    CHECK(small != NULL);
    /* malloc(0) may return NULL; a one-byte block with cap 0 still traps any write. */
    ssize_t n = hsc_sse_encode(small, cap, ev);
    CHECK(n == full);
    free(small);
}

/* What libhsc's own parser (sseparse.c) reports for an encoded event. */
typedef struct parsed_s {
    int events, retries;
    char *type, *data, *id;
    size_t type_len, data_len;
    uint64_t retry;
} parsed_t;

static int on_parsed(void *user, const hsc_sse_msg_t *m)
{
    parsed_t *p = user;
    p->events++;
    free(p->type);
    free(p->data);
    free(p->id);
    p->type = malloc(m->type_len + 1);
    p->id = strdup(m->id);
    p->data = malloc(m->data_len + 1);
    CHECK(p->type != NULL && p->id != NULL && p->data != NULL);
    memcpy(p->type, m->type, m->type_len + 1);
    p->type_len = m->type_len;
    memcpy(p->data, m->data, m->data_len);
    p->data_len = m->data_len;
    return 0;
}

static int on_parsed_retry(void *user, uint64_t ms)
{
    parsed_t *p = user;
    p->retries++;
    p->retry = ms;
    return 0;
}

/*
 * The round trip through the client's parser: when the data, type and id are valid UTF-8 (the
 * parser decodes as a browser does, so other bytes would come out as U+FFFD), the wire gives back
 * exactly one event with the data (line ends normalised), the type and the id that went in.
 */
static void check_with_codec_parser(const hsc_sse_event_t *ev, const char *wire, size_t len,
                                    const unsigned char *want, size_t want_len)
{
    const char *type = ev->type != NULL && ev->type[0] != '\0' ? ev->type : "message";
    const char *id = ev->id != NULL ? ev->id : "";
    if (!hsc_utf8_valid(ev->data, ev->data_len) || !hsc_utf8_valid(type, strlen(type)) ||
        !hsc_utf8_valid(id, strlen(id)))
        return;
    if (len >= 3 && memcmp(wire, "\xef\xbb\xbf", 3) == 0)
        return; /* a stream cannot start with a BOM that is data: the parser strips it */
    parsed_t p = {0};
    hsc_sse_parser_t *ps =
        hsc_sse_parser_new(len + 1, len + 1, on_parsed, on_parsed_retry, NULL, &p);
    CHECK(ps != NULL);
    CHECK(hsc_sse_parser_feed(ps, wire, len) == 0);
    hsc_sse_parser_end(ps);
    CHECK(p.events == 1);
    CHECK(p.data_len == want_len && memcmp(p.data, want, want_len) == 0);
    CHECK(p.type_len == strlen(type) && memcmp(p.type, type, p.type_len) == 0);
    CHECK(strcmp(p.id, id) == 0);
    CHECK(p.retries == (ev->retry_ms >= 0 ? 1 : 0));
    if (ev->retry_ms >= 0)
        CHECK(p.retry == (uint64_t)ev->retry_ms);
    hsc_sse_parser_free(ps);
    free(p.type);
    free(p.data);
    free(p.id);
}

static void check_event(const hsc_sse_event_t *ev, unsigned cap_seed)
{
    ssize_t n = hsc_sse_encode(NULL, 0, ev);
    if (has_crlf(ev->type) || has_crlf(ev->id)) {
        CHECK(n == HSC_EINVAL);
        return;
    }
    CHECK(n > 0);
    size_t len = (size_t)n;
    char *wire = malloc(len);
    CHECK(wire != NULL);
    CHECK(hsc_sse_encode(wire, len, ev) == n);
    check_small_cap(ev, cap_seed % len, n);

    ref_t r;
    ref_parse(&r, (const unsigned char *)wire, len);
    CHECK(r.events == 1);
    CHECK(r.other_fields == 0);
    CHECK(r.data_len == 0 && r.type.len == 0); /* nothing pending after the event */

    unsigned char *want = malloc(ev->data_len + 1);
    CHECK(want != NULL);
    size_t want_len = normalise(want, (const unsigned char *)ev->data, ev->data_len);
    CHECK(r.ev_data_len == want_len);
    CHECK(memcmp(r.ev_data, want, want_len) == 0);

    const char *type = ev->type != NULL && ev->type[0] != '\0' ? ev->type : "";
    CHECK(span_is(r.ev_type, type));

    CHECK(r.id_seen == (ev->id != NULL));
    const char *id = ev->id != NULL ? ev->id : "";
    CHECK(span_is(r.ev_id, id));

    CHECK(r.retry_seen == (ev->retry_ms >= 0));
    if (ev->retry_ms >= 0)
        CHECK(!r.retry_overflow && r.retry == (unsigned long long)ev->retry_ms);

    check_with_codec_parser(ev, wire, len, want, want_len);
    free(want);
    ref_free(&r);
    free(wire);
}

static void check_comment(const char *text, unsigned cap_seed)
{
    ssize_t n = hsc_sse_comment(NULL, 0, text);
    if (has_crlf(text)) {
        CHECK(n == HSC_EINVAL);
        return;
    }
    size_t tlen = text != NULL ? strlen(text) : 0;
    CHECK(n == (ssize_t)(tlen ? tlen + 3 : 2));
    size_t len = (size_t)n;
    char *wire = malloc(len);
    CHECK(wire != NULL);
    CHECK(hsc_sse_comment(wire, len, text) == n);
    CHECK(wire[0] == ':' && wire[len - 1] == '\n');
    if (tlen)
        CHECK(wire[1] == ' ' && memcmp(wire + 2, text, tlen) == 0);

    ref_t r;
    ref_parse(&r, (const unsigned char *)wire, len);
    CHECK(r.events == 0 && r.other_fields == 0 && r.data_len == 0 && r.type.len == 0);
    CHECK(!r.id_seen && !r.retry_seen);
    ref_free(&r);

    size_t cap = cap_seed % len;
    char *small = malloc(cap ? cap : 1);
    CHECK(small != NULL);
    CHECK(hsc_sse_comment(small, cap, text) == n);
    free(small);
    free(wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 3)
        return 0;
    const uint8_t *p = in, *end = in + size;
    unsigned flags = p[0];
    unsigned cap_seed = (unsigned)p[1] << 8 | p[2];
    p += 3;

    hsc_sse_event_t ev = {.retry_ms = -1};
    if (flags & 4) {
        if (end - p < 8)
            return 0;
        int64_t v;
        memcpy(&v, p, sizeof v);
        ev.retry_ms = (long)v;
        p += 8;
    }
    char *type = flags & 1 ? take_cstr(&p, end) : NULL;
    char *id = flags & 2 ? take_cstr(&p, end) : NULL;
    size_t data_len = (size_t)(end - p);
    /* An exact-size heap copy, so a read past the data is caught too. */
    char *data = malloc(data_len ? data_len : 1);
    CHECK(data != NULL);
    memcpy(data, p, data_len);
    ev.type = type;
    ev.id = id;
    ev.data = data;
    ev.data_len = data_len;

    check_event(&ev, cap_seed);

    char *text = NULL;
    if (!(flags & 8)) {
        const uint8_t *q = (const uint8_t *)data;
        text = take_cstr(&q, q + data_len);
    }
    check_comment(text, cap_seed);

    free(text);
    free(data);
    free(id);
    free(type);
    return 0;
}
