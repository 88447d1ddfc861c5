/*
 * Connections: one per accepted socket, living entirely on its worker's loop thread.
 *
 * Reading. Bytes go to llhttp as they arrive. When a request is complete, on_message_complete
 * pauses the parser and the request is dispatched through the router; while its response runs,
 * further bytes (pipelined requests) wait in `pending`, bounded: past HSC_PENDING_STOP bytes the
 * connection stops reading until the response is done. Reading otherwise goes on during a
 * response, so a client that goes away is noticed at once (EOF) and its producer is cancelled
 * through the response's on_close callback. Responses finish in request order because only one
 * runs at a time.
 *
 * Writing. hsc_conn_send() tries uv_try_write() first and copies into a frame only what the socket
 * would not take; queued frames go out through one uv_write() at a time. `queued` counts unsent
 * bytes; past cfg.max_queue_bytes the connection is closed (a client that does not read cannot
 * make the server hold unbounded memory). Producers see watermarks through hsc_res_writable().
 *
 * Timers. One uv_timer_t per connection, armed for one purpose at a time: the head of a request
 * must arrive within header_timeout (from accept, or from the request's first byte), a body read
 * may stall for idle_timeout, a keep-alive connection may wait idle_timeout for its next request.
 * During a response no timer runs: the producer has its own. The same timer also runs the
 * zero-delay steps (next request, deferred close) so that they never re-enter a producer.
 *
 * Closing. hsc_conn_close() calls the response's on_close (if a producer is attached), closes both
 * handles, and frees the connection in the last close callback. After a response that ends the
 * connection, the server shuts down its write side and reads (discarding) until the peer closes
 * or a short linger expires, so that a client's unread pipelined bytes never turn the final bytes
 * of a response into a reset.
 */
#include "http/conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { CONN_IDLE, CONN_HEAD, CONN_BODY, CONN_RESPONDING, CONN_CLOSING };
enum { T_NONE, T_HEADER, T_BODY, T_IDLE, T_NEXT, T_CLOSE, T_LINGER, T_SEND };

#define HSC_PENDING_STOP (128 * 1024)
#define HSC_LINGER_MS    2000

static void conn_feed(hsc_conn_t *c, const char *data, size_t len);
static void conn_flush(hsc_conn_t *c);
static void conn_finish(hsc_conn_t *c);
static void on_timer(uv_timer_t *t);

static hsc_conn_t *conn_of_parser(llhttp_t *p)
{
    return (hsc_conn_t *)p->data;
}

size_t hsc_conn_high_water(const hsc_conn_t *c)
{
    return c->h->cfg->max_queue_bytes / 2;
}

size_t hsc_conn_low_water(const hsc_conn_t *c)
{
    return c->h->cfg->max_queue_bytes / 8;
}

static void arm(hsc_conn_t *c, int mode, uint64_t ms)
{
    if (c->close_pending && mode != T_CLOSE)
        return;
    c->timer_mode = mode;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void disarm(hsc_conn_t *c)
{
    if (c->close_pending)
        return;
    c->timer_mode = T_NONE;
    uv_timer_stop(&c->timer);
}

/* ---- request state --------------------------------------------------------------------------- */

static void req_reset(hsc_req_t *r)
{
    r->head.len = 0;
    r->body.len = 0;
    r->nhdr = 0;
    r->nhdr_done = 0;
    r->last_cb = 0;
    r->error_status = 0;
    r->error_reason = NULL;
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

static void split_target(hsc_req_t *r);

static int head_append(hsc_req_t *r, const char *at, size_t len)
{
    const char *before = r->head.data;
    int rc = hsc_buf_append(&r->head, at, len);
    if (rc == HSC_ETOOBIG)
        return req_fail(r, 431, "request line and headers are too large");
    if (rc != 0)
        return req_fail(r, 503, "out of memory");
    /* Trailer fields arrive after the head is complete and its pointers are taken: when the
     * storage moved, they are taken again. */
    if (r->target != NULL && r->head.data != before)
        split_target(r);
    return 0;
}

/*
 * The request target as logged: at most cap - 1 bytes, with the value of an access_token query
 * parameter (a credential, docs/security.md) replaced by "***".
 */
static void log_target(const char *t, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        out[o++] = t[i];
        if ((t[i] == '?' || t[i] == '&') && n - i - 1 >= 13 &&
            memcmp(t + i + 1, "access_token=", 13) == 0) {
            for (const char *r = "access_token=***"; *r != '\0' && o + 1 < cap; r++)
                out[o++] = *r;
            i += 13;
            while (i + 1 < n && t[i + 1] != '&')
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
    req_reset(&c->req);
    c->state = CONN_HEAD;
    if (c->timer_mode != T_HEADER)
        arm(c, T_HEADER, c->h->cfg->header_timeout_ms);
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
    return head_append(r, "", 1);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    hsc_req_t *r = &conn_of_parser(p)->req;
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
    hsc_req_t *r = &conn_of_parser(p)->req;
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
    hsc_req_t *r = &conn_of_parser(p)->req;
    if (r->last_cb != 3) {
        r->hdr[r->nhdr - 1].value_off = (uint16_t)r->head.len;
        r->last_cb = 3;
    }
    return head_append(r, at, len);
}

static int on_header_value_complete(llhttp_t *p)
{
    hsc_req_t *r = &conn_of_parser(p)->req;
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

static int on_headers_complete(llhttp_t *p)
{
    hsc_conn_t *c = conn_of_parser(p);
    hsc_req_t *r = &c->req;
    const hsc_server_config_t *cfg = c->h->cfg;

    /* The head lives as long as the response (a subscriber's: hours); keep only its bytes
     * (trailer fields appended later move it again: head_append() retakes the pointers). */
    hsc_buf_shrink(&r->head);
    split_target(r);
    r->method_name = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    r->method = hsc_method_bit(r->method_name, strlen(r->method_name));
    r->head_only = r->method == HSC_M_HEAD;
    r->http_major = llhttp_get_http_major(p);
    r->http_minor = llhttp_get_http_minor(p);
    if (r->method == HSC_M_OTHER && llhttp_get_method(p) == HTTP_CONNECT)
        return req_fail(r, 405, "CONNECT is not supported");

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
    c->state = CONN_BODY;
    arm(c, T_BODY, cfg->idle_timeout_ms);
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
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_field_complete = on_header_field_complete;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_header_value_complete = on_header_value_complete;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static void conn_dispatch(hsc_conn_t *c)
{
    hsc_http_t *h = c->h;
    hsc_req_t *r = &c->req;
    disarm(c);
    c->state = CONN_RESPONDING;
    r->id = atomic_fetch_add_explicit(h->next_req_id, 1, memory_order_relaxed) + 1;
    HSC_STAT_ADD(h->st_requests, 1);
    memset(&c->res, 0, sizeof c->res);
    c->res.conn = c;
    if (h->draining)
        c->keep_alive = false;

    if ((int)HSC_LOG_INFO <= atomic_load_explicit(&hsc_log_level_v, memory_order_relaxed)) {
        char shown[256];
        log_target(r->target, r->target_len, shown, sizeof shown);
        HSC_LOG(HSC_LOG_INFO, "req %llu %s %s %s", (unsigned long long)r->id, c->peer,
                r->method_name, shown);
    }
    h->owner->on_request(h->ctx, r, &c->res);
}

/* A request that could not be parsed or broke a limit: answer and close, since the rest of the
 * connection's bytes cannot be trusted to start a new request. */
static void conn_parse_error(hsc_conn_t *c, llhttp_errno_t err)
{
    hsc_req_t *r = &c->req;
    int status = r->error_status;
    char reason[160];
    if (status != 0) {
        snprintf(reason, sizeof reason, "%s", r->error_reason);
    } else {
        const char *why = llhttp_get_error_reason(&c->parser);
        if (why == NULL)
            why = llhttp_errno_name(err);
        /* 505 only for a well-formed but unsupported version (HTTP/2.0 as text); junk is 400. */
        status = err == HPE_INVALID_VERSION && strcmp(why, "Invalid HTTP version") == 0 ? 505 : 400;
        snprintf(reason, sizeof reason, "malformed request: %s", why);
    }
    HSC_LOG(HSC_LOG_INFO, "conn %s: %d %s", c->peer, status, reason);
    disarm(c);
    c->state = CONN_RESPONDING;
    c->keep_alive = false;
    memset(&c->res, 0, sizeof c->res);
    c->res.conn = c;
    if (r->http_major == 0) {
        r->http_major = 1;
        r->http_minor = 1;
    }
    r->head_only = false;
    hsc_res_error(&c->res, status, status == 405 ? "Allow: GET, HEAD, POST\r\n" : NULL, reason,
                  true);
}

/* Parses `data` (never pointing into c->pending), dispatching each complete request. */
static void conn_feed(hsc_conn_t *c, const char *data, size_t len)
{
    while (!c->closing) {
        if (c->state == CONN_RESPONDING || c->state == CONN_CLOSING) {
            if (c->state == CONN_RESPONDING && len > 0 &&
                hsc_buf_append(&c->pending, data, len) != 0) {
                hsc_conn_close(c);
                return;
            }
            if (c->pending.len >= HSC_PENDING_STOP && c->reading) {
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->reading = false;
            }
            return;
        }
        if (len == 0)
            return;
        llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
        if (err == HPE_OK)
            return;
        if (err == HPE_PAUSED_UPGRADE)
            return; /* the upgraded request was dispatched already; the rest is not HTTP */
        if (err == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            llhttp_resume(&c->parser);
            len -= (size_t)(pos - data);
            data = pos;
            if (c->upgrade)
                len = 0;
            c->dispatching = true;
            conn_dispatch(c);
            c->dispatching = false;
            continue;
        }
        conn_parse_error(c, err);
        return;
    }
}

/* The next request, once a response has ended (run from the timer, never inside a producer). */
static void conn_next(hsc_conn_t *c)
{
    arm(c, T_IDLE, c->h->cfg->idle_timeout_ms);
    if (c->pending.len > 0) {
        hsc_buf_t rest = c->pending;
        hsc_buf_init(&c->pending, rest.max);
        conn_feed(c, rest.data, rest.len);
        hsc_buf_dispose(&rest);
    }
    if (!c->closing && !c->reading && c->state != CONN_RESPONDING)
        hsc_conn_start_reading(c);
}

void hsc_conn_response_done(hsc_conn_t *c, bool reset)
{
    if (c->closing || c->close_pending)
        return;
    if (!c->keep_alive || c->h->draining || reset) {
        c->state = CONN_CLOSING;
        c->close_after_flush = true;
        c->reset_after_flush = reset;
        if (c->q_count == 0)
            conn_finish(c);
        return;
    }
    req_reset(&c->req);
    c->state = CONN_IDLE;
    if (!c->dispatching)
        arm(c, T_NEXT, 0);
    else
        arm(c, T_IDLE, c->h->cfg->idle_timeout_ms);
}

/* ---- reading --------------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    hsc_conn_t *c = (hsc_conn_t *)h;
    *buf = uv_buf_init(c->h->rbuf, sizeof c->h->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    hsc_conn_t *c = (hsc_conn_t *)s;
    if (nread < 0) {
        if (nread != UV_EOF && nread != UV_ECONNRESET)
            HSC_LOG(HSC_LOG_INFO, "conn %s: read: %s", c->peer, uv_strerror((int)nread));
        if (c->state == CONN_RESPONDING && !c->res.ended)
            HSC_LOG(HSC_LOG_INFO, "req %llu: client went away", (unsigned long long)c->req.id);
        hsc_conn_close(c);
        return;
    }
    if (nread == 0 || c->state == CONN_CLOSING)
        return; /* lingering after the last response: discard */
    if (c->state == CONN_BODY)
        arm(c, T_BODY, c->h->cfg->idle_timeout_ms);
    conn_feed(c, c->h->rbuf, (size_t)nread);
}

void hsc_conn_start_reading(hsc_conn_t *c)
{
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
    else
        hsc_conn_close(c);
}

/* ---- timers ---------------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    hsc_conn_t *c = (hsc_conn_t *)t->data;
    int mode = c->timer_mode;
    c->timer_mode = T_NONE;
    switch (mode) {
    case T_HEADER:
        if (c->state == CONN_HEAD) {
            HSC_LOG(HSC_LOG_INFO, "conn %s: request head not received in time", c->peer);
            c->req.error_status = 408;
            c->req.error_reason = "request head not received within --header-timeout";
            conn_parse_error(c, HPE_USER);
        } else {
            hsc_conn_close(c); /* connected but never sent a byte */
        }
        break;
    case T_BODY:
        c->req.error_status = 408;
        c->req.error_reason = "request body stalled longer than --idle-timeout";
        conn_parse_error(c, HPE_USER);
        break;
    case T_IDLE:
    case T_CLOSE:
    case T_LINGER:
        hsc_conn_close(c);
        break;
    case T_NEXT:
        conn_next(c);
        break;
    case T_SEND:
        HSC_LOG(HSC_LOG_INFO, "conn %s: client read nothing for --idle-timeout, closing", c->peer);
        hsc_conn_close(c);
        break;
    default:
        break;
    }
}

/* ---- writing --------------------------------------------------------------------------------- */

static int outq_push(hsc_conn_t *c, hsc_frame_t *f, size_t off, size_t end)
{
    if (c->q_count == c->q_cap) {
        size_t cap = c->q_cap ? c->q_cap * 2 : 8;
        hsc_outq_item_t *q = malloc(cap * sizeof *q);
        if (q == NULL)
            return HSC_ENOMEM;
        for (size_t i = 0; i < c->q_count; i++)
            q[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = q;
        c->q_cap = cap;
        c->q_head = 0;
    }
    c->q[(c->q_head + c->q_count) % c->q_cap] = (hsc_outq_item_t){f, off, end};
    c->q_count++;
    c->queued += end - off;
    return 0;
}

static void outq_pop(hsc_conn_t *c)
{
    hsc_outq_item_t *it = &c->q[c->q_head];
    c->queued -= it->end - it->off;
    hsc_frame_unref(it->frame);
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_count--;
}

/*
 * While a response runs and output waits, the client must keep reading: no progress for
 * idle_timeout closes the connection, so a stalled reader cannot hold a slot forever.
 */
static void watch_send(hsc_conn_t *c)
{
    if (c->state != CONN_RESPONDING || (c->timer_mode != T_NONE && c->timer_mode != T_SEND))
        return;
    if (c->q_count > 0)
        arm(c, T_SEND, c->h->cfg->idle_timeout_ms);
    else if (c->timer_mode == T_SEND)
        disarm(c);
}

static void on_write(uv_write_t *req, int status)
{
    hsc_conn_t *c = (hsc_conn_t *)req->handle;
    unsigned n = c->in_flight;
    c->in_flight = 0;
    if (status < 0) {
        if (!c->closing) {
            HSC_LOG(HSC_LOG_INFO, "conn %s: write: %s", c->peer, uv_strerror(status));
            hsc_conn_close(c);
        }
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        hsc_outq_item_t *it = &c->q[c->q_head];
        HSC_STAT_ADD(c->h->st_bytes_out, it->end - it->off);
        outq_pop(c);
    }
    if (c->closing)
        return;
    if (c->q_count > 0)
        conn_flush(c);
    watch_send(c);
    if (c->res.want_drain && c->queued <= hsc_conn_low_water(c)) {
        c->res.want_drain = false;
        if (c->res.on_drain != NULL && !c->res.ended)
            c->res.on_drain(&c->res, c->res.user);
    }
    if (c->q_count == 0 && c->close_after_flush && !c->closing)
        conn_finish(c);
}

static void conn_flush(hsc_conn_t *c)
{
    if (c->in_flight > 0 || c->q_count == 0 || c->closing || c->corked)
        return;
    uv_buf_t bufs[16];
    unsigned n = 0;
    for (; n < c->q_count && n < 16; n++) {
        hsc_outq_item_t *it = &c->q[(c->q_head + n) % c->q_cap];
        bufs[n] = uv_buf_init(it->frame->data + it->off, (unsigned)(it->end - it->off));
    }
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write);
    if (rc != 0) {
        hsc_conn_close_soon(c);
        return;
    }
    c->in_flight = n;
}

/* Queues what uv_try_write() did not take: `skip` bytes of the buffers are already written. */
static int conn_queue_rest(hsc_conn_t *c, const uv_buf_t *bufs, unsigned n, size_t skip,
                           size_t total)
{
    size_t rest = total - skip;
    if (c->queued + rest > c->h->cfg->max_queue_bytes) {
        HSC_LOG(HSC_LOG_INFO, "conn %s: output queue over --max-queue-bytes, closing", c->peer);
        hsc_conn_close_soon(c);
        return HSC_EFULL;
    }
    hsc_frame_t *f = hsc_frame_try_new(rest);
    if (f == NULL) {
        hsc_conn_close_soon(c);
        return HSC_ENOMEM;
    }
    size_t o = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t l = bufs[i].len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(f->data + o, bufs[i].base + skip, l - skip);
        o += l - skip;
        skip = 0;
    }
    if (outq_push(c, f, 0, rest) != 0) {
        hsc_frame_unref(f);
        hsc_conn_close_soon(c);
        return HSC_ENOMEM;
    }
    conn_flush(c);
    watch_send(c);
    return 0;
}

/* Writes at once when nothing is queued; returns bytes written, or <0 after scheduling a close. */
static ssize_t conn_try(hsc_conn_t *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->q_count > 0 || c->corked)
        return 0;
    int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (r >= 0) {
        HSC_STAT_ADD(c->h->st_bytes_out, (uint64_t)r);
        return r;
    }
    if (r == UV_EAGAIN || r == UV_ENOSYS)
        return 0;
    HSC_LOG(HSC_LOG_INFO, "conn %s: write: %s", c->peer, uv_strerror(r));
    hsc_conn_close_soon(c);
    return HSC_ECLOSED;
}

/* What a corked connection (hsc_conn_cork()) gathers at most before it writes anyway. */
#define HSC_CORK_MAX (16u << 10)

int hsc_conn_send(hsc_conn_t *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->closing || c->close_pending)
        return HSC_ECLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (c->corked && c->queued + total > HSC_CORK_MAX) {
        /* A big burst (or one big piece) goes out as it would uncorked. */
        c->corked = false;
        conn_flush(c);
    }
    ssize_t w = conn_try(c, bufs, n);
    if (w < 0)
        return (int)w;
    if ((size_t)w == total)
        return 0;
    return conn_queue_rest(c, bufs, n, (size_t)w, total);
}

void hsc_conn_cork(hsc_conn_t *c)
{
    c->corked = true;
}

void hsc_conn_uncork(hsc_conn_t *c)
{
    if (!c->corked)
        return;
    c->corked = false;
    conn_flush(c);
    watch_send(c);
}

int hsc_conn_send_slices(hsc_conn_t *c, const hsc_outq_item_t *it, unsigned n)
{
    if (c->closing || c->close_pending)
        return HSC_ECLOSED;
    unsigned i = 0;
    size_t skip = 0; /* bytes of it[i] already written */
    if (c->q_count == 0 && n > 0) {
        uv_buf_t bufs[64];
        unsigned m = n < 64 ? n : 64;
        for (unsigned k = 0; k < m; k++)
            bufs[k] = uv_buf_init(it[k].frame->data + it[k].off, (unsigned)(it[k].end - it[k].off));
        ssize_t w = conn_try(c, bufs, m);
        if (w < 0)
            return (int)w;
        size_t left = (size_t)w;
        while (i < m && left >= it[i].end - it[i].off)
            left -= it[i].end - it[i].off, i++;
        skip = left;
    }
    unsigned taken = i;
    for (; i < n; i++, skip = 0) {
        size_t len = it[i].end - it[i].off - skip;
        if (skip == 0 && c->queued > hsc_conn_high_water(c))
            break; /* the caller keeps the rest until on_drain */
        if (c->queued + len > c->h->cfg->max_queue_bytes && skip == 0 && c->queued > 0)
            break;
        if (outq_push(c, hsc_frame_ref(it[i].frame), it[i].off + skip, it[i].end) != 0) {
            hsc_frame_unref(it[i].frame);
            hsc_conn_close_soon(c);
            return HSC_ENOMEM;
        }
        taken = i + 1;
    }
    conn_flush(c);
    watch_send(c);
    return (int)taken;
}

/* ---- closing --------------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle)
{
    hsc_conn_t *c = handle->data;
    if (--c->open_handles > 0)
        return;
    while (c->q_count > 0)
        outq_pop(c);
    free(c->q);
    hsc_buf_dispose(&c->pending);
    hsc_buf_dispose(&c->req.head);
    hsc_buf_dispose(&c->req.body);
    hsc_http_t *h = c->h;
    free(c);
    if (h->owner->on_closed != NULL)
        h->owner->on_closed(h->ctx);
}

static void conn_close_impl(hsc_conn_t *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    /* A close-delimited body cut short must not look complete: end it with a reset. */
    if (c->res.started && !c->res.ended && c->res.mode == HSC_BODY_CLOSE)
        reset = true;
    if (!c->res.ended && c->res.on_close != NULL) {
        hsc_res_cb cb = c->res.on_close;
        c->res.on_close = NULL;
        c->res.ended = true;
        cb(&c->res, c->res.user);
    }
    hsc_http_t *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->nconns--;
    atomic_fetch_sub_explicit(h->nconns_all, 1, memory_order_relaxed);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (reset && uv_tcp_close_reset(&c->tcp, on_handle_closed) == 0)
        return;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

void hsc_conn_close(hsc_conn_t *c)
{
    conn_close_impl(c, false);
}

void hsc_conn_close_soon(hsc_conn_t *c)
{
    if (c->closing || c->close_pending)
        return;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    arm(c, T_CLOSE, 0);
    c->close_pending = true;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    hsc_conn_t *c = (hsc_conn_t *)req->handle;
    free(req); /* called once in any case, with UV_ECANCELED when the handle closed first */
    if (c->closing)
        return;
    if (status < 0) {
        hsc_conn_close(c);
        return;
    }
    /* Linger: read and discard until the peer closes, so unread bytes cause no reset. */
    arm(c, T_LINGER, HSC_LINGER_MS);
    if (!c->reading)
        hsc_conn_start_reading(c);
}

/* The last response is written: close gracefully, or with a reset for a failed HTTP/1.0 body. */
static void conn_finish(hsc_conn_t *c)
{
    if (c->shutdown_sent || c->closing)
        return;
    if (c->reset_after_flush) {
        conn_close_impl(c, true);
        return;
    }
    c->shutdown_sent = true;
    disarm(c);
    /* Allocated only now: the request would be dead weight in every idle connection. */
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req == NULL || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        hsc_conn_close(c);
    }
}

/* ---- accepting ------------------------------------------------------------------------------- */

static void format_peer(hsc_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof ip);
            port = ntohs(a->sin6_port);
            snprintf(c->peer, sizeof c->peer, "[%s]:%d", ip, port);
            return;
        }
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof ip);
            port = ntohs(a->sin_port);
        } else {
            snprintf(ip, sizeof ip, "local"); /* a Unix socket (hsc_conn_adopt) */
        }
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
}

static void free_unaccepted(uv_handle_t *handle)
{
    free(handle->data);
}

static void conn_start(hsc_conn_t *c);

void hsc_http_init(hsc_http_t *h, uv_loop_t *loop, const hsc_server_config_t *cfg,
                   const hsc_http_owner_t *owner, void *ctx, atomic_uint *nconns_all,
                   atomic_uint_fast64_t *next_req_id)
{
    memset(h, 0, sizeof *h);
    h->loop = loop;
    h->cfg = cfg;
    h->owner = owner;
    h->ctx = ctx;
    h->nconns_all = nconns_all;
    h->next_req_id = next_req_id;
}

/* A connection for a handle that is yet to be opened; NULL when out of memory. */
static hsc_conn_t *conn_new(hsc_http_t *h)
{
    uv_once(&settings_once, settings_init);
    hsc_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->h = h;
    uv_tcp_init(h->loop, &c->tcp);
    c->tcp.data = c;
    return c;
}

void hsc_http_accept(hsc_http_t *h, uv_stream_t *listener)
{
    hsc_conn_t *c = conn_new(h);
    if (c == NULL)
        return;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        /* Not on the list and not counted: close the handle only. */
        uv_close((uv_handle_t *)&c->tcp, free_unaccepted);
        return;
    }
    conn_start(c);
}

int hsc_http_adopt(hsc_http_t *h, uv_os_sock_t fd)
{
    hsc_conn_t *c = conn_new(h);
    if (c == NULL)
        return HSC_ENOMEM;
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        uv_close((uv_handle_t *)&c->tcp, free_unaccepted);
        return rc;
    }
    conn_start(c);
    return 0;
}

/* Over --max-connections: a 503 and close, before any request is read. */
static void conn_refuse(hsc_conn_t *c)
{
    HSC_LOG(HSC_LOG_WARN, "conn %s: over --max-connections (%u), answering 503", c->peer,
            c->h->cfg->max_connections);
    c->state = CONN_RESPONDING;
    c->req.http_major = 1;
    c->req.http_minor = 1;
    c->keep_alive = false;
    c->res.ended = false;
    hsc_res_error(&c->res, 503, "Retry-After: 1\r\n",
                  "server is at its connection limit; retry later", true);
}

/* A connection whose handle is open: counted, listed, parser ready, reading (or a 503). */
static void conn_start(hsc_conn_t *c)
{
    hsc_http_t *h = c->h;
    const hsc_server_config_t *cfg = h->cfg;
    uv_timer_init(h->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    unsigned n = atomic_fetch_add_explicit(h->nconns_all, 1, memory_order_relaxed) + 1;

    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(c);
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    hsc_buf_init(&c->pending, HSC_PENDING_STOP + sizeof h->rbuf);
    hsc_buf_init(&c->req.head,
                 cfg->max_header_bytes < HSC_HEAD_MAX ? cfg->max_header_bytes : HSC_HEAD_MAX);
    hsc_buf_init(&c->req.body, cfg->max_body_bytes);
    c->req.conn = c;
    c->res.conn = c;
    c->res.ended = true;
    c->state = CONN_IDLE;

    if (n > cfg->max_connections) {
        conn_refuse(c);
        return;
    }
    HSC_LOG(HSC_LOG_DEBUG, "conn %s: accepted", c->peer);
    arm(c, T_HEADER, cfg->header_timeout_ms);
    hsc_conn_start_reading(c);
}

void hsc_http_drain(hsc_http_t *h)
{
    h->draining = true;
    for (hsc_conn_t *c = h->conns, *next; c != NULL; c = next) {
        next = c->next;
        hsc_conn_drain(c);
    }
}

void hsc_http_close_all(hsc_http_t *h)
{
    while (h->conns != NULL)
        hsc_conn_close(h->conns);
}

void hsc_conn_drain(hsc_conn_t *c)
{
    if (c->closing)
        return;
    if (c->state == CONN_IDLE || c->shutdown_sent)
        hsc_conn_close(c);
    else
        c->keep_alive = false;
}
