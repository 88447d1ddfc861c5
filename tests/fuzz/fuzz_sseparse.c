/*
 * Fuzz target for src/lib/codec/sseparse.c, the Server-Sent Events parser.
 *
 * Properties checked (abort() on a violation):
 *  - split invariance: the stream fed whole, in pieces cut where the input's seed says (empty
 *    pieces included), and byte by byte gives the same callbacks, the same error and the same
 *    last event id;
 *  - agreement with the reference below, which reads the whole stream the way the spec does:
 *    strip one BOM, decode all of it as UTF-8 with U+FFFD for invalid bytes (hsc_utf8_repair),
 *    split it into lines, interpret them; bounds as the API documents them (a raw line over
 *    max_line, even unterminated, or data over max_event after decoding is HSC_ETOOBIG);
 *  - every string handed out is valid UTF-8; the type (never empty) and the data are NUL-terminated
 *    at their lengths and kept byte-exact, NULs included; data_len never exceeds max_event, and an
 *    id holds no CR or LF;
 *  - a callback's non-zero return stops the feed with that value, right after its line;
 *  - reset keeps the last event id and nothing else: after it, the stream gives exactly what a
 *    fresh parser given that id with hsc_sse_parser_set_last_id() gives (which must accept it).
 *
 * Input layout: byte 0 holds flags (bits 0-1 choose max_line among 1 MiB, 16, 4 and 0; bits 2-3
 * max_event among 1 MiB, 12, 3 and 0; bit 4 sets the last event id "s1" first; bit 5 makes the
 * event callback stop at event 1 + (byte 1 & 3)), bytes 1-3 seed the cut positions; the rest is
 * the stream.
 */
#include "hsc/codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_sseparse: %s:%d: property violated: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define STOP_RC 77

/* ---- a log of what happened, as bytes: one tagged record per callback ---------------------- */

typedef struct log_s {
    unsigned char *p;
    size_t len, cap;
} log_t;

static void log_put(log_t *l, const void *s, size_t n)
{
    if (l->len + n > l->cap) {
        l->cap = (l->len + n) * 2 + 64;
        l->p = realloc(l->p, l->cap);
        CHECK(l->p != NULL);
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void log_str(log_t *l, const char *s, size_t n)
{
    uint64_t len = n;
    log_put(l, &len, sizeof len);
    log_put(l, s, n);
}

static void log_tag(log_t *l, char tag)
{
    log_put(l, &tag, 1);
}

static void log_event(log_t *l, const char *type, size_t type_len, const char *data,
                      size_t data_len, const char *id)
{
    log_tag(l, 'E');
    log_str(l, type, type_len);
    log_str(l, data, data_len);
    log_str(l, id, strlen(id));
}

static void log_retry(log_t *l, uint64_t ms)
{
    log_tag(l, 'R');
    log_put(l, &ms, sizeof ms);
}

static void log_comment(log_t *l, const char *text, size_t len)
{
    log_tag(l, 'C');
    log_str(l, text, len);
}

static void log_end(log_t *l, int rc, const char *last_id)
{
    log_tag(l, 'X');
    log_put(l, &rc, sizeof rc);
    log_str(l, last_id, strlen(last_id));
}

/* ---- the parser under test ---------------------------------------------------------------- */

typedef struct config_s {
    size_t max_line, max_event;
    const char *set_last_id;
    int stop_at; /* > 0: the event callback returns STOP_RC at this event */
} config_t;

typedef struct sink_s {
    log_t log;
    const config_t *cfg;
    int events;
} sink_t;

static int on_event(void *user, const hsc_sse_msg_t *m)
{
    sink_t *s = user;
    CHECK(m->type != NULL && m->data != NULL && m->id != NULL);
    CHECK(m->type_len > 0 && m->type[m->type_len] == '\0');
    CHECK(m->data[m->data_len] == '\0');
    CHECK(m->data_len <= s->cfg->max_event);
    CHECK(hsc_utf8_valid(m->type, m->type_len));
    CHECK(hsc_utf8_valid(m->data, m->data_len));
    CHECK(hsc_utf8_valid(m->id, strlen(m->id)));
    CHECK(strpbrk(m->id, "\r\n") == NULL);
    log_event(&s->log, m->type, m->type_len, m->data, m->data_len, m->id);
    return ++s->events == s->cfg->stop_at ? STOP_RC : 0;
}

static int on_retry(void *user, uint64_t ms)
{
    log_retry(&((sink_t *)user)->log, ms);
    return 0;
}

static int on_comment(void *user, const char *text, size_t len)
{
    CHECK(text != NULL);
    CHECK(hsc_utf8_valid(text, len));
    log_comment(&((sink_t *)user)->log, text, len);
    return 0;
}

static hsc_sse_parser_t *parser_for(sink_t *s)
{
    hsc_sse_parser_t *p =
        hsc_sse_parser_new(s->cfg->max_line, s->cfg->max_event, on_event, on_retry, on_comment, s);
    CHECK(p != NULL);
    if (s->cfg->set_last_id != NULL)
        CHECK(hsc_sse_parser_set_last_id(p, s->cfg->set_last_id) == 0);
    return p;
}

/* Feeds wire[0..len) in pieces ending at cuts[0..ncuts) then len, into an existing parser;
 * stops at the first non-zero return; ends the stream; logs the result and the last id. */
static void feed_cuts(hsc_sse_parser_t *p, sink_t *s, const uint8_t *wire, size_t len,
                      const size_t *cuts, size_t ncuts)
{
    size_t from = 0;
    int rc = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        rc = hsc_sse_parser_feed(p, wire + from, to - from);
        from = to;
    }
    CHECK(rc == 0 || rc == HSC_ETOOBIG || rc == STOP_RC);
    hsc_sse_parser_end(p);
    log_end(&s->log, rc, hsc_sse_parser_last_id(p));
}

static log_t run(const config_t *cfg, const uint8_t *wire, size_t len, const size_t *cuts,
                 size_t ncuts)
{
    sink_t s = {.cfg = cfg};
    hsc_sse_parser_t *p = parser_for(&s);
    feed_cuts(p, &s, wire, len, cuts, ncuts);
    hsc_sse_parser_free(p);
    return s.log;
}

/* ---- the reference: the whole stream at once ---------------------------------------------- */

typedef struct ref_s {
    log_t log;
    const config_t *cfg;
    int events;
    char *data, *type, *id_buf, *last_id; /* type, id_buf, last_id NUL-terminated */
    size_t data_len, type_len;
} ref_t;

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    CHECK(d != NULL);
    if (n > 0)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* One decoded line. Returns 0, HSC_ETOOBIG, or STOP_RC. */
static int ref_line(ref_t *r, const char *s, size_t n)
{
    if (n == 0) {
        free(r->last_id);
        r->last_id = dup_n(r->id_buf, strlen(r->id_buf));
        if (r->data_len == 0) {
            r->type_len = 0;
            return 0;
        }
        r->data_len--;
        /* The type buffer whole, NULs included; "message" only when it is empty. */
        log_event(&r->log, r->type_len ? r->type : "message", r->type_len ? r->type_len : 7,
                  r->data, r->data_len, r->last_id);
        r->data_len = 0;
        r->type_len = 0;
        return ++r->events == r->cfg->stop_at ? STOP_RC : 0;
    }
    if (s[0] == ':') {
        log_comment(&r->log, s + 1, n - 1);
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
        if (r->data_len + vlen > r->cfg->max_event)
            return HSC_ETOOBIG;
        r->data = realloc(r->data, r->data_len + vlen + 1);
        CHECK(r->data != NULL);
        if (vlen > 0)
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
            log_retry(&r->log, ms);
    }
    return 0;
}

static size_t line_end(const char *s, size_t n, size_t i)
{
    while (i < n && s[i] != '\r' && s[i] != '\n')
        i++;
    return i;
}

static size_t skip_eol(const char *s, size_t n, size_t e)
{
    return s[e] == '\r' && e + 1 < n && s[e + 1] == '\n' ? e + 2 : e + 1;
}

static log_t ref_run(const config_t *cfg, const uint8_t *wire, size_t len)
{
    const char *raw = (const char *)wire;
    size_t n = len;
    int bom_prefix = n < 3 && (n == 0 || memcmp(raw, "\xef\xbb\xbf", n) == 0);
    if (n >= 3 && memcmp(raw, "\xef\xbb\xbf", 3) == 0) {
        raw += 3;
        n -= 3;
    }
    char *text = malloc(3 * n + 1);
    CHECK(text != NULL);
    size_t tn = hsc_utf8_repair(text, raw, n);

    ref_t r = {.cfg = cfg};
    const char *start = cfg->set_last_id != NULL ? cfg->set_last_id : "";
    r.type = dup_n("", 0);
    r.id_buf = dup_n(start, strlen(start));
    r.last_id = dup_n(start, strlen(start));
    size_t ri = 0, ti = 0;
    int rc = 0;
    for (;;) {
        /* Decoding keeps every CR and LF: the raw and the decoded lines are the same lines. */
        size_t re = line_end(raw, n, ri), te = line_end(text, tn, ti);
        CHECK((re == n) == (te == tn));
        if (re == n) { /* unterminated: discarded, but bounded while it waits for its end */
            if (n - ri > cfg->max_line && !bom_prefix)
                rc = HSC_ETOOBIG;
            break;
        }
        CHECK(raw[re] == text[te]);
        if (re - ri > cfg->max_line) {
            rc = HSC_ETOOBIG;
            break;
        }
        rc = ref_line(&r, text + ti, te - ti);
        if (rc != 0)
            break;
        ri = skip_eol(raw, n, re);
        ti = skip_eol(text, tn, te);
    }
    /* Whatever the end, an unterminated event is dropped and the last id stays. */
    log_end(&r.log, rc, r.last_id);
    free(r.data);
    free(r.type);
    free(r.id_buf);
    free(r.last_id);
    free(text);
    return r.log;
}

/* ---- the target --------------------------------------------------------------------------- */

static int same(const log_t *a, const log_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    static const size_t lines[4] = {1u << 20, 16, 4, 0};
    static const size_t events[4] = {1u << 20, 12, 3, 0};
    if (size < 4)
        return 0;
    config_t cfg = {
        .max_line = lines[in[0] & 3],
        .max_event = events[(in[0] >> 2) & 3],
        .set_last_id = in[0] & 16 ? "s1" : NULL,
        .stop_at = in[0] & 32 ? 1 + (in[1] & 3) : 0,
    };
    uint32_t seed = (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3] | 1u;
    const uint8_t *wire = in + 4;
    size_t len = size - 4;

    log_t want = ref_run(&cfg, wire, len);

    log_t whole = run(&cfg, wire, len, NULL, 0);
    CHECK(same(&whole, &want));

    size_t ncuts = len > 0 ? next_rand(&seed) % 16 : 0;
    size_t *cuts = malloc((len + 16) * sizeof *cuts); /* up to 15 cuts, or len - 1 */
    CHECK(cuts != NULL);
    for (size_t i = 0; i < ncuts; i++)
        cuts[i] = next_rand(&seed) % (len + 1);
    qsort(cuts, ncuts, sizeof *cuts, cmp_size);
    log_t split = run(&cfg, wire, len, cuts, ncuts);
    CHECK(same(&split, &want));

    if (len > 1) {
        for (size_t k = 1; k < len; k++)
            cuts[k - 1] = k;
        log_t bytes = run(&cfg, wire, len, cuts, len - 1);
        CHECK(same(&bytes, &want));
        free(bytes.p);
    }

    /* Reset keeps the last id and nothing else. */
    sink_t s = {.cfg = &cfg};
    hsc_sse_parser_t *p = parser_for(&s);
    feed_cuts(p, &s, wire, len / 2, NULL, 0); /* a connection cut anywhere */
    char *kept = dup_n(hsc_sse_parser_last_id(p), strlen(hsc_sse_parser_last_id(p)));
    hsc_sse_parser_reset(p);
    CHECK(strcmp(hsc_sse_parser_last_id(p), kept) == 0);
    s.log.len = 0;
    s.events = 0;
    feed_cuts(p, &s, wire, len, NULL, 0);
    hsc_sse_parser_free(p);

    config_t fresh_cfg = cfg;
    fresh_cfg.set_last_id = kept;
    log_t fresh = run(&fresh_cfg, wire, len, NULL, 0);
    CHECK(same(&s.log, &fresh));

    free(fresh.p);
    free(s.log.p);
    free(kept);
    free(cuts);
    free(split.p);
    free(whole.p);
    free(want.p);
    return 0;
}
