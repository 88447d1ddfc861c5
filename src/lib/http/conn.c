/*
 * Connections: one per accepted socket, living entirely on its worker's loop thread. This file is
 * a connection's life: accepting (or adopting) it, reading, dispatching requests to the owner,
 * its timers and closing it. What llhttp reports becomes a request in request.c; what the
 * connection sends goes through the output queue in outq.c.
 *
 * Reading. Bytes go to llhttp as they arrive (after the framing checker, framing.c). When a
 * request is complete, on_message_complete pauses the parser and the request is handed to the
 * owner's on_request; while its response runs, further bytes (pipelined requests) wait in
 * `pending`. Reading goes on during a response, so a client that goes away is noticed at once
 * (EOF or reset) and its producer is cancelled through the response's on_close callback.
 * Responses finish in request order because only one runs at a time.
 *
 * Pipelined bytes are bounded twice. Past HSC_PENDING_STOP of them the connection stops reading
 * until the response is done (backpressure: a long pipeline behind short responses is served
 * whole). And a response still running HSC_PIPELINE_WAIT_MS after the first pipelined byte
 * arrived behind it counts as long-lived (a subscription lasts hours): from then on at most
 * HSC_PENDING_KEEP bytes may wait behind it. Past that, or if reading had stopped, the pipelined
 * requests are dropped unanswered, the connection reads and discards whatever else comes (so the
 * client's leaving is still seen at once) and closes when the response ends. So no connection
 * holds more than a few KiB of pipelined input for long, and none stops reading for long.
 *
 * Timers. One uv_timer_t per connection, armed for one purpose at a time (hsc_conn_arm()): the
 * head of a request must arrive within header_timeout (from accept, or from the request's first
 * byte), a body read may stall for idle_timeout, a keep-alive connection may wait idle_timeout for
 * its next request, output waiting on the queue must make progress within idle_timeout (outq.c),
 * and the first pipelined byte behind a response starts its HSC_PIPELINE_WAIT_MS (above), which
 * hands the timer back to the output queue's watch when it fires. Otherwise no timer runs during a
 * response: the producer has its own. The same timer
 * also runs the zero-delay steps (next request, deferred close) so that they never re-enter a
 * producer.
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

#define HSC_PENDING_STOP     (128 * 1024)
#define HSC_PENDING_KEEP     (8 * 1024)
#define HSC_PIPELINE_WAIT_MS 1000
#define HSC_LINGER_MS        2000
#define HSC_DRAIN_FRESH_MS   1000 /* at a drain, for a fresh connection's first request */

/* ---- dispatch -------------------------------------------------------------------------------- */

static void conn_dispatch(hsc_conn_t *c)
{
    hsc_http_t *h = c->h;
    hsc_req_t *r = &c->req;
    hsc_conn_disarm(c);
    c->state = CONN_RESPONDING;
    c->pipeline_timed = c->pipeline_long = c->discarding = false;
    r->id = atomic_fetch_add_explicit(h->next_req_id, 1, memory_order_relaxed) + 1;
    HSC_STAT_ADD(h->st_requests, 1);
    memset(&c->res, 0, sizeof c->res);
    c->res.conn = c;
    c->served = true;
    c->access_open = h->cfg->access_log != 0;
    c->access_start = uv_hrtime();
    c->access_bytes = 0;
    if (h->draining)
        c->keep_alive = false;

    if ((int)HSC_LOG_INFO <= atomic_load_explicit(&hsc_log_level_v, memory_order_relaxed)) {
        char shown[256];
        hsc_req_log_target(r->target, r->target_len, shown, sizeof shown);
        HSC_LOG(HSC_LOG_INFO, "req %llu %s %s %s", (unsigned long long)r->id, c->peer,
                r->method_name, shown);
    }
    h->owner->on_request(h->ctx, r, &c->res);
}

/* A request that could not be parsed or broke a limit: answer and close, since the rest of the
 * connection's bytes cannot be trusted to start a new request. `framing` is the framing checker's
 * reason, or NULL for llhttp's error `err` or a limit a callback recorded. */
static void conn_parse_error(hsc_conn_t *c, llhttp_errno_t err, const char *framing)
{
    hsc_req_t *r = &c->req;
    int status = r->error_status;
    char reason[160];
    if (framing != NULL) {
        status = 400;
        snprintf(reason, sizeof reason, "malformed request: %s", framing);
    } else if (status != 0) {
        snprintf(reason, sizeof reason, "%s", r->error_reason);
    } else {
        const char *why = llhttp_get_error_reason(&c->parser);
        if (why == NULL)
            why = llhttp_errno_name(err);
        /* 505 only for a well-formed but unsupported version (HTTP/1.2); junk is 400. */
        status = err == HPE_INVALID_VERSION && strcmp(why, "Invalid HTTP version") == 0 ? 505 : 400;
        if (status == 505)
            snprintf(reason, sizeof reason, "%s", HSC_VERSION_REASON);
        else
            snprintf(reason, sizeof reason, "malformed request: %s", why);
    }
    HSC_LOG(HSC_LOG_INFO, "conn %s: %d %s", c->peer, status, reason);
    hsc_conn_disarm(c);
    c->state = CONN_RESPONDING;
    c->keep_alive = false;
    memset(&c->res, 0, sizeof c->res);
    c->res.conn = c;
    if (r->http_major == 0) {
        r->http_major = 1;
        r->http_minor = 1;
    }
    r->head_only = false;
    r->id = atomic_fetch_add_explicit(c->h->next_req_id, 1, memory_order_relaxed) + 1;
    c->served = true;
    c->access_open = c->h->cfg->access_log != 0;
    c->access_start = uv_hrtime();
    c->access_bytes = 0;
    hsc_res_error(&c->res, status, status == 405 ? "Allow: GET, HEAD, POST\r\n" : NULL, reason,
                  true);
}

/* Gives up on the requests pipelined behind a long-lived response (the essay above). */
static void conn_drop_pipeline(hsc_conn_t *c)
{
    HSC_LOG(HSC_LOG_INFO,
            "conn %s: %zu pipelined bytes behind a long-lived response dropped; closing after it",
            c->peer, c->pending.len);
    size_t max = c->pending.max;
    hsc_buf_dispose(&c->pending);
    hsc_buf_init(&c->pending, max);
    c->discarding = true;
    c->keep_alive = false;
    if (!c->reading)
        hsc_conn_start_reading(c);
}

/* Bytes that arrive while a response runs: pipelined requests, kept for later within bounds. */
static void conn_hold(hsc_conn_t *c, const char *data, size_t len)
{
    if (c->discarding)
        return;
    if (hsc_buf_append(&c->pending, data, len) != 0) {
        hsc_conn_close(c);
        return;
    }
    if (c->pipeline_long && c->pending.len > HSC_PENDING_KEEP) {
        conn_drop_pipeline(c);
        return;
    }
    if (!c->pipeline_timed) {
        c->pipeline_timed = true;
        hsc_conn_arm(c, T_PIPELINE, HSC_PIPELINE_WAIT_MS);
    }
    if (c->pending.len >= HSC_PENDING_STOP && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/*
 * Parses `data` (never pointing into c->pending), dispatching each complete request. The framing
 * checker reads the bytes first and llhttp gets only what it accepted, up to the end of a head or
 * of a message; both must then agree on where the message ends.
 */
static void conn_feed(hsc_conn_t *c, const char *data, size_t len)
{
    while (!c->closing) {
        if (c->state == CONN_RESPONDING || c->state == CONN_CLOSING) {
            if (c->state == CONN_RESPONDING && len > 0)
                conn_hold(c, data, len);
            return;
        }
        if (len == 0)
            return;
        ssize_t n = hsc_framing_scan(&c->framing, data, len);
        if (n < 0) {
            conn_parse_error(c, HPE_USER, c->framing.error);
            return;
        }
        if (n == 0) { /* the checker saw a head or a message end that llhttp did not */
            conn_parse_error(c, HPE_USER, "ambiguous framing");
            return;
        }
        llhttp_errno_t err = llhttp_execute(&c->parser, data, (size_t)n);
        if (err == HPE_OK) {
            if (hsc_framing_done(&c->framing)) {
                conn_parse_error(c, HPE_USER, "ambiguous framing");
                return;
            }
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (err == HPE_PAUSED_UPGRADE)
            return; /* the upgraded request was dispatched already; the rest is not HTTP */
        if (err == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            llhttp_resume(&c->parser);
            if (pos != data + n || !hsc_framing_done(&c->framing)) {
                conn_parse_error(c, HPE_USER, "ambiguous framing");
                return;
            }
            hsc_framing_start(&c->framing);
            len -= (size_t)(pos - data);
            data = pos;
            if (c->upgrade)
                len = 0;
            c->dispatching = true;
            conn_dispatch(c);
            c->dispatching = false;
            continue;
        }
        conn_parse_error(c, err, NULL);
        return;
    }
}

/* The next request, once a response has ended (run from the timer, never inside a producer). */
static void conn_next(hsc_conn_t *c)
{
    hsc_conn_arm(c, T_IDLE, c->h->cfg->idle_timeout_ms);
    if (c->pending.len > 0) {
        hsc_buf_t rest = c->pending;
        hsc_buf_init(&c->pending, rest.max);
        conn_feed(c, rest.data, rest.len);
        hsc_buf_dispose(&rest);
    }
    if (!c->closing && !c->reading && c->state != CONN_RESPONDING)
        hsc_conn_start_reading(c);
}

void hsc_conn_log_access(const hsc_conn_t *c, const hsc_req_t *r, const hsc_res_t *res,
                         uint64_t bytes, uint64_t start, bool complete)
{
    char shown[256] = "";
    if (r->target != NULL)
        hsc_req_log_target(r->target, r->target_len, shown, sizeof shown);
    hsc_access_t a = {
        .id = r->id,
        .peer = c->peer,
        .method = r->method_name != NULL ? r->method_name : "",
        .path = shown,
        .status = res->started ? res->status : 0,
        .bytes = bytes,
        .duration_ms = (double)(uv_hrtime() - start) / 1e6,
        .complete = complete,
    };
    hsc_log_access(&a);
}

void hsc_conn_access_log(hsc_conn_t *c, bool complete)
{
    if (!c->access_open)
        return;
    c->access_open = false;
    hsc_conn_log_access(c, &c->req, &c->res, c->access_bytes, c->access_start, complete);
}

void hsc_conn_response_done(hsc_conn_t *c, bool reset)
{
    hsc_conn_access_log(c, !reset);
    if (c->closing || c->close_pending)
        return;
    if (!c->keep_alive || c->h->draining || reset) {
        c->state = CONN_CLOSING;
        c->close_after_flush = true;
        c->reset_after_flush = reset;
        if (c->q_count == 0)
            hsc_conn_finish(c);
        return;
    }
    hsc_req_reset(&c->req);
    c->state = CONN_IDLE;
    if (!c->dispatching)
        hsc_conn_arm(c, T_NEXT, 0);
    else
        hsc_conn_arm(c, T_IDLE, c->h->cfg->idle_timeout_ms);
}

/* ---- reading --------------------------------------------------------------------------------- */

/*
 * A fresh connection's first bytes: the HTTP/2 client preface makes it an HTTP/2 connection
 * (h2conn.c), anything else is HTTP/1.x. Bytes that match the preface so far wait (they are the
 * preface's own, so nothing is kept): at most 24 of them, within --header-timeout.
 */
static void conn_sniff(hsc_conn_t *c, const char *data, size_t len)
{
    static const char preface[] = HSC_H2_PREFACE;
    size_t seen = c->sniff, k = 0;
    while (seen + k < HSC_H2_PREFACE_LEN && k < len && data[k] == preface[seen + k])
        k++;
    if (seen + k == HSC_H2_PREFACE_LEN) {
        c->sniffed = true;
        hsc_h2_start(c, data + k, len - k);
        return;
    }
    if (k == len) {
        c->sniff = (uint8_t)(seen + k);
        return;
    }
    c->sniffed = true;
    if (seen > 0)
        conn_feed(c, preface, seen);
    if (!c->closing)
        conn_feed(c, data, len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    hsc_conn_t *c = (hsc_conn_t *)h;
    *buf = uv_buf_init(c->h->rbuf, sizeof c->h->rbuf);
}

/* Plaintext from the socket, or from the TLS engine (tls.c): HTTP/2, the preface sniff, or
 * HTTP/1.1. */
static void conn_input(hsc_conn_t *c, const char *data, size_t len)
{
    if (c->h2 != NULL) {
        hsc_h2_recv(c, data, len);
        return;
    }
    if (c->state == CONN_CLOSING)
        return; /* lingering after the last response: discard */
    if (c->state == CONN_BODY)
        hsc_conn_arm(c, T_BODY, c->h->cfg->idle_timeout_ms);
    if (!c->sniffed) {
        conn_sniff(c, data, len);
        return;
    }
    conn_feed(c, data, len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    hsc_conn_t *c = (hsc_conn_t *)s;
    if (nread < 0) {
        if (c->tls != NULL)
            hsc_tls_eof(c);
        if (nread != UV_EOF && nread != UV_ECONNRESET)
            HSC_LOG(HSC_LOG_INFO, "conn %s: read: %s", c->peer, uv_strerror((int)nread));
        if (c->state == CONN_RESPONDING && !c->res.ended)
            HSC_LOG(HSC_LOG_INFO, "req %llu: client went away", (unsigned long long)c->req.id);
        hsc_conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->tls != NULL) { /* the plaintext goes where a cleartext read's bytes go */
        if (c->h2 == NULL && c->state == CONN_CLOSING && hsc_tls_ready(c))
            return; /* lingering after the last response: discard */
        if (c->state == CONN_BODY)
            hsc_conn_arm(c, T_BODY, c->h->cfg->idle_timeout_ms);
        hsc_tls_input(c, c->h->rbuf, (size_t)nread, conn_input);
        return;
    }
    conn_input(c, c->h->rbuf, (size_t)nread);
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
    if (c->h2 != NULL && mode != T_CLOSE && mode != T_LINGER) {
        hsc_h2_timer(c, mode);
        return;
    }
    switch (mode) {
    case T_HEADER:
        if (c->state == CONN_HEAD) {
            HSC_LOG(HSC_LOG_INFO, "conn %s: request head not received in time", c->peer);
            c->req.error_status = 408;
            c->req.error_reason = "request head not received within --header-timeout";
            conn_parse_error(c, HPE_USER, NULL);
        } else {
            if (c->tls != NULL)
                hsc_tls_timeout(c); /* counted if it is the handshake that did not end */
            hsc_conn_close(c);      /* connected but never sent a byte (of HTTP) */
        }
        break;
    case T_BODY:
        c->req.error_status = 408;
        c->req.error_reason = "request body stalled longer than --idle-timeout";
        conn_parse_error(c, HPE_USER, NULL);
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
    case T_PIPELINE:
        if (c->state != CONN_RESPONDING)
            break;
        c->pipeline_long = true;
        if (c->pending.len > HSC_PENDING_KEEP || !c->reading)
            conn_drop_pipeline(c);
        hsc_conn_watch_send(c); /* the timer is free again for the output queue */
        break;
    default:
        break;
    }
}

void hsc_conn_arm(hsc_conn_t *c, int mode, uint64_t ms)
{
    if (c->close_pending && mode != T_CLOSE)
        return;
    c->timer_mode = mode;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

void hsc_conn_disarm(hsc_conn_t *c)
{
    if (c->close_pending)
        return;
    c->timer_mode = T_NONE;
    uv_timer_stop(&c->timer);
}

/* ---- closing --------------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle)
{
    hsc_conn_t *c = handle->data;
    if (--c->open_handles > 0)
        return;
    hsc_conn_outq_dispose(c);
    hsc_tls_free(c);
    hsc_buf_dispose(&c->pending);
    hsc_buf_dispose(&c->req.head);
    hsc_buf_dispose(&c->req.body);
    hsc_h2_free(c);
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
    if (c->h2 != NULL) {
        hsc_h2_close(c);
        uv_close((uv_handle_t *)&c->h2->idle, on_handle_closed);
    }
    if (!c->res.ended && c->res.on_close != NULL) {
        hsc_res_cb cb = c->res.on_close;
        c->res.on_close = NULL;
        c->res.ended = true;
        cb(&c->res, c->res.user);
    }
    hsc_conn_access_log(c, false);
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
    hsc_conn_arm(c, T_CLOSE, 0);
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
    hsc_conn_arm(c, T_LINGER, HSC_LINGER_MS);
    if (!c->reading)
        hsc_conn_start_reading(c);
}

/* The last response is written: close gracefully, or with a reset for a failed HTTP/1.0 body. */
void hsc_conn_finish(hsc_conn_t *c)
{
    if (c->shutdown_sent || c->closing)
        return;
    if (c->reset_after_flush) {
        conn_close_impl(c, true);
        return;
    }
    c->shutdown_sent = true;
    hsc_conn_disarm(c);
    if (c->tls != NULL)
        hsc_tls_close_notify(c); /* written before the shutdown, as libuv keeps order */
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
    hsc_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->h = h;
    uv_tcp_init(h->loop, &c->tcp);
    c->tcp.data = c;
    return c;
}

/* `ctx` NULL: cleartext. */
static void conn_accept(hsc_http_t *h, uv_stream_t *listener, struct ssl_ctx_st *ctx)
{
    hsc_conn_t *c = conn_new(h);
    if (c == NULL)
        return;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
        (ctx != NULL && hsc_tls_attach(c, ctx) != 0)) {
        /* Not on the list and not counted: close the handle only. */
        hsc_tls_free(c);
        uv_close((uv_handle_t *)&c->tcp, free_unaccepted);
        return;
    }
    conn_start(c);
}

void hsc_http_accept(hsc_http_t *h, uv_stream_t *listener)
{
    conn_accept(h, listener, NULL);
}

void hsc_http_accept_tls(hsc_http_t *h, uv_stream_t *listener, struct ssl_ctx_st *ctx)
{
    conn_accept(h, listener, ctx);
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
    hsc_conn_parser_init(c);
    hsc_framing_start(&c->framing);
    hsc_buf_init(&c->pending, HSC_PENDING_STOP + sizeof h->rbuf);
    hsc_buf_init(&c->req.head,
                 cfg->max_header_bytes < HSC_HEAD_MAX ? cfg->max_header_bytes : HSC_HEAD_MAX);
    hsc_buf_init(&c->req.body, cfg->max_body_bytes);
    c->req.conn = c;
    c->res.conn = c;
    c->res.ended = true;
    c->state = CONN_IDLE;
    c->sniffed = !cfg->http2;

    if (n > cfg->max_connections) {
        conn_refuse(c);
        /* TLS: the 503 leaves after the handshake, which has header_timeout as always. */
        if (c->tls != NULL && !c->closing && !c->reading) {
            hsc_conn_arm(c, T_HEADER, cfg->header_timeout_ms);
            hsc_conn_start_reading(c);
        }
        return;
    }
    HSC_LOG(HSC_LOG_DEBUG, "conn %s: accepted", c->peer);
    hsc_conn_arm(c, T_HEADER, cfg->header_timeout_ms);
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
    if (c->h2 != NULL) {
        hsc_h2_drain(c);
        return;
    }
    /* A connection accepted just before the drain that has not sent its first request yet is
     * not idle: its client is about to ask (a hand-over to a new process relies on it). It gets
     * HSC_DRAIN_FRESH_MS (or --header-timeout if shorter) to send it, is answered, then closes;
     * a client that only opened a connection does not hold the exit longer than that. */
    if ((c->state == CONN_IDLE && c->served) || c->shutdown_sent) {
        hsc_conn_close(c);
        return;
    }
    c->keep_alive = false;
    if (c->state == CONN_IDLE && c->timer_mode == T_HEADER) {
        uint64_t ms = c->h->cfg->header_timeout_ms;
        hsc_conn_arm(c, T_HEADER, ms < HSC_DRAIN_FRESH_MS ? ms : HSC_DRAIN_FRESH_MS);
    }
}
