/*
 * Server-Sent Events parser: WHATWG HTML §9.2.6, "Interpreting an event stream".
 *
 * The spec decodes the byte stream as UTF-8 (stripping one leading BOM), then splits it into
 * lines at CRLF, LF or CR and interprets each line. Here the lines are split on the bytes, and
 * only the parts that leave the parser (a field value, a comment) are decoded, each on its own:
 * that is the same thing, because CR, LF, ':' and ' ' are ASCII, and an ASCII byte always ends
 * an invalid UTF-8 sequence and is never taken into one. Valid text (the usual case) is copied
 * as it is; anything else goes through hsc_utf8_repair(), which makes each maximal invalid
 * subpart one U+FFFD as a browser's decoder does.
 *
 * Feeding is line-at-a-time: memchr finds the line ends, a line wholly inside a feed is
 * interpreted where it lies, and only a line cut by the end of a feed is copied into the line
 * buffer. The next CR and LF positions are remembered between lines, so a feed is scanned once
 * whatever its mix of line ends.
 *
 * Buffers (grown on demand, within their bounds):
 *   line     raw bytes of a line cut by the end of a feed            <= max_line
 *   data     the data buffer: text, each "data" value followed by LF  <= max_event + 1
 *   type     the event type buffer, NULs kept (given with its length) <= one decoded line
 *   id       the last event ID buffer, while it differs from last_id  <= one decoded line
 *   last_id  the last event ID string, set at each dispatch           <= one decoded line
 *   scratch  the decoding of a value that is not valid UTF-8         <= 3 * max_line
 * A decoded line is at most 3 * max_line bytes (a byte that becomes U+FFFD takes three).
 */
#include "hsc/codec.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Buffers above this capacity are freed once used, so thousands of idle parsers stay small. */
#define KEEP_CAP 65536
/* Smallest allocation of a buffer. */
#define MIN_CAP 32

typedef struct sbuf_s {
    char *p;
    size_t len, cap;
} sbuf_t;

struct hsc_sse_parser_s {
    size_t max_line, max_event;
    hsc_sse_event_cb on_event;
    hsc_sse_retry_cb on_retry;
    hsc_sse_comment_cb on_comment;
    void *user;

    sbuf_t line, data, type, id, last_id, scratch;
    unsigned bom;  /* bytes of a BOM matched at the start of the stream, while !bom_done */
    bool bom_done; /* the start of the stream is behind us: BOM stripped or absent */
    bool cr;       /* the last line ended with a CR that ended a feed: one LF may follow */
    bool id_set;   /* the id buffer was set since the last dispatch (else it equals last_id) */
    int failed;    /* HSC_ETOOBIG or HSC_ENOMEM: every feed refused until reset */
};

static const unsigned char BOM[3] = {0xef, 0xbb, 0xbf};

/* ---- buffers ------------------------------------------------------------------------------ */

/* Makes room for `need` bytes; the capacity doubles but stays within `limit` (or MIN_CAP). */
static int reserve(sbuf_t *b, size_t need, size_t limit)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : MIN_CAP;
    while (cap < need)
        cap = cap <= SIZE_MAX / 2 ? cap * 2 : SIZE_MAX;
    if (cap > limit)
        cap = limit < MIN_CAP ? MIN_CAP : limit;
    if (cap < need)
        cap = need;
    char *q = realloc(b->p, cap);
    if (q == NULL)
        return HSC_ENOMEM;
    b->p = q;
    b->cap = cap;
    return 0;
}

static void release(sbuf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Frees a buffer that grew large, once it is empty again. */
static void trim(sbuf_t *b)
{
    if (b->cap > KEEP_CAP)
        release(b);
}

/* Sets a buffer to `n` bytes and a NUL. */
static int set_str(sbuf_t *b, const char *s, size_t n)
{
    if (n == SIZE_MAX || reserve(b, n + 1, n + 1) != 0)
        return HSC_ENOMEM;
    memcpy(b->p, s, n);
    b->p[n] = '\0';
    b->len = n;
    return 0;
}

static int fail(hsc_sse_parser_t *p, int err)
{
    p->failed = err;
    return err;
}

/*
 * Returns `len` bytes as valid UTF-8: `s` itself, or its decoding (U+FFFD for invalid bytes) in
 * the scratch buffer, with *len updated. NULL when out of memory.
 */
static const char *as_text(hsc_sse_parser_t *p, const char *s, size_t *len)
{
    if (hsc_utf8_valid(s, *len))
        return s;
    if (*len > SIZE_MAX / 3 || reserve(&p->scratch, *len * 3, *len * 3) != 0)
        return NULL;
    *len = hsc_utf8_repair(p->scratch.p, s, *len);
    return p->scratch.p;
}

/* ---- interpreting a line ------------------------------------------------------------------ */

/* "Dispatch the event", for a user agent that is not a web browser but behaves like one. */
static int dispatch(hsc_sse_parser_t *p)
{
    if (p->id_set) { /* the last event ID string := the last event ID buffer */
        sbuf_t t = p->last_id;
        p->last_id = p->id;
        p->id = t;
        p->id_set = false;
    }
    if (p->data.len == 0) {
        p->type.len = 0;
        return 0;
    }
    /* The data buffer always ends with the LF appended after its last value: it becomes the
     * NUL, so the buffer never needs more than max_event + 1 bytes. */
    p->data.p[--p->data.len] = '\0';
    /* The type buffer keeps its value whole, NULs included: it goes out with its length. */
    bool typed = p->type.len > 0;
    hsc_sse_msg_t msg = {
        .type = typed ? p->type.p : "message",
        .type_len = typed ? p->type.len : 7,
        .data = p->data.p,
        .data_len = p->data.len,
        .id = p->last_id.p != NULL ? p->last_id.p : "",
    };
    p->data.len = 0;
    p->type.len = 0;
    int rc = p->on_event != NULL ? p->on_event(p->user, &msg) : 0;
    trim(&p->data);
    return rc;
}

static int field_data(hsc_sse_parser_t *p, const char *v, size_t vlen)
{
    v = as_text(p, v, &vlen);
    if (v == NULL)
        return fail(p, HSC_ENOMEM);
    /* After this value the dispatched data would be data.len + vlen bytes (the LF already in the
     * buffer joins, the one appended now is removed at dispatch). */
    if (vlen > p->max_event || p->data.len > p->max_event - vlen)
        return fail(p, HSC_ETOOBIG);
    size_t need = p->data.len + vlen + 1;
    size_t limit = p->max_event < SIZE_MAX ? p->max_event + 1 : SIZE_MAX;
    if (reserve(&p->data, need, limit) != 0)
        return fail(p, HSC_ENOMEM);
    memcpy(p->data.p + p->data.len, v, vlen);
    p->data.len += vlen;
    p->data.p[p->data.len++] = '\n';
    return 0;
}

static int field_text(hsc_sse_parser_t *p, sbuf_t *b, const char *v, size_t vlen)
{
    v = as_text(p, v, &vlen);
    if (v == NULL || set_str(b, v, vlen) != 0)
        return fail(p, HSC_ENOMEM);
    return 0;
}

static int field_retry(hsc_sse_parser_t *p, const char *v, size_t vlen)
{
    if (vlen == 0)
        return 0; /* no digits: not an integer */
    uint64_t ms = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        unsigned d = (unsigned)(v[i] - '0');
        ms = ms > (UINT64_MAX - d) / 10 ? UINT64_MAX : ms * 10 + d;
    }
    return p->on_retry != NULL ? p->on_retry(p->user, ms) : 0;
}

static int comment(hsc_sse_parser_t *p, const char *text, size_t len)
{
    if (p->on_comment == NULL)
        return 0;
    if (len == 0)
        return p->on_comment(p->user, "", 0);
    text = as_text(p, text, &len);
    if (text == NULL)
        return fail(p, HSC_ENOMEM);
    int rc = p->on_comment(p->user, text, len);
    trim(&p->scratch);
    return rc;
}

/* One line, without its line end. */
static int interpret(hsc_sse_parser_t *p, const char *s, size_t n)
{
    if (n == 0)
        return dispatch(p);
    if (s[0] == ':')
        return comment(p, s + 1, n - 1);
    /* Field names are compared on the raw bytes: a name with invalid bytes decodes to one with
     * U+FFFD, which matches no known field either. */
    const char *colon = memchr(s, ':', n);
    size_t flen = colon != NULL ? (size_t)(colon - s) : n;
    const char *v = colon != NULL ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    int rc = 0;
    if (flen == 4 && memcmp(s, "data", 4) == 0) {
        rc = field_data(p, v, vlen);
    } else if (flen == 5 && memcmp(s, "event", 5) == 0) {
        rc = field_text(p, &p->type, v, vlen);
    } else if (flen == 2 && memcmp(s, "id", 2) == 0) {
        if (memchr(v, '\0', vlen) == NULL) {
            rc = field_text(p, &p->id, v, vlen);
            p->id_set = rc == 0;
        }
    } else if (flen == 5 && memcmp(s, "retry", 5) == 0) {
        rc = field_retry(p, v, vlen);
    }
    trim(&p->scratch);
    return rc;
}

/* ---- feeding ------------------------------------------------------------------------------ */

/* Keeps bytes of a line cut by the end of a feed. */
static int keep(hsc_sse_parser_t *p, const void *s, size_t n)
{
    if (n > p->max_line - p->line.len)
        return fail(p, HSC_ETOOBIG);
    if (reserve(&p->line, p->line.len + n, p->max_line) != 0)
        return fail(p, HSC_ENOMEM);
    memcpy(p->line.p + p->line.len, s, n);
    p->line.len += n;
    return 0;
}

hsc_sse_parser_t *hsc_sse_parser_new(size_t max_line, size_t max_event, hsc_sse_event_cb on_event,
                                     hsc_sse_retry_cb on_retry, hsc_sse_comment_cb on_comment,
                                     void *user)
{
    hsc_sse_parser_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->max_line = max_line;
    p->max_event = max_event;
    p->on_event = on_event;
    p->on_retry = on_retry;
    p->on_comment = on_comment;
    p->user = user;
    return p;
}

int hsc_sse_parser_feed(hsc_sse_parser_t *p, const void *data, size_t len)
{
    if (p->failed)
        return p->failed;
    if (len == 0)
        return 0; /* before any pointer arithmetic: data may be NULL */
    const char *s = data, *end = s + len;

    if (!p->bom_done) { /* the BOM may come in pieces */
        while (s < end && p->bom < 3 && (unsigned char)*s == BOM[p->bom]) {
            s++;
            p->bom++;
        }
        if (p->bom < 3 && s == end)
            return 0; /* still a BOM so far */
        p->bom_done = true;
        /* A BOM cut short by another byte was not one: its bytes start the first line. */
        if (p->bom < 3 && p->bom > 0 && keep(p, BOM, p->bom) != 0)
            return p->failed;
    }
    if (p->cr && s < end) {
        if (*s == '\n')
            s++; /* the LF of a CRLF cut between two feeds */
        p->cr = false;
    }

    /* The next LF and CR at or after s, or end for none; searched again only once passed. */
    const char *lf = NULL, *cr = NULL;
    while (s < end) {
        if (lf == NULL || lf < s) {
            lf = memchr(s, '\n', (size_t)(end - s));
            if (lf == NULL)
                lf = end;
        }
        if (cr == NULL || cr < s) {
            cr = memchr(s, '\r', (size_t)(end - s));
            if (cr == NULL)
                cr = end;
        }
        const char *eol = lf < cr ? lf : cr;
        if (eol == end)
            return keep(p, s, (size_t)(end - s));

        const char *line = s;
        size_t n = (size_t)(eol - s);
        if (p->line.len > 0) {
            if (keep(p, s, n) != 0)
                return p->failed;
            line = p->line.p;
            n = p->line.len;
        } else if (n > p->max_line) {
            return fail(p, HSC_ETOOBIG);
        }
        s = eol + 1;
        if (*eol == '\r') {
            if (s == end)
                p->cr = true;
            else if (*s == '\n')
                s++;
        }
        int rc = interpret(p, line, n);
        p->line.len = 0;
        trim(&p->line);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void hsc_sse_parser_reset(hsc_sse_parser_t *p)
{
    release(&p->line);
    release(&p->data);
    release(&p->type);
    release(&p->id);
    release(&p->scratch);
    p->bom = 0;
    p->bom_done = false;
    p->cr = false;
    p->id_set = false; /* the id buffer starts as the last event id */
    p->failed = 0;
}

void hsc_sse_parser_end(hsc_sse_parser_t *p)
{
    hsc_sse_parser_reset(p);
}

const char *hsc_sse_parser_last_id(const hsc_sse_parser_t *p)
{
    return p->last_id.p != NULL ? p->last_id.p : "";
}

int hsc_sse_parser_set_last_id(hsc_sse_parser_t *p, const char *id)
{
    if (id == NULL)
        id = "";
    size_t n = strlen(id);
    if (memchr(id, '\r', n) != NULL || memchr(id, '\n', n) != NULL || !hsc_utf8_valid(id, n))
        return HSC_EINVAL;
    if (set_str(&p->last_id, id, n) != 0)
        return HSC_ENOMEM;
    p->id_set = false;
    return 0;
}

void hsc_sse_parser_free(hsc_sse_parser_t *p)
{
    if (p == NULL)
        return;
    release(&p->line);
    release(&p->data);
    release(&p->type);
    release(&p->id);
    release(&p->last_id);
    release(&p->scratch);
    free(p);
}
