/*
 * stream: C concurrent clients, each asking for one streamed answer after the other (on a
 * keep-alive connection when the server keeps it, else on a new one) for D seconds. Reports
 * answers per second, time to the first piece (the first body byte), the time per piece over
 * the rest of the answer, and failures (a status other than 200, an answer cut short).
 * Clients run in P processes sharing the samples through one MAP_SHARED region.
 */
#include "bench.h"

#include <arpa/inet.h>
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

#define MAX_PROCS        16
#define SAMPLES_PER_PROC (1u << 20)

typedef struct sresult_s {
    uint64_t answers, failed, bytes, nsamples;
} sresult_t;

typedef struct sshared_s {
    _Atomic uint64_t answers;
    _Atomic int stop;
    sresult_t results[MAX_PROCS];
} sshared_t;

typedef struct sopts_s {
    bench_url_t url;
    const char *label;
    long clients, pieces, procs;
    double seconds;
    int pids[BENCH_MAX_PIDS];
    int npids;
    bool json;
    const char *body;   /* --body: POST it (else GET) */
    const char *header; /* --header: one more header line */
} sopts_t;

typedef struct sworker_s sworker_t;

typedef struct client_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    llhttp_t http;
    sworker_t *w;
    uint64_t t_sent, t_first;
    uint64_t body;
    bool open, busy, closing;
} client_t;

struct sworker_s {
    uv_loop_t loop;
    uv_timer_t tick;
    const sopts_t *o;
    sshared_t *sh;
    sresult_t *res;
    uint32_t *ttfp, *per_piece; /* microseconds; this process's region */
    client_t *clients;
    long nclients;
    char request[4096];
    size_t request_len;
    llhttp_settings_t settings;
    char rbuf[65536];
};

static void client_start(client_t *c);

static void on_client_closed(uv_handle_t *h)
{
    client_t *c = h->data;
    c->closing = false;
    c->open = false;
    if (!atomic_load(&c->w->sh->stop))
        client_start(c);
}

static void client_close(client_t *c, bool failed)
{
    if (c->closing)
        return;
    if (failed && c->busy)
        c->w->res->failed++;
    c->busy = false;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    client_t *c = p->data;
    if (c->body == 0)
        c->t_first = bench_now_ns();
    c->body += len;
    return 0;
}

static void send_request(client_t *c);

static int on_message_complete(llhttp_t *p)
{
    client_t *c = p->data;
    sworker_t *w = c->w;
    uint64_t now = bench_now_ns();
    if (p->status_code != 200 || c->body == 0) {
        w->res->failed++;
    } else {
        w->res->answers++;
        w->res->bytes += c->body;
        atomic_fetch_add_explicit(&w->sh->answers, 1, memory_order_relaxed);
        if (w->res->nsamples < SAMPLES_PER_PROC) {
            uint64_t k = w->res->nsamples++;
            w->ttfp[k] = (uint32_t)((c->t_first - c->t_sent) / 1000u);
            uint64_t rest = now - c->t_first;
            w->per_piece[k] =
                (uint32_t)(rest / 1000u / (uint64_t)(w->o->pieces > 1 ? w->o->pieces - 1 : 1));
        }
    }
    c->busy = false;
    return HPE_PAUSED; /* the next request starts from on_read, after this response's bytes */
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    client_t *c = h->data;
    *buf = uv_buf_init(c->w->rbuf, sizeof c->w->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    client_t *c = s->data;
    if (nread < 0) {
        /* EOF: a close-delimited body (HTTP/1.0 servers) ends here. */
        if (c->busy && llhttp_finish(&c->http) == HPE_PAUSED) {
            client_close(c, false);
            return;
        }
        client_close(c, true);
        return;
    }
    if (nread == 0)
        return;
    llhttp_errno_t err = llhttp_execute(&c->http, buf->base, (size_t)nread);
    if (err == HPE_PAUSED) {
        bool keep = llhttp_should_keep_alive(&c->http);
        llhttp_resume(&c->http);
        if (atomic_load(&c->w->sh->stop))
            return;
        if (keep)
            send_request(c);
        else
            client_close(c, false);
        return;
    }
    if (err != HPE_OK)
        client_close(c, true);
}

static void on_written(uv_write_t *req, int status)
{
    client_t *c = req->data;
    if (status != 0)
        client_close(c, true);
}

static void send_request(client_t *c)
{
    sworker_t *w = c->w;
    c->busy = true;
    c->body = 0;
    c->t_sent = bench_now_ns();
    uv_buf_t b = uv_buf_init(w->request, (unsigned)w->request_len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        client_close(c, true);
}

static void on_connect(uv_connect_t *req, int status)
{
    client_t *c = req->data;
    if (status != 0) {
        c->busy = true;
        client_close(c, true);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) != 0) {
        client_close(c, true);
        return;
    }
    send_request(c);
}

static void client_start(client_t *c)
{
    sworker_t *w = c->w;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    c->creq.data = c;
    c->open = true;
    llhttp_init(&c->http, HTTP_RESPONSE, &w->settings);
    c->http.data = c;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->o->url.port)};
    inet_pton(AF_INET, w->o->url.host, &dst.sin_addr);
    if (uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&dst, on_connect) != 0) {
        c->busy = true;
        client_close(c, true);
    }
}

static void on_tick(uv_timer_t *t)
{
    sworker_t *w = t->data;
    if (atomic_load(&w->sh->stop))
        uv_stop(&w->loop);
}

static int sworker_main(const sopts_t *o, sshared_t *sh, uint32_t *samples, int wi, long nclients)
{
    sworker_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return 1;
    w->o = o;
    w->sh = sh;
    w->res = &sh->results[wi];
    w->ttfp = samples + (size_t)wi * 2 * SAMPLES_PER_PROC;
    w->per_piece = w->ttfp + SAMPLES_PER_PROC;
    w->nclients = nclients;
    w->clients = calloc((size_t)nclients, sizeof *w->clients);
    if (w->clients == NULL)
        return 1;
    int n;
    if (o->body != NULL)
        n = snprintf(w->request, sizeof w->request,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n%s",
                     o->url.path, o->url.host, o->url.port, strlen(o->body),
                     o->header ? o->header : "", o->header ? "\r\n" : "", o->body);
    else
        n = snprintf(w->request, sizeof w->request, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s\r\n",
                     o->url.path, o->url.host, o->url.port, o->header ? o->header : "",
                     o->header ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof w->request)
        return 1;
    w->request_len = (size_t)n;
    llhttp_settings_init(&w->settings);
    w->settings.on_body = on_body;
    w->settings.on_message_complete = on_message_complete;
    uv_loop_init(&w->loop);
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, 5, 5);
    for (long i = 0; i < nclients; i++) {
        w->clients[i].w = w;
        client_start(&w->clients[i]);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return 0;
}

int bench_stream_main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"url", required_argument, NULL, 'u'},   {"pid", required_argument, NULL, 'p'},
        {"label", required_argument, NULL, 'l'}, {"json", no_argument, NULL, 'j'},
        {"body", required_argument, NULL, 'b'},  {"header", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    sopts_t o = {.label = "server", .clients = 10, .pieces = 10, .procs = 1, .seconds = 5};
    const char *url = "http://127.0.0.1:8000/v1/stream?q=hello";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:d:k:P:h", longs, NULL)) != -1) {
        switch (c) {
        case 'u':
            url = optarg;
            break;
        case 'p':
            if (o.npids < BENCH_MAX_PIDS)
                o.pids[o.npids++] = atoi(optarg);
            break;
        case 'l':
            o.label = optarg;
            break;
        case 'j':
            o.json = true;
            break;
        case 'b':
            o.body = optarg;
            break;
        case 'H':
            o.header = optarg;
            break;
        case 'c':
            o.clients = atol(optarg);
            break;
        case 'd':
            o.seconds = atof(optarg);
            break;
        case 'k':
            o.pieces = atol(optarg);
            break;
        case 'P':
            o.procs = atol(optarg);
            break;
        case 'h':
        default:
            fputs("usage: hsc-bench stream [options]\n"
                  "  C clients ask for streamed answers one after the other for D seconds.\n"
                  "  --url URL     the answer's URL (default "
                  "http://127.0.0.1:8000/v1/stream?q=hello)\n"
                  "  -c CLIENTS    concurrent clients (default 10)\n"
                  "  -d SECONDS    duration (default 5)\n"
                  "  -k PIECES     pieces per answer, as the server is configured (default 10):\n"
                  "                the time per piece is the rest of the answer over K-1\n"
                  "  -P PROCS      client processes (default 1, at most 16)\n"
                  "  --pid PID     the server's process (repeatable) for CPU seconds and RSS\n"
                  "  --label TEXT  a name for the server in the report\n"
                  "  --json        one JSON object on stdout\n"
                  "  --body TEXT   POST TEXT as application/json (e.g. an OpenAI request)\n"
                  "  --header LINE one more request header, e.g. 'Accept: text/event-stream'\n",
                  c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind != argc || o.clients <= 0 || o.clients > 10000 || o.seconds <= 0 || o.pieces < 1 ||
        o.procs < 1 || o.procs > MAX_PROCS || o.procs > o.clients ||
        bench_url_parse(url, NULL, &o.url) != 0) {
        fprintf(stderr, "hsc-bench stream: bad options (see --help)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sshared_t *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    size_t sbytes = (size_t)o.procs * 2 * SAMPLES_PER_PROC * sizeof(uint32_t);
    uint32_t *samples =
        mmap(NULL, sbytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || samples == MAP_FAILED) {
        perror("hsc-bench: mmap");
        return 1;
    }
    bench_usage_t u0, u1;
    bench_usage(o.pids, o.npids, &u0);
    uint64_t t0 = bench_now_ns();
    pid_t kids[MAX_PROCS];
    for (long i = 0; i < o.procs; i++) {
        long n = o.clients / o.procs + (i < o.clients % o.procs ? 1 : 0);
        fflush(NULL);
        kids[i] = fork();
        if (kids[i] < 0) {
            perror("hsc-bench: fork");
            return 1;
        }
        if (kids[i] == 0)
            _exit(sworker_main(&o, sh, samples, (int)i, n));
    }
    uint64_t end = t0 + (uint64_t)(o.seconds * 1e9);
    while (bench_now_ns() < end) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        bench_progress("%s: %llu answers", o.label, (unsigned long long)atomic_load(&sh->answers));
    }
    atomic_store(&sh->stop, 1);
    uint64_t t1 = bench_now_ns();
    bench_usage(o.pids, o.npids, &u1);
    for (long i = 0; i < o.procs; i++)
        waitpid(kids[i], NULL, 0);

    sresult_t tot = {0};
    for (long i = 0; i < o.procs; i++) {
        tot.answers += sh->results[i].answers;
        tot.failed += sh->results[i].failed;
        tot.bytes += sh->results[i].bytes;
        tot.nsamples += sh->results[i].nsamples;
    }
    uint32_t *ttfp = malloc((tot.nsamples + 1) * sizeof *ttfp);
    uint32_t *pp = malloc((tot.nsamples + 1) * sizeof *pp);
    if (ttfp == NULL || pp == NULL)
        return 1;
    size_t k = 0;
    for (long i = 0; i < o.procs; i++) {
        uint32_t *base = samples + (size_t)i * 2 * SAMPLES_PER_PROC;
        memcpy(ttfp + k, base, sh->results[i].nsamples * sizeof *ttfp);
        memcpy(pp + k, base + SAMPLES_PER_PROC, sh->results[i].nsamples * sizeof *pp);
        k += sh->results[i].nsamples;
    }
    bench_lat_t lt, lp;
    bench_lat_summarize(ttfp, k, &lt);
    bench_lat_summarize(pp, k, &lp);
    double dur = (double)(t1 - t0) / 1e9;
    json_t *r = json_object();
    json_object_set_new(r, "scenario", json_string("stream"));
    json_object_set_new(r, "server", json_string(o.label));
    json_object_set_new(r, "clients", json_integer(o.clients));
    json_object_set_new(r, "pieces", json_integer(o.pieces));
    json_object_set_new(r, "duration_s", json_real(dur));
    json_object_set_new(r, "answers", json_integer((json_int_t)tot.answers));
    json_object_set_new(r, "failed", json_integer((json_int_t)tot.failed));
    json_object_set_new(r, "answers_per_s", json_real((double)tot.answers / dur));
    json_object_set_new(r, "mean_answer_bytes",
                        json_real(tot.answers ? (double)tot.bytes / (double)tot.answers : 0));
    json_object_set_new(r, "first_piece", bench_lat_json(&lt));
    json_object_set_new(r, "per_piece", bench_lat_json(&lp));
    if (o.npids > 0) {
        json_t *s = json_object();
        json_object_set_new(s, "cpu_s", json_real(u1.cpu_s - u0.cpu_s));
        json_object_set_new(
            s, "cpu_us_per_answer",
            json_real(tot.answers ? (u1.cpu_s - u0.cpu_s) * 1e6 / (double)tot.answers : 0));
        json_object_set_new(s, "rss_end_kb", json_integer((json_int_t)u1.rss_kb));
        json_object_set_new(r, "server_usage", s);
    }
    bench_report(r, o.json);
    json_decref(r);
    free(ttfp);
    free(pp);
    return tot.answers > 0 && tot.failed == 0 ? 0 : 3;
}
