/*
 * Server-Sent Events encoder. The wire format (WHATWG HTML §9.2) is line-based, so the one rule
 * that matters for safety is: data never produces a line that is not "data: ...". Each line of
 * the payload (split on CR, LF or CRLF, exactly the line ends the parser recognises) becomes its
 * own "data:" line; a parser joins them with LF, so a payload with line breaks arrives as one
 * event whose line ends are normalised to LF. Type and id come from the server, never from a
 * client's bytes unchecked: CR, LF or NUL in them is refused.
 *
 * Encoding is two passes over the data (measure, then write) so callers can size a frame exactly
 * once; no allocation here.
 */
#include "hsc/codec.h"

#include <stdio.h>
#include <string.h>

static int field_ok(const char *s)
{
    return s == NULL || strpbrk(s, "\r\n") == NULL;
}

/* Appends `n` bytes at out[*len] when they fit, and always advances *len. */
static void put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + n <= cap)
        memcpy(out + *len, s, n);
    *len += n;
}

/* The first CR or LF in [p, end), or end: memchr's word-at-a-time scan, not a byte loop (an
 * event's data is encoded once per publish and once per event replayed from the journal). */
static const char *find_eol(const char *p, const char *end)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    const char *stop = lf != NULL ? lf : end;
    const char *cr = memchr(p, '\r', (size_t)(stop - p));
    return cr != NULL ? cr : stop;
}

ssize_t hsc_sse_encode(char *out, size_t cap, const hsc_sse_event_t *ev)
{
    if (!field_ok(ev->type) || !field_ok(ev->id))
        return HSC_EINVAL;
    size_t len = 0;
    if (ev->retry_ms >= 0) {
        char tmp[40];
        int n = snprintf(tmp, sizeof tmp, "retry: %ld\n", ev->retry_ms);
        put(out, cap, &len, tmp, (size_t)n);
    }
    if (ev->type != NULL && ev->type[0] != '\0') {
        put(out, cap, &len, "event: ", 7);
        put(out, cap, &len, ev->type, strlen(ev->type));
        put(out, cap, &len, "\n", 1);
    }
    if (ev->id != NULL) {
        put(out, cap, &len, "id: ", 4);
        put(out, cap, &len, ev->id, strlen(ev->id));
        put(out, cap, &len, "\n", 1);
    }
    const char *p = ev->data ? ev->data : "";
    const char *end = p + ev->data_len;
    for (;;) {
        const char *eol = find_eol(p, end);
        put(out, cap, &len, "data: ", 6);
        put(out, cap, &len, p, (size_t)(eol - p));
        put(out, cap, &len, "\n", 1);
        if (eol == end)
            break;
        p = eol + 1;
        if (*eol == '\r' && p < end && *p == '\n')
            p++;
        /* A payload that ends with a line break still needs the empty last line, so that the
         * parser reproduces the trailing LF: loop once more with p == end. */
    }
    put(out, cap, &len, "\n", 1);
    return (ssize_t)len;
}

ssize_t hsc_sse_comment(char *out, size_t cap, const char *text)
{
    if (!field_ok(text))
        return HSC_EINVAL;
    size_t len = 0;
    put(out, cap, &len, ":", 1);
    if (text != NULL && text[0] != '\0') {
        put(out, cap, &len, " ", 1);
        put(out, cap, &len, text, strlen(text));
    }
    put(out, cap, &len, "\n", 1);
    return (ssize_t)len;
}
