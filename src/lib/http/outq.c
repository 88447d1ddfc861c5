/*
 * The output queue: every byte a connection sends goes through hsc_conn_send() or
 * hsc_conn_send_slices() (docs/internals/output-queue.md).
 *
 * Try to write at once, queue only the rest: when nothing is queued and no write is in flight,
 * uv_try_write() takes what the socket will; what it did not take is copied into one frame (or,
 * for shared frames, referenced) on a ring of slices, which one uv_write() of up to 16 slices at
 * a time drains. uv_try_write() is never tried while anything is queued, so bytes leave in the
 * order they were sent.
 *
 * Bounds and watermarks. `queued` counts unsent bytes, those in flight included; a send that
 * would take it past cfg.max_queue_bytes fails with HSC_EFULL and the connection closes on the
 * next loop turn (a client that does not read cannot make the server hold unbounded memory).
 * Producers see the high mark (max_queue_bytes / 2) through hsc_res_writable() and, after it said
 * no, on_drain once the queue falls to the low mark (max_queue_bytes / 8). While a response waits
 * on the queue, the client must make progress within idle_timeout (the T_SEND timer).
 *
 * Lifetimes. A queued slice holds a reference to its frame, released in on_write, or by
 * hsc_conn_outq_dispose() when the connection is freed after libuv has cancelled its writes: the
 * bytes given to uv_write() stay alive until its callback.
 *
 * Cork. While corked, nothing is tried or flushed: sends are copied to the queue and leave in one
 * writev() at hsc_conn_uncork(), or before a send that would take the corked bytes past
 * HSC_CORK_MAX. When the last response's bytes are written, on_write hands the connection back to
 * conn.c (hsc_conn_finish()) to close it.
 *
 * TLS. A TLS connection queues everything (conn_try() takes nothing) and conn_flush() has the
 * engine encrypt the slices straight from their frames (tls.c): the bounds above count
 * plaintext, unchanged.
 */
#include "http/conn.h"

#include <stdlib.h>
#include <string.h>

static void conn_flush(hsc_conn_t *c);

size_t hsc_conn_high_water(const hsc_conn_t *c)
{
    return c->h->cfg->max_queue_bytes / 2;
}

size_t hsc_conn_low_water(const hsc_conn_t *c)
{
    return c->h->cfg->max_queue_bytes / 8;
}

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
void hsc_conn_watch_send(hsc_conn_t *c)
{
    if (c->state != CONN_RESPONDING || (c->timer_mode != T_NONE && c->timer_mode != T_SEND))
        return;
    if (c->q_count > 0)
        hsc_conn_arm(c, T_SEND, c->h->cfg->idle_timeout_ms);
    else if (c->timer_mode == T_SEND)
        hsc_conn_disarm(c);
}

static void on_write(uv_write_t *req, int status)
{
    hsc_conn_t *c = (hsc_conn_t *)req->handle;
    unsigned n = c->in_flight;
    c->in_flight = 0;
    if (c->tls != NULL)
        hsc_tls_written(c); /* the ciphertext of those n slices */
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
    hsc_conn_watch_send(c);
    if (c->h2 != NULL)
        hsc_h2_on_write(c);
    else if (c->res.want_drain && c->queued <= hsc_conn_low_water(c)) {
        c->res.want_drain = false;
        if (c->res.on_drain != NULL && !c->res.ended)
            c->res.on_drain(&c->res, c->res.user);
    }
    if (c->q_count == 0 && c->close_after_flush && !c->closing)
        hsc_conn_finish(c);
}

static void conn_flush(hsc_conn_t *c)
{
    if (c->in_flight > 0 || c->q_count == 0 || c->closing || c->corked)
        return;
    if (c->tls != NULL) { /* encrypted straight from the slices' frames (tls.c) */
        unsigned n = c->q_count < 16 ? (unsigned)c->q_count : 16;
        if (!hsc_tls_ready(c))
            return; /* written once the handshake is done */
        if (hsc_tls_write(c, n, on_write) != 0) {
            hsc_conn_close_soon(c);
            return;
        }
        c->in_flight = n;
        return;
    }
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
    /* TLS queues every send (nothing is tried first): one bigger than the bound still goes
     * when the queue is empty, as it would have been written in part at once in cleartext. */
    if (c->queued + rest > c->h->cfg->max_queue_bytes && !(c->tls != NULL && c->queued == 0)) {
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
    hsc_conn_watch_send(c);
    return 0;
}

/* Writes at once when nothing is queued; returns bytes written, or <0 after scheduling a close. */
static ssize_t conn_try(hsc_conn_t *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->q_count > 0 || c->corked || c->tls != NULL)
        return 0; /* TLS: everything goes through the queue, to be encrypted (tls.c) */
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
    c->access_bytes += total;
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
    hsc_conn_watch_send(c);
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
    for (unsigned k = 0; k < taken; k++)
        c->access_bytes += it[k].end - it[k].off;
    conn_flush(c);
    hsc_conn_watch_send(c);
    return (int)taken;
}

void hsc_conn_flush(hsc_conn_t *c)
{
    conn_flush(c);
    hsc_conn_watch_send(c);
}

int hsc_conn_queue_ref(hsc_conn_t *c, hsc_frame_t *f, size_t off, size_t end)
{
    if (outq_push(c, f, off, end) != 0) {
        hsc_frame_unref(f);
        hsc_conn_close_soon(c);
        return HSC_ENOMEM;
    }
    c->access_bytes += end - off;
    return 0;
}

void hsc_conn_outq_dispose(hsc_conn_t *c)
{
    while (c->q_count > 0)
        outq_pop(c);
    free(c->q);
    c->q = NULL;
    c->q_cap = 0;
}
