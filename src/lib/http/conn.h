/*
 * http's private part: the connection and the functions conn.c, request.c, outq.c and res.c
 * share. Nothing outside src/lib/http includes this file (scripts/layer-check.py): there
 * hsc_conn_t is opaque.
 */
#ifndef HSC_HTTP_CONN_H
#define HSC_HTTP_CONN_H

#include "http/http.h"

#include <nghttp2/nghttp2.h>

/* ---- message framing, read strictly (framing.c) ---------------------------------------------- */

/** Where a connection's checker is in the current message's framing (framing.c's essay). */
typedef struct hsc_framing_s {
    int state;
    unsigned digits;   /* hex digits of the current chunk size */
    uint64_t left;     /* body bytes (Content-Length, or the current chunk's data) still to come */
    const char *error; /* why the framing was refused (a static string) */
} hsc_framing_t;

/** Expects a new message: a head, perhaps after empty lines. */
void hsc_framing_start(hsc_framing_t *f);
/**
 * Reads `len` bytes of framing. Returns how many of them belong to what the checker may accept
 * now: it stops right after a head (until hsc_framing_body()) and right after a message (until
 * hsc_framing_start()). Returns HSC_EINVAL when the framing is refused; f->error says why.
 */
ssize_t hsc_framing_scan(hsc_framing_t *f, const char *data, size_t len);
/** After a head: its body is chunked, or `length` bytes long (0 for none). */
void hsc_framing_body(hsc_framing_t *f, bool chunked, uint64_t length);
/** Whether the checker stopped after a head, or after a complete message. */
bool hsc_framing_head_done(const hsc_framing_t *f);
bool hsc_framing_done(const hsc_framing_t *f);

/* ---- connections (conn.c) -------------------------------------------------------------------- */

/* Where a connection is: between requests, reading a head or a body, answering, or closing; or
 * an HTTP/2 connection (h2conn.c), which has no such states. */
enum { CONN_IDLE, CONN_HEAD, CONN_BODY, CONN_RESPONDING, CONN_CLOSING, CONN_H2 };
/* What the connection's one timer is armed for (conn.c's essay; T_H2SWEEP: h2conn.c). */
enum { T_NONE, T_HEADER, T_BODY, T_IDLE, T_NEXT, T_CLOSE, T_LINGER, T_SEND, T_PIPELINE, T_H2SWEEP };

typedef struct hsc_h2_s hsc_h2_t; /* an HTTP/2 connection's session and streams (h2conn.c) */

struct hsc_conn_s {
    uv_tcp_t tcp; /* first: the handle's address is the connection's */
    uv_timer_t timer;
    hsc_http_t *h;
    hsc_conn_t *prev, *next; /* on h->conns */
    llhttp_t parser;
    hsc_framing_t framing; /* reads the bytes before llhttp does: framing.c */
    hsc_buf_t pending;     /* received, not yet parsed: pipelined requests wait here */
    hsc_req_t req;
    hsc_res_t res;
    int state;      /* CONN_* */
    int timer_mode; /* T_*: what the timer is armed for */
    bool keep_alive, reading, closing, close_after_flush, reset_after_flush, shutdown_sent;
    bool corked;      /* hsc_conn_cork(): sends are queued, written together at hsc_conn_uncork() */
    bool upgrade;     /* the current request asked for Upgrade: close after it */
    bool dispatching; /* inside conn_dispatch(): a response ending now is picked up there */
    bool close_pending; /* hsc_conn_close_soon() was called: nothing else may re-arm the timer */
    /* Pipelined bytes behind the current response (conn.c's essay): the wait for it is timed,
     * it turned out long-lived, and what the client sends now is discarded. */
    bool pipeline_timed, pipeline_long, discarding;
    /* Output queue: a ring of frame slices; `queued` counts unsent bytes, in flight included. */
    hsc_outq_item_t *q;
    size_t q_head, q_count, q_cap;
    size_t queued;
    uv_write_t wreq;
    unsigned in_flight; /* items handed to the current uv_write, 0 when none */
    int open_handles;
    char peer[64];
    /* --access-log: the current response's start (uv_hrtime) and bytes sent; `access_open` from
     * dispatch until its line is written (response done, or the connection closed first). */
    uint64_t access_start, access_bytes;
    bool access_open;
    bool served;           /* a request was dispatched (or refused): no longer a fresh connection */
    struct hsc_tls_s *tls; /* NULL: cleartext; else the TLS engine between socket and HTTP */
    /* HTTP/2 (h2conn.c): `sniff` bytes of the client preface seen so far, until `sniffed` says
     * which protocol the connection speaks; `h2` is set for an HTTP/2 connection. */
    uint8_t sniff;
    bool sniffed;
    hsc_h2_t *h2;
};

/** Writes the access log line of the current response if one is open (conn.c). */
void hsc_conn_access_log(hsc_conn_t *c, bool complete);
/** Writes one access log line for request `r` answered by `res` (an HTTP/1.1 response or an
 * HTTP/2 stream's): `bytes` sent since `start` (uv_hrtime). */
void hsc_conn_log_access(const hsc_conn_t *c, const hsc_req_t *r, const hsc_res_t *res,
                         uint64_t bytes, uint64_t start, bool complete);
/** The Date header's value, formatted at most once a second per thread (res.c). */
const char *hsc_http_date(void);

/** Called by the writer when a response is complete: next request, or close. */
void hsc_conn_response_done(hsc_conn_t *c, bool reset);
/** Closes on the next loop turn (never re-enters the caller). */
void hsc_conn_close_soon(hsc_conn_t *c);
void hsc_conn_close(hsc_conn_t *c);
void hsc_conn_start_reading(hsc_conn_t *c);
/** Shutdown: an idle connection closes now, a busy one after its current response. */
void hsc_conn_drain(hsc_conn_t *c);
/**
 * Arms the connection's timer for `mode` (T_*) in `ms`, replacing what it was armed for. Once
 * hsc_conn_close_soon() was called only T_CLOSE may arm it, and disarming does nothing.
 */
void hsc_conn_arm(hsc_conn_t *c, int mode, uint64_t ms);
void hsc_conn_disarm(hsc_conn_t *c);
/**
 * The last response is written (the queue is empty): shuts the write side down and lingers, or
 * resets a failed HTTP/1.0 body. Called by on_write (outq.c) and hsc_conn_response_done().
 */
void hsc_conn_finish(hsc_conn_t *c);

/* ---- requests (request.c) -------------------------------------------------------------------- */

/** The reason of every 505: which versions hscd speaks. */
#define HSC_VERSION_REASON "HTTP version not supported: hscd speaks HTTP/1.1"
/** Sets up the connection's llhttp parser with the request callbacks (settings made once). */
void hsc_conn_parser_init(hsc_conn_t *c);
/** Forgets a request for the next one on the connection, keeping its buffers' storage. */
void hsc_req_reset(hsc_req_t *r);
/**
 * The request target as logged: at most cap - 1 bytes, with the value of every query parameter
 * whose key percent-decodes to access_token (a credential, docs/security.md) replaced by "***".
 */
void hsc_req_log_target(const char *t, size_t n, char *out, size_t cap);

/* ---- the output queue (outq.c) --------------------------------------------------------------- */

/** Queues bytes for the socket: written at once when possible, the rest copied and queued. */
int hsc_conn_send(hsc_conn_t *c, const uv_buf_t *bufs, unsigned n);
/**
 * Cork: until hsc_conn_uncork(), sends are copied to the queue and not written, so that several
 * small writes produced in one turn of the loop (a burst of pieces) leave in one writev().
 */
void hsc_conn_cork(hsc_conn_t *c);
void hsc_conn_uncork(hsc_conn_t *c);
/**
 * Sends slices of shared frames in order with as few system calls as possible: one
 * uv_try_write() for up to 64 of them when nothing is queued, then references for the rest while
 * the queue stays under its high-water mark. Returns how many slices were taken (written or
 * queued; the caller keeps the others for on_drain), or HSC_ECLOSED / HSC_ENOMEM.
 */
int hsc_conn_send_slices(hsc_conn_t *c, const hsc_outq_item_t *it, unsigned n);
size_t hsc_conn_low_water(const hsc_conn_t *c);
/**
 * While a response runs: arms T_SEND when output waits (the client must make progress within
 * idle_timeout), disarms it when nothing does. Leaves the timer alone when armed for another
 * purpose.
 */
void hsc_conn_watch_send(hsc_conn_t *c);
size_t hsc_conn_high_water(const hsc_conn_t *c);
/** Releases what is still queued (after libuv has cancelled the writes) and the ring itself. */
void hsc_conn_outq_dispose(hsc_conn_t *c);
/** Starts writing what is queued, if nothing is being written (the TLS engine after its
 * handshake, HTTP/2 after hsc_conn_queue_ref()); a response waiting on the queue is watched. */
void hsc_conn_flush(hsc_conn_t *c);

/* ---- TLS (tls.c) ----------------------------------------------------------------------------- */

/**
 * The protocol ALPN chose for the connection ("h2", "http/1.1"), NUL-terminated, valid for the
 * connection's life; NULL for a cleartext connection or when the client offered no protocol
 * hscd speaks.
 */
const char *hsc_conn_alpn(const hsc_conn_t *c);
/** Makes `c` a TLS connection with `ctx` (its own reference). 0, or HSC_ENOMEM. */
int hsc_tls_attach(hsc_conn_t *c, struct ssl_ctx_st *ctx);
/** Frees the engine (the connection's handles are closed). */
void hsc_tls_free(hsc_conn_t *c);
/**
 * Ciphertext read from the socket: completes the handshake, then gives each piece of plaintext
 * to `feed` (conn.c's parser), until none is left or the connection closes. Closes the
 * connection itself on a failed handshake, a protocol error or the client's close_notify.
 */
void hsc_tls_input(hsc_conn_t *c, const char *data, size_t len,
                   void (*feed)(hsc_conn_t *c, const char *data, size_t len));
/** The client closed the connection (EOF or reset): counted if the handshake was not done. */
void hsc_tls_eof(hsc_conn_t *c);
/** header_timeout ran out: counted and logged if the handshake was not done. */
void hsc_tls_timeout(hsc_conn_t *c);
/** Whether the handshake is done: queued plaintext can be encrypted. */
bool hsc_tls_ready(const hsc_conn_t *c);
/**
 * Encrypts the first `n` queued slices straight from their frames and writes the ciphertext
 * (with any TLS records produced since the last write) with c->wreq and `cb`. 0, or <0.
 */
int hsc_tls_write(hsc_conn_t *c, unsigned n, uv_write_cb cb);
/** The write of hsc_tls_write() completed: releases its ciphertext. */
void hsc_tls_written(hsc_conn_t *c);
/** Before the write side is shut down: queues a close_notify when the handshake was done. */
void hsc_tls_close_notify(hsc_conn_t *c);

/**
 * Queues a slice of a shared frame behind everything else, taking over the caller's reference,
 * whatever the high mark (HTTP/2: h2res.c checks it before it frames). Written at the next flush
 * (hsc_conn_flush()). Returns 0, or HSC_ENOMEM after scheduling the close (the reference is
 * released).
 */
int hsc_conn_queue_ref(hsc_conn_t *c, hsc_frame_t *f, size_t off, size_t end);

/* ---- HTTP/2 (h2conn.c, h2recv.c, h2res.c) -----------------------------------------------------
 */

/** The client connection preface (RFC 9113 §3.4) that makes a connection an HTTP/2 one. */
#define HSC_H2_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define HSC_H2_PREFACE_LEN 24

/** One stream of an HTTP/2 connection: a request and its response (h2conn.c's essay). */
typedef struct hsc_h2_stream_s {
    hsc_req_t req;
    hsc_res_t res;
    hsc_conn_t *conn;
    int32_t id;
    struct hsc_h2_stream_s *prev, *next; /* on the session's list */
    /* Body bytes given by the producer and not framed yet: slices of frames (references). */
    hsc_outq_item_t *q;
    size_t q_head, q_count, q_cap;
    size_t pending;
    uint64_t remaining;  /* a body of announced length: bytes still expected */
    bool has_length;     /* Content-Length was announced */
    bool eof;            /* the response ended: END_STREAM after the pending bytes */
    bool deferred;       /* the data provider said DEFERRED: resume when bytes come */
    bool submitted;      /* the response's HEADERS were submitted */
    bool dispatched;     /* the request went to on_request */
    bool rst_sent;       /* RST_STREAM submitted */
    uint16_t method_off; /* :method's value in req.head */
    bool have_method, have_path;
    size_t header_bytes;    /* decoded header bytes of the request, for the bound */
    hsc_buf_t cookie;       /* cookie crumbs (RFC 9113 §8.2.3), joined into one field at the end */
    uint64_t last_progress; /* uv_now() of the stream's start or its last framed byte */
    uint64_t access_start, access_bytes;
} hsc_h2_stream_t;

struct hsc_h2_s {
    nghttp2_session *session;
    hsc_conn_t *conn;
    uv_idle_t idle; /* runs hsc_h2_pump() on the next loop turn (hsc_h2_schedule()) */
    hsc_h2_stream_t *streams;
    unsigned nstreams; /* open, not refused */
    bool in_pump, draining, goaway_sent, closing, got_headers, bomb;
    /* The frame reader in front of nghttp2 (h2recv.c). */
    uint8_t hdr[9];
    unsigned hlen;          /* bytes of hdr[] filled */
    bool in_payload;        /* hdr[] is the current frame's: its payload is being read */
    size_t payload_left;    /* bytes of the current frame's payload still to pass */
    bool drop_frame;        /* the current frame is not given to nghttp2 */
    unsigned continuations; /* CONTINUATION frames in the current header block */
    size_t block_bytes;     /* compressed bytes of the current header block */
    double reset_tokens, ping_tokens, settings_tokens;
    uint64_t tokens_at;   /* uv_now() of the last refill */
    uint64_t last_active; /* uv_now() of the last write completed, or of an empty queue */
};

/* The frame reader's buckets (h2recv.c): so many frames at once, refilled so many a second;
 * past them the connection is closed with GOAWAY ENHANCE_YOUR_CALM. */
#define HSC_H2_RESET_BURST      500.0 /* RST_STREAM from the client (rapid reset) */
#define HSC_H2_RESET_RATE       50.0
#define HSC_H2_PING_BURST       100.0 /* PING */
#define HSC_H2_PING_RATE        10.0
#define HSC_H2_SETTINGS_BURST   50.0 /* SETTINGS (not ACKs) */
#define HSC_H2_SETTINGS_RATE    5.0
#define HSC_H2_MAX_CONTINUATION 8 /* CONTINUATION frames in one header block */

/** Makes `c` an HTTP/2 connection: session, settings, then `data` (the preface onwards). */
void hsc_h2_start(hsc_conn_t *c, const char *data, size_t len);
/** Bytes read from an HTTP/2 connection's socket (h2recv.c). */
void hsc_h2_recv(hsc_conn_t *c, const char *data, size_t len);
/** Frames what nghttp2 has to send and tells producers about drain; never re-entered. */
void hsc_h2_pump(hsc_conn_t *c);
/** Runs hsc_h2_pump() on the next loop turn: what producers' calls use (never re-enter). */
void hsc_h2_schedule(hsc_conn_t *c);
/** The output queue wrote something (outq.c): more may be framed, producers may drain. */
void hsc_h2_on_write(hsc_conn_t *c);
/** The connection's timer fired for an HTTP/2 connection; `mode` is what it was armed for. */
void hsc_h2_timer(hsc_conn_t *c, int mode);
/** Shutdown: a shutdown notice, then GOAWAY once the streams in flight have ended. */
void hsc_h2_drain(hsc_conn_t *c);
/** The connection closes: every producer still attached gets its on_close. */
void hsc_h2_close(hsc_conn_t *c);
/** Frees the session and the streams, once the handles are closed. */
void hsc_h2_free(hsc_conn_t *c);
/** Sends GOAWAY with `error` (NGHTTP2_*), counts an abuse `reason` (HSC_H2_ABUSE_*, or -1) and
 *  closes once it is written. */
void hsc_h2_fail(hsc_conn_t *c, uint32_t error, int reason, const char *why);
/** A stream's request is complete, or failed a limit (req.error_status): to the owner (h2recv.c).
 */
void hsc_h2_dispatch(hsc_h2_stream_t *st);
/** Frees a closed stream's buffers and the stream (h2conn.c). */
void hsc_h2_stream_free(hsc_h2_stream_t *st);
/** The data provider and the DATA frame writer (h2res.c), given to nghttp2 by h2conn.c. */
int hsc_h2_send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t length, nghttp2_data_source *source, void *user);
/** Sets the receiving side's callbacks (h2recv.c). */
void hsc_h2_recv_callbacks(nghttp2_session_callbacks *cb);
/** Tells producers whose stream fell below its low mark (h2res.c). */
void hsc_h2_notify_drain(hsc_conn_t *c);
/** Per stream: past the high mark hsc_res_writable() says no; on_drain at the low mark; past the
 *  ceiling a write fails (HSC_EFULL) and the stream is reset. */
#define HSC_H2_STREAM_HIGH(cfg) ((cfg)->max_queue_bytes / 2)
#define HSC_H2_STREAM_LOW(cfg)  ((cfg)->max_queue_bytes / 8)
#define HSC_H2_STREAM_MAX(cfg)  ((cfg)->max_queue_bytes)

/* The response writer's HTTP/2 side (h2res.c): res.c calls these when res->h2 is set. */
int hsc_h2_res_start(hsc_res_t *res, int status, const char *content_type, const char *extra,
                     int64_t content_length);
int hsc_h2_res_write(hsc_res_t *res, const void *p, size_t n);
int hsc_h2_res_end(hsc_res_t *res);
void hsc_h2_res_abort(hsc_res_t *res);
void hsc_h2_res_close(hsc_res_t *res);
bool hsc_h2_res_writable(hsc_res_t *res);
int hsc_h2_res_send_slices(hsc_res_t *res, const hsc_outq_item_t *it, unsigned n);

#endif
