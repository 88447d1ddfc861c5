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
 * from /proc for it and all its descendants (nginx workers, Pushpin's processes), in total and
 * per --pid; --aux-pid names a process measured apart (the Redis of a cluster).
 *
 * Several servers and channels (a cluster's nodes, many channels with one hot one): fanout.h.
 * The subscriber processes are in fanout_sub.c.
 */
#include "fanout.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the publisher ----------------------------------------------------------------------- */

typedef struct publisher_s {
    const opts_t *o;
    int fd[BENCH_MAX_URLS]; /* one keep-alive connection per --pub-url */
    char *payload, *body;
    size_t cap;
    uint64_t errors, count;
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

/* Publishes event seq (0: a warm-up) on channel chan, through --pub-url number seq or chan. */
static int publish(publisher_t *p, long seq, long chan)
{
    const opts_t *o = p->o;
    char name[160];
    bench_url_t u;
    int k = (int)((seq > 0 ? seq : chan) % o->npub);
    fanout_channel_name(o, chan, name, sizeof name);
    if (bench_url_parse(o->pub[k], name, &u) != 0) {
        p->errors++;
        return -1;
    }
    p->count++;
    size_t len = make_payload(o, p->payload, seq);
    const char *body = p->payload, *ctype = "text/plain";
    if (strcmp(o->pub_format, "pushpin") == 0) {
        /* Pushpin's publish API: the bytes to send to http-stream subscribers, as SSE. */
        len = (size_t)snprintf(p->body, p->cap,
                               "{\"items\":[{\"channel\":\"%s\",\"formats\":{\"http-stream\":"
                               "{\"content\":\"data: %s\\n\\n\"}}}]}",
                               name, p->payload);
        body = p->body;
        ctype = "application/json";
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (p->fd[k] < 0)
            p->fd[k] = bench_connect_blocking(&u);
        if (p->fd[k] < 0)
            continue;
        int status = bench_http_roundtrip(p->fd[k], "POST", &u, ctype, body, len);
        if (status >= 200 && status < 300)
            return 0;
        if (status < 0) {
            close(p->fd[k]);
            p->fd[k] = -1;
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

static void usage(FILE *f, bool connect_only)
{
    if (connect_only)
        fputs("usage: hsc-bench connect [options]\n"
              "  Opens N subscriptions as fast as it can, then measures the server's memory per\n"
              "  idle subscriber.\n",
              f);
    else
        fputs("usage: hsc-bench fanout [options]\n"
              "  N subscribers, M events published at a rate or flat out; counts every delivery.\n",
              f);
    fputs("  --sub-url URL     subscribe URL, {ch} = the channel (https:// subscribes over TLS);\n"
          "                    repeatable (up to 8 nodes:\n"
          "                    each channel's subscribers spread over all of them)\n"
          "                    (default http://127.0.0.1:8000/v1/events?channel={ch})\n"
          "  --pub-url URL     publish URL, POST (default: the hscd one, as --sub-url);\n"
          "                    repeatable: event k goes through URL number k % count\n"
          "  --pub-format F    body (the data is the request body; hscd, nchan, floor) or\n"
          "                    pushpin (Pushpin's JSON publish API)\n"
          "  --channel NAME    default bench-<pid>\n"
          "  --channels C      C channels NAME-0..NAME-(C-1); event k goes to channel (k-1) % C\n"
          "  --hot H           the first H subscribers on channel 0, the others spread over\n"
          "                    channels 1..C-1 (default: subscriber i on channel i % C)\n"
          "  --h2 K            HTTP/2 subscribers: K streams per connection (at most the\n"
          "                    server's concurrent streams), prior-knowledge h2c for http://,\n"
          "                    ALPN h2 for https://; a reset stream is a disconnect\n"
          "  --resume          a subscriber cut after its headers reconnects to the next\n"
          "                    --sub-url with Last-Event-ID; every event must still arrive once\n"
          "  --midway CMD      run CMD (/bin/sh) once half the events are published, e.g. to\n"
          "                    kill a node; the publishing waits for it\n"
          "  -n N              subscribers (default 100)\n"
          "  -m M              events (default 100)\n"
          "  -s BYTES          event data size (default 64, at least 32)\n"
          "  -r RATE           events per second; 0 = flat out, one publish after the other\n"
          "  -P PROCS          subscriber processes (default: one per 2500 subscribers, 2..16)\n"
          "  --sources K       source addresses 127.0.0.1..K (default 8)\n"
          "  --pid PID         the server's process (repeatable; descendants included) for\n"
          "                    CPU seconds and RSS (in total and per PID)\n"
          "  --aux-pid PID     a process measured apart (e.g. Redis); repeatable\n"
          "  --label TEXT      a name for the server in the report\n"
          "  --idle SECONDS    give up waiting for deliveries after this long without one (10)\n"
          "  --settle SECONDS  connect: wait before reading idle memory (default 2)\n"
          "  --json            one JSON object on stdout\n",
          f);
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option longs[] = {{"sub-url", required_argument, NULL, 'S'},
                                          {"pub-url", required_argument, NULL, 'U'},
                                          {"pub-format", required_argument, NULL, 'F'},
                                          {"channel", required_argument, NULL, 'c'},
                                          {"sources", required_argument, NULL, 'k'},
                                          {"pid", required_argument, NULL, 'p'},
                                          {"aux-pid", required_argument, NULL, 'a'},
                                          {"channels", required_argument, NULL, 'C'},
                                          {"hot", required_argument, NULL, 'H'},
                                          {"resume", no_argument, NULL, 'R'},
                                          {"h2", required_argument, NULL, '2'},
                                          {"midway", required_argument, NULL, 'W'},
                                          {"label", required_argument, NULL, 'l'},
                                          {"idle", required_argument, NULL, 'i'},
                                          {"settle", required_argument, NULL, 'e'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    static const char *dflt = "http://127.0.0.1:8000/v1/events?channel={ch}";
    o->channels = 1;
    o->pub_format = "body";
    o->label = "server";
    o->n = 100;
    o->m = o->connect_only ? 0 : 100;
    o->size = 64;
    o->sources = 8;
    o->idle_s = 10;
    o->settle_s = 2;
    snprintf(o->channel, sizeof o->channel, "bench-%d", (int)getpid());
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:m:s:r:P:h", longs, NULL)) != -1) {
        switch (c) {
        case 'S':
            if (o->nsub == BENCH_MAX_URLS) {
                fprintf(stderr, "hsc-bench: at most %d --sub-url\n", BENCH_MAX_URLS);
                return -1;
            }
            o->sub[o->nsub++] = optarg;
            break;
        case 'U':
            if (o->npub == BENCH_MAX_URLS) {
                fprintf(stderr, "hsc-bench: at most %d --pub-url\n", BENCH_MAX_URLS);
                return -1;
            }
            o->pub[o->npub++] = optarg;
            break;
        case 'a':
            if (o->naux < BENCH_MAX_PIDS)
                o->aux_pids[o->naux++] = atoi(optarg);
            break;
        case 'C':
            o->channels = atol(optarg);
            break;
        case 'H':
            o->hot = atol(optarg);
            break;
        case 'R':
            o->resume = true;
            break;
        case '2':
            o->h2 = atol(optarg);
            break;
        case 'W':
            o->midway = optarg;
            break;
        case 'F':
            o->pub_format = optarg;
            break;
        case 'c':
            snprintf(o->channel, sizeof o->channel, "%s", optarg);
            break;
        case 'k':
            o->sources = atol(optarg);
            break;
        case 'p':
            if (o->npids < BENCH_MAX_PIDS)
                o->pids[o->npids++] = atoi(optarg);
            break;
        case 'l':
            o->label = optarg;
            break;
        case 'i':
            o->idle_s = atof(optarg);
            break;
        case 'e':
            o->settle_s = atof(optarg);
            break;
        case 'j':
            o->json = true;
            break;
        case 'n':
            o->n = atol(optarg);
            break;
        case 'm':
            o->m = atol(optarg);
            break;
        case 's':
            o->size = atol(optarg);
            break;
        case 'r':
            o->rate = atof(optarg);
            break;
        case 'P':
            o->procs = atol(optarg);
            break;
        case 'h':
            usage(stdout, o->connect_only);
            exit(0);
        default:
            usage(stderr, o->connect_only);
            return -1;
        }
    }
    if (optind != argc || o->n <= 0 || o->n > 1000000 || o->m < 0 ||
        (o->m == 0 && !o->connect_only) || o->size < 32 || o->size > (1 << 20) || o->sources < 1 ||
        o->sources > 250 || o->rate < 0 || o->procs < 0 || o->procs > MAX_WORKERS ||
        o->channels < 1 || o->channels > 1000000 || o->h2 < 0 || o->h2 > 100000 || o->hot < 0 ||
        o->hot >= o->n || (o->hot > 0 && o->channels < 2) ||
        (strcmp(o->pub_format, "body") != 0 && strcmp(o->pub_format, "pushpin") != 0)) {
        fprintf(stderr, "hsc-bench: bad options (see --help)\n");
        return -1;
    }
    if (o->nsub == 0)
        o->sub[o->nsub++] = dflt;
    if (o->npub == 0)
        o->pub[o->npub++] = o->sub[0];
    bench_url_t u;
    for (int i = 0; i < o->nsub + o->npub; i++)
        if (bench_url_parse(i < o->nsub ? o->sub[i] : o->pub[i - o->nsub], o->channel, &u) != 0) {
            fprintf(stderr, "hsc-bench: URLs must be http://IPv4[:port]/path (https:// for "
                            "--sub-url)\n");
            return -1;
        } else if (i >= o->nsub && u.tls) {
            fprintf(stderr, "hsc-bench: --pub-url must be http://: publish over cleartext (hscd "
                            "--listen-tls keeps --listen cleartext)\n");
            return -1;
        }
    if (o->procs == 0) {
        o->procs = (o->n + 2499) / 2500;
        if (o->procs < 2)
            o->procs = o->n >= 2 ? 2 : 1;
        if (o->procs > 16)
            o->procs = 16;
    }
    if (o->procs > o->n)
        o->procs = o->n;
    return 0;
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
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    bench_raise_nofile(); /* each worker holds n/procs sockets */
    /* Room for each subscriber's latency samples: its channel's events. */
    size_t *lat_off = malloc(((size_t)o.n + 1) * sizeof *lat_off);
    if (lat_off == NULL)
        return 1;
    lat_off[0] = 0;
    for (long i = 0; i < o.n; i++)
        lat_off[i + 1] = lat_off[i] + (size_t)fanout_channel_events(&o, fanout_sub_channel(&o, i));
    if (lat_off[o.n] > 200000000u) {
        fprintf(stderr, "hsc-bench: over 200 million deliveries\n");
        return 2;
    }
    size_t lat_bytes = (lat_off[o.n] + 1) * sizeof(uint32_t);
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
            _exit(fanout_worker_main(&o, sh, lat, lat_off, (int)i, first, count));
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
    json_object_set_new(r, "protocol", json_string(o.h2 > 0 ? "h2" : "http/1.1"));
    json_object_set_new(r, "h2_streams_per_connection", json_integer(o.h2));
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

    publisher_t pub = {.o = &o};
    for (int i = 0; i < BENCH_MAX_URLS; i++)
        pub.fd[i] = -1;
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
            for (long c = 0; c < o.channels; c++)
                publish(&pub, 0, c);
            bench_progress("%s: warming up %llu/%llu", o.label,
                           (unsigned long long)atomic_load(&sh->warm),
                           (unsigned long long)connected);
            sleep_ns(100000000);
        }
        uint64_t warm_subs = atomic_load(&sh->warm);
        uint64_t peak = 0;
        sample_peak(&o, &peak);
        bench_usage_t u0, aux0, each0[BENCH_MAX_PIDS];
        bench_usage(o.pids, o.npids, &u0);
        bench_usage(o.aux_pids, o.naux, &aux0);
        for (int i = 0; i < o.npids; i++)
            bench_usage(&o.pids[i], 1, &each0[i]);
        uint64_t t0 = bench_now_ns(), last_sample = t0;
        uint64_t pub_errors_before = pub.errors;
        for (long seq = 1; seq <= o.m; seq++) {
            if (o.rate > 0) {
                uint64_t due = t0 + (uint64_t)((double)(seq - 1) * 1e9 / o.rate);
                uint64_t now = bench_now_ns();
                if (due > now)
                    sleep_ns(due - now);
            }
            publish(&pub, seq, fanout_event_channel(&o, seq));
            if (o.midway != NULL && seq == (o.m + 1) / 2) {
                fflush(NULL);
                int st = system(o.midway);
                json_object_set_new(r, "midway_status", json_integer(st));
            }
            uint64_t now = bench_now_ns();
            if (now - last_sample > 50000000u) {
                sample_peak(&o, &peak);
                last_sample = now;
                bench_progress("%s: published %ld/%ld, %llu deliveries", o.label, seq, o.m,
                               (unsigned long long)atomic_load(&sh->received));
            }
        }
        uint64_t t_pub_end = bench_now_ns();
        uint64_t expected = atomic_load(&sh->expected); /* the warm subscribers' channels' */
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
        bench_usage_t u1, aux1, each1[BENCH_MAX_PIDS];
        bench_usage(o.pids, o.npids, &u1);
        bench_usage(o.aux_pids, o.naux, &aux1);
        for (int i = 0; i < o.npids; i++)
            bench_usage(&o.pids[i], 1, &each1[i]);
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
            tot.resumed += w->resumed;
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
            memcpy(all + nsamples, lat + lat_off[firsts[i]], w->nlat * sizeof *all);
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
        json_object_set_new(r, "warm_subscribers", json_integer((json_int_t)warm_subs));
        json_object_set_new(r, "deliveries_expected", json_integer((json_int_t)expected));
        json_object_set_new(r, "deliveries", json_integer((json_int_t)tot.distinct));
        json_object_set_new(
            r, "lost",
            json_integer((json_int_t)(expected > tot.distinct ? expected - tot.distinct : 0)));
        json_object_set_new(r, "duplicated", json_integer((json_int_t)tot.duplicated));
        json_object_set_new(r, "out_of_order", json_integer((json_int_t)tot.out_of_order));
        json_object_set_new(r, "disconnects", json_integer((json_int_t)tot.disconnects));
        json_object_set_new(r, "resumed", json_integer((json_int_t)tot.resumed));
        json_object_set_new(r, "channels", json_integer(o.channels));
        json_object_set_new(r, "hot_subscribers", json_integer(o.hot));
        json_object_set_new(r, "nodes", json_integer(o.nsub));
        json_object_set_new(r, "publishes", json_integer((json_int_t)pub.count));
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
            json_t *each = json_array();
            for (int i = 0; i < o.npids; i++) {
                json_t *e = json_object();
                json_object_set_new(e, "pid", json_integer(o.pids[i]));
                json_object_set_new(e, "cpu_s", json_real(each1[i].cpu_s - each0[i].cpu_s));
                json_object_set_new(e, "rss_end_kb", json_integer((json_int_t)each1[i].rss_kb));
                json_array_append_new(each, e);
            }
            json_object_set_new(s, "per_pid", each);
            json_object_set_new(r, "server_usage", s);
        }
        if (o.naux > 0) { /* e.g. Redis: its CPU over the measured time, as a share of a core */
            json_t *s = json_object();
            double cpu = aux1.cpu_s - aux0.cpu_s, span = (double)(bench_now_ns() - t0) / 1e9;
            json_object_set_new(s, "processes", json_integer(aux1.procs));
            json_object_set_new(s, "cpu_s", json_real(cpu));
            json_object_set_new(s, "cpu_percent", json_real(span > 0 ? 100.0 * cpu / span : 0));
            json_object_set_new(s, "rss_end_kb", json_integer((json_int_t)aux1.rss_kb));
            json_object_set_new(r, "aux_usage", s);
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
    for (int i = 0; i < BENCH_MAX_URLS; i++)
        if (pub.fd[i] >= 0)
            close(pub.fd[i]);
    free(lat_off);
    free(pub.payload);
    free(pub.body);
    bench_report(r, o.json);
    json_decref(r);
    return rc;
}
