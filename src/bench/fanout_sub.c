/*
 * fanout's subscriber processes (fanout.c starts them and sums up; fanout.h has what they share).
 *
 * Each process runs a libuv loop with its share of the subscribers, at most MAX_INFLIGHT
 * connection attempts at a time, bound to source addresses 127.0.0.(1 + i % sources) so that
 * tens of thousands of connections fit the ephemeral port range. A subscriber records which of
 * its channel's events arrived (a bitmap by the event's index in its channel: lost, duplicated,
 * out of order) and each delivery's latency. A subscription refused before its headers is tried
 * again after 100 ms (five tries); with --resume one cut after its headers reconnects to the next
 * subscribe URL with Last-Event-ID, again and again.
 *
 * With --h2 K the subscribers are HTTP/2 streams (h2.c), K to a connection per subscribe URL:
 * the stream's DATA goes to the same SSE parser, a reset or end of the stream is a disconnect,
 * and a retry or resume is a new stream (on a new connection once the current one is full).
 */
#include "fanout.h"
#include "hsc/codec.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_INFLIGHT 200 /* connection attempts in flight per worker: no SYN backlog overflow */

typedef struct worker_s worker_t;

typedef struct sub_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    llhttp_t http;
    hsc_sse_parser_t *sse;
    worker_t *w;
    char *request; /* while its write is in flight */
    uint8_t *seen; /* bitmap of the channel's events, by index */
    uint32_t *lat; /* this subscriber's slice of the shared samples */
    uint32_t nlat, cap;
    long chan, maxseq;
    uint64_t retry_at;
    uint8_t tries, url;
    bool headers, warm, closed, retry, counted, h2;
    bench_tls_t *tls; /* an https:// --sub-url: its request is sent after the handshake */
} sub_t;

struct worker_s {
    uv_loop_t loop;
    uv_timer_t tick;
    const opts_t *o;
    shared_t *sh;
    worker_result_t *res;
    sub_t *subs;
    sub_t **retry_q; /* subscriptions to try again */
    long nsubs, next, inflight, first_index, nretry;
    llhttp_settings_t settings;
    char rbuf[65536];
    char plain[65536];                   /* TLS: what a subscriber's read decrypts to */
    bench_h2_conn_t *h2[BENCH_MAX_URLS]; /* --h2: the connection taking streams, per URL */
};

long fanout_sub_channel(const opts_t *o, long i)
{
    if (o->channels <= 1)
        return 0;
    if (o->hot <= 0)
        return i % o->channels;
    if (i < o->hot)
        return 0;
    return 1 + (i - o->hot) % (o->channels - 1);
}

int fanout_sub_url(const opts_t *o, long i)
{
    if (o->channels <= 1 || (o->hot > 0 && i < o->hot))
        return (int)(i % o->nsub);
    /* The k-th subscriber of the channel at position c goes to node (c + k) % nodes: every
     * channel on every node, whatever the numbers of channels and nodes. */
    long j = o->hot > 0 ? i - o->hot : i, per = o->hot > 0 ? o->channels - 1 : o->channels;
    return (int)((j % per + j / per) % o->nsub);
}

long fanout_channel_events(const opts_t *o, long c)
{
    return o->m / o->channels + (c < o->m % o->channels ? 1 : 0);
}

void fanout_channel_name(const opts_t *o, long c, char *out, size_t cap)
{
    if (o->channels <= 1)
        snprintf(out, cap, "%s", o->channel);
    else
        snprintf(out, cap, "%s-%ld", o->channel, c);
}

static void sub_close(sub_t *s, bool count_disconnect);

static void sub_reap(sub_t *s)
{
    worker_t *w = s->w;
    bench_tls_free(s->tls); /* its writes' callbacks ran before this one */
    s->tls = NULL;
    free(s->request); /* a TLS subscriber's request, borrowed by its client until now */
    s->request = NULL;
    if (s->retry) {
        /* Another try in 100 ms, as a browser's EventSource would; start_next picks it up. */
        s->retry = false;
        s->retry_at = bench_now_ns() + 100000000u;
        w->retry_q[w->nretry++] = s;
    }
}

static void on_closed(uv_handle_t *h)
{
    sub_reap(h->data);
}

static int on_sse_event(void *user, const hsc_sse_msg_t *msg)
{
    sub_t *s = user;
    worker_t *w = s->w;
    const opts_t *o = w->o;
    uint64_t now = bench_now_ns();
    char *end;
    long seq = strtol(msg->data, &end, 10);
    if (end == msg->data || *end != ' ') {
        w->res->other_events++;
        return 0;
    }
    unsigned long long sent = strtoull(end + 1, NULL, 10);
    if (seq == 0) {
        if (!s->warm) {
            s->warm = true;
            atomic_fetch_add(&w->sh->warm, 1);
            atomic_fetch_add(&w->sh->expected, (uint64_t)fanout_channel_events(o, s->chan));
        }
        return 0;
    }
    if (seq < 0 || seq > o->m || fanout_event_channel(o, seq) != s->chan) {
        w->res->other_events++;
        return 0;
    }
    long k = fanout_event_index(o, seq);
    uint8_t bit = (uint8_t)(1u << (k & 7));
    if (s->seen[k >> 3] & bit) {
        w->res->duplicated++;
        return 0;
    }
    s->seen[k >> 3] |= bit;
    if (seq < s->maxseq)
        w->res->out_of_order++;
    else
        s->maxseq = seq;
    w->res->distinct++;
    uint64_t us = now > sent ? (now - sent) / 1000u : 0;
    if (s->nlat < s->cap)
        s->lat[s->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    w->res->last_recv_ns = now;
    atomic_fetch_add_explicit(&w->sh->received, 1, memory_order_relaxed);
    return 0;
}

static int sub_headers(sub_t *s, int status)
{
    if (status != 200)
        return -1;
    s->headers = true;
    s->tries = 0;
    s->w->inflight--;
    if (!s->counted) {
        s->counted = true;
        atomic_fetch_add(&s->w->sh->connected, 1);
    } else {
        s->w->res->resumed++;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    return sub_headers(p->data, p->status_code);
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    sub_t *s = p->data;
    if (hsc_sse_parser_feed(s->sse, at, len) != 0)
        return -1;
    return 0;
}

static void start_next(worker_t *w);

/* The URL a resume moves to: another node, the cut subscribers of one node spread evenly over
 * the others (a balancer would not send them all to the same one). */
static uint8_t next_url(const sub_t *s)
{
    int n = s->w->o->nsub;
    if (n <= 1)
        return 0;
    long g = s->w->first_index + (s - s->w->subs);
    return (uint8_t)((s->url + 1 + g % (n - 1)) % n);
}

static void sub_close(sub_t *s, bool count_disconnect)
{
    if (s->closed)
        return;
    s->closed = true;
    bool stopping = atomic_load(&s->w->sh->stop);
    if (!s->headers) {
        s->w->inflight--;
        /* Five tries for a first connection; a resume goes on through the URLs until stopped. */
        if ((++s->tries < 5 || (s->counted && s->w->o->resume)) && !stopping) {
            s->retry = true;
            s->w->res->retries++;
            if (s->counted)
                s->url = next_url(s);
        } else if (!s->counted) {
            atomic_fetch_add(&s->w->sh->failed, 1);
        }
    } else {
        if (count_disconnect)
            s->w->res->disconnects++;
        if (s->w->o->resume && !stopping) {
            s->retry = true;
            s->headers = false;
            s->url = next_url(s);
        }
    }
    if (s->h2)
        sub_reap(s); /* the stream is over (h2.c calls back only then) */
    else
        uv_close((uv_handle_t *)&s->tcp, on_closed);
    start_next(s->w);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    sub_t *s = h->data;
    *buf = uv_buf_init(s->w->rbuf, sizeof s->w->rbuf);
}

/* Decrypted bytes of a TLS subscription: parsed as a cleartext read would be. */
static int on_plain(void *arg, const char *p, size_t n)
{
    sub_t *s = arg;
    if (llhttp_execute(&s->http, p, n) == HPE_OK)
        return 0;
    if (s->headers)
        s->w->res->errors++;
    return -1;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    sub_t *s = stream->data;
    if (nread < 0) {
        sub_close(s, true);
        return;
    }
    if (nread == 0)
        return;
    if (s->tls != NULL) {
        if (bench_tls_input(s->tls, stream, buf->base, (size_t)nread, s->w->plain,
                            sizeof s->w->plain, on_plain, s) != 0)
            sub_close(s, true);
        return;
    }
    if (llhttp_execute(&s->http, buf->base, (size_t)nread) != HPE_OK) {
        if (s->headers)
            s->w->res->errors++;
        sub_close(s, true);
    }
}

static void on_written(uv_write_t *req, int status)
{
    sub_t *s = req->data;
    free(s->request);
    s->request = NULL;
    if (status != 0)
        sub_close(s, false);
}

/* The GET of subscriber s: its channel on its current URL, Last-Event-ID when resuming. */
static char *make_request(const sub_t *s, size_t *len)
{
    const opts_t *o = s->w->o;
    char name[160];
    bench_url_t u;
    fanout_channel_name(o, s->chan, name, sizeof name);
    if (bench_url_parse(o->sub[s->url], name, &u) != 0)
        return NULL;
    const char *id = hsc_sse_parser_last_id(s->sse);
    size_t cap = strlen(u.path) + strlen(id) + 256;
    char *req = malloc(cap);
    if (req == NULL)
        return NULL;
    int n = snprintf(req, cap,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Accept: text/event-stream\r\nCache-Control: no-cache\r\n%s%s%s\r\n",
                     u.path, u.host, u.port, o->resume && *id ? "Last-Event-ID: " : "",
                     o->resume ? id : "", o->resume && *id ? "\r\n" : "");
    *len = (size_t)n;
    return req;
}

static void on_connect(uv_connect_t *req, int status)
{
    sub_t *s = req->data;
    if (status != 0) {
        sub_close(s, false);
        return;
    }
    size_t len = 0;
    s->request = make_request(s, &len);
    if (s->request == NULL) {
        sub_close(s, false);
        return;
    }
    bench_url_t u;
    if (bench_url_parse(s->w->o->sub[s->url], NULL, &u) == 0 && u.tls) {
        s->tls = bench_tls_new(s->request, len);
        if (s->tls == NULL || bench_tls_start(s->tls, (uv_stream_t *)&s->tcp) != 0 ||
            uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, on_read) != 0)
            sub_close(s, false);
        return;
    }
    uv_buf_t b = uv_buf_init(s->request, (unsigned)len);
    s->wreq.data = s;
    if (uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, on_written) != 0) {
        free(s->request);
        s->request = NULL;
        sub_close(s, false);
        return;
    }
    if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, on_read) != 0)
        sub_close(s, false);
}

/* --h2: subscriber s as a stream of its URL's current connection (a new one when full). */
static int h2_status(void *user, int status)
{
    return sub_headers(user, status);
}

static int h2_data(void *user, const char *p, size_t n)
{
    sub_t *s = user;
    if (hsc_sse_parser_feed(s->sse, p, n) == 0)
        return 0;
    s->w->res->errors++;
    return -1;
}

static void h2_close(void *user)
{
    sub_close(user, true);
}

static const bench_h2_cbs_t h2_cbs = {h2_status, h2_data, h2_close};

static void h2_open(worker_t *w, sub_t *s, const struct sockaddr_in *src,
                    const struct sockaddr_in *dst)
{
    const opts_t *o = w->o;
    char name[160], auth[96];
    bench_url_t u;
    bench_h2_conn_t **slot = &w->h2[s->url];
    fanout_channel_name(o, s->chan, name, sizeof name);
    if (bench_url_parse(o->sub[s->url], name, &u) != 0) {
        sub_close(s, false);
        return;
    }
    if (*slot == NULL || bench_h2_full(*slot))
        *slot = bench_h2_connect(&w->loop, src, dst, u.tls, (int)o->h2, &h2_cbs, slot, w->rbuf,
                                 sizeof w->rbuf, w->plain, sizeof w->plain);
    snprintf(auth, sizeof auth, "%s:%d", u.host, u.port);
    const char *id = o->resume ? hsc_sse_parser_last_id(s->sse) : NULL;
    if (*slot == NULL || bench_h2_request(*slot, auth, u.path, id, s) != 0)
        sub_close(s, false);
}

static void sub_open(worker_t *w, sub_t *s)
{
    long global = w->first_index + (s - w->subs);
    bench_url_t u;
    w->inflight++;
    s->closed = false;
    hsc_sse_parser_reset(s->sse); /* keeps the last id: a resume sends it */
    /* Source address 127.0.0.(1 + k): more source addresses, more ephemeral ports. */
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(global % w->o->sources));
    struct sockaddr_in dst = {.sin_family = AF_INET};
    if (bench_url_parse(w->o->sub[s->url], NULL, &u) == 0) {
        dst.sin_port = htons((uint16_t)u.port);
        inet_pton(AF_INET, u.host, &dst.sin_addr);
    }
    if (s->h2) {
        h2_open(w, s, &src, &dst);
        return;
    }
    uv_tcp_init_ex(&w->loop, &s->tcp, AF_INET);
    s->tcp.data = s;
    s->creq.data = s;
    llhttp_init(&s->http, HTTP_RESPONSE, &w->settings);
    s->http.data = s;
    /* The port is chosen at connect() (per destination), not at bind(): binding port 0 to an
     * address searches the whole port range for a free port, which with tens of thousands of
     * sockets costs the kernel more than everything else here. */
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (uv_tcp_bind(&s->tcp, (struct sockaddr *)&src, 0) != 0 ||
        uv_tcp_connect(&s->creq, &s->tcp, (struct sockaddr *)&dst, on_connect) != 0)
        sub_close(s, false);
}

static void start_next(worker_t *w)
{
    if (atomic_load(&w->sh->stop))
        return;
    uint64_t now = bench_now_ns();
    for (long i = 0; i < w->nretry && w->inflight < MAX_INFLIGHT;) {
        sub_t *s = w->retry_q[i];
        if (s->retry_at > now) {
            i++;
            continue;
        }
        w->retry_q[i] = w->retry_q[--w->nretry];
        sub_open(w, s);
    }
    while (w->inflight < MAX_INFLIGHT && w->next < w->nsubs) {
        sub_t *s = &w->subs[w->next++];
        sub_open(w, s);
    }
}

static void on_tick(uv_timer_t *t)
{
    worker_t *w = t->data;
    if (atomic_load(&w->sh->stop)) {
        uv_stop(&w->loop);
        return;
    }
    if (atomic_load(&w->sh->go))
        start_next(w);
}

int fanout_worker_main(const opts_t *o, shared_t *sh, uint32_t *lat_all, const size_t *lat_off,
                       int wi, long first, long count)
{
    worker_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return 1;
    for (int k = 0; k < o->nsub; k++) {
        bench_url_t u;
        if (bench_url_parse(o->sub[k], NULL, &u) == 0 && u.tls && bench_tls_init(o->h2 > 0) != 0)
            return 1;
    }
    w->o = o;
    w->sh = sh;
    w->res = &sh->results[wi];
    w->first_index = first;
    w->nsubs = count;
    w->subs = calloc((size_t)count, sizeof *w->subs);
    w->retry_q = calloc((size_t)count, sizeof *w->retry_q);
    size_t bitmap = (size_t)(fanout_channel_events(o, 0) + 7) / 8;
    uint8_t *seen = calloc((size_t)count, bitmap > 0 ? bitmap : 1);
    if (w->subs == NULL || w->retry_q == NULL || seen == NULL)
        return 1;
    for (long i = 0; i < count; i++) {
        sub_t *s = &w->subs[i];
        s->w = w;
        s->h2 = o->h2 > 0;
        s->chan = fanout_sub_channel(o, first + i);
        s->url = (uint8_t)fanout_sub_url(o, first + i);
        s->seen = seen + (size_t)i * bitmap;
        s->lat = lat_all + lat_off[first + i];
        s->cap = (uint32_t)(lat_off[first + i + 1] - lat_off[first + i]);
        s->sse = hsc_sse_parser_new(1 << 20, 1 << 20, on_sse_event, NULL, NULL, s);
        if (s->sse == NULL)
            return 1;
    }
    llhttp_settings_init(&w->settings);
    w->settings.on_headers_complete = on_headers_complete;
    w->settings.on_body = on_body;
    uv_loop_init(&w->loop);
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, 1, 5);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Compact the samples to the start of this worker's region for the main process. */
    uint32_t *dst = lat_all + lat_off[first];
    uint64_t nlat = 0;
    for (long i = 0; i < count; i++) {
        memmove(dst + nlat, w->subs[i].lat, w->subs[i].nlat * sizeof *dst);
        nlat += w->subs[i].nlat;
    }
    w->res->nlat = nlat;
    w->res->done = 1;
    /* Sockets, parsers and the loop go with the process. */
    return 0;
}
