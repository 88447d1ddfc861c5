/*
 * HTTP/2 connections (RFC 9113), with nghttp2 doing the protocol: a connection whose first bytes
 * are the client preface (conn.c's conn_sniff(); after TLS with ALPN "h2" the same bytes come
 * first) becomes one. This file is its life: the session and its settings, the pump that frames
 * what nghttp2 has to send, timers, drain and closing. h2recv.c reads frames into requests;
 * h2res.c is the response writer's HTTP/2 side.
 *
 * Streams. Each request is a stream with its own hsc_req_t and hsc_res_t (hsc_h2_stream_t),
 * dispatched to the owner's on_request like an HTTP/1.1 request; many run at once. At most
 * --h2-max-streams are open: the server sends SETTINGS_MAX_CONCURRENT_STREAMS itself (below) and
 * refuses a stream past it with RST_STREAM REFUSED_STREAM, which a client may retry; nghttp2
 * would instead end the whole connection.
 *
 * Re-entrancy. nghttp2 is driven from libuv callbacks only: reads (h2recv.c), write completions
 * (hsc_h2_on_write), the idle handle (hsc_h2_schedule) and the timer. A producer's calls
 * (hsc_res_write, hsc_res_end...) only queue and schedule a pump for the next loop turn, so a
 * stream is never closed, nor freed, under a producer's feet; a stream is freed in nghttp2's
 * stream close callback, after its producer's on_close.
 *
 * Output and backpressure. The pump corks the connection and lets nghttp2 send: control frames
 * are copied to the output queue, DATA frames are a 9-byte header and references to the
 * producer's frames (hsc_h2_send_data, h2res.c). Past the queue's high mark the callbacks say
 * WOULDBLOCK and the pump stops; a write completion pumps again. Flow control is nghttp2's: a
 * stream whose window is closed keeps its bytes (up to its own high mark, then
 * hsc_res_writable() says no) while the other streams go on.
 *
 * Timers (the connection's one timer). T_HEADER, from accept, until the first HEADERS; then
 * T_IDLE while no stream is open (GOAWAY and close after --idle-timeout) or T_H2SWEEP while some
 * are: a stream whose output or request body made no progress for --idle-timeout is reset, and
 * a connection whose queue was not written for that long closes.
 *
 * Drain. A shutdown notice (GOAWAY with the largest id) at once, the final GOAWAY with the last
 * stream id a moment later (at once when no stream is open); streams in flight go on (the hub ends
 * subscribers with a parting retry: as over HTTP/1.1) and the connection closes when the last one
 * has ended.
 */
#include "http/conn.h"

#include <stdlib.h>
#include <string.h>

#define H2_CONN_WINDOW (1 << 20) /* the connection's receive window for request bodies */
#define H2_NOTICE_MS   100       /* from the shutdown notice to the final GOAWAY */

const char *hsc_h2_abuse_name(int reason)
{
    static const char *const names[HSC_H2_ABUSE_N] = {
        "rapid_reset", "continuation", "ping", "settings", "headers", "flood",
    };
    return reason >= 0 && reason < HSC_H2_ABUSE_N ? names[reason] : "unknown";
}

/* ---- output ---------------------------------------------------------------------------------- */

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)s, (void)flags;
    hsc_conn_t *c = user;
    if (c->closing || c->close_pending)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (c->queued > hsc_conn_high_water(c))
        return NGHTTP2_ERR_WOULDBLOCK;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (hsc_conn_send(c, &b, 1) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    (void)s;
    hsc_conn_t *c = user;
    if (frame->hd.type == NGHTTP2_GOAWAY)
        HSC_STAT_ADD(c->h->st_h2_goaway, 1);
    return 0;
}

/* The drain's last word: GOAWAY with the last stream id processed. */
static void final_goaway(hsc_h2_t *h2)
{
    h2->goaway_sent = true;
    nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->session), NGHTTP2_NO_ERROR,
                          NULL, 0);
}

/* When nothing is left to read or write (GOAWAY done, no stream): close once written. */
static void h2_check_done(hsc_conn_t *c)
{
    hsc_h2_t *h2 = c->h2;
    if (c->closing || c->close_after_flush)
        return;
    if (h2->draining && !h2->goaway_sent && h2->nstreams == 0) {
        final_goaway(h2); /* the streams ended before the notice's delay */
        hsc_h2_schedule(c);
        return;
    }
    /* nghttp2 wants no more once a GOAWAY went either way and no stream is active. */
    if (nghttp2_session_want_read(h2->session) || nghttp2_session_want_write(h2->session))
        return;
    h2->closing = true;
    c->close_after_flush = true;
    if (c->q_count == 0)
        hsc_conn_finish(c);
}

static uint64_t sweep_period(const hsc_conn_t *c)
{
    uint64_t p = c->h->cfg->idle_timeout_ms / 4;
    return p < 50 ? 50 : p > 5000 ? 5000 : p;
}

/* Arms the timer for what the connection waits for now (the essay above). */
static void h2_arm(hsc_conn_t *c)
{
    hsc_h2_t *h2 = c->h2;
    if (c->closing || c->close_pending || h2->closing || !h2->got_headers)
        return; /* T_HEADER stays until the first request */
    if (h2->nstreams == 0 && !h2->draining) {
        if (c->timer_mode != T_IDLE)
            hsc_conn_arm(c, T_IDLE, c->h->cfg->idle_timeout_ms);
    } else if (c->timer_mode != T_H2SWEEP) {
        hsc_conn_arm(c, T_H2SWEEP, sweep_period(c));
    }
}

void hsc_h2_pump(hsc_conn_t *c)
{
    hsc_h2_t *h2 = c->h2;
    if (h2 == NULL || h2->in_pump || c->closing || c->close_pending)
        return;
    h2->in_pump = true;
    if (c->q_count == 0) /* the socket has taken everything: the client keeps up */
        h2->last_active = uv_now(c->h->loop);
    hsc_conn_cork(c);
    int rv = nghttp2_session_send(h2->session);
    hsc_conn_uncork(c);
    hsc_conn_flush(c);
    h2->in_pump = false;
    if (rv != 0) {
        if (!c->closing)
            HSC_LOG(HSC_LOG_INFO, "conn %s: http/2: %s", c->peer, nghttp2_strerror(rv));
        hsc_conn_close_soon(c);
        return;
    }
    if (c->closing || c->close_pending)
        return;
    hsc_h2_notify_drain(c);
    h2_check_done(c);
    h2_arm(c);
}

static void on_idle(uv_idle_t *idle)
{
    hsc_conn_t *c = idle->data;
    uv_idle_stop(idle);
    hsc_h2_pump(c);
}

void hsc_h2_schedule(hsc_conn_t *c)
{
    hsc_h2_t *h2 = c->h2;
    if (h2 != NULL && !c->closing && !uv_is_active((uv_handle_t *)&h2->idle))
        uv_idle_start(&h2->idle, on_idle);
}

void hsc_h2_on_write(hsc_conn_t *c)
{
    c->h2->last_active = uv_now(c->h->loop);
    if (c->queued <= hsc_conn_low_water(c))
        hsc_h2_pump(c);
}

void hsc_h2_fail(hsc_conn_t *c, uint32_t error, int reason, const char *why)
{
    hsc_h2_t *h2 = c->h2;
    if (h2->closing || c->closing)
        return;
    HSC_LOG(reason >= 0 ? HSC_LOG_WARN : HSC_LOG_INFO, "conn %s: http/2: %s; closing", c->peer,
            why);
    if (reason >= 0)
        HSC_STAT_ADD(c->h->st_h2_abuse[reason], 1);
    nghttp2_session_terminate_session(h2->session, error);
    h2->closing = true; /* what the client sends now is discarded */
    hsc_h2_pump(c);
    if (!c->closing && !c->close_after_flush) {
        c->close_after_flush = true;
        if (c->q_count == 0)
            hsc_conn_finish(c);
    }
    if (!c->closing && !c->shutdown_sent)
        hsc_conn_arm(c, T_LINGER, 2000); /* a client that does not read is not waited for */
}

/* ---- timers ---------------------------------------------------------------------------------- */

static void h2_sweep(hsc_conn_t *c)
{
    hsc_h2_t *h2 = c->h2;
    uint64_t now = uv_now(c->h->loop), idle = c->h->cfg->idle_timeout_ms;
    if (c->q_count > 0 && now - h2->last_active >= idle) {
        HSC_LOG(HSC_LOG_INFO, "conn %s: client read nothing for --idle-timeout, closing", c->peer);
        hsc_conn_close(c);
        return;
    }
    if (h2->draining && !h2->goaway_sent)
        final_goaway(h2);
    for (hsc_h2_stream_t *st = h2->streams; st != NULL; st = st->next) {
        bool waiting = st->pending > 0 || !st->dispatched; /* output, or the request body */
        if (!waiting || st->rst_sent || now - st->last_progress < idle)
            continue;
        HSC_LOG(HSC_LOG_INFO, "conn %s: stream %d made no progress for --idle-timeout, reset",
                c->peer, (int)st->id);
        st->rst_sent = true;
        nghttp2_submit_rst_stream(h2->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
    hsc_h2_pump(c);
    if (!c->closing && c->timer_mode == T_NONE)
        h2_arm(c);
}

void hsc_h2_timer(hsc_conn_t *c, int mode)
{
    hsc_h2_t *h2 = c->h2;
    switch (mode) {
    case T_HEADER:
        if (!h2->got_headers)
            hsc_h2_fail(c, NGHTTP2_NO_ERROR, -1, "no request within --header-timeout");
        break;
    case T_IDLE:
        if (h2->nstreams == 0)
            hsc_h2_fail(c, NGHTTP2_NO_ERROR, -1, "idle for --idle-timeout");
        else
            h2_arm(c);
        break;
    case T_H2SWEEP:
        h2_sweep(c);
        break;
    default:
        hsc_conn_close(c);
        break;
    }
}

/* ---- the life of an HTTP/2 connection -------------------------------------------------------- */

/* The server's SETTINGS, sent by hand rather than through nghttp2 (the essay: nghttp2 ends the
 * connection on a stream past an acknowledged limit). h2recv.c drops the client's ACK of it. */
static void send_settings(hsc_conn_t *c)
{
    const hsc_server_config_t *cfg = c->h->cfg;
    uint8_t f[9 + 2 * 6];
    uint32_t vals[2][2] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->h2_max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->max_header_bytes}};
    memset(f, 0, 9);
    f[2] = 12;               /* length */
    f[3] = NGHTTP2_SETTINGS; /* type; flags 0, stream 0 */
    for (int i = 0; i < 2; i++) {
        uint8_t *p = f + 9 + 6 * i;
        p[0] = (uint8_t)(vals[i][0] >> 8), p[1] = (uint8_t)vals[i][0];
        p[2] = (uint8_t)(vals[i][1] >> 24), p[3] = (uint8_t)(vals[i][1] >> 16);
        p[4] = (uint8_t)(vals[i][1] >> 8), p[5] = (uint8_t)vals[i][1];
    }
    uv_buf_t b = uv_buf_init((char *)f, sizeof f);
    hsc_conn_send(c, &b, 1);
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static uv_once_t callbacks_once = UV_ONCE_INIT;

static void callbacks_init(void)
{
    if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&options) != 0)
        abort();
    nghttp2_session_callbacks_set_send_callback(callbacks, on_send);
    nghttp2_session_callbacks_set_send_data_callback(callbacks, hsc_h2_send_data);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    hsc_h2_recv_callbacks(callbacks);
    /* Backstops behind h2recv.c's own counters, which are stricter and say why. */
    nghttp2_option_set_max_outbound_ack(options, 1000);
    nghttp2_option_set_max_settings(options, 32);
    nghttp2_option_set_stream_reset_rate_limit(options, 4000, 200);
    nghttp2_option_set_max_continuations(options, 32);
    nghttp2_option_set_max_deflate_dynamic_table_size(options, 4096);
}

void hsc_h2_start(hsc_conn_t *c, const char *data, size_t len)
{
    uv_once(&callbacks_once, callbacks_init);
    hsc_h2_t *h2 = calloc(1, sizeof *h2);
    if (h2 == NULL || nghttp2_session_server_new2(&h2->session, callbacks, c, options) != 0) {
        free(h2);
        hsc_conn_close(c);
        return;
    }
    c->h2 = h2;
    h2->conn = c;
    c->state = CONN_H2;
    c->served = true;
    c->keep_alive = true;
    uv_idle_init(c->h->loop, &h2->idle);
    h2->idle.data = c;
    c->open_handles++;
    uint64_t now = uv_now(c->h->loop);
    h2->last_active = h2->tokens_at = now;
    h2->reset_tokens = HSC_H2_RESET_BURST;
    h2->ping_tokens = HSC_H2_PING_BURST;
    h2->settings_tokens = HSC_H2_SETTINGS_BURST;
    HSC_STAT_ADD(c->h->st_h2_conns, 1);
    HSC_LOG(HSC_LOG_DEBUG, "conn %s: http/2", c->peer);

    send_settings(c);
    nghttp2_session_set_local_window_size(h2->session, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
    static const char preface[] = HSC_H2_PREFACE;
    if (nghttp2_session_mem_recv(h2->session, (const uint8_t *)preface, HSC_H2_PREFACE_LEN) < 0) {
        hsc_conn_close(c);
        return;
    }
    hsc_h2_recv(c, data, len);
    if (c->h->draining && !c->closing) /* it came during a drain: served, then GOAWAY */
        hsc_h2_drain(c);
}

void hsc_h2_drain(hsc_conn_t *c)
{
    hsc_h2_t *h2 = c->h2;
    if (h2->draining || h2->closing)
        return;
    h2->draining = true;
    if (h2->nstreams == 0) { /* nothing in flight: the final GOAWAY at once, then close */
        final_goaway(h2);
        hsc_h2_pump(c);
        return;
    }
    nghttp2_submit_shutdown_notice(h2->session);
    hsc_h2_pump(c);
    if (!c->closing && !h2->closing)
        hsc_conn_arm(c, T_H2SWEEP, H2_NOTICE_MS); /* the final GOAWAY (h2_sweep) */
}

void hsc_h2_close(hsc_conn_t *c)
{
    hsc_h2_t *h2 = c->h2;
    h2->closing = true;
    uv_idle_stop(&h2->idle);
    for (hsc_h2_stream_t *st = h2->streams; st != NULL; st = st->next) {
        hsc_res_t *res = &st->res;
        if (res->ended || res->on_close == NULL)
            continue;
        hsc_res_cb cb = res->on_close;
        res->on_close = NULL;
        res->ended = true;
        cb(res, res->user);
    }
}

void hsc_h2_stream_free(hsc_h2_stream_t *st)
{
    while (st->q_count > 0) {
        hsc_frame_unref(st->q[st->q_head].frame);
        st->q_head = (st->q_head + 1) % st->q_cap;
        st->q_count--;
    }
    free(st->q);
    hsc_buf_dispose(&st->req.head);
    hsc_buf_dispose(&st->req.body);
    hsc_buf_dispose(&st->cookie);
    free(st);
}

void hsc_h2_free(hsc_conn_t *c)
{
    hsc_h2_t *h2 = c->h2;
    if (h2 == NULL)
        return;
    h2->closing = true;
    nghttp2_session_del(h2->session);
    while (h2->streams != NULL) {
        hsc_h2_stream_t *st = h2->streams;
        h2->streams = st->next;
        hsc_h2_stream_free(st);
    }
    free(h2);
    c->h2 = NULL;
}
