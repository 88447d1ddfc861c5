/*
 * fanout and connect: N subscribers spread over several processes (and 127.0.0.x source
 * addresses, so that tens of thousands of connections fit under per-process file limits and the
 * ephemeral port range), one publisher in the main process.
 *
 * Every event's data is "<seq> <send time, monotonic ns> <padding>"; subscribers parse the SSE
 * stream with libhsc's parser and record, per subscriber, which sequence numbers arrived (lost,
 * duplicated, out of order) and each delivery's latency. Before the measured events, warm-up
 * events (seq 0) are published until every subscriber has received one: a server that answers
 * the subscription's headers before the subscription is active cannot lose measured events.
 *
 * The processes share one anonymous MAP_SHARED region: counters, per-worker results and the
 * latency samples. The server is named by --pid (repeatable); its CPU seconds and RSS are read
 * from /proc for it and all its descendants (nginx workers, Pushpin's processes).
 */
#include "fanout.h"
#include "hsc/codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <llhttp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define MAX_INFLIGHT 200 /* connection attempts in flight per worker: no SYN backlog overflow */

typedef struct worker_result_s {
    uint64_t distinct, duplicated, out_of_order, disconnects, errors, other_events, retries;
    uint64_t last_recv_ns, nlat;
    int done;
} worker_result_t;

typedef struct shared_s {
    _Atomic uint64_t connected, failed, warm, received;
    _Atomic int go, stop;
    worker_result_t results[MAX_WORKERS];
} shared_t;

/* ---- subscriber workers ------------------------------------------------------------------ */

typedef struct worker_s worker_t;

typedef struct sub_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    llhttp_t http;
    hsc_sse_parser_t *sse;
    worker_t *w;
    uint8_t *seen; /* bitmap of sequence numbers 1..m */
    uint32_t *lat; /* this subscriber's slice of the shared samples */
    uint32_t nlat;
    long maxseq;
    uint64_t retry_at;
    uint8_t tries;
    bool headers, warm, closed, retry;
    bench_tls_t *tls; /* an https:// --sub-url */
} sub_t;

struct worker_s {
    uv_loop_t loop;
    uv_timer_t tick;
    const opts_t *o;
    shared_t *sh;
    worker_result_t *res;
    sub_t *subs;
    sub_t **retry_q; /* subscriptions that failed before their headers, to try again */
    long nsubs, next, inflight, first_index, nretry;
    char request[4096];
    size_t request_len;
    llhttp_settings_t settings;
    char rbuf[65536];
    char plain[65536]; /* TLS: what the subscriber's read decrypts to */
};

static void sub_close(sub_t *s, bool count_disconnect);

static void on_closed(uv_handle_t *h)
{
    sub_t *s = h->data;
    worker_t *w = s->w;
    bench_tls_free(s->tls); /* its writes' callbacks ran before this one */
    s->tls = NULL;
    if (s->retry) {
        /* Another try in 100 ms, as a browser's EventSource would; start_next picks it up. */
        s->retry = false;
        s->retry_at = bench_now_ns() + 100000000u;
        w->retry_q[w->nretry++] = s;
    }
}

static int on_sse_event(void *user, const hsc_sse_msg_t *msg)
{
    sub_t *s = user;
    worker_t *w = s->w;
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
        }
        return 0;
    }
    if (seq < 0 || seq > w->o->m) {
        w->res->other_events++;
        return 0;
    }
    uint8_t bit = (uint8_t)(1u << ((seq - 1) & 7));
    if (s->seen[(seq - 1) >> 3] & bit) {
        w->res->duplicated++;
        return 0;
    }
    s->seen[(seq - 1) >> 3] |= bit;
    if (seq < s->maxseq)
        w->res->out_of_order++;
    else
        s->maxseq = seq;
    w->res->distinct++;
    uint64_t us = now > sent ? (now - sent) / 1000u : 0;
    s->lat[s->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    w->res->last_recv_ns = now;
    atomic_fetch_add_explicit(&w->sh->received, 1, memory_order_relaxed);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    sub_t *s = p->data;
    if (p->status_code != 200)
        return -1;
    s->headers = true;
    s->w->inflight--;
    atomic_fetch_add(&s->w->sh->connected, 1);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    sub_t *s = p->data;
    if (hsc_sse_parser_feed(s->sse, at, len) != 0)
        return -1;
    return 0;
}

static void start_next(worker_t *w);

static void sub_close(sub_t *s, bool count_disconnect)
{
    if (s->closed)
        return;
    s->closed = true;
    if (!s->headers) {
        s->w->inflight--;
        if (++s->tries < 5 && !atomic_load(&s->w->sh->stop)) {
            s->retry = true;
            s->w->res->retries++;
        } else {
            atomic_fetch_add(&s->w->sh->failed, 1);
        }
    } else if (count_disconnect) {
        s->w->res->disconnects++;
    }
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
    if (status != 0)
        sub_close(s, false);
}

static void on_connect(uv_connect_t *req, int status)
{
    sub_t *s = req->data;
    if (status != 0) {
        sub_close(s, false);
        return;
    }
    if (s->w->o->sub.tls) {
        s->tls = bench_tls_new(s->w->request, s->w->request_len);
        if (s->tls == NULL || bench_tls_start(s->tls, (uv_stream_t *)&s->tcp) != 0 ||
            uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, on_read) != 0)
            sub_close(s, false);
        return;
    }
    uv_buf_t b = uv_buf_init(s->w->request, (unsigned)s->w->request_len);
    s->wreq.data = s;
    if (uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, on_written) != 0 ||
        uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, on_read) != 0)
        sub_close(s, false);
}

static void sub_open(worker_t *w, sub_t *s)
{
    long global = w->first_index + (s - w->subs);
    w->inflight++;
    s->closed = false;
    uv_tcp_init(&w->loop, &s->tcp);
    s->tcp.data = s;
    s->creq.data = s;
    llhttp_init(&s->http, HTTP_RESPONSE, &w->settings);
    s->http.data = s;
    hsc_sse_parser_reset(s->sse);
    /* Source address 127.0.0.(1 + k): more source addresses, more ephemeral ports. */
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(global % w->o->sources));
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->o->sub.port)};
    inet_pton(AF_INET, w->o->sub.host, &dst.sin_addr);
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
        s->w = w;
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

static int worker_main(const opts_t *o, shared_t *sh, uint32_t *lat_all, int wi, long first,
                       long count)
{
    worker_t *w = calloc(1, sizeof *w);
    if (w == NULL || (o->sub.tls && bench_tls_init() != 0))
        return 1;
    w->o = o;
    w->sh = sh;
    w->res = &sh->results[wi];
    w->first_index = first;
    w->nsubs = count;
    w->subs = calloc((size_t)count, sizeof *w->subs);
    w->retry_q = calloc((size_t)count, sizeof *w->retry_q);
    size_t bitmap = (size_t)(o->m + 7) / 8;
    uint8_t *seen = calloc((size_t)count, bitmap > 0 ? bitmap : 1);
    if (w->subs == NULL || w->retry_q == NULL || seen == NULL)
        return 1;
    for (long i = 0; i < count; i++) {
        sub_t *s = &w->subs[i];
        s->seen = seen + (size_t)i * bitmap;
        s->lat = lat_all + (size_t)(first + i) * (size_t)o->m;
        s->sse = hsc_sse_parser_new(1 << 20, 1 << 20, on_sse_event, NULL, NULL, s);
        if (s->sse == NULL)
            return 1;
    }
    w->request_len =
        (size_t)snprintf(w->request, sizeof w->request,
                         "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                         "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
                         o->sub.path, o->sub.host, o->sub.port);
    llhttp_settings_init(&w->settings);
    w->settings.on_headers_complete = on_headers_complete;
    w->settings.on_body = on_body;
    uv_loop_init(&w->loop);
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, 1, 5);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Compact the samples to the start of this worker's region for the main process. */
    uint32_t *dst = lat_all + (size_t)first * (size_t)o->m;
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

/* ---- the publisher ----------------------------------------------------------------------- */

typedef struct publisher_s {
    const opts_t *o;
    int fd;
    char *payload, *body;
    size_t cap;
    uint64_t errors;
} publisher_t;

static size_t make_payload(const opts_t *o, char *out, long seq)
{
    int n =
        snprintf(out, (size_t)o->size + 64, "%ld %llu ", seq, (unsigned long long)bench_now_ns());
    size_t len = (size_t)n;
    for (; (long)len < o->size; len++)
        out[len] = (char)('a' + (len % 26));
    out[len] = '\0';
    return len;
}

static int publish(publisher_t *p, long seq)
{
    const opts_t *o = p->o;
    size_t len = make_payload(o, p->payload, seq);
    const char *body = p->payload, *ctype = "text/plain";
    if (strcmp(o->pub_format, "pushpin") == 0) {
        /* Pushpin's publish API: the bytes to send to http-stream subscribers, as SSE. */
        len = (size_t)snprintf(p->body, p->cap,
                               "{\"items\":[{\"channel\":\"%s\",\"formats\":{\"http-stream\":"
                               "{\"content\":\"data: %s\\n\\n\"}}}]}",
                               o->channel, p->payload);
        body = p->body;
        ctype = "application/json";
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (p->fd < 0)
            p->fd = bench_connect_blocking(&o->pub);
        if (p->fd < 0)
            continue;
        int status = bench_http_roundtrip(p->fd, "POST", &o->pub, ctype, body, len);
        if (status >= 200 && status < 300)
            return 0;
        if (status < 0) {
            close(p->fd);
            p->fd = -1;
            continue;
        }
        break;
    }
    p->errors++;
    return -1;
}

/* ---- the main process -------------------------------------------------------------------- */

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL);
}

static void sample_peak(const opts_t *o, uint64_t *peak)
{
    bench_usage_t u;
    if (o->npids > 0 && bench_usage(o->pids, o->npids, &u) == 0 && u.rss_kb > *peak)
        *peak = u.rss_kb;
}

int bench_fanout_main(int argc, char **argv, bool connect_only)
{
    opts_t o = {.connect_only = connect_only};
    if (bench_fanout_parse_opts(argc, argv, &o) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    bench_raise_nofile(); /* each worker holds n/procs sockets */
    size_t lat_bytes = (size_t)o.n * (size_t)(o.m > 0 ? o.m : 1) * sizeof(uint32_t);
    shared_t *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    uint32_t *lat =
        mmap(NULL, lat_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || lat == MAP_FAILED) {
        perror("hsc-bench: mmap");
        return 1;
    }
    bench_usage_t base;
    bench_usage(o.pids, o.npids, &base);
    if (o.npids > 0 && base.procs == 0) {
        fprintf(stderr, "hsc-bench: no process with the --pid given\n");
        return 2;
    }

    pid_t kids[MAX_WORKERS];
    long firsts[MAX_WORKERS];
    long first = 0;
    for (long i = 0; i < o.procs; i++) {
        long count = o.n / o.procs + (i < o.n % o.procs ? 1 : 0);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("hsc-bench: fork");
            return 1;
        }
        if (pid == 0)
            _exit(worker_main(&o, sh, lat, (int)i, first, count));
        kids[i] = pid;
        firsts[i] = first;
        first += count;
    }

    /* Connect everyone. */
    uint64_t t_conn0 = bench_now_ns();
    atomic_store(&sh->go, 1);
    uint64_t last_progress = t_conn0, seen = 0;
    while (atomic_load(&sh->connected) + atomic_load(&sh->failed) < (uint64_t)o.n) {
        uint64_t now = bench_now_ns(), c = atomic_load(&sh->connected) + atomic_load(&sh->failed);
        if (c != seen) {
            seen = c;
            last_progress = now;
        }
        if (now - last_progress > (uint64_t)(o.idle_s * 1e9))
            break;
        bench_progress("%s: connecting %llu/%ld", o.label,
                       (unsigned long long)atomic_load(&sh->connected), o.n);
        sleep_ns(2000000);
    }
    uint64_t t_conn1 = bench_now_ns();
    uint64_t connected = atomic_load(&sh->connected);
    double connect_s = (double)(t_conn1 - t_conn0) / 1e9;

    json_t *r = json_object();
    json_object_set_new(r, "scenario", json_string(connect_only ? "connect" : "fanout"));
    json_object_set_new(r, "server", json_string(o.label));
    json_object_set_new(r, "subscribers", json_integer(o.n));
    json_object_set_new(r, "connected", json_integer((json_int_t)connected));
    json_object_set_new(r, "connect_failed", json_integer((json_int_t)atomic_load(&sh->failed)));
    uint64_t retries = 0;
    for (long i = 0; i < o.procs; i++)
        retries += sh->results[i].retries;
    json_object_set_new(r, "connect_retries", json_integer((json_int_t)retries));
    json_object_set_new(r, "processes", json_integer(o.procs));
    json_object_set_new(r, "connect_s", json_real(connect_s));
    json_object_set_new(r, "connects_per_s",
                        json_real(connect_s > 0 ? (double)connected / connect_s : 0));

    publisher_t pub = {.o = &o, .fd = -1};
    pub.cap = (size_t)o.size * 2 + 512;
    pub.payload = malloc((size_t)o.size + 64);
    pub.body = malloc(pub.cap);
    int rc = 0;
    if (pub.payload == NULL || pub.body == NULL)
        return 1;

    if (connect_only) {
        uint64_t until = bench_now_ns() + (uint64_t)(o.settle_s * 1e9);
        while (bench_now_ns() < until)
            sleep_ns(10000000);
        bench_usage_t idle;
        bench_usage(o.pids, o.npids, &idle);
        json_object_set_new(r, "rss_empty_kb", json_integer((json_int_t)base.rss_kb));
        json_object_set_new(r, "rss_idle_kb", json_integer((json_int_t)idle.rss_kb));
        double per = connected > 0 && idle.rss_kb > base.rss_kb
                         ? (double)(idle.rss_kb - base.rss_kb) * 1024.0 / (double)connected
                         : 0;
        json_object_set_new(r, "bytes_per_idle_subscriber", json_real(per));
        json_object_set_new(r, "server_cpu_connect_s", json_real(idle.cpu_s - base.cpu_s));
        if (connected < (uint64_t)o.n)
            rc = 3;
    } else {
        /* Warm-up: until every connected subscriber has seen an event of the channel. */
        uint64_t t_w0 = bench_now_ns();
        bool warm = connected > 0;
        while (connected > 0 && atomic_load(&sh->warm) < connected) {
            if (bench_now_ns() - t_w0 > (uint64_t)(3 * o.idle_s * 1e9)) {
                warm = false;
                break;
            }
            publish(&pub, 0);
            bench_progress("%s: warming up %llu/%llu", o.label,
                           (unsigned long long)atomic_load(&sh->warm),
                           (unsigned long long)connected);
            sleep_ns(100000000);
        }
        uint64_t warm_subs = atomic_load(&sh->warm);
        uint64_t peak = 0;
        sample_peak(&o, &peak);
        bench_usage_t u0;
        bench_usage(o.pids, o.npids, &u0);
        uint64_t t0 = bench_now_ns(), last_sample = t0;
        uint64_t pub_errors_before = pub.errors;
        for (long seq = 1; seq <= o.m; seq++) {
            if (o.rate > 0) {
                uint64_t due = t0 + (uint64_t)((double)(seq - 1) * 1e9 / o.rate);
                uint64_t now = bench_now_ns();
                if (due > now)
                    sleep_ns(due - now);
            }
            publish(&pub, seq);
            uint64_t now = bench_now_ns();
            if (now - last_sample > 50000000u) {
                sample_peak(&o, &peak);
                last_sample = now;
                bench_progress("%s: published %ld/%ld, %llu deliveries", o.label, seq, o.m,
                               (unsigned long long)atomic_load(&sh->received));
            }
        }
        uint64_t t_pub_end = bench_now_ns();
        uint64_t expected = warm_subs * (uint64_t)o.m;
        uint64_t got = atomic_load(&sh->received);
        last_progress = bench_now_ns();
        while (got < expected && bench_now_ns() - last_progress < (uint64_t)(o.idle_s * 1e9)) {
            sleep_ns(2000000);
            uint64_t g = atomic_load(&sh->received);
            if (g != got) {
                got = g;
                last_progress = bench_now_ns();
            }
            if (bench_now_ns() - last_sample > 50000000u) {
                sample_peak(&o, &peak);
                last_sample = bench_now_ns();
                bench_progress("%s: %llu/%llu deliveries", o.label, (unsigned long long)got,
                               (unsigned long long)expected);
            }
        }
        bench_usage_t u1;
        bench_usage(o.pids, o.npids, &u1);
        sample_peak(&o, &peak);
        atomic_store(&sh->stop, 1);
        for (long i = 0; i < o.procs; i++)
            waitpid(kids[i], NULL, 0);

        worker_result_t tot = {0};
        for (long i = 0; i < o.procs; i++) {
            worker_result_t *w = &sh->results[i];
            tot.distinct += w->distinct;
            tot.duplicated += w->duplicated;
            tot.out_of_order += w->out_of_order;
            tot.disconnects += w->disconnects;
            tot.errors += w->errors;
            tot.retries += w->retries;
            tot.other_events += w->other_events;
            if (w->last_recv_ns > tot.last_recv_ns)
                tot.last_recv_ns = w->last_recv_ns;
        }
        /* Each worker compacted its samples to the start of its region. */
        uint32_t *all = malloc(((size_t)tot.distinct + 1) * sizeof *all);
        size_t nsamples = 0;
        for (long i = 0; all != NULL && i < o.procs; i++) {
            worker_result_t *w = &sh->results[i];
            if (nsamples + w->nlat > tot.distinct)
                break;
            memcpy(all + nsamples, lat + (size_t)firsts[i] * (size_t)o.m, w->nlat * sizeof *all);
            nsamples += w->nlat;
        }
        bench_lat_t lt;
        bench_lat_summarize(all, nsamples, &lt);
        free(all);
        double dur = tot.last_recv_ns > t0 ? (double)(tot.last_recv_ns - t0) / 1e9 : 0;
        json_object_set_new(r, "events", json_integer(o.m));
        json_object_set_new(r, "payload_bytes", json_integer(o.size));
        json_object_set_new(r, "rate", json_real(o.rate));
        json_object_set_new(r, "warm", json_boolean(warm));
        json_object_set_new(r, "deliveries_expected", json_integer((json_int_t)expected));
        json_object_set_new(r, "deliveries", json_integer((json_int_t)tot.distinct));
        json_object_set_new(
            r, "lost",
            json_integer((json_int_t)(expected > tot.distinct ? expected - tot.distinct : 0)));
        json_object_set_new(r, "duplicated", json_integer((json_int_t)tot.duplicated));
        json_object_set_new(r, "out_of_order", json_integer((json_int_t)tot.out_of_order));
        json_object_set_new(r, "disconnects", json_integer((json_int_t)tot.disconnects));
        json_object_set_new(r, "parse_errors", json_integer((json_int_t)tot.errors));
        json_object_set_new(r, "foreign_events", json_integer((json_int_t)tot.other_events));
        json_object_set_new(r, "publish_errors",
                            json_integer((json_int_t)(pub.errors - pub_errors_before)));
        json_object_set_new(r, "publish_s", json_real((double)(t_pub_end - t0) / 1e9));
        json_object_set_new(r, "duration_s", json_real(dur));
        json_object_set_new(r, "deliveries_per_s",
                            json_real(dur > 0 ? (double)tot.distinct / dur : 0));
        json_object_set_new(r, "latency", bench_lat_json(&lt));
        if (o.npids > 0) {
            double cpu = u1.cpu_s - u0.cpu_s;
            json_t *s = json_object();
            json_object_set_new(s, "processes", json_integer(u1.procs));
            json_object_set_new(s, "cpu_s", json_real(cpu));
            json_object_set_new(s, "cpu_us_per_delivery",
                                json_real(tot.distinct > 0 ? cpu * 1e6 / (double)tot.distinct : 0));
            json_object_set_new(s, "rss_start_kb", json_integer((json_int_t)u0.rss_kb));
            json_object_set_new(s, "rss_peak_kb", json_integer((json_int_t)peak));
            json_object_set_new(s, "rss_end_kb", json_integer((json_int_t)u1.rss_kb));
            json_object_set_new(r, "server_usage", s);
        }
        if (expected == 0 || tot.distinct != expected || tot.duplicated != 0 ||
            tot.out_of_order != 0)
            rc = 3;
    }
    if (connect_only) {
        atomic_store(&sh->stop, 1);
        for (long i = 0; i < o.procs; i++)
            waitpid(kids[i], NULL, 0);
    }
    if (pub.fd >= 0)
        close(pub.fd);
    free(pub.payload);
    free(pub.body);
    bench_report(r, o.json);
    json_decref(r);
    return rc;
}
