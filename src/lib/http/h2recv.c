/*
 * The receiving side of an HTTP/2 connection: a frame reader in front of nghttp2, and nghttp2's
 * callbacks that turn HEADERS and DATA into requests (hsc_req_t), dispatched to the owner like
 * HTTP/1.1 ones.
 *
 * The frame reader sees every frame header before nghttp2 does (frames are a 9-byte header and a
 * payload, so this needs no parsing beyond that) and bounds the known abuse patterns, whatever
 * nghttp2's version does: RST_STREAM (rapid reset, CVE-2023-44487), PING and SETTINGS are token
 * buckets per connection (HSC_H2_*_BURST, refilled at HSC_H2_*_RATE a second), CONTINUATION
 * frames are counted per header block (CVE-2024-28182) as are the block's compressed bytes.
 * Past a bound the connection gets GOAWAY ENHANCE_YOUR_CALM, is counted in
 * hsc_h2_abuse_closed_total{reason} and closes. It also drops the client's SETTINGS ACK, which
 * acknowledges the SETTINGS h2conn.c sent by hand (nghttp2 never sent any).
 *
 * Requests. A stream's head is kept as HTTP/1.1's is (request.c): one bounded buffer of
 * NUL-terminated pieces with 16-bit offsets. :method and :path are the request line,
 * :authority becomes Host, cookie crumbs are joined into one Cookie field. Past --max-header-bytes
 * (decoded, 32 bytes a field counted as in SETTINGS_MAX_HEADER_LIST_SIZE) or HSC_MAX_HEADERS the
 * request is answered 431; decoded bytes far past it (an HPACK bomb: small references to a large
 * table entry) close the connection. A body past --max-body-bytes is answered 413 at once.
 * nghttp2's HTTP messaging rules check the rest (pseudo-headers, connection-specific fields,
 * Content-Length against DATA).
 */
#include "http/conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the frame reader ------------------------------------------------------------------------ */

static bool take_token(double *tokens)
{
    if (*tokens < 1.0)
        return false;
    *tokens -= 1.0;
    return true;
}

static void refill(hsc_h2_t *h2, uint64_t now)
{
    double dt = (double)(now - h2->tokens_at) / 1000.0;
    if (dt <= 0)
        return;
    h2->tokens_at = now;
#define REFILL(v, burst, rate) v = v + dt * (rate) > (burst) ? (burst) : v + dt * (rate)
    REFILL(h2->reset_tokens, HSC_H2_RESET_BURST, HSC_H2_RESET_RATE);
    REFILL(h2->ping_tokens, HSC_H2_PING_BURST, HSC_H2_PING_RATE);
    REFILL(h2->settings_tokens, HSC_H2_SETTINGS_BURST, HSC_H2_SETTINGS_RATE);
#undef REFILL
}

/* A frame header is complete in h2->hdr: count it, bound it, decide whether nghttp2 gets it.
 * Returns false when the connection was failed. */
static bool frame_begin(hsc_conn_t *c)
{
    hsc_h2_t *h2 = c->h2;
    const uint8_t *h = h2->hdr;
    size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
    uint8_t type = h[3], flags = h[4];
    h2->payload_left = len;
    h2->drop_frame = false;
    refill(h2, uv_now(c->h->loop));
    switch (type) {
    case NGHTTP2_RST_STREAM:
        HSC_STAT_ADD(c->h->st_h2_resets, 1);
        if (!take_token(&h2->reset_tokens)) {
            hsc_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, HSC_H2_ABUSE_RAPID_RESET,
                        "RST_STREAM flood (rapid reset)");
            return false;
        }
        break;
    case NGHTTP2_PING:
        if (!(flags & NGHTTP2_FLAG_ACK) && !take_token(&h2->ping_tokens)) {
            hsc_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, HSC_H2_ABUSE_PING, "PING flood");
            return false;
        }
        break;
    case NGHTTP2_SETTINGS:
        if (flags & NGHTTP2_FLAG_ACK) {
            h2->drop_frame = len == 0; /* ours; a malformed one goes on to nghttp2's error */
        } else if (!take_token(&h2->settings_tokens)) {
            hsc_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, HSC_H2_ABUSE_SETTINGS, "SETTINGS flood");
            return false;
        }
        break;
    case NGHTTP2_HEADERS:
        h2->continuations = 0;
        h2->block_bytes = len;
        break;
    case NGHTTP2_CONTINUATION:
        h2->continuations++;
        h2->block_bytes += len;
        if (h2->continuations > HSC_H2_MAX_CONTINUATION ||
            h2->block_bytes > 2 * c->h->cfg->max_header_bytes + 1024) {
            hsc_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, HSC_H2_ABUSE_CONTINUATION,
                        "CONTINUATION flood");
            return false;
        }
        break;
    default:
        break;
    }
    return true;
}

/* Gives bytes to nghttp2; false when the connection cannot go on. */
static bool feed(hsc_conn_t *c, const uint8_t *p, size_t n)
{
    hsc_h2_t *h2 = c->h2;
    ssize_t rv = nghttp2_session_mem_recv(h2->session, p, n);
    if (h2->bomb) {
        hsc_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, HSC_H2_ABUSE_HEADERS,
                    "header list far past --max-header-bytes (HPACK bomb)");
        return false;
    }
    if (rv >= 0)
        return !h2->closing && !c->closing;
    if (rv == NGHTTP2_ERR_FLOODED) {
        HSC_STAT_ADD(c->h->st_h2_abuse[HSC_H2_ABUSE_FLOOD], 1);
        HSC_LOG(HSC_LOG_WARN, "conn %s: http/2: flood (nghttp2); closing", c->peer);
    } else {
        HSC_LOG(HSC_LOG_INFO, "conn %s: http/2: %s; closing", c->peer, nghttp2_strerror((int)rv));
    }
    hsc_conn_close_soon(c);
    return false;
}

void hsc_h2_recv(hsc_conn_t *c, const char *data, size_t len)
{
    hsc_h2_t *h2 = c->h2;
    const uint8_t *p = (const uint8_t *)data;
    while (len > 0 && !h2->closing && !c->closing && !c->close_pending) {
        if (!h2->in_payload) {
            size_t k = 9 - h2->hlen < len ? 9 - h2->hlen : len;
            memcpy(h2->hdr + h2->hlen, p, k);
            h2->hlen += (unsigned)k;
            p += k;
            len -= k;
            if (h2->hlen < 9)
                break;
            h2->hlen = 0;
            if (!frame_begin(c))
                return;
            if (!h2->drop_frame && !feed(c, h2->hdr, 9))
                return;
            h2->in_payload = h2->payload_left > 0;
            continue;
        }
        size_t k = h2->payload_left < len ? h2->payload_left : len;
        if (!h2->drop_frame && !feed(c, p, k))
            return;
        p += k;
        len -= k;
        h2->payload_left -= k;
        h2->in_payload = h2->payload_left > 0;
    }
    hsc_h2_pump(c);
}

/* ---- requests -------------------------------------------------------------------------------- */

static hsc_h2_stream_t *stream_of(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

static void req_fail(hsc_h2_stream_t *st, int status, const char *reason)
{
    if (st->req.error_status == 0) {
        st->req.error_status = status;
        st->req.error_reason = reason;
    }
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    hsc_conn_t *c = user;
    hsc_h2_t *h2 = c->h2;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2->got_headers = true;
    const hsc_server_config_t *cfg = c->h->cfg;
    if (h2->nstreams >= cfg->h2_max_streams || h2->goaway_sent) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0; /* no stream data: its fields are decoded and dropped */
    }
    hsc_h2_stream_t *st = calloc(1, sizeof *st);
    if (st == NULL) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    st->conn = c;
    st->id = frame->hd.stream_id;
    st->req.conn = c;
    st->req.http_major = 2;
    st->res.conn = c;
    st->res.h2 = st;
    hsc_buf_init(&st->req.head,
                 cfg->max_header_bytes < HSC_HEAD_MAX ? cfg->max_header_bytes : HSC_HEAD_MAX);
    hsc_buf_init(&st->req.body, cfg->max_body_bytes);
    hsc_buf_init(&st->cookie, cfg->max_header_bytes);
    st->last_progress = st->access_start = uv_now(c->h->loop);
    st->next = h2->streams;
    if (st->next != NULL)
        st->next->prev = st;
    h2->streams = st;
    h2->nstreams++;
    HSC_STAT_ADD(c->h->st_h2_streams, 1);
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static bool head_put(hsc_h2_stream_t *st, const uint8_t *p, size_t n)
{
    if (hsc_buf_append(&st->req.head, p, n) != 0 || hsc_buf_append(&st->req.head, "", 1) != 0) {
        req_fail(st, 431, "request headers are too large");
        return false;
    }
    return true;
}

static bool is(const uint8_t *name, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    hsc_conn_t *c = user;
    hsc_h2_stream_t *st = stream_of(s, frame->hd.stream_id);
    if (st == NULL || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* a refused stream's, or trailers: dropped */
    size_t max = c->h->cfg->max_header_bytes;
    st->header_bytes += namelen + valuelen + 32;
    if (st->header_bytes > 8 * max + 65536) {
        c->h2->bomb = true;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    hsc_req_t *r = &st->req;
    if (st->header_bytes > max)
        req_fail(st, 431, "request headers are too large");
    if (r->error_status != 0)
        return 0;
    if (namelen > 0 && name[0] == ':') {
        if (is(name, namelen, ":method")) {
            st->method_off = (uint16_t)r->head.len;
            st->have_method = head_put(st, value, valuelen);
        } else if (is(name, namelen, ":path")) {
            r->target_off = (uint32_t)r->head.len;
            r->target_len = valuelen;
            st->have_path = head_put(st, value, valuelen);
        } else if (is(name, namelen, ":authority")) {
            name = (const uint8_t *)"host";
            namelen = 4;
            goto field;
        }
        return 0; /* :scheme, :protocol */
    }
    if (is(name, namelen, "cookie")) { /* crumbs: joined with "; " once the head is complete */
        if ((st->cookie.len > 0 && hsc_buf_append(&st->cookie, "; ", 2) != 0) ||
            hsc_buf_append(&st->cookie, value, valuelen) != 0)
            req_fail(st, 431, "request headers are too large");
        return 0;
    }
field:
    if (r->nhdr == HSC_MAX_HEADERS) {
        req_fail(st, 431, "too many header fields");
        return 0;
    }
    hsc_header_ref_t *h = &r->hdr[r->nhdr];
    h->name_off = (uint16_t)r->head.len;
    h->name_len = (uint16_t)namelen;
    if (!head_put(st, name, namelen))
        return 0;
    h->value_off = (uint16_t)r->head.len;
    h->value_len = (uint16_t)valuelen;
    if (!head_put(st, value, valuelen))
        return 0;
    r->nhdr_done = ++r->nhdr;
    return 0;
}

/* The head is complete: pointers into it, and the checks that need all of it. */
static void head_done(hsc_h2_stream_t *st)
{
    hsc_req_t *r = &st->req;
    if (st->cookie.len > 0 && r->error_status == 0) {
        if (r->nhdr == HSC_MAX_HEADERS) {
            req_fail(st, 431, "too many header fields");
        } else {
            hsc_header_ref_t *h = &r->hdr[r->nhdr];
            h->name_off = (uint16_t)r->head.len;
            h->name_len = 6;
            if (head_put(st, (const uint8_t *)"cookie", 6)) {
                h->value_off = (uint16_t)r->head.len;
                h->value_len = (uint16_t)st->cookie.len;
                if (head_put(st, (const uint8_t *)st->cookie.data, st->cookie.len))
                    r->nhdr_done = ++r->nhdr;
            }
        }
    }
    hsc_buf_dispose(&st->cookie);
    hsc_buf_shrink(&r->head);
    if (r->error_status != 0)
        return;
    if (!st->have_method || !st->have_path) {
        req_fail(st, 400, "malformed request: no :method or :path");
        return;
    }
    r->method_name = r->head.data + st->method_off;
    r->method = hsc_method_bit(r->method_name, strlen(r->method_name));
    r->head_only = r->method == HSC_M_HEAD;
    const char *t = r->head.data + r->target_off;
    r->target = t;
    const char *q = memchr(t, '?', r->target_len);
    r->path = t;
    r->path_len = q != NULL ? (size_t)(q - t) : r->target_len;
    r->query = q != NULL ? q + 1 : NULL;
    r->query_len = q != NULL ? r->target_len - r->path_len - 1 : 0;
    if (strcmp(r->method_name, "CONNECT") == 0) {
        req_fail(st, 405, "CONNECT is not supported");
        return;
    }
    const char *cl = hsc_req_header(r, "content-length");
    if (cl != NULL && strtoull(cl, NULL, 10) > st->conn->h->cfg->max_body_bytes)
        req_fail(st, 413, "request body is larger than --max-body-bytes");
}

void hsc_h2_dispatch(hsc_h2_stream_t *st)
{
    hsc_conn_t *c = st->conn;
    hsc_http_t *h = c->h;
    hsc_req_t *r = &st->req;
    if (st->dispatched)
        return;
    st->dispatched = true;
    r->id = atomic_fetch_add_explicit(h->next_req_id, 1, memory_order_relaxed) + 1;
    HSC_STAT_ADD(h->st_requests, 1);
    st->access_start = uv_hrtime();
    if (r->error_status != 0) {
        HSC_LOG(HSC_LOG_INFO, "conn %s: stream %d: %d %s", c->peer, (int)st->id, r->error_status,
                r->error_reason);
        if (r->method_name == NULL)
            r->method_name = "";
        hsc_res_error(&st->res, r->error_status,
                      r->error_status == 405 ? "Allow: GET, HEAD, POST\r\n" : NULL, r->error_reason,
                      false);
        return;
    }
    if ((int)HSC_LOG_INFO <= atomic_load_explicit(&hsc_log_level_v, memory_order_relaxed)) {
        char shown[256];
        hsc_req_log_target(r->target, r->target_len, shown, sizeof shown);
        HSC_LOG(HSC_LOG_INFO, "req %llu %s %s %s (http/2 stream %d)", (unsigned long long)r->id,
                c->peer, r->method_name, shown, (int)st->id);
    }
    h->owner->on_request(h->ctx, r, &st->res);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    (void)user;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    hsc_h2_stream_t *st = stream_of(s, frame->hd.stream_id);
    if (st == NULL || st->dispatched)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        head_done(st);
        if (st->req.error_status != 0) {
            hsc_h2_dispatch(st); /* answered now; the rest of the request is dropped */
            return 0;
        }
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        hsc_h2_dispatch(st);
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                              size_t len, void *user)
{
    (void)flags;
    hsc_conn_t *c = user;
    hsc_h2_stream_t *st = stream_of(s, id);
    if (st == NULL || st->dispatched)
        return 0;
    st->last_progress = uv_now(c->h->loop);
    int rc = hsc_buf_append(&st->req.body, data, len);
    if (rc != 0) {
        req_fail(st, rc == HSC_ETOOBIG ? 413 : 503,
                 rc == HSC_ETOOBIG ? "request body is larger than --max-body-bytes"
                                   : "out of memory");
        hsc_h2_dispatch(st);
    }
    return 0;
}

static void access_log(hsc_h2_stream_t *st, bool complete)
{
    hsc_conn_t *c = st->conn;
    if (!c->h->cfg->access_log || !st->dispatched)
        return;
    hsc_conn_log_access(c, &st->req, &st->res, st->access_bytes, st->access_start, complete);
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error, void *user)
{
    hsc_conn_t *c = user;
    hsc_h2_t *h2 = c->h2;
    if (h2 == NULL || c->closing)
        return 0;
    hsc_h2_stream_t *st = stream_of(s, id);
    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    hsc_res_t *res = &st->res;
    if (!res->ended) {
        if (st->dispatched)
            HSC_LOG(HSC_LOG_INFO, "req %llu: stream %d reset (%s)", (unsigned long long)st->req.id,
                    (int)id, nghttp2_http2_strerror(error));
        res->ended = true;
        hsc_res_cb cb = res->on_close;
        res->on_close = NULL;
        res->on_drain = NULL;
        if (cb != NULL)
            cb(res, res->user);
    }
    access_log(st, error == NGHTTP2_NO_ERROR && st->eof);
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        h2->streams = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    h2->nstreams--;
    hsc_h2_stream_free(st);
    return 0;
}

void hsc_h2_recv_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
}
