/*
 * http's private part: the connection and the functions conn.c, outq.c and res.c share. Nothing
 * outside src/lib/http includes this file (scripts/layer-check.py): there hsc_conn_t is opaque.
 */
#ifndef HSC_HTTP_CONN_H
#define HSC_HTTP_CONN_H

#include "http/http.h"

/* ---- connections (conn.c) -------------------------------------------------------------------- */

struct hsc_conn_s {
    uv_tcp_t tcp; /* first: the handle's address is the connection's */
    uv_timer_t timer;
    hsc_http_t *h;
    hsc_conn_t *prev, *next; /* on h->conns */
    llhttp_t parser;
    hsc_buf_t pending; /* received, not yet parsed: pipelined requests wait here */
    hsc_req_t req;
    hsc_res_t res;
    int state;      /* CONN_* in conn.c */
    int timer_mode; /* what the timer is armed for */
    bool keep_alive, reading, closing, close_after_flush, reset_after_flush, shutdown_sent;
    bool corked;      /* hsc_conn_cork(): sends are queued, written together at hsc_conn_uncork() */
    bool upgrade;     /* the current request asked for Upgrade: close after it */
    bool dispatching; /* inside conn_dispatch(): a response ending now is picked up there */
    bool close_pending; /* hsc_conn_close_soon() was called: nothing else may re-arm the timer */
    /* Output queue: a ring of frame slices; `queued` counts unsent bytes, in flight included. */
    hsc_outq_item_t *q;
    size_t q_head, q_count, q_cap;
    size_t queued;
    uv_write_t wreq;
    unsigned in_flight; /* items handed to the current uv_write, 0 when none */
    int open_handles;
    char peer[64];
};

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
/** Called by the writer when a response is complete: next request, or close. */
void hsc_conn_response_done(hsc_conn_t *c, bool reset);
/** Closes on the next loop turn (never re-enters the caller). */
void hsc_conn_close_soon(hsc_conn_t *c);
void hsc_conn_close(hsc_conn_t *c);
void hsc_conn_start_reading(hsc_conn_t *c);
/** Shutdown: an idle connection closes now, a busy one after its current response. */
void hsc_conn_drain(hsc_conn_t *c);
size_t hsc_conn_low_water(const hsc_conn_t *c);
size_t hsc_conn_high_water(const hsc_conn_t *c);

#endif
