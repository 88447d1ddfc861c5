/*
 * Unit tests for src/lib/codec/sse.c, the Server-Sent Events encoder.
 *
 * The property that matters: whatever bytes the data holds, the encoding is exactly one event,
 * made of "data:" lines, with one empty line at its very end; a payload can never forge a second
 * event or an "event:"/"id:"/"retry:" field. This file carries a small reference parser that
 * follows the WHATWG rules (HTML, "server-sent events", interpreting an event stream), and checks
 * round trips through it, golden wire files under tests/data/sse/, and a few thousand
 * pseudo-random payloads made of the bytes that matter (CR, LF, ':', ' ').
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "golden.h"
#include "hsc/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a reference event-stream parser (WHATWG) --------------------------------------------- */

#define MAX_EVENTS 8
#define MAX_FIELD  256

typedef struct ref_event_s {
    char type[MAX_FIELD]; /* "message" when no event: field */
    char last_id[MAX_FIELD];
    char *data;
    size_t data_len;
} ref_event_t;

typedef struct ref_parse_s {
    ref_event_t ev[MAX_EVENTS];
    int nevents;
    int comments;
    int data_lines, event_lines, id_lines, retry_lines, other_lines; /* over the whole stream */
    long retry;                                                      /* -1 when never set */
    int pending; /* fields seen after the last dispatch: an unterminated event at the end */
    /* Buffers of the event being built. */
    char *data;
    size_t data_len, data_cap;
    char type[MAX_FIELD];
    char last_id[MAX_FIELD];
} ref_parse_t;

static void ref_append(ref_parse_t *r, const char *p, size_t n)
{
    if (r->data_len + n + 1 > r->data_cap) {
        r->data_cap = (r->data_len + n + 1) * 2;
        r->data = realloc(r->data, r->data_cap);
        assert_non_null(r->data);
    }
    memcpy(r->data + r->data_len, p, n);
    r->data_len += n;
}

static void ref_set(char *dst, const char *v, size_t n)
{
    assert_true(n < MAX_FIELD);
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static void ref_dispatch(ref_parse_t *r)
{
    r->pending = 0;
    if (r->data_len == 0) { /* no data: no event, and the type buffer is reset */
        r->type[0] = '\0';
        return;
    }
    r->data_len--; /* the data buffer always ends with the LF appended after its last line */
    assert_true(r->nevents < MAX_EVENTS);
    ref_event_t *e = &r->ev[r->nevents++];
    strcpy(e->type, r->type[0] ? r->type : "message");
    strcpy(e->last_id, r->last_id);
    e->data = malloc(r->data_len + 1);
    assert_non_null(e->data);
    memcpy(e->data, r->data, r->data_len);
    e->data[r->data_len] = '\0';
    e->data_len = r->data_len;
    r->data_len = 0;
    r->type[0] = '\0';
}

static void ref_line(ref_parse_t *r, const char *line, size_t n)
{
    if (n == 0) {
        ref_dispatch(r);
        return;
    }
    if (line[0] == ':') {
        r->comments++;
        return;
    }
    r->pending = 1;
    const char *colon = memchr(line, ':', n);
    size_t flen = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vlen = (size_t)(line + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (flen == 4 && memcmp(line, "data", 4) == 0) {
        r->data_lines++;
        ref_append(r, v, vlen);
        ref_append(r, "\n", 1);
    } else if (flen == 5 && memcmp(line, "event", 5) == 0) {
        r->event_lines++;
        ref_set(r->type, v, vlen);
    } else if (flen == 2 && memcmp(line, "id", 2) == 0) {
        r->id_lines++;
        if (memchr(v, '\0', vlen) == NULL)
            ref_set(r->last_id, v, vlen);
    } else if (flen == 5 && memcmp(line, "retry", 5) == 0) {
        r->retry_lines++;
        long ms = 0;
        size_t i = 0;
        for (; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
            ms = ms * 10 + (v[i] - '0');
        if (vlen > 0 && i == vlen)
            r->retry = ms;
    } else {
        r->other_lines++;
    }
}

/* Parses a whole stream: lines end with CRLF, LF or CR; a last line without an end is dropped. */
static void ref_parse(ref_parse_t *r, const char *p, size_t n)
{
    memset(r, 0, sizeof *r);
    r->retry = -1;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\r' && p[i] != '\n')
            continue;
        ref_line(r, p + start, i - start);
        if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
            i++;
        start = i + 1;
    }
    if (start < n)
        r->pending = 1;
}

static void ref_free(ref_parse_t *r)
{
    for (int i = 0; i < r->nevents; i++)
        free(r->ev[i].data);
    free(r->data);
}

/* CRLF and CR become LF: what a parser reproduces of a payload's line breaks. */
static size_t normalise(char *out, const char *in, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\r') {
            out[o++] = '\n';
            if (i + 1 < n && in[i + 1] == '\n')
                i++;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static hsc_sse_event_t data_event(const char *data, size_t len)
{
    hsc_sse_event_t ev = {.type = NULL, .id = NULL, .data = data, .data_len = len, .retry_ms = -1};
    return ev;
}
#define DATA_EVENT(lit) data_event(lit, sizeof(lit) - 1)

/* Encodes into a fresh buffer of exactly the measured size; returns it (caller frees). */
static char *encode(const hsc_sse_event_t *ev, size_t *len)
{
    ssize_t need = hsc_sse_encode(NULL, 0, ev);
    assert_true(need > 0);
    char *out = malloc((size_t)need + 1);
    assert_non_null(out);
    memset(out, '#', (size_t)need + 1);
    ssize_t n = hsc_sse_encode(out, (size_t)need, ev);
    assert_int_equal(n, need);
    assert_int_equal(out[need], '#');
    *len = (size_t)n;
    return out;
}

static void check_wire(const hsc_sse_event_t *ev, const char *want, size_t want_len)
{
    size_t n;
    char *out = encode(ev, &n);
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
    free(out);
}
#define CHECK_WIRE(ev, lit) check_wire((ev), lit, sizeof(lit) - 1)

/*
 * The safety property for an event with data only: every line is a "data:" line, the only empty
 * line is the last one, and the reference parser sees one "message" event with the normalised
 * data and no id.
 */
static void check_data_only_round_trip(const char *data, size_t len)
{
    hsc_sse_event_t ev = data_event(data, len);
    size_t n;
    char *wire = encode(&ev, &n);

    assert_true(n >= 8);
    assert_memory_equal(wire + n - 2, "\n\n", 2);
    size_t start = 0;
    for (size_t i = 0; i < n - 1; i++) {
        assert_int_not_equal(wire[i], '\r');
        if (wire[i] != '\n')
            continue;
        assert_true(i - start >= 6);
        assert_memory_equal(wire + start, "data: ", 6);
        start = i + 1;
    }
    assert_int_equal(start, n - 1);

    ref_parse_t r;
    ref_parse(&r, wire, n);
    assert_int_equal(r.nevents, 1);
    assert_int_equal(r.pending, 0);
    assert_int_equal(r.event_lines, 0);
    assert_int_equal(r.id_lines, 0);
    assert_int_equal(r.retry_lines, 0);
    assert_int_equal(r.other_lines, 0);
    assert_int_equal(r.comments, 0);
    assert_string_equal(r.ev[0].type, "message");
    assert_string_equal(r.ev[0].last_id, "");
    char *want = malloc(len + 1);
    assert_non_null(want);
    size_t wl = normalise(want, data, len);
    assert_int_equal(r.ev[0].data_len, wl);
    assert_memory_equal(r.ev[0].data, want, wl);
    free(want);
    ref_free(&r);
    free(wire);
}
#define ROUND_TRIP(lit) check_data_only_round_trip(lit, sizeof(lit) - 1)

/* ---- encoding: data ----------------------------------------------------------------------- */

static void test_encode_simple(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("hello");
    CHECK_WIRE(&ev, "data: hello\n\n");
    ROUND_TRIP("hello");
}

static void test_encode_empty_data(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("");
    CHECK_WIRE(&ev, "data: \n\n");
    ev.data = NULL;
    CHECK_WIRE(&ev, "data: \n\n");
    ROUND_TRIP("");
}

static void test_encode_lf(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("a\nb\nc");
    CHECK_WIRE(&ev, "data: a\ndata: b\ndata: c\n\n");
    ROUND_TRIP("a\nb\nc");
}

static void test_encode_cr(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("a\rb");
    CHECK_WIRE(&ev, "data: a\ndata: b\n\n");
    ROUND_TRIP("a\rb");
}

static void test_encode_crlf(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("a\r\nb");
    CHECK_WIRE(&ev, "data: a\ndata: b\n\n");
    ROUND_TRIP("a\r\nb");
}

static void test_encode_mixed_line_breaks(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("a\rb\nc\r\nd\n\re");
    CHECK_WIRE(&ev, "data: a\ndata: b\ndata: c\ndata: d\ndata: \ndata: e\n\n");
    ROUND_TRIP("a\rb\nc\r\nd\n\re");
    ROUND_TRIP("a\r\r\nb");
}

static void test_encode_trailing_line_break(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("a\n");
    CHECK_WIRE(&ev, "data: a\ndata: \n\n");
    ev = DATA_EVENT("a\r\n");
    CHECK_WIRE(&ev, "data: a\ndata: \n\n");
    ev = DATA_EVENT("a\r");
    CHECK_WIRE(&ev, "data: a\ndata: \n\n");
    ROUND_TRIP("a\n");
    ROUND_TRIP("a\r\n");
    ROUND_TRIP("a\r");
    ROUND_TRIP("\n");
    ROUND_TRIP("\n\n\n");
}

static void test_encode_leading_space_kept(void **state)
{
    (void)state;
    /* The parser strips one space after the colon: the encoder's own, never the data's. */
    hsc_sse_event_t ev = DATA_EVENT(" x");
    CHECK_WIRE(&ev, "data:  x\n\n");
    ROUND_TRIP(" x");
    ROUND_TRIP("  two\n three");
}

static void test_encode_respects_data_len(void **state)
{
    (void)state;
    hsc_sse_event_t ev = data_event("abc\ndef", 3);
    CHECK_WIRE(&ev, "data: abc\n\n");
}

static void test_encode_binary_bytes(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("a\0b");
    CHECK_WIRE(&ev, "data: a\0b\n\n");
    ROUND_TRIP("a\0b");
    ROUND_TRIP("\xe9\x86\x92\xe9\x86\x92\xef\xbc\x8cNeo");
}

/* ---- the safety property ------------------------------------------------------------------ */

static void test_encode_cannot_forge_event_or_id(void **state)
{
    (void)state;
    static const char payload[] = "x\n\nevent: evil\nid: 9";
    hsc_sse_event_t ev = data_event(payload, sizeof payload - 1);
    CHECK_WIRE(&ev, "data: x\ndata: \ndata: event: evil\ndata: id: 9\n\n");
    ROUND_TRIP("x\n\nevent: evil\nid: 9");
}

static void test_encode_cannot_forge_with_cr_or_crlf(void **state)
{
    (void)state;
    ROUND_TRIP("x\r\rid: 9\r\revent: evil\r\rdata: y\r\r");
    ROUND_TRIP("x\r\n\r\nretry: 1\r\n\r\n: comment\r\n\r\n");
    ROUND_TRIP("\n\nevent: a\n\ndata: b\n\n");
    ROUND_TRIP(": comment");
    ROUND_TRIP("data: nested");
    ROUND_TRIP("\r");
}

static void test_encode_random_payloads(void **state)
{
    (void)state;
    /* The bytes that could break framing, in every combination short strings can make. */
    static const char alphabet[] = {'\r', '\n', ':', ' ', 'a', 'd', '\0'};
    uint32_t seed = 12345;
    char buf[40];
    for (int round = 0; round < 5000; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = (seed >> 16) % sizeof buf;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = alphabet[(seed >> 16) % sizeof alphabet];
        }
        check_data_only_round_trip(buf, len);
    }
}

static void test_two_events_back_to_back(void **state)
{
    (void)state;
    hsc_sse_event_t a = DATA_EVENT("one\n");
    hsc_sse_event_t b = DATA_EVENT("two");
    a.type = "first";
    b.id = "7";
    char wire[128];
    ssize_t n1 = hsc_sse_encode(wire, sizeof wire, &a);
    assert_true(n1 > 0);
    ssize_t n2 = hsc_sse_encode(wire + n1, sizeof wire - (size_t)n1, &b);
    assert_true(n2 > 0);
    ref_parse_t r;
    ref_parse(&r, wire, (size_t)(n1 + n2));
    assert_int_equal(r.nevents, 2);
    assert_int_equal(r.pending, 0);
    assert_string_equal(r.ev[0].type, "first");
    assert_string_equal(r.ev[0].data, "one\n");
    assert_string_equal(r.ev[0].last_id, "");
    assert_string_equal(r.ev[1].type, "message");
    assert_string_equal(r.ev[1].data, "two");
    assert_string_equal(r.ev[1].last_id, "7");
    ref_free(&r);
}

/* ---- type, id, retry ---------------------------------------------------------------------- */

static void test_encode_type_and_id(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("a\nb");
    ev.type = "update";
    ev.id = "42";
    CHECK_WIRE(&ev, "event: update\nid: 42\ndata: a\ndata: b\n\n");

    size_t n;
    char *wire = encode(&ev, &n);
    ref_parse_t r;
    ref_parse(&r, wire, n);
    assert_int_equal(r.nevents, 1);
    assert_int_equal(r.event_lines, 1);
    assert_int_equal(r.id_lines, 1);
    assert_string_equal(r.ev[0].type, "update");
    assert_string_equal(r.ev[0].last_id, "42");
    assert_string_equal(r.ev[0].data, "a\nb");
    ref_free(&r);
    free(wire);
}

static void test_encode_empty_type_is_none(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("x");
    ev.type = "";
    CHECK_WIRE(&ev, "data: x\n\n");
}

static void test_encode_empty_id_resets(void **state)
{
    (void)state;
    /* id "" is sent: it is how a server clears the client's last event ID. */
    hsc_sse_event_t ev = DATA_EVENT("x");
    ev.id = "";
    CHECK_WIRE(&ev, "id: \ndata: x\n\n");
    size_t n;
    char *wire = encode(&ev, &n);
    ref_parse_t r;
    ref_parse(&r, wire, n);
    assert_int_equal(r.nevents, 1);
    assert_int_equal(r.id_lines, 1);
    assert_string_equal(r.ev[0].last_id, "");
    ref_free(&r);
    free(wire);
}

static void test_encode_id_with_spaces(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("x");
    ev.id = " a b";
    CHECK_WIRE(&ev, "id:  a b\ndata: x\n\n");
    size_t n;
    char *wire = encode(&ev, &n);
    ref_parse_t r;
    ref_parse(&r, wire, n);
    assert_string_equal(r.ev[0].last_id, " a b");
    ref_free(&r);
    free(wire);
}

static void test_encode_retry(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("x");
    ev.retry_ms = 3000;
    CHECK_WIRE(&ev, "retry: 3000\ndata: x\n\n");
    ev.retry_ms = 0;
    CHECK_WIRE(&ev, "retry: 0\ndata: x\n\n");
    ev.retry_ms = -1;
    CHECK_WIRE(&ev, "data: x\n\n");

    ev.retry_ms = 1500;
    size_t n;
    char *wire = encode(&ev, &n);
    ref_parse_t r;
    ref_parse(&r, wire, n);
    assert_int_equal(r.nevents, 1);
    assert_int_equal(r.retry, 1500);
    ref_free(&r);
    free(wire);
}

static void test_encode_all_fields(void **state)
{
    (void)state;
    hsc_sse_event_t ev = {.type = "t", .id = "i", .data = "d\r\ne", .data_len = 4, .retry_ms = 10};
    CHECK_WIRE(&ev, "retry: 10\nevent: t\nid: i\ndata: d\ndata: e\n\n");
}

static void check_einval(const hsc_sse_event_t *ev)
{
    char out[64];
    memset(out, '#', sizeof out);
    assert_int_equal(hsc_sse_encode(out, sizeof out, ev), HSC_EINVAL);
    assert_int_equal(hsc_sse_encode(NULL, 0, ev), HSC_EINVAL);
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], '#');
}

static void test_encode_type_with_line_break_rejected(void **state)
{
    (void)state;
    static const char *bad[] = {"a\nb", "a\rb", "a\r\nb", "\n", "\r", "evil\n\ndata: x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hsc_sse_event_t ev = DATA_EVENT("x");
        ev.type = bad[i];
        check_einval(&ev);
    }
}

static void test_encode_id_with_line_break_rejected(void **state)
{
    (void)state;
    static const char *bad[] = {"1\n2", "1\r2", "1\r\n2", "\n", "\r", "9\nevent: evil"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hsc_sse_event_t ev = DATA_EVENT("x");
        ev.id = bad[i];
        check_einval(&ev);
    }
}

/* ---- capacity ----------------------------------------------------------------------------- */

static void test_encode_measure_with_null(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("a\nb");
    ev.type = "t";
    ev.id = "1";
    ev.retry_ms = 5;
    /* "retry: 5\n" 9 + "event: t\n" 9 + "id: 1\n" 6 + "data: a\n" 8 + "data: b\n" 8 + "\n" 1 */
    assert_int_equal(hsc_sse_encode(NULL, 0, &ev), 41);
}

static void test_encode_small_cap_never_writes_past_it(void **state)
{
    (void)state;
    hsc_sse_event_t ev = DATA_EVENT("line one\nline two\r\nthree");
    ev.type = "type";
    ev.id = "id";
    ev.retry_ms = 100;
    ssize_t need = hsc_sse_encode(NULL, 0, &ev);
    assert_true(need > 0);
    for (size_t cap = 0; cap < (size_t)need; cap++) {
        char out[256];
        memset(out, '#', sizeof out);
        assert_int_equal(hsc_sse_encode(out, cap, &ev), need);
        for (size_t i = cap; i < sizeof out; i++)
            assert_int_equal(out[i], '#');
    }
}

/* ---- comments ----------------------------------------------------------------------------- */

static void test_comment(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(hsc_sse_comment(out, sizeof out, "keep-alive"), 13);
    assert_memory_equal(out, ": keep-alive\n", 13);
    assert_int_equal(hsc_sse_comment(out, sizeof out, ""), 2);
    assert_memory_equal(out, ":\n", 2);
    assert_int_equal(hsc_sse_comment(out, sizeof out, NULL), 2);
    assert_memory_equal(out, ":\n", 2);
}

static void test_comment_is_ignored_by_parser(void **state)
{
    (void)state;
    char wire[64];
    ssize_t n = hsc_sse_comment(wire, sizeof wire, "ping");
    assert_true(n > 0);
    hsc_sse_event_t ev = DATA_EVENT("x");
    ssize_t m = hsc_sse_encode(wire + n, sizeof wire - (size_t)n, &ev);
    assert_true(m > 0);
    ref_parse_t r;
    ref_parse(&r, wire, (size_t)(n + m));
    assert_int_equal(r.comments, 1);
    assert_int_equal(r.nevents, 1);
    assert_string_equal(r.ev[0].data, "x");
    ref_free(&r);
}

static void test_comment_with_line_break_rejected(void **state)
{
    (void)state;
    char out[32];
    memset(out, '#', sizeof out);
    assert_int_equal(hsc_sse_comment(out, sizeof out, "a\nb"), HSC_EINVAL);
    assert_int_equal(hsc_sse_comment(out, sizeof out, "a\rb"), HSC_EINVAL);
    assert_int_equal(hsc_sse_comment(out, sizeof out, "\r\ndata: x\r\n\r\n"), HSC_EINVAL);
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], '#');
}

static void test_comment_small_cap(void **state)
{
    (void)state;
    assert_int_equal(hsc_sse_comment(NULL, 0, "ping"), 7);
    char out[16];
    memset(out, '#', sizeof out);
    assert_int_equal(hsc_sse_comment(out, 3, "ping"), 7);
    for (size_t i = 3; i < sizeof out; i++)
        assert_int_equal(out[i], '#');
}

/* The keep-alive of answers and channels: one comment line ending an "event" of its own, between
 * two events it changes nothing. */
static void test_keepalive_is_one_comment_standing_alone(void **state)
{
    (void)state;
    assert_int_equal(HSC_SSE_KEEPALIVE_LEN, 14);
    assert_memory_equal(HSC_SSE_KEEPALIVE, ": keep-alive\n\n", 14);
    char wire[128];
    ssize_t n = hsc_sse_comment(wire, sizeof wire, "keep-alive");
    assert_int_equal(n + 1, HSC_SSE_KEEPALIVE_LEN);
    assert_memory_equal(wire, HSC_SSE_KEEPALIVE, (size_t)n);
    hsc_sse_event_t ev = DATA_EVENT("x");
    size_t len = 0;
    len += (size_t)hsc_sse_encode(wire + len, sizeof wire - len, &ev);
    memcpy(wire + len, HSC_SSE_KEEPALIVE, HSC_SSE_KEEPALIVE_LEN);
    len += HSC_SSE_KEEPALIVE_LEN;
    len += (size_t)hsc_sse_encode(wire + len, sizeof wire - len, &ev);
    ref_parse_t r;
    ref_parse(&r, wire, len);
    assert_int_equal(r.comments, 1);
    assert_int_equal(r.nevents, 2);
    assert_string_equal(r.ev[0].data, "x");
    assert_string_equal(r.ev[1].data, "x");
    ref_free(&r);
}

/* ---- the reference parser itself ----------------------------------------------------------- */

static void test_ref_parser_follows_whatwg(void **state)
{
    (void)state;
    /* The examples of the WHATWG spec, so the round trips above rest on a parser that is right. */
    static const char s[] = "data: first\r\n"
                            "data:second\r"
                            "\r"
                            ": comment\n"
                            "event\n" /* a field with no colon: empty event type */
                            "data\n"  /* an empty data line */
                            "data\n"
                            "\n"
                            "id: 3\n"
                            "\n" /* no data: no event, but the id is kept */
                            "event: e\n"
                            "data:  sp\n"
                            "unknown: x\n"
                            "\n"
                            "data: never dispatched";
    ref_parse_t r;
    ref_parse(&r, s, sizeof s - 1);
    assert_int_equal(r.nevents, 3);
    assert_string_equal(r.ev[0].data, "first\nsecond");
    assert_string_equal(r.ev[0].type, "message");
    assert_string_equal(r.ev[1].data, "\n");
    assert_string_equal(r.ev[1].type, "message");
    assert_string_equal(r.ev[2].data, " sp");
    assert_string_equal(r.ev[2].type, "e");
    assert_string_equal(r.ev[2].last_id, "3");
    assert_int_equal(r.comments, 1);
    assert_int_equal(r.other_lines, 1);
    assert_int_equal(r.pending, 1);
    ref_free(&r);
}

/* ---- golden wire files -------------------------------------------------------------------- */

static void check_golden_case(const char *dir, const char *name)
{
    print_message("golden case %s\n", name);
    size_t data_len, wire_len, type_len, id_len, retry_len;
    char *data = golden_read(dir, name, ".data", &data_len);
    char *wire = golden_read(dir, name, ".wire", &wire_len);
    char *type = golden_read(dir, name, ".type", &type_len);
    char *id = golden_read(dir, name, ".id", &id_len);
    char *retry = golden_read(dir, name, ".retry", &retry_len);
    assert_non_null(data);
    assert_non_null(wire);

    hsc_sse_event_t ev = data_event(data, data_len);
    ev.type = type;
    ev.id = id;
    if (retry != NULL)
        ev.retry_ms = strtol(retry, NULL, 10);

    /* Encoder: byte for byte. */
    check_wire(&ev, wire, wire_len);

    /* Parser: the wire file is one event with the normalised data, type and id. */
    ref_parse_t r;
    ref_parse(&r, wire, wire_len);
    assert_int_equal(r.nevents, 1);
    assert_int_equal(r.pending, 0);
    assert_int_equal(r.other_lines, 0);
    assert_int_equal(r.event_lines, type != NULL && type[0] != '\0');
    assert_int_equal(r.id_lines, id != NULL);
    assert_int_equal(r.retry_lines, retry != NULL);
    assert_string_equal(r.ev[0].type, type != NULL && type[0] != '\0' ? type : "message");
    assert_string_equal(r.ev[0].last_id, id != NULL ? id : "");
    if (retry != NULL)
        assert_int_equal(r.retry, ev.retry_ms);
    char *want = malloc(data_len + 1);
    assert_non_null(want);
    size_t wl = normalise(want, data, data_len);
    assert_int_equal(r.ev[0].data_len, wl);
    assert_memory_equal(r.ev[0].data, want, wl);
    free(want);
    ref_free(&r);

    if (type == NULL && id == NULL && retry == NULL)
        check_data_only_round_trip(data, data_len);

    free(data);
    free(wire);
    free(type);
    free(id);
    free(retry);
}

static void test_golden_wire_files(void **state)
{
    (void)state;
    char dir[1024];
    golden_dir(dir, sizeof dir, "sse");
    char *names[256];
    size_t count = golden_names(dir, ".data", names, sizeof names / sizeof names[0], 20);
    for (size_t i = 0; i < count; i++) {
        check_golden_case(dir, names[i]);
        free(names[i]);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_simple),
        cmocka_unit_test(test_encode_empty_data),
        cmocka_unit_test(test_encode_lf),
        cmocka_unit_test(test_encode_cr),
        cmocka_unit_test(test_encode_crlf),
        cmocka_unit_test(test_encode_mixed_line_breaks),
        cmocka_unit_test(test_encode_trailing_line_break),
        cmocka_unit_test(test_encode_leading_space_kept),
        cmocka_unit_test(test_encode_respects_data_len),
        cmocka_unit_test(test_encode_binary_bytes),
        cmocka_unit_test(test_encode_cannot_forge_event_or_id),
        cmocka_unit_test(test_encode_cannot_forge_with_cr_or_crlf),
        cmocka_unit_test(test_encode_random_payloads),
        cmocka_unit_test(test_two_events_back_to_back),
        cmocka_unit_test(test_encode_type_and_id),
        cmocka_unit_test(test_encode_empty_type_is_none),
        cmocka_unit_test(test_encode_empty_id_resets),
        cmocka_unit_test(test_encode_id_with_spaces),
        cmocka_unit_test(test_encode_retry),
        cmocka_unit_test(test_encode_all_fields),
        cmocka_unit_test(test_encode_type_with_line_break_rejected),
        cmocka_unit_test(test_encode_id_with_line_break_rejected),
        cmocka_unit_test(test_encode_measure_with_null),
        cmocka_unit_test(test_encode_small_cap_never_writes_past_it),
        cmocka_unit_test(test_comment),
        cmocka_unit_test(test_comment_is_ignored_by_parser),
        cmocka_unit_test(test_comment_with_line_break_rejected),
        cmocka_unit_test(test_comment_small_cap),
        cmocka_unit_test(test_keepalive_is_one_comment_standing_alone),
        cmocka_unit_test(test_ref_parser_follows_whatwg),
        cmocka_unit_test(test_golden_wire_files),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
