/*
 * http's private part: the connection and the functions conn.c, request.c, outq.c and res.c
 * share. Nothing outside src/lib/http includes this file (scripts/layer-check.py): there
 * hsc_conn_t is opaque.
 */
#ifndef HSC_HTTP_CONN_H
#define HSC_HTTP_CONN_H

#include "http/http.h"

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

/* Where a connection is: between requests, reading a head or a body, answering, or closing. */
enum { CONN_IDLE, CONN_HEAD, CONN_BODY, CONN_RESPONDING, CONN_CLOSING };
/* What the connection's one timer is armed for (conn.c's essay). */
enum { T_NONE, T_HEADER, T_BODY, T_IDLE, T_NEXT, T_CLOSE, T_LINGER, T_SEND, T_PIPELINE };

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
};

/** Writes the access log line of the current response if one is open (conn.c). */
void hsc_conn_access_log(hsc_conn_t *c, bool complete);

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
/** Starts writing what is queued, if nothing is being written (the TLS engine, after its
 * handshake). */
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

#endif
