/*
 * The response writer's HTTP/2 side: what res.c's functions do for a response on an HTTP/2
 * stream (res->h2 set), with the same meaning as over HTTP/1.1.
 *
 * hsc_res_start() submits the HEADERS (the same fields as HTTP/1.1's head, names in lower case,
 * without the connection-specific ones) with a data provider, or without one when there is no
 * body (HEAD, 204, 304, an empty body): then the HEADERS end the stream. Body bytes wait on the
 * stream as slices of frames: hsc_res_write() copies into a new frame, hsc_res_send_slices()
 * takes references to the producer's shared frames (a channel's event is encoded once, for
 * HTTP/1.1 and HTTP/2 subscribers alike). When nghttp2 frames them, hsc_h2_send_data() queues
 * the 9-byte DATA frame header and references to those slices on the connection's output queue
 * (NGHTTP2_DATA_FLAG_NO_COPY): the payload is never copied for a subscriber.
 *
 * Backpressure. A stream's `pending` bytes are what flow control holds back: hsc_res_writable()
 * says no past the stream's high mark or the connection queue's, and on_drain is called when
 * both fall to their low marks (a WINDOW_UPDATE let nghttp2 frame them, or the socket took the
 * queue: hsc_h2_notify_drain(), run after every pump). So a stream whose window stays closed is
 * a slow subscriber: the hub keeps its backlog, then drops it (hsc_res_close(): RST_STREAM),
 * while the connection's other streams go on.
 *
 * Ends. hsc_res_end() sends END_STREAM after the pending bytes; hsc_res_abort() resets the stream
 * with INTERNAL_ERROR, hsc_res_close() with CANCEL (its producer's on_close comes when nghttp2
 * has closed the stream).
 */
#include "http/conn.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define H2_MAX_FIELDS 48

typedef struct fields_s {
    nghttp2_nv nv[H2_MAX_FIELDS];
    size_t n;
    char names[1024]; /* lower-cased names of the header lines */
    size_t used;
} fields_t;

static void field(fields_t *f, const char *name, size_t nl, const char *value, size_t vl)
{
    if (f->n == H2_MAX_FIELDS)
        return;
    f->nv[f->n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nl, vl, NGHTTP2_NV_FLAG_NONE};
}

/* Header lines ("Name: value\r\n"...) as fields, without the connection-specific ones. */
static void field_lines(fields_t *f, const char *lines)
{
    static const char *const skip[] = {"connection", "keep-alive", "transfer-encoding", "upgrade",
                                       "proxy-connection"};
    while (lines != NULL && *lines != '\0') {
        const char *eol = strstr(lines, "\r\n");
        const char *end = eol != NULL ? eol : lines + strlen(lines);
        const char *colon = memchr(lines, ':', (size_t)(end - lines));
        if (colon != NULL && colon > lines) {
            size_t nl = (size_t)(colon - lines);
            const char *v = colon + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            if (f->used + nl <= sizeof f->names) {
                char *name = f->names + f->used;
                for (size_t i = 0; i < nl; i++)
                    name[i] = (char)tolower((unsigned char)lines[i]);
                bool drop = false;
                for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
                    drop |= strlen(skip[i]) == nl && memcmp(skip[i], name, nl) == 0;
                if (!drop) {
                    f->used += nl;
                    field(f, name, nl, v, (size_t)(end - v));
                }
            }
        }
        lines = eol != NULL ? eol + 2 : end;
    }
}

static ssize_t h2_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                       nghttp2_data_source *source, void *user)
{
    (void)s, (void)id, (void)buf, (void)user;
    hsc_h2_stream_t *st = source->ptr;
    if (st->pending == 0) {
        if (st->eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = length < st->pending ? length : st->pending;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == st->pending && st->eof)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

int hsc_h2_send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t length, nghttp2_data_source *source, void *user)
{
    (void)s, (void)frame;
    hsc_conn_t *c = user;
    hsc_h2_stream_t *st = source->ptr;
    if (c->closing || c->close_pending)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (c->queued > hsc_conn_high_water(c))
        return NGHTTP2_ERR_WOULDBLOCK;
    hsc_frame_t *hd = hsc_frame_try_new(9);
    if (hd == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(hd->data, framehd, 9);
    if (hsc_conn_queue_ref(c, hd, 0, 9) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    size_t left = length;
    while (left > 0 && st->q_count > 0) {
        hsc_outq_item_t *it = &st->q[st->q_head];
        size_t avail = it->end - it->off;
        int rc;
        if (avail <= left) { /* the whole slice: its reference moves to the queue */
            rc = hsc_conn_queue_ref(c, it->frame, it->off, it->end);
            st->q_head = (st->q_head + 1) % st->q_cap;
            st->q_count--;
            left -= avail;
        } else {
            rc = hsc_conn_queue_ref(c, hsc_frame_ref(it->frame), it->off, it->off + left);
            it->off += left;
            left = 0;
        }
        if (rc != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    st->pending -= length;
    st->access_bytes += length;
    st->last_progress = uv_now(c->h->loop);
    return 0;
}

/* Takes over a reference to a slice of `f` as body bytes of the stream. */
static int stream_push(hsc_h2_stream_t *st, hsc_frame_t *f, size_t off, size_t end)
{
    if (st->q_count == st->q_cap) {
        size_t cap = st->q_cap ? st->q_cap * 2 : 8;
        hsc_outq_item_t *q = malloc(cap * sizeof *q);
        if (q == NULL) {
            hsc_frame_unref(f);
            return HSC_ENOMEM;
        }
        for (size_t i = 0; i < st->q_count; i++)
            q[i] = st->q[(st->q_head + i) % st->q_cap];
        free(st->q);
        st->q = q;
        st->q_cap = cap;
        st->q_head = 0;
    }
    st->q[(st->q_head + st->q_count) % st->q_cap] = (hsc_outq_item_t){f, off, end};
    st->q_count++;
    st->pending += end - off;
    return 0;
}

/* New bytes or the end: nghttp2 may frame again. */
static void stream_resume(hsc_h2_stream_t *st)
{
    hsc_conn_t *c = st->conn;
    if (st->deferred && c->h2 != NULL) {
        st->deferred = false;
        nghttp2_session_resume_data(c->h2->session, st->id);
    }
    hsc_h2_schedule(c);
}

static void stream_reset(hsc_h2_stream_t *st, uint32_t code)
{
    hsc_conn_t *c = st->conn;
    if (st->rst_sent || c->h2 == NULL || c->closing)
        return;
    st->rst_sent = true;
    nghttp2_submit_rst_stream(c->h2->session, NGHTTP2_FLAG_NONE, st->id, code);
    hsc_h2_schedule(c);
}

static bool stream_gone(const hsc_h2_stream_t *st)
{
    const hsc_conn_t *c = st->conn;
    return st->rst_sent || c->closing || c->close_pending || c->h2 == NULL || c->h2->closing;
}

int hsc_h2_res_start(hsc_res_t *res, int status, const char *content_type, const char *extra,
                     int64_t content_length)
{
    hsc_h2_stream_t *st = res->h2;
    hsc_conn_t *c = st->conn;
    if (res->started || res->ended)
        return HSC_ESTATE;
    if (stream_gone(st))
        return HSC_ECLOSED;
    fields_t *f = malloc(sizeof *f);
    if (f == NULL)
        return HSC_ENOMEM;
    f->n = f->used = 0;
    char status_s[8], length_s[24];
    snprintf(status_s, sizeof status_s, "%d", status);
    field(f, ":status", 7, status_s, strlen(status_s));
    field(f, "server", 6, "hsc/" HSC_VERSION_STRING, strlen("hsc/" HSC_VERSION_STRING));
    const char *date = hsc_http_date();
    field(f, "date", 4, date, strlen(date));
    if (content_type != NULL)
        field(f, "content-type", 12, content_type, strlen(content_type));
    field_lines(f, extra);
    char owner_hdrs[512] = "";
    if (c->h->owner->response_headers != NULL)
        c->h->owner->response_headers(c->h->ctx, &st->req, owner_hdrs, sizeof owner_hdrs);
    field_lines(f, owner_hdrs);
    bool no_body = status == 204 || status == 304;
    if (content_length >= 0 && !no_body) {
        snprintf(length_s, sizeof length_s, "%lld", (long long)content_length);
        field(f, "content-length", 14, length_s, strlen(length_s));
    }
    no_body = no_body || st->req.head_only || content_length == 0;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = h2_read};
    int rv = nghttp2_submit_response(c->h2->session, st->id, f->nv, f->n, no_body ? NULL : &prd);
    free(f);
    if (rv != 0)
        return HSC_ECLOSED;
    res->status = status;
    res->started = true;
    res->mode = HSC_BODY_H2;
    st->submitted = true;
    st->has_length = content_length >= 0;
    st->remaining = st->has_length && !st->req.head_only ? (uint64_t)content_length : 0;
    st->eof = no_body; /* the HEADERS end the stream: body bytes are dropped */
    hsc_h2_schedule(c);
    return 0;
}

int hsc_h2_res_write(hsc_res_t *res, const void *p, size_t n)
{
    hsc_h2_stream_t *st = res->h2;
    if (!res->started || res->ended)
        return HSC_ESTATE;
    if (n == 0 || st->req.head_only)
        return 0;
    if (st->has_length) {
        if (n > st->remaining)
            return HSC_EINVAL;
        st->remaining -= n;
    }
    if (stream_gone(st))
        return HSC_ECLOSED;
    if (st->eof)
        return 0; /* 204, 304: no body */
    const hsc_server_config_t *cfg = st->conn->h->cfg;
    if (st->pending + n > HSC_H2_STREAM_MAX(cfg)) {
        HSC_LOG(HSC_LOG_INFO, "req %llu: stream output over --max-queue-bytes, reset",
                (unsigned long long)st->req.id);
        stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return HSC_EFULL;
    }
    hsc_frame_t *f = hsc_frame_try_new(n);
    if (f == NULL)
        return HSC_ENOMEM;
    memcpy(f->data, p, n);
    int rc = stream_push(st, f, 0, n);
    stream_resume(st);
    return rc;
}

int hsc_h2_res_send_slices(hsc_res_t *res, const hsc_outq_item_t *it, unsigned n)
{
    hsc_h2_stream_t *st = res->h2;
    if (stream_gone(st))
        return HSC_ECLOSED;
    if (st->eof || st->req.head_only)
        return (int)n;
    const hsc_server_config_t *cfg = st->conn->h->cfg;
    unsigned i = 0;
    for (; i < n; i++) {
        size_t len = it[i].end - it[i].off;
        if (st->pending > HSC_H2_STREAM_HIGH(cfg))
            break;
        if (st->pending + len > HSC_H2_STREAM_MAX(cfg) && st->pending > 0)
            break;
        if (stream_push(st, hsc_frame_ref(it[i].frame), it[i].off, it[i].end) != 0)
            break;
    }
    if (i < n)
        res->want_drain = true; /* on_drain tells when to send the rest */
    if (i > 0)
        stream_resume(st);
    return (int)i;
}

int hsc_h2_res_end(hsc_res_t *res)
{
    hsc_h2_stream_t *st = res->h2;
    if (!res->started)
        return HSC_ESTATE;
    if (res->ended)
        return HSC_ECLOSED;
    if (st->has_length && st->remaining != 0) {
        hsc_h2_res_abort(res);
        return HSC_EINVAL;
    }
    res->ended = true;
    res->on_close = NULL;
    res->on_drain = NULL;
    st->eof = true;
    stream_resume(st);
    return 0;
}

void hsc_h2_res_abort(hsc_res_t *res)
{
    if (res->ended)
        return;
    if (!res->started) {
        hsc_res_error(res, 500, NULL, "the response failed before it started", false);
        return;
    }
    res->ended = true;
    res->on_close = NULL;
    res->on_drain = NULL;
    stream_reset(res->h2, NGHTTP2_INTERNAL_ERROR);
}

void hsc_h2_res_close(hsc_res_t *res)
{
    stream_reset(res->h2, NGHTTP2_CANCEL);
}

bool hsc_h2_res_writable(hsc_res_t *res)
{
    hsc_h2_stream_t *st = res->h2;
    hsc_conn_t *c = st->conn;
    if (st->pending <= HSC_H2_STREAM_HIGH(c->h->cfg) && c->queued <= hsc_conn_high_water(c))
        return true;
    res->want_drain = true;
    return false;
}

void hsc_h2_notify_drain(hsc_conn_t *c)
{
    const hsc_server_config_t *cfg = c->h->cfg;
    if (c->queued > hsc_conn_low_water(c))
        return;
    for (hsc_h2_stream_t *st = c->h2->streams, *next; st != NULL; st = next) {
        next = st->next;
        hsc_res_t *res = &st->res;
        if (!res->want_drain || res->ended || st->pending > HSC_H2_STREAM_LOW(cfg))
            continue;
        res->want_drain = false;
        if (res->on_drain != NULL)
            res->on_drain(res, res->user);
        if (c->closing || c->close_pending)
            return;
    }
}
