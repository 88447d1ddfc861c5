/*
 * Requests: what llhttp tells a connection, turned into an hsc_req_t, and the accessors handlers
 * read it through.
 *
 * The head (target and header fields) is copied into one bounded buffer, each piece
 * NUL-terminated, and referred to by 16-bit offsets (HSC_HEAD_MAX), so that a request held for
 * hours by a subscriber costs a few bytes a header. Past --max-header-bytes or HSC_MAX_HEADERS the
 * request fails with 431; a body past --max-body-bytes with 413; an Expect other than
 * 100-continue with 417 (an HTTP/1.1 "100-continue" is answered at once, through the output
 * queue); CONNECT with 405. RFC 9112's musts are 400s: no Host on HTTP/1.1, two Hosts or a bad
 * one, a field without a name, a control character in the target, a Transfer-Encoding other than
 * one `chunked` (501 for another coding), Transfer-Encoding on HTTP/1.0; a version other than
 * 1.x is 505. A callback that hits a limit records the status and reason once (req_fail) and stops
 * the parser; conn.c answers with them and closes.
 *
 * Pointers into the head (target, path, query) are taken once the head is complete and shrunk.
 * hsc_req_header() sees only fields whose value is complete: a parse error can stop in the middle
 * of one.
 *
 * Trailer fields of a chunked body are not header fields (RFC 9110 §6.5.1: a recipient must not
 * merge them into the header section): a token or a cookie there authorises nothing. No route asks
 * for them, so they are checked (names as in the head, their size against --max-header-bytes)
 * and dropped.
 *
 * on_message_complete pauses the parser: conn.c dispatches the request and resumes parsing the
 * connection's next bytes only after the response has ended. Log lines show the target with an
 * access_token query parameter's value redacted (hsc_req_log_target()).
 */
#include "http/conn.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static hsc_conn_t *conn_of_parser(llhttp_t *p)
{
    return (hsc_conn_t *)p->data;
}

/* ---- request state --------------------------------------------------------------------------- */

void hsc_req_reset(hsc_req_t *r)
{
    r->head.len = 0;
    r->body.len = 0;
    r->nhdr = 0;
    r->nhdr_done = 0;
    r->last_cb = 0;
    r->error_status = 0;
    r->error_reason = NULL;
    r->trailer_bytes = 0;
    r->trailer_name_len = 0;
    r->target = r->path = r->query = NULL;
    r->target_len = r->path_len = r->query_len = 0;
    r->head_only = false;
    r->method = 0;
    r->method_name = NULL;
}

static int req_fail(hsc_req_t *r, int status, const char *reason)
{
    if (r->error_status == 0) {
        r->error_status = status;
        r->error_reason = reason;
    }
    return -1;
}

static int head_append(hsc_req_t *r, const char *at, size_t len)
{
    int rc = hsc_buf_append(&r->head, at, len);
    if (rc == HSC_ETOOBIG)
        return req_fail(r, 431, "request line and headers are too large");
    if (rc != 0)
        return req_fail(r, 503, "out of memory");
    return 0;
}

/* Whether the parser is in the trailer section: fields that arrive once the head is complete. */
static bool in_trailers(const hsc_conn_t *c)
{
    return c->state == CONN_BODY;
}

/* A piece of a trailer field (name or value): counted, never kept. */
static int trailer_piece(hsc_conn_t *c, const char *at, size_t len, bool name)
{
    hsc_req_t *r = &c->req;
    r->trailer_bytes += len;
    if (r->trailer_bytes > c->h->cfg->max_header_bytes)
        return req_fail(r, 431, "trailer section is too large");
    if (name) {
        r->trailer_name_len += len;
        if (memchr(at, ' ', len) != NULL || memchr(at, '\t', len) != NULL)
            return req_fail(r, 400, "malformed request: whitespace in a trailer field name");
    }
    return 0;
}

/* Whether a raw query key names the token: compared after percent-decoding, as auth.c reads it
 * (hsc_query_get()), so that access_%74oken is one too. */
static bool is_token_key(const char *k, size_t n)
{
    static const char name[] = "access_token";
    char buf[sizeof name * 3];
    if (n > sizeof buf)
        return false; /* decodes to more than the name's length: not it */
    ssize_t d = hsc_url_decode(buf, k, n, 1);
    return d == (ssize_t)sizeof name - 1 && memcmp(buf, name, sizeof name - 1) == 0;
}

static void out_append(char *out, size_t cap, size_t *o, const char *p, size_t n)
{
    for (size_t i = 0; i < n && *o + 1 < cap; i++)
        out[(*o)++] = p[i];
}

void hsc_req_log_target(const char *t, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    const char *q = memchr(t, '?', n);
    size_t path_len = q != NULL ? (size_t)(q - t) + 1 : n;
    out_append(out, cap, &o, t, path_len);
    /* The query pair by pair, as hsc_query_next() splits it: a token's value becomes "***". */
    for (size_t i = path_len; i < n;) {
        const char *pair = t + i, *amp = memchr(pair, '&', n - i);
        size_t len = amp != NULL ? (size_t)(amp - pair) : n - i;
        const char *eq = memchr(pair, '=', len);
        size_t klen = eq != NULL ? (size_t)(eq - pair) : len;
        if (klen > 0 && is_token_key(pair, klen)) {
            out_append(out, cap, &o, pair, klen);
            out_append(out, cap, &o, "=***", 4);
        } else {
            out_append(out, cap, &o, pair, len);
        }
        i += len;
        if (i < n) {
            out_append(out, cap, &o, "&", 1);
            i++;
        }
    }
    out[o] = '\0';
}

const char *hsc_req_header(const hsc_req_t *req, const char *name)
{
    size_t nl = strlen(name);
    for (unsigned i = 0; i < req->nhdr_done; i++) { /* complete, NUL-terminated ones */
        const hsc_header_ref_t *h = &req->hdr[i];
        if (h->name_len == nl && strncasecmp(req->head.data + h->name_off, name, nl) == 0)
            return req->head.data + h->value_off;
    }
    return NULL;
}

bool hsc_req_accepts(const hsc_req_t *req, const char *token)
{
    const char *v = hsc_req_header(req, "accept");
    size_t tl = strlen(token);
    while (v != NULL && *v != '\0') {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *end = v;
        while (*end != '\0' && *end != ',' && *end != ';' && *end != ' ')
            end++;
        if ((size_t)(end - v) == tl && strncasecmp(v, token, tl) == 0)
            return true;
        v = strchr(end, ',');
    }
    return false;
}

const char *hsc_req_peer(const hsc_req_t *req)
{
    return req->conn->peer;
}

uv_loop_t *hsc_req_loop(const hsc_req_t *req)
{
    return req->conn->h->loop;
}

/* ---- llhttp callbacks ------------------------------------------------------------------------ */

static int on_message_begin(llhttp_t *p)
{
    hsc_conn_t *c = conn_of_parser(p);
    hsc_req_reset(&c->req);
    c->state = CONN_HEAD;
    if (c->timer_mode != T_HEADER)
        hsc_conn_arm(c, T_HEADER, c->h->cfg->header_timeout_ms);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    hsc_req_t *r = &conn_of_parser(p)->req;
    if (r->last_cb != 1) {
        r->target_off = (uint16_t)r->head.len;
        r->last_cb = 1;
    }
    return head_append(r, at, len);
}

static int on_url_complete(llhttp_t *p)
{
    hsc_req_t *r = &conn_of_parser(p)->req;
    if (r->last_cb != 1)
        r->target_off = (uint16_t)r->head.len;
    r->target_len = r->head.len - r->target_off;
    r->last_cb = 0;
    /* Lenient llhttp lets a tab through (and a tab before the version makes the request line an
     * HTTP/0.9 one); a space there is already refused. */
    const unsigned char *t = (const unsigned char *)r->head.data + r->target_off;
    for (size_t i = 0; i < r->target_len; i++)
        if (t[i] < 0x20 || t[i] == 0x7f)
            return req_fail(r, 400, "malformed request: a control character in the request target");
    return head_append(r, "", 1);
}

/* hscd speaks HTTP/1.x only: HTTP/2.0 as text (and any other major version) is 505. */
static int on_version_complete(llhttp_t *p)
{
    hsc_req_t *r = &conn_of_parser(p)->req;
    if (llhttp_get_http_major(p) != 1)
        return req_fail(r, 505, HSC_VERSION_REASON);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    hsc_conn_t *c = conn_of_parser(p);
    hsc_req_t *r = &c->req;
    if (in_trailers(c))
        return trailer_piece(c, at, len, true);
    if (r->last_cb != 2) {
        if (r->nhdr == HSC_MAX_HEADERS)
            return req_fail(r, 431, "too many header fields");
        r->hdr[r->nhdr++].name_off = (uint16_t)r->head.len;
        r->last_cb = 2;
    }
    return head_append(r, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    hsc_conn_t *c = conn_of_parser(p);
    hsc_req_t *r = &c->req;
    if (in_trailers(c)) {
        bool empty = r->trailer_name_len == 0;
        r->trailer_name_len = 0;
        return empty ? req_fail(r, 400, "malformed request: a trailer field without a name") : 0;
    }
    if (r->last_cb != 2 || r->head.len == r->hdr[r->nhdr - 1].name_off)
        return req_fail(r, 400, "malformed request: a header field without a name");
    hsc_header_ref_t *h = &r->hdr[r->nhdr - 1];
    h->name_len = (uint16_t)(r->head.len - h->name_off);
    r->last_cb = 4;
    /* RFC 9112 §5.1: no whitespace between a field name and its colon (llhttp's lenient mode
     * lets it through for most fields). */
    if (memchr(r->head.data + h->name_off, ' ', h->name_len) != NULL ||
        memchr(r->head.data + h->name_off, '\t', h->name_len) != NULL)
        return req_fail(r, 400, "malformed request: whitespace in a header field name");
    return head_append(r, "", 1);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    hsc_conn_t *c = conn_of_parser(p);
    hsc_req_t *r = &c->req;
    if (in_trailers(c))
        return trailer_piece(c, at, len, false);
    if (r->last_cb != 3) {
        r->hdr[r->nhdr - 1].value_off = (uint16_t)r->head.len;
        r->last_cb = 3;
    }
    return head_append(r, at, len);
}

static int on_header_value_complete(llhttp_t *p)
{
    hsc_conn_t *c = conn_of_parser(p);
    hsc_req_t *r = &c->req;
    if (in_trailers(c))
        return 0;
    hsc_header_ref_t *h = &r->hdr[r->nhdr - 1];
    if (r->last_cb != 3)
        h->value_off = (uint16_t)r->head.len; /* an empty value: no on_header_value call */
    h->value_len = (uint16_t)(r->head.len - h->value_off);
    r->last_cb = 5;
    int rc = head_append(r, "", 1);
    if (rc == 0)
        r->nhdr_done = r->nhdr;
    return rc;
}

/* Splits the request-target into path and query; absolute-form targets lose scheme and host. */
static void split_target(hsc_req_t *r)
{
    const char *t = r->head.data + r->target_off;
    size_t len = r->target_len;
    r->target = t;
    if (len > 7 && (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0)) {
        const char *s = memchr(t + 8 - (t[4] == ':'), '/', len - 7);
        if (s == NULL) {
            r->path = "/";
            r->path_len = 1;
            r->query = NULL;
            return;
        }
        len -= (size_t)(s - t);
        t = s;
    }
    const char *q = memchr(t, '?', len);
    r->path = t;
    r->path_len = q ? (size_t)(q - t) : len;
    r->query = q ? q + 1 : NULL;
    r->query_len = q ? len - r->path_len - 1 : 0;
}

/*
 * Transfer-Encoding, read strictly (RFC 9112 §6.1): hscd decodes `chunked` and nothing else, so the
 * field must appear once and list exactly that coding. Another coding (gzip, chunked) is 501, and
 * a list with an empty element, a second field or HTTP/1.0 (whose framing RFC 9112 then calls
 * faulty) is 400; both close the connection. llhttp has already refused codings after chunked and
 * chunked twice.
 */
static int check_transfer_encoding(hsc_req_t *r)
{
    unsigned fields = 0, chunked = 0, other = 0, empty = 0;
    for (unsigned i = 0; i < r->nhdr_done; i++) {
        const hsc_header_ref_t *h = &r->hdr[i];
        if (h->name_len != 17 ||
            strncasecmp(r->head.data + h->name_off, "transfer-encoding", 17) != 0)
            continue;
        fields++;
        const char *v = r->head.data + h->value_off, *end = v + h->value_len;
        for (;;) {
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = v;
            while (e < end && *e != ',')
                e++;
            const char *t = e;
            while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if (t == v)
                empty++;
            else if (t - v == 7 && strncasecmp(v, "chunked", 7) == 0)
                chunked++;
            else
                other++;
            if (e == end)
                break;
            v = e + 1;
        }
    }
    if (fields == 0)
        return 0;
    if (r->http_major == 1 && r->http_minor == 0)
        return req_fail(r, 400, "malformed request: Transfer-Encoding on an HTTP/1.0 request");
    if (other > 0)
        return req_fail(r, 501, "only Transfer-Encoding: chunked is supported");
    if (fields > 1 || chunked != 1 || empty > 0)
        return req_fail(r, 400, "malformed request: Transfer-Encoding must be 'chunked', once");
    return 0;
}

/*
 * Host (RFC 9112 §3.2): an HTTP/1.1 request without one, any request with two, or one whose value
 * is not a host and port (reg-name, IPv4 or IP-literal characters only) is 400.
 */
static int check_host(hsc_req_t *r)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->nhdr_done; i++) {
        const hsc_header_ref_t *h = &r->hdr[i];
        if (h->name_len != 4 || strncasecmp(r->head.data + h->name_off, "host", 4) != 0)
            continue;
        if (++n > 1)
            return req_fail(r, 400, "malformed request: more than one Host header");
        const unsigned char *v = (const unsigned char *)r->head.data + h->value_off;
        for (size_t k = 0; k < h->value_len; k++)
            if (!(isalnum(v[k]) || strchr("-._~!$&'()*+,;=:[]%", v[k]) != NULL) || v[k] == 0)
                return req_fail(r, 400, "malformed request: the Host header is not a host");
    }
    if (n == 0 && r->http_minor >= 1)
        return req_fail(r, 400, "malformed request: no Host header (HTTP/1.1)");
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    hsc_conn_t *c = conn_of_parser(p);
    hsc_req_t *r = &c->req;
    const hsc_server_config_t *cfg = c->h->cfg;

    /* The head lives as long as the response (a subscriber's: hours); keep only its bytes. */
    hsc_buf_shrink(&r->head);
    split_target(r);
    r->method_name = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    r->method = hsc_method_bit(r->method_name, strlen(r->method_name));
    r->head_only = r->method == HSC_M_HEAD;
    r->http_major = llhttp_get_http_major(p);
    r->http_minor = llhttp_get_http_minor(p);
    if (r->http_major != 1) /* no version at all: an HTTP/0.9 request line */
        return req_fail(r, 400, "malformed request: no HTTP version in the request line");
    if (r->method == HSC_M_OTHER && llhttp_get_method(p) == HTTP_CONNECT)
        return req_fail(r, 405, "CONNECT is not supported");
    if (check_host(r) != 0)
        return -1;

    if (check_transfer_encoding(r) != 0)
        return -1;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > cfg->max_body_bytes)
        return req_fail(r, 413, "request body is larger than --max-body-bytes");

    const char *expect = hsc_req_header(r, "expect");
    if (expect != NULL) {
        if (strcasecmp(expect, "100-continue") != 0)
            return req_fail(r, 417, "only 'Expect: 100-continue' is supported");
        if (r->http_major == 1 && r->http_minor >= 1) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
            hsc_conn_send(c, &b, 1);
        }
    }
    if (!hsc_framing_head_done(&c->framing))
        return req_fail(r, 400, "malformed request: ambiguous framing");
    bool chunked = (p->flags & F_CHUNKED) != 0;
    hsc_framing_body(&c->framing, chunked,
                     (p->flags & F_CONTENT_LENGTH) && !chunked ? p->content_length : 0);
    c->state = CONN_BODY;
    hsc_conn_arm(c, T_BODY, cfg->idle_timeout_ms);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    hsc_req_t *r = &conn_of_parser(p)->req;
    int rc = hsc_buf_append(&r->body, at, len);
    if (rc == HSC_ETOOBIG)
        return req_fail(r, 413, "request body is larger than --max-body-bytes");
    if (rc != 0)
        return req_fail(r, 503, "out of memory");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    hsc_conn_t *c = conn_of_parser(p);
    c->keep_alive = llhttp_should_keep_alive(p);
    /* An Upgrade (or CONNECT) request: what follows is not HTTP/1.1. It is served as a plain
     * request (RFC 9110 lets a server ignore Upgrade) and the connection closes after it. */
    c->upgrade = llhttp_get_upgrade(p) != 0;
    if (c->upgrade)
        c->keep_alive = false;
    return HPE_PAUSED;
}

static llhttp_settings_t parser_settings;
static uv_once_t settings_once = UV_ONCE_INIT;

static void settings_init(void)
{
    llhttp_settings_init(&parser_settings);
    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_url = on_url;
    parser_settings.on_url_complete = on_url_complete;
    parser_settings.on_version_complete = on_version_complete;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_field_complete = on_header_field_complete;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_header_value_complete = on_header_value_complete;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
}

void hsc_conn_parser_init(hsc_conn_t *c)
{
    uv_once(&settings_once, settings_init);
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
}
