/*
 * Unit tests for src/lib/codec/sseparse.c, the Server-Sent Events parser (WHATWG HTML, "9.2.6
 * Interpreting an event stream").
 *
 * The cases are data: each tests/data/sse-parse/NAME.sse is an event stream and NAME.json what
 * the parser must report for it (README.md there). Every stream is fed whole, cut in two at every
 * position, cut in three at every pair of positions (short streams) and byte by byte: all must
 * give the expected records, so a CR and its LF in different feeds, a BOM or a UTF-8 character in
 * pieces, a line buffered across feeds, all behave as in one piece.
 *
 * A small reference parser works the other way round, on the whole stream at once, as the spec
 * reads: strip one BOM, decode all of it as UTF-8 (U+FFFD for invalid bytes), split it into lines,
 * interpret them. It must agree with every golden file and with the parser on thousands of
 * pseudo-random streams made of the bytes and words that matter, fed in random pieces.
 *
 * The rest pins down the API around the stream: bounds (HSC_ETOOBIG, sticky until reset), reset
 * and end (the last event id kept, everything else forgotten), set_last_id, callbacks that stop
 * the feed, NULL callbacks, and a feed that stays linear whatever its line ends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "golden.h"
#include "hsc/codec.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_LINE  65536
#define DEFAULT_MAX_EVENT 1048576

/* ---- what the parser reports, as JSON records ---------------------------------------------- */

typedef struct collect_s {
    json_t *out;       /* the records, in callback order */
    size_t max_event;  /* no event's data may be longer */
    int events;        /* events seen */
    int stop_at_event; /* > 0: the on_event callback returns stop_rc at this event */
    int stop_at_retry; /* > 0: the on_retry callback returns stop_rc at this retry */
    int stop_at_comment;
    int retries, comments;
    int stop_rc;
} collect_t;

static json_t *retry_record(uint64_t ms)
{
    if (ms <= (uint64_t)INT64_MAX) /* json_int_t is long long */
        return json_pack("{s:I}", "retry", (json_int_t)ms);
    char digits[32];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)ms);
    return json_pack("{s:s}", "retry", digits);
}

static int on_event(void *user, const hsc_sse_msg_t *m)
{
    collect_t *c = user;
    assert_non_null(m->type);
    assert_non_null(m->data);
    assert_non_null(m->id);
    assert_true(m->type_len > 0);
    assert_int_equal(m->type[m->type_len], '\0');
    assert_int_equal(m->data[m->data_len], '\0');
    assert_true(m->data_len <= c->max_event);
    assert_true(hsc_utf8_valid(m->type, m->type_len));
    assert_true(hsc_utf8_valid(m->data, m->data_len));
    assert_true(hsc_utf8_valid(m->id, strlen(m->id)));
    assert_null(strpbrk(m->id, "\r\n"));
    json_t *r = json_pack("{s:s%,s:s%,s:s}", "type", m->type, m->type_len, "data", m->data,
                          m->data_len, "id", m->id);
    assert_non_null(r);
    assert_int_equal(json_array_append_new(c->out, r), 0);
    c->events++;
    return c->stop_at_event == c->events ? c->stop_rc : 0;
}

static int on_retry(void *user, uint64_t ms)
{
    collect_t *c = user;
    json_t *r = retry_record(ms);
    assert_non_null(r);
    assert_int_equal(json_array_append_new(c->out, r), 0);
    c->retries++;
    return c->stop_at_retry == c->retries ? c->stop_rc : 0;
}

static int on_comment(void *user, const char *text, size_t len)
{
    collect_t *c = user;
    assert_non_null(text);
    assert_true(hsc_utf8_valid(text, len));
    json_t *r = json_pack("{s:s%}", "comment", text, len);
    assert_non_null(r);
    assert_int_equal(json_array_append_new(c->out, r), 0);
    c->comments++;
    return c->stop_at_comment == c->comments ? c->stop_rc : 0;
}

static const char *err_name(int rc)
{
    switch (rc) {
    case HSC_ETOOBIG:
        return "HSC_ETOOBIG";
    case HSC_ENOMEM:
        return "HSC_ENOMEM";
    default:
        return "unexpected";
    }
}

static void collect_init(collect_t *c, size_t max_event)
{
    memset(c, 0, sizeof *c);
    c->out = json_array();
    assert_non_null(c->out);
    c->max_event = max_event;
}

static hsc_sse_parser_t *new_parser(collect_t *c, size_t max_line, size_t max_event)
{
    hsc_sse_parser_t *p =
        hsc_sse_parser_new(max_line, max_event, on_event, on_retry, on_comment, c);
    assert_non_null(p);
    return p;
}

/* A case: the stream and how to run it. */
typedef struct run_s {
    const unsigned char *wire;
    size_t len;
    size_t max_line, max_event;
    const char *set_last_id; /* NULL for none */
} run_t;

/*
 * Feeds r->wire in pieces cut at cuts[0..ncuts) (ascending, repeats give empty feeds), stops at
 * the first non-zero return (an {"error"} record), then ends the stream. Returns the records;
 * *last_id gets hsc_sse_parser_last_id() after the end (caller frees).
 */
static json_t *run_cuts(const run_t *r, const size_t *cuts, size_t ncuts, char **last_id)
{
    collect_t c;
    collect_init(&c, r->max_event);
    hsc_sse_parser_t *p = new_parser(&c, r->max_line, r->max_event);
    if (r->set_last_id != NULL)
        assert_int_equal(hsc_sse_parser_set_last_id(p, r->set_last_id), 0);
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : r->len;
        assert_true(from <= to && to <= r->len);
        int rc = hsc_sse_parser_feed(p, r->wire + from, to - from);
        if (rc != 0) {
            assert_int_equal(
                json_array_append_new(c.out, json_pack("{s:s}", "error", err_name(rc))), 0);
            break;
        }
        from = to;
    }
    hsc_sse_parser_end(p);
    if (last_id != NULL) {
        *last_id = strdup(hsc_sse_parser_last_id(p));
        assert_non_null(*last_id);
    }
    hsc_sse_parser_free(p);
    return c.out;
}

static void expect_records(const char *what, const json_t *want, json_t *got)
{
    if (!json_equal(want, got)) {
        char *w = json_dumps(want, JSON_COMPACT | JSON_ENSURE_ASCII);
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENSURE_ASCII);
        print_error("%s:\n  want %s\n  got  %s\n", what, w, g);
        free(w);
        free(g);
        fail();
    }
    json_decref(got);
}

/* ---- the reference: the whole stream at once, as the spec reads it ------------------------- */

typedef struct ref_s {
    json_t *out;
    size_t max_event;
    char *data; /* data buffer */
    size_t data_len;
    char *type; /* event type buffer (type_len bytes and a NUL; may hold NULs of its own) */
    size_t type_len;
    char *id_buf;  /* last event ID buffer */
    char *last_id; /* last event ID string */
} ref_t;

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    assert_non_null(d);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Interprets one decoded line; returns 0, or HSC_ETOOBIG for data over max_event. */
static int ref_line(ref_t *r, const char *s, size_t n)
{
    if (n == 0) {
        free(r->last_id);
        r->last_id = strdup(r->id_buf);
        assert_non_null(r->last_id);
        if (r->data_len == 0) {
            r->type_len = 0;
            return 0;
        }
        r->data_len--;
        /* The type is the whole buffer, NULs included; "message" only when it is empty. */
        json_t *e = json_pack("{s:s%,s:s%,s:s}", "type", r->type_len ? r->type : "message",
                              r->type_len ? r->type_len : 7, "data", r->data, r->data_len, "id",
                              r->last_id);
        assert_non_null(e);
        json_array_append_new(r->out, e);
        r->data_len = 0;
        r->type_len = 0;
        return 0;
    }
    if (s[0] == ':') {
        json_array_append_new(r->out, json_pack("{s:s%}", "comment", s + 1, n - 1));
        return 0;
    }
    const char *colon = memchr(s, ':', n);
    size_t flen = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (flen == 5 && memcmp(s, "event", 5) == 0) {
        free(r->type);
        r->type = dup_n(v, vlen);
        r->type_len = vlen;
    } else if (flen == 4 && memcmp(s, "data", 4) == 0) {
        if (r->data_len + vlen > r->max_event)
            return HSC_ETOOBIG;
        r->data = realloc(r->data, r->data_len + vlen + 1);
        assert_non_null(r->data);
        memcpy(r->data + r->data_len, v, vlen);
        r->data_len += vlen;
        r->data[r->data_len++] = '\n';
    } else if (flen == 2 && memcmp(s, "id", 2) == 0) {
        if (memchr(v, '\0', vlen) == NULL) {
            free(r->id_buf);
            r->id_buf = dup_n(v, vlen);
        }
    } else if (flen == 5 && memcmp(s, "retry", 5) == 0) {
        int digits = vlen > 0;
        uint64_t ms = 0;
        for (size_t i = 0; i < vlen && digits; i++) {
            digits = v[i] >= '0' && v[i] <= '9';
            unsigned d = (unsigned)(v[i] - '0');
            if (digits)
                ms = ms > (UINT64_MAX - d) / 10 ? UINT64_MAX : ms * 10 + d;
        }
        if (digits)
            json_array_append_new(r->out, retry_record(ms));
    }
    return 0;
}

/* The end of the line starting at i in s[0..n): the index of its CR or LF, or n. */
static size_t line_end(const char *s, size_t n, size_t i)
{
    while (i < n && s[i] != '\r' && s[i] != '\n')
        i++;
    return i;
}

/* Past the line end at e (CRLF counts as one). */
static size_t skip_eol(const char *s, size_t n, size_t e)
{
    return s[e] == '\r' && e + 1 < n && s[e + 1] == '\n' ? e + 2 : e + 1;
}

/*
 * The records for a whole stream. Lines are found twice: in the raw bytes (their length is what
 * max_line bounds) and in the decoded text (what is interpreted); decoding keeps every CR and LF,
 * so both give the same lines, which this checks.
 */
static json_t *ref_parse(const run_t *run, char **last_id)
{
    const char *raw = (const char *)run->wire;
    size_t n = run->len;
    int bom_prefix = n < 3 && memcmp(raw, "\xef\xbb\xbf", n) == 0; /* held as a BOM so far */
    if (n >= 3 && memcmp(raw, "\xef\xbb\xbf", 3) == 0) {
        raw += 3;
        n -= 3;
    }
    char *text = malloc(3 * n + 1);
    assert_non_null(text);
    size_t tn = hsc_utf8_repair(text, raw, n);

    ref_t r = {.out = json_array(), .max_event = run->max_event};
    r.type = dup_n("", 0);
    const char *start_id = run->set_last_id != NULL ? run->set_last_id : "";
    r.id_buf = dup_n(start_id, strlen(start_id));
    r.last_id = strdup(r.id_buf);
    size_t ri = 0, ti = 0;
    int rc = 0;
    for (;;) {
        size_t re = line_end(raw, n, ri), te = line_end(text, tn, ti);
        assert_int_equal(re == n, te == tn);
        if (re == n) { /* the unterminated last line: discarded, but bounded while buffered */
            if (n - ri > run->max_line && !bom_prefix)
                rc = HSC_ETOOBIG;
            break;
        }
        assert_int_equal(raw[re], text[te]);
        if (re - ri > run->max_line) {
            rc = HSC_ETOOBIG;
            break;
        }
        rc = ref_line(&r, text + ti, te - ti);
        if (rc != 0)
            break;
        ri = skip_eol(raw, n, re);
        ti = skip_eol(text, tn, te);
    }
    if (rc != 0)
        json_array_append_new(r.out, json_pack("{s:s}", "error", err_name(rc)));
    *last_id = r.last_id;
    free(r.data);
    free(r.type);
    free(r.id_buf);
    free(text);
    return r.out;
}

/* ---- golden files ------------------------------------------------------------------------- */

static size_t opt_size(const json_t *doc, const char *key, size_t dflt)
{
    json_t *v = json_is_object(doc) ? json_object_get(doc, key) : NULL;
    if (v == NULL)
        return dflt;
    assert_true(json_is_integer(v) && json_integer_value(v) >= 0);
    return (size_t)json_integer_value(v);
}

static const char *opt_str(const json_t *doc, const char *key)
{
    json_t *v = json_is_object(doc) ? json_object_get(doc, key) : NULL;
    if (v == NULL)
        return NULL;
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void check_run(const char *name, const char *how, const run_t *run, const json_t *want,
                      const char *want_last_id, const size_t *cuts, size_t ncuts)
{
    char *last_id;
    json_t *got = run_cuts(run, cuts, ncuts, &last_id);
    char what[512];
    snprintf(what, sizeof what, "%s, %s", name, how);
    expect_records(what, want, got);
    if (want_last_id != NULL && strcmp(last_id, want_last_id) != 0)
        fail_msg("%s: last id \"%s\", want \"%s\"", what, last_id, want_last_id);
    free(last_id);
}

static void check_golden_case(const char *dir, const char *name)
{
    size_t wire_len, json_len;
    unsigned char *wire = (unsigned char *)golden_read(dir, name, ".sse", &wire_len);
    unsigned char *text = (unsigned char *)golden_read(dir, name, ".json", &json_len);
    assert_non_null(wire);
    if (text == NULL)
        fail_msg("%s.sse has no %s.json", name, name);
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)text, json_len, JSON_ALLOW_NUL, &jerr);
    if (doc == NULL)
        fail_msg("%s.json: line %d: %s", name, jerr.line, jerr.text);
    const json_t *want = json_is_array(doc) ? doc : json_object_get(doc, "expect");
    assert_true(json_is_array(want));
    run_t run = {
        .wire = wire,
        .len = wire_len,
        .max_line = opt_size(doc, "max_line", DEFAULT_MAX_LINE),
        .max_event = opt_size(doc, "max_event", DEFAULT_MAX_EVENT),
        .set_last_id = opt_str(doc, "set_last_id"),
    };
    const char *want_last_id = opt_str(doc, "last_id");
    char how[64];

    check_run(name, "whole", &run, want, want_last_id, NULL, 0);

    for (size_t k = 0; k <= wire_len; k++) {
        snprintf(how, sizeof how, "cut at %zu", k);
        check_run(name, how, &run, want, want_last_id, &k, 1);
    }

    if (wire_len <= 96) {
        for (size_t i = 0; i <= wire_len; i++)
            for (size_t j = i; j <= wire_len; j++) {
                size_t cuts[2] = {i, j};
                snprintf(how, sizeof how, "cut at %zu and %zu", i, j);
                check_run(name, how, &run, want, want_last_id, cuts, 2);
            }
    }

    if (wire_len > 1) {
        size_t *cuts = malloc((wire_len - 1) * sizeof *cuts);
        assert_non_null(cuts);
        for (size_t k = 1; k < wire_len; k++)
            cuts[k - 1] = k;
        check_run(name, "byte by byte", &run, want, want_last_id, cuts, wire_len - 1);
        free(cuts);
    }

    /* The reference agrees too: a check of the reference as much as of the file. */
    char *ref_last_id;
    json_t *ref = ref_parse(&run, &ref_last_id);
    char what[256];
    snprintf(what, sizeof what, "%s, reference parser", name);
    expect_records(what, want, ref);
    if (want_last_id != NULL)
        assert_string_equal(ref_last_id, want_last_id);
    free(ref_last_id);

    json_decref(doc);
    free(text);
    free(wire);
}

static void test_golden_files(void **state)
{
    (void)state;
    char dir[1024];
    golden_dir(dir, sizeof dir, "sse-parse");
    char *names[512];
    size_t count = golden_names(dir, ".sse", names, sizeof names / sizeof names[0], 50);
    for (size_t i = 0; i < count; i++) {
        check_golden_case(dir, names[i]);
        free(names[i]);
    }
}

/* ---- pseudo-random streams against the reference ----------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* The bytes and words that steer the parser. */
static const char *const PIECES[] = {
    "data",     "data:",        "data: ",
    "event:",   "event: ",      "id:",
    "id: ",     "retry:",       "retry: ",
    ":",        ": ",           " ",
    "x",        "yz",           "0",
    "42",       "\r",           "\n",
    "\r\n",     "\n\n",         "\r\r\n",
    "\0",       "\xff",         "\xc3",
    "\xa9",     "\xc3\xa9",     "\xef\xbb\xbf",
    "\xef\xbb", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
    "\xf0\x9f", "\xed\xa0\x80", "Data:",
    "ev",       "ent:",
};

static size_t random_stream(unsigned char *out, size_t cap)
{
    size_t n = 0, pieces = rnd() % 48;
    for (size_t i = 0; i < pieces; i++) {
        const char *s = PIECES[rnd() % (sizeof PIECES / sizeof PIECES[0])];
        size_t len = s[0] == '\0' ? 1 : strlen(s);
        if (n + len > cap)
            break;
        memcpy(out + n, s, len);
        n += len;
    }
    return n;
}

static void test_random_streams_match_reference(void **state)
{
    (void)state;
    static const size_t line_bounds[] = {DEFAULT_MAX_LINE, 12, 5, 0};
    static const size_t event_bounds[] = {DEFAULT_MAX_EVENT, 10, 3, 0};
    unsigned char wire[512];
    for (int iter = 0; iter < 20000; iter++) {
        run_t run = {.wire = wire, .len = random_stream(wire, sizeof wire)};
        run.max_line = line_bounds[iter % 7 == 0 ? rnd() % 4 : 0];
        run.max_event = event_bounds[iter % 5 == 0 ? rnd() % 4 : 0];
        run.set_last_id = iter % 3 == 0 ? "start" : NULL;

        char *want_last_id, *last_id;
        json_t *want = ref_parse(&run, &want_last_id);

        size_t cuts[8];
        size_t ncuts = run.len > 0 ? rnd() % 8 : 0;
        for (size_t i = 0; i < ncuts; i++)
            cuts[i] = rnd() % (run.len + 1);
        for (size_t i = 1; i < ncuts; i++) /* insertion sort */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }

        char what[64];
        snprintf(what, sizeof what, "random stream %d, whole", iter);
        expect_records(what, want, run_cuts(&run, NULL, 0, &last_id));
        assert_string_equal(last_id, want_last_id);
        free(last_id);
        snprintf(what, sizeof what, "random stream %d, %zu cuts", iter, ncuts);
        expect_records(what, want, run_cuts(&run, cuts, ncuts, &last_id));
        assert_string_equal(last_id, want_last_id);
        free(last_id);
        free(want_last_id);
        json_decref(want);
    }
}

/* ---- bounds ------------------------------------------------------------------------------- */

#define FEED(p, lit) hsc_sse_parser_feed((p), (lit), sizeof(lit) - 1)

static void test_line_bound_fails_while_line_is_partial(void **state)
{
    (void)state;
    collect_t c;
    collect_init(&c, 100);
    hsc_sse_parser_t *p = new_parser(&c, 10, 100);
    /* Exactly max_line bytes, with or without their line end yet: fine. */
    assert_int_equal(FEED(p, "data:12345"), 0);
    assert_int_equal(FEED(p, "\r"), 0);
    assert_int_equal(FEED(p, "\n:234567890"), 0);
    /* One byte more, still without a line end: refused now, not at the line end. */
    assert_int_equal(FEED(p, "1"), HSC_ETOOBIG);
    assert_int_equal(json_array_size(c.out), 0); /* no blank line came; the comment never ended */
    hsc_sse_parser_free(p);
    json_decref(c.out);

    /* Many small feeds of a line with no end: memory never grows past the bound. */
    collect_init(&c, 100);
    p = new_parser(&c, 4096, 100);
    char chunk[1000];
    memset(chunk, 'a', sizeof chunk);
    int rc = 0, feeds = 0;
    while (rc == 0 && feeds < 100) {
        rc = hsc_sse_parser_feed(p, chunk, sizeof chunk);
        feeds++;
    }
    assert_int_equal(rc, HSC_ETOOBIG);
    assert_int_equal(feeds, 5); /* 4000 bytes fit, 5000 do not */
    hsc_sse_parser_free(p);
    json_decref(c.out);
}

static void test_too_big_is_sticky_until_reset(void **state)
{
    (void)state;
    collect_t c;
    collect_init(&c, 4);
    hsc_sse_parser_t *p = new_parser(&c, 100, 4);
    assert_int_equal(FEED(p, "id: 1\ndata: a\n\ndata: 12345\n\n"), HSC_ETOOBIG);
    assert_int_equal(c.events, 1);
    /* Refused from now on, even an innocent feed or an empty one. */
    assert_int_equal(FEED(p, "data: b\n\n"), HSC_ETOOBIG);
    assert_int_equal(hsc_sse_parser_feed(p, "", 0), HSC_ETOOBIG);
    assert_int_equal(c.events, 1);
    assert_string_equal(hsc_sse_parser_last_id(p), "1");
    /* A new connection starts clean, keeping the last event id. */
    hsc_sse_parser_reset(p);
    assert_int_equal(FEED(p, "data: 1234\n\n"), 0);
    assert_int_equal(c.events, 2);
    json_t *e = json_array_get(c.out, 1);
    assert_string_equal(json_string_value(json_object_get(e, "data")), "1234");
    assert_string_equal(json_string_value(json_object_get(e, "id")), "1");
    hsc_sse_parser_free(p);
    json_decref(c.out);
}

static void test_huge_bounds_do_not_overflow(void **state)
{
    (void)state;
    collect_t c;
    collect_init(&c, SIZE_MAX);
    hsc_sse_parser_t *p = new_parser(&c, SIZE_MAX, SIZE_MAX);
    assert_int_equal(FEED(p, "data: a"), 0);
    assert_int_equal(FEED(p, "b\ndata: c\r"), 0);
    assert_int_equal(FEED(p, "\n\n"), 0);
    assert_int_equal(c.events, 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c.out, 0), "data")),
                        "ab\nc");
    hsc_sse_parser_free(p);
    json_decref(c.out);
}

/* ---- reset, end and the last event id ---------------------------------------------------- */

static void test_reset_keeps_last_id_forgets_the_rest(void **state)
{
    (void)state;
    collect_t c;
    collect_init(&c, 100);
    hsc_sse_parser_t *p = new_parser(&c, 100, 100);
    assert_string_equal(hsc_sse_parser_last_id(p), "");
    /* An event with id 1; then an event cut by the connection: its id, type, data and the
     * partial line are lost. */
    assert_int_equal(FEED(p, "id: 1\ndata: a\n\nid: 2\nevent: t\ndata: b\ndata: par"), 0);
    assert_string_equal(hsc_sse_parser_last_id(p), "1");
    hsc_sse_parser_reset(p);
    assert_string_equal(hsc_sse_parser_last_id(p), "1");
    assert_int_equal(FEED(p, "tial\n\ndata: c\n\n"), 0);
    /* "tial" was a field name (unknown); the blank line had no data; then c, with id 1. */
    assert_int_equal(c.events, 2);
    json_t *e = json_array_get(c.out, 1);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "message");
    assert_string_equal(json_string_value(json_object_get(e, "data")), "c");
    assert_string_equal(json_string_value(json_object_get(e, "id")), "1");
    hsc_sse_parser_free(p);
    json_decref(c.out);
}

static void test_reset_forgets_cr_and_restarts_bom(void **state)
{
    (void)state;
    collect_t c;
    collect_init(&c, 100);
    hsc_sse_parser_t *p = new_parser(&c, 100, 100);
    /* The old connection's data, and the CR that ended its last feed, are gone: the LF and the
     * blank line of the new one dispatch nothing. (After a reset every buffer is empty, so an LF
     * skipped as the end of a CRLF and an LF read as a blank line cannot be told apart.) */
    assert_int_equal(FEED(p, "data: a\r"), 0);
    hsc_sse_parser_reset(p);
    assert_int_equal(FEED(p, "\n\n"), 0);
    assert_int_equal(c.events, 0);
    assert_int_equal(FEED(p, "data: b\n\n"), 0);
    assert_int_equal(c.events, 1);
    /* Each connection's stream may start with a BOM, in pieces. */
    hsc_sse_parser_reset(p);
    assert_int_equal(FEED(p, "\xef"), 0);
    assert_int_equal(FEED(p, "\xbb"), 0);
    assert_int_equal(FEED(p, "\277data: c\n\n"), 0); /* octal: "\xbfd" would be one escape */
    assert_int_equal(c.events, 2);
    /* A BOM prefix cut off by reset is forgotten, not carried into the next stream (where it
     * would make the field name "\ufffddata"). */
    hsc_sse_parser_reset(p);
    assert_int_equal(FEED(p, "\xef\xbb"), 0);
    hsc_sse_parser_reset(p);
    assert_int_equal(FEED(p, "data: d\n\n"), 0);
    assert_int_equal(c.events, 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c.out, 2), "data")), "d");
    hsc_sse_parser_free(p);
    json_decref(c.out);
}

static void test_end_discards_and_starts_a_new_stream(void **state)
{
    (void)state;
    collect_t c;
    collect_init(&c, 100);
    hsc_sse_parser_t *p = new_parser(&c, 100, 100);
    assert_int_equal(FEED(p, "id: 3\ndata: a\n\nid: 4\ndata: b\n"), 0);
    hsc_sse_parser_end(p);
    assert_int_equal(c.events, 1);
    assert_string_equal(hsc_sse_parser_last_id(p), "3");
    /* After the end, bytes are a new stream (with its own BOM) that starts from the last id. */
    assert_int_equal(FEED(p, "\xef\xbb\xbf\ndata: c\n\n"), 0);
    assert_int_equal(c.events, 2);
    json_t *e = json_array_get(c.out, 1);
    assert_string_equal(json_string_value(json_object_get(e, "data")), "c");
    assert_string_equal(json_string_value(json_object_get(e, "id")), "3");
    hsc_sse_parser_end(p);
    hsc_sse_parser_end(p); /* twice is harmless */
    hsc_sse_parser_free(p);
    hsc_sse_parser_free(NULL);
    json_decref(c.out);
}

static void test_set_last_id(void **state)
{
    (void)state;
    collect_t c;
    collect_init(&c, 100);
    hsc_sse_parser_t *p = new_parser(&c, 100, 100);
    assert_int_equal(hsc_sse_parser_set_last_id(p, "e1-7"), 0);
    assert_string_equal(hsc_sse_parser_last_id(p), "e1-7");
    assert_int_equal(hsc_sse_parser_set_last_id(p, NULL), 0);
    assert_string_equal(hsc_sse_parser_last_id(p), "");
    /* Ids no stream could set: refused, the last id unchanged. */
    assert_int_equal(hsc_sse_parser_set_last_id(p, "ok"), 0);
    assert_int_equal(hsc_sse_parser_set_last_id(p, "a\r\nX-Evil: 1"), HSC_EINVAL);
    assert_int_equal(hsc_sse_parser_set_last_id(p, "a\n"), HSC_EINVAL);
    assert_int_equal(hsc_sse_parser_set_last_id(p, "\r"), HSC_EINVAL);
    assert_int_equal(hsc_sse_parser_set_last_id(p, "caf\xc3"), HSC_EINVAL);
    assert_string_equal(hsc_sse_parser_last_id(p), "ok");
    assert_int_equal(hsc_sse_parser_set_last_id(p, "caf\xc3\xa9"), 0);
    /* It also sets the id buffer: the next event carries it, even after an id: line of an
     * event not yet dispatched (the later call wins). */
    assert_int_equal(FEED(p, "id: 9\ndata: a\n"), 0);
    assert_int_equal(hsc_sse_parser_set_last_id(p, "x"), 0);
    assert_int_equal(FEED(p, "\n"), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c.out, 0), "id")), "x");
    assert_string_equal(hsc_sse_parser_last_id(p), "x");
    hsc_sse_parser_free(p);
    json_decref(c.out);
}

/* ---- callbacks ---------------------------------------------------------------------------- */

static void test_callback_stops_the_feed(void **state)
{
    (void)state;
    static const char stream[] = "retry: 5\n: one\ndata: a\n\n: two\ndata: b\n\ndata: c\r";
    /* Stop at the first event: the bytes after its blank line are dropped. */
    collect_t c;
    collect_init(&c, 100);
    c.stop_at_event = 1;
    c.stop_rc = 42;
    hsc_sse_parser_t *p = new_parser(&c, 100, 100);
    assert_int_equal(FEED(p, stream), 42);
    assert_int_equal(json_array_size(c.out), 3); /* retry, comment, event */
    /* The parser goes on with the next feed, its state as after the stopping line. */
    assert_int_equal(FEED(p, "data: d\n\n"), 0);
    assert_int_equal(c.events, 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c.out, 3), "data")), "d");
    hsc_sse_parser_free(p);
    json_decref(c.out);

    /* The retry and comment callbacks stop it too. */
    collect_init(&c, 100);
    c.stop_at_retry = 1;
    c.stop_rc = -7;
    p = new_parser(&c, 100, 100);
    assert_int_equal(FEED(p, stream), -7);
    assert_int_equal(json_array_size(c.out), 1);
    hsc_sse_parser_free(p);
    json_decref(c.out);

    collect_init(&c, 100);
    c.stop_at_comment = 2;
    c.stop_rc = 1;
    p = new_parser(&c, 100, 100);
    assert_int_equal(FEED(p, stream), 1);
    assert_int_equal(json_array_size(c.out), 4); /* retry, comment, event, comment */
    hsc_sse_parser_free(p);
    json_decref(c.out);

    /* A stop on a line ended by the feed's last CR: a following LF still belongs to it. */
    collect_init(&c, 100);
    c.stop_at_event = 1;
    c.stop_rc = 3;
    p = new_parser(&c, 100, 100);
    assert_int_equal(FEED(p, "data: a\n\r"), 3);
    assert_int_equal(FEED(p, "\ndata: b\n\n"), 0);
    assert_int_equal(c.events, 2);
    hsc_sse_parser_free(p);
    json_decref(c.out);
}

static int count_events(void *user, const hsc_sse_msg_t *m)
{
    (void)m;
    (*(int *)user)++;
    return 0;
}

static void test_null_callbacks(void **state)
{
    (void)state;
    hsc_sse_parser_t *p = hsc_sse_parser_new(100, 100, NULL, NULL, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(hsc_sse_parser_feed(p, NULL, 0), 0);
    assert_int_equal(FEED(p, ": c\nretry: 1\nid: 2\ndata: x\n\n: \xff\n"), 0);
    assert_string_equal(hsc_sse_parser_last_id(p), "2");
    hsc_sse_parser_free(p);

    int n = 0;
    p = hsc_sse_parser_new(100, 100, count_events, NULL, NULL, &n);
    assert_non_null(p);
    assert_int_equal(FEED(p, ": c\nretry: 1\ndata: x\n\n"), 0);
    assert_int_equal(n, 1);
    hsc_sse_parser_free(p);
}

static void test_msg_fields(void **state)
{
    (void)state;
    collect_t c;
    collect_init(&c, 100);
    hsc_sse_parser_t *p = new_parser(&c, 100, 100);
    assert_int_equal(FEED(p, "data: a\000b\n\n"), 0);
    json_t *e = json_array_get(c.out, 0);
    assert_int_equal(json_string_length(json_object_get(e, "data")), 3);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "message");
    assert_int_equal(json_string_length(json_object_get(e, "type")), 7);
    assert_string_equal(json_string_value(json_object_get(e, "id")), "");
    /* A type holding a NUL comes whole, with its length; it is not "done". */
    assert_int_equal(FEED(p, "event: done\000x\ndata: b\n\n"), 0);
    e = json_array_get(c.out, 1);
    assert_int_equal(json_string_length(json_object_get(e, "type")), 6);
    assert_memory_equal(json_string_value(json_object_get(e, "type")), "done\000x", 7);
    hsc_sse_parser_free(p);
    json_decref(c.out);
}

/* ---- efficiency --------------------------------------------------------------------------- */

/*
 * One large feed of many short lines with CR only, then LF only, then CRLF: each must be scanned
 * once. A parser that searched for the other line end to the end of the feed on every line would
 * take minutes here (quadratic); this one takes milliseconds.
 */
static void test_feed_is_linear_whatever_the_line_ends(void **state)
{
    (void)state;
    static const char *const ends[] = {"\r", "\n", "\r\n"};
    const size_t events = 200000;
    for (size_t k = 0; k < 3; k++) {
        size_t el = strlen(ends[k]);
        size_t one = 7 + 2 * el; /* "data: x" EOL EOL */
        char *buf = malloc(events * one);
        assert_non_null(buf);
        for (size_t i = 0; i < events; i++) {
            memcpy(buf + i * one, "data: x", 7);
            memcpy(buf + i * one + 7, ends[k], el);
            memcpy(buf + i * one + 7 + el, ends[k], el);
        }
        int n = 0;
        hsc_sse_parser_t *p = hsc_sse_parser_new(100, 100, count_events, NULL, NULL, &n);
        assert_non_null(p);
        assert_int_equal(hsc_sse_parser_feed(p, buf, events * one), 0);
        assert_int_equal((size_t)n, events);
        hsc_sse_parser_free(p);
        free(buf);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_files),
        cmocka_unit_test(test_random_streams_match_reference),
        cmocka_unit_test(test_line_bound_fails_while_line_is_partial),
        cmocka_unit_test(test_too_big_is_sticky_until_reset),
        cmocka_unit_test(test_huge_bounds_do_not_overflow),
        cmocka_unit_test(test_reset_keeps_last_id_forgets_the_rest),
        cmocka_unit_test(test_reset_forgets_cr_and_restarts_bom),
        cmocka_unit_test(test_end_discards_and_starts_a_new_stream),
        cmocka_unit_test(test_set_last_id),
        cmocka_unit_test(test_callback_stops_the_feed),
        cmocka_unit_test(test_null_callbacks),
        cmocka_unit_test(test_msg_fields),
        cmocka_unit_test(test_feed_is_linear_whatever_the_line_ends),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
