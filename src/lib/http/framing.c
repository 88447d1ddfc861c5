/*
 * Message framing, read strictly: a second reading of the bytes that decide where a request
 * starts and ends, so that hscd and any front end before it cannot disagree about it (request
 * smuggling).
 *
 * Why. hscd's llhttp is built without its strict mode, which would also refuse raw UTF-8 in a
 * query (curl sends it as typed). Lenient llhttp takes a bare LF for a line end in places, skips
 * the two bytes after chunk data and the byte after a chunk size's CR without looking at them,
 * and accepts obs-fold. Each is harmless alone and a desync behind a front end that reads the same
 * bytes differently: `3\r\nabcXX0\r\n\r\n` is a complete body to hscd, and `2\r\nxx\nf0\r\n...`
 * hides a request in what a bare-LF-tolerant proxy takes for chunk data. The Debian llhttp (8.1)
 * has no per-parser flag for these.
 *
 * What. Every line of a head and of a chunked body (size lines, trailer fields, the final empty
 * line) ends in CRLF: a CR not followed by LF, or an LF without its CR, is an error. A head or
 * trailer line may not start with a space or a tab (obs-fold, RFC 9112 §5.2: rejected rather than
 * replaced). A chunk size is 1 to 16 hex digits, followed by extensions without control bytes (but
 * HTAB); chunk data is followed by CRLF. Empty lines (CRLF) before a request line are skipped, as
 * RFC 9112 §2.2 suggests. Everything else (field syntax, methods, versions, lengths) is llhttp's.
 *
 * How it is used (conn.c). The checker reads a connection's bytes before llhttp does, and llhttp is
 * given only what the checker accepted. It stops after a head, until on_headers_complete tells it
 * the body's framing (hsc_framing_body()), and after a message. llhttp must then agree: end the
 * head and the message at the same bytes, or the request is refused as ambiguous. A pure module:
 * no allocation, no I/O; bytes in, a count or an error out.
 */
#include "http/conn.h"

enum {
    S_START,     /* before a request line: empty lines (CRLF) may come first */
    S_START_CR,  /* a CR before the request line */
    S_LINE,      /* inside a head line */
    S_LINE_CR,   /* a CR in a head line */
    S_FIELD,     /* at the start of a head line after the request line */
    S_FIELD_CR,  /* a CR at the start of a line: the end of the head */
    S_HEAD_END,  /* the head is read; waiting for hsc_framing_body() */
    S_LENGTH,    /* Content-Length body */
    S_SIZE,      /* a chunk size line: hex digits */
    S_EXT,       /* a chunk size line: extensions */
    S_SIZE_CR,   /* a CR after the chunk size line */
    S_DATA,      /* chunk data */
    S_DATA_CR,   /* the CR after chunk data */
    S_DATA_LF,   /* the LF after chunk data */
    S_TLINE,     /* inside a trailer line */
    S_TLINE_CR,  /* a CR in a trailer line */
    S_TFIELD,    /* at the start of a trailer line */
    S_TFIELD_CR, /* a CR at the start of a trailer line: the end of the message */
    S_DONE,      /* the message is complete */
    S_ERROR
};

void hsc_framing_start(hsc_framing_t *f)
{
    f->state = S_START;
    f->digits = 0;
    f->left = 0;
    f->error = NULL;
}

bool hsc_framing_head_done(const hsc_framing_t *f)
{
    return f->state == S_HEAD_END;
}

bool hsc_framing_done(const hsc_framing_t *f)
{
    return f->state == S_DONE;
}

void hsc_framing_body(hsc_framing_t *f, bool chunked, uint64_t length)
{
    if (f->state != S_HEAD_END)
        return;
    f->digits = 0;
    f->left = length;
    f->state = chunked ? S_SIZE : length > 0 ? S_LENGTH : S_DONE;
}

static ssize_t fail(hsc_framing_t *f, const char *why)
{
    f->state = S_ERROR;
    f->error = why;
    return HSC_EINVAL;
}

ssize_t hsc_framing_scan(hsc_framing_t *f, const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;
    while (i < len) {
        unsigned char ch = p[i];
        switch (f->state) {
        case S_START:
            if (ch == '\r')
                f->state = S_START_CR;
            else if (ch == '\n')
                return fail(f, "a bare LF before the request line");
            else
                f->state = S_LINE;
            break;
        case S_START_CR:
            if (ch != '\n')
                return fail(f, "a CR without LF before the request line");
            f->state = S_START;
            break;
        case S_LINE:
        case S_TLINE: {
            /* The middle of a line: only a CR or an LF matters. */
            const unsigned char *end = p + len, *q = p + i;
            while (q < end && *q != '\r' && *q != '\n')
                q++;
            i = (size_t)(q - p);
            if (i == len)
                return (ssize_t)len;
            if (*q == '\n')
                return fail(f, f->state == S_LINE ? "a line of the head ends in a bare LF"
                                                  : "a trailer line ends in a bare LF");
            f->state = f->state == S_LINE ? S_LINE_CR : S_TLINE_CR;
            break;
        }
        case S_LINE_CR:
        case S_TLINE_CR:
            if (ch != '\n')
                return fail(f, f->state == S_LINE_CR ? "a CR without LF in the head"
                                                     : "a CR without LF in a trailer line");
            f->state = f->state == S_LINE_CR ? S_FIELD : S_TFIELD;
            break;
        case S_FIELD:
        case S_TFIELD:
            if (ch == '\r') {
                f->state = f->state == S_FIELD ? S_FIELD_CR : S_TFIELD_CR;
            } else if (ch == '\n') {
                return fail(f, f->state == S_FIELD ? "the head ends in a bare LF"
                                                   : "the trailer section ends in a bare LF");
            } else if (ch == ' ' || ch == '\t') {
                return fail(f, "obs-fold (a field line continued on the next line)");
            } else {
                f->state = f->state == S_FIELD ? S_LINE : S_TLINE;
            }
            break;
        case S_FIELD_CR:
            if (ch != '\n')
                return fail(f, "a CR without LF at the end of the head");
            f->state = S_HEAD_END;
            return (ssize_t)(i + 1);
        case S_TFIELD_CR:
            if (ch != '\n')
                return fail(f, "a CR without LF at the end of the trailer section");
            f->state = S_DONE;
            return (ssize_t)(i + 1);
        case S_HEAD_END:
        case S_DONE:
            return (ssize_t)i;
        case S_LENGTH: {
            size_t n = len - i < f->left ? len - i : (size_t)f->left;
            f->left -= n;
            i += n;
            if (f->left == 0) {
                f->state = S_DONE;
                return (ssize_t)i;
            }
            continue;
        }
        case S_SIZE: {
            int v = hsc_hex_value(ch);
            if (v >= 0) {
                if (++f->digits > 16)
                    return fail(f, "a chunk size of more than 16 hex digits");
                f->left = f->left << 4 | (uint64_t)v;
            } else if (f->digits == 0) {
                return fail(f, "a chunk size line without a size");
            } else if (ch == ';') {
                f->state = S_EXT;
            } else if (ch == '\r') {
                f->state = S_SIZE_CR;
            } else {
                return fail(f, ch == '\n' ? "a chunk size line ends in a bare LF"
                                          : "a bad character in a chunk size");
            }
            break;
        }
        case S_EXT:
            if (ch == '\r')
                f->state = S_SIZE_CR;
            else if (ch == '\n')
                return fail(f, "a chunk size line ends in a bare LF");
            else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return fail(f, "a control character in a chunk extension");
            break;
        case S_SIZE_CR:
            if (ch != '\n')
                return fail(f, "a CR without LF after a chunk size");
            f->state = f->left > 0 ? S_DATA : S_TFIELD;
            break;
        case S_DATA: {
            size_t n = len - i < f->left ? len - i : (size_t)f->left;
            f->left -= n;
            i += n;
            if (f->left == 0)
                f->state = S_DATA_CR;
            continue;
        }
        case S_DATA_CR:
        case S_DATA_LF:
            if (ch != (f->state == S_DATA_CR ? '\r' : '\n'))
                return fail(f, "chunk data not followed by CRLF");
            if (f->state == S_DATA_CR) {
                f->state = S_DATA_LF;
            } else {
                f->state = S_SIZE;
                f->digits = 0;
            }
            break;
        default:
            return fail(f, f->error != NULL ? f->error : "bad framing");
        }
        i++;
    }
    return (ssize_t)len;
}
