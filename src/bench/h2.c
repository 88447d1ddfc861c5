/*
 * HTTP/2 subscribers for hsc-bench's fanout (--h2 K): one TCP connection carries up to K
 * subscriber streams, driven by libnghttp2's client session on the worker's libuv loop.
 * Prior-knowledge h2c for http:// URLs; for https:// the connection is TLS (tls.c, ALPN "h2"
 * only) and a server that does not choose h2 fails the connection.
 *
 * Each stream is a GET; its response status, DATA and end go to the caller's callbacks
 * (fanout_sub.c feeds the DATA to the same SSE parser as an HTTP/1.1 body). The client must not
 * be the bottleneck, so it advertises a large window per stream (SETTINGS_INITIAL_WINDOW_SIZE)
 * and for the connection, and lets nghttp2 send WINDOW_UPDATE as soon as DATA is received (its
 * automatic flow control: the data counts as consumed when the callback returns).
 *
 * Requests submitted before the connection is up wait in the session; its output is written
 * once TCP (and TLS) is ready. A connection whose K slots have all been used is closed when its
 * last stream ends; a failed connection (read error, protocol error, GOAWAY with no streams
 * left) ends each of its open streams through on_close, then closes. Memory is freed in the TCP
 * handle's close callback. The caller never calls back into a connection from on_close except
 * to submit requests to another one (bench_h2_full says which connections take no more).
 */
#include "bench.h"

#include <netinet/in.h>
#include <nghttp2/nghttp2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H2_STREAM_WINDOW (16 << 20)  /* per stream: a subscriber is never held back by us */
#define H2_CONN_WINDOW   (256 << 20) /* the connection's: all K streams at full speed */

typedef struct h2_stream_s {
    bench_h2_conn_t *c;
    void *user;
    int status;
    bool live;
} h2_stream_t;

struct bench_h2_conn_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    const bench_h2_cbs_t *cbs;
    bench_h2_conn_t **slot; /* the caller's pointer to us: cleared when we close */
    nghttp2_session *session;
    bench_tls_t *tls;
    h2_stream_t *streams; /* one per slot, `capacity` of them */
    int capacity, used, live;
    bool connected, dead, closing, busy;
    char *rbuf, *plain; /* the worker's read buffers, borrowed */
    size_t rcap, pcap;
};

typedef struct h2_write_s {
    uv_write_t req;
    char data[];
} h2_write_t;

static void conn_fail(bench_h2_conn_t *c);

static void on_conn_closed(uv_handle_t *h)
{
    bench_h2_conn_t *c = h->data;
    nghttp2_session_del(c->session);
    bench_tls_free(c->tls);
    free(c->streams);
    free(c);
}

static void conn_close(bench_h2_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->dead = true;
    if (*c->slot == c)
        *c->slot = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows as a failed read */
    free(req);
}

/* Writes what the session has to send. Not from inside nghttp2's callbacks (c->busy). */
static int conn_flush(bench_h2_conn_t *c)
{
    if (!c->connected || c->closing || c->busy || (c->tls != NULL && !bench_tls_ready(c->tls)))
        return 0;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->session, &p);
        if (n < 0) {
            free(buf);
            return -1;
        }
        if (n == 0)
            break;
        if (len + (size_t)n > cap) {
            cap = (len + (size_t)n) * 2;
            char *nb = realloc(buf, sizeof(h2_write_t) + cap);
            if (nb == NULL) {
                free(buf);
                return -1;
            }
            buf = nb;
        }
        memcpy(buf + sizeof(h2_write_t) + len, p, (size_t)n);
        len += (size_t)n;
    }
    if (len == 0)
        return 0;
    int rc = 0;
    if (c->tls != NULL) {
        rc = bench_tls_write(c->tls, (uv_stream_t *)&c->tcp, buf + sizeof(h2_write_t), len);
        free(buf);
    } else {
        h2_write_t *w = (h2_write_t *)buf;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
            free(buf);
            rc = -1;
        }
    }
    if (rc == 0 && !nghttp2_session_want_read(c->session) &&
        !nghttp2_session_want_write(c->session))
        conn_fail(c); /* GOAWAY and nothing left open */
    return rc;
}

/* Ends every open stream (each one's on_close), then closes the connection. */
static void conn_fail(bench_h2_conn_t *c)
{
    if (c->dead)
        return;
    c->dead = true;
    for (int i = 0; i < c->used; i++) {
        h2_stream_t *st = &c->streams[i];
        if (st->live) {
            st->live = false;
            c->live--;
            c->cbs->on_close(st->user);
        }
    }
    conn_close(c);
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
    (void)flags;
    (void)arg;
    if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7 || memcmp(name, ":status", 7) != 0)
        return 0;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st != NULL && valuelen == 3)
        st->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *arg)
{
    (void)arg;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_RESPONSE)
        return 0;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st != NULL && st->live && st->c->cbs->on_status(st->user, st->status) != 0)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_CANCEL);
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *arg)
{
    (void)flags;
    (void)arg;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(session, id);
    if (st != NULL && st->live && st->c->cbs->on_data(st->user, (const char *)data, len) != 0)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error, void *arg)
{
    (void)error;
    bench_h2_conn_t *c = arg;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(session, id);
    if (st == NULL || !st->live)
        return 0;
    st->live = false;
    c->live--;
    c->cbs->on_close(st->user); /* a reset or an end: a disconnect for the caller */
    return 0;
}

static nghttp2_session_callbacks *callbacks(void)
{
    static nghttp2_session_callbacks *cbs;
    if (cbs == NULL && nghttp2_session_callbacks_new(&cbs) == 0) {
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    }
    return cbs;
}

/* Plaintext from the server (cleartext reads, or what TLS decrypted). */
static int conn_input(void *arg, const char *p, size_t n)
{
    bench_h2_conn_t *c = arg;
    c->busy = true;
    ssize_t r = nghttp2_session_mem_recv(c->session, (const uint8_t *)p, n);
    c->busy = false;
    return r < 0 || c->dead ? -1 : 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    bench_h2_conn_t *c = h->data;
    *buf = uv_buf_init(c->rbuf, (unsigned)c->rcap);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bench_h2_conn_t *c = s->data;
    if (c->dead)
        return;
    if (nread < 0) {
        conn_fail(c);
        return;
    }
    if (nread == 0)
        return;
    int rc;
    if (c->tls != NULL) {
        bool was_ready = bench_tls_ready(c->tls);
        rc = bench_tls_input(c->tls, s, buf->base, (size_t)nread, c->plain, c->pcap, conn_input, c);
        if (rc == 0 && !was_ready && bench_tls_ready(c->tls) && !bench_tls_alpn_is(c->tls, "h2"))
            rc = -1; /* the server did not choose HTTP/2 */
    } else {
        rc = conn_input(c, buf->base, (size_t)nread);
    }
    if (c->dead)
        return;
    if (rc != 0 || conn_flush(c) != 0) {
        conn_fail(c);
        return;
    }
    if (c->used == c->capacity && c->live == 0)
        conn_close(c); /* every slot used and ended */
}

static void on_connect(uv_connect_t *req, int status)
{
    bench_h2_conn_t *c = req->data;
    if (c->dead)
        return;
    if (status != 0) {
        conn_fail(c);
        return;
    }
    c->connected = true;
    if (c->tls != NULL && bench_tls_start(c->tls, (uv_stream_t *)&c->tcp) != 0) {
        conn_fail(c);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) != 0 || conn_flush(c) != 0)
        conn_fail(c);
}

bench_h2_conn_t *bench_h2_connect(uv_loop_t *loop, const struct sockaddr_in *src,
                                  const struct sockaddr_in *dst, bool tls, int capacity,
                                  const bench_h2_cbs_t *cbs, bench_h2_conn_t **slot, char *rbuf,
                                  size_t rcap, char *plain, size_t pcap)
{
    bench_h2_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->slot = slot;
    c->streams = calloc((size_t)capacity, sizeof *c->streams);
    c->capacity = capacity;
    c->cbs = cbs;
    c->rbuf = rbuf;
    c->rcap = rcap;
    c->plain = plain;
    c->pcap = pcap;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW}};
    if (c->streams == NULL || callbacks() == NULL ||
        nghttp2_session_client_new(&c->session, callbacks(), c) != 0 ||
        nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) !=
            0 ||
        (tls && (c->tls = bench_tls_new(NULL, 0)) == NULL)) {
        if (c->session != NULL)
            nghttp2_session_del(c->session);
        free(c->streams);
        free(c);
        return NULL;
    }
    uv_tcp_init_ex(loop, &c->tcp, AF_INET);
    c->tcp.data = c;
    c->creq.data = c;
    uv_os_fd_t fd;
    int one = 1; /* the port is chosen at connect(), as fanout_sub.c explains */
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    uv_tcp_nodelay(&c->tcp, 1); /* WINDOW_UPDATEs and requests are small */
    if (uv_tcp_bind(&c->tcp, (const struct sockaddr *)src, 0) != 0 ||
        uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)dst, on_connect) != 0) {
        conn_close(c); /* freed in its close callback */
        return NULL;
    }
    return c;
}

bool bench_h2_full(const bench_h2_conn_t *c)
{
    return c->dead || c->used == c->capacity;
}

int bench_h2_request(bench_h2_conn_t *c, const char *authority, const char *path,
                     const char *last_id, void *user)
{
    if (bench_h2_full(c))
        return -1;
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nv[] = {NV(":method", "GET"),
                       NV(":scheme", c->tls != NULL ? "https" : "http"),
                       NV(":authority", authority),
                       NV(":path", path),
                       NV("accept", "text/event-stream"),
                       NV("cache-control", "no-cache"),
                       NV("last-event-id", last_id != NULL ? last_id : "")};
#undef NV
    h2_stream_t *st = &c->streams[c->used];
    *st = (h2_stream_t){.c = c, .user = user, .live = true};
    int32_t id =
        nghttp2_submit_request(c->session, NULL, nv, last_id != NULL && *last_id ? 7 : 6, NULL, st);
    if (id < 0) {
        st->live = false;
        return -1;
    }
    c->used++;
    c->live++;
    if (conn_flush(c) != 0) {
        conn_fail(c); /* calls on_close for this stream too */
        return 0;
    }
    return 0;
}
