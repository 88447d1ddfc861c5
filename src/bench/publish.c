/*
 * hsc-bench publish: C publishers, each a thread with one blocking keep-alive connection,
 * publishing flat out (the next POST once the previous one is answered) for a fixed time or a
 * fixed count. Measures what the publish path alone sustains: publishes/s, the answer's latency
 * (p50/p99/max), errors. With hscd's journal (--fsync always) the concurrency is what group
 * commit feeds on: docs/internals/journal.md, bench/journal.sh.
 */
#include "bench.h"

#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pub_opts_s {
    bench_url_t url;
    long conns, events, size, channels;
    double seconds;
    bool per_channel;
    const char *url_s, *channel, *label;
    bool json;
} pub_opts_t;

typedef struct worker_s {
    const pub_opts_t *o;
    pthread_t thread;
    bench_url_t url;
    long index;
    uint32_t *lat_us;
    size_t n, cap;
    uint64_t errors;
    uint64_t deadline_ns;
    long quota;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    char *body = malloc((size_t)w->o->size + 1);
    if (body == NULL)
        return NULL;
    for (long i = 0; i < w->o->size; i++)
        body[i] = (char)('a' + i % 26);
    int fd = -1;
    for (long i = 0; w->quota == 0 || i < w->quota; i++) {
        uint64_t t0 = bench_now_ns();
        if (w->deadline_ns != 0 && t0 >= w->deadline_ns)
            break;
        if (w->o->channels > 0) { /* rotate over the channels: NAME-k */
            char ch[256];
            snprintf(ch, sizeof ch, "%s-%ld", w->o->channel,
                     (w->index + i * w->o->conns) % w->o->channels);
            bench_url_parse(w->o->url_s, ch, &w->url);
        }
        if (fd < 0 && (fd = bench_connect_blocking(&w->url)) < 0) {
            w->errors++;
            usleep(10000);
            continue;
        }
        int st = bench_http_roundtrip(fd, "POST", &w->url, "text/plain", body, (size_t)w->o->size);
        if (st < 0) {
            close(fd);
            fd = -1;
        }
        if (st != 200) {
            w->errors++;
            continue;
        }
        if (w->n == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 4096;
            uint32_t *v = realloc(w->lat_us, cap * sizeof *v);
            if (v == NULL)
                break;
            w->lat_us = v;
            w->cap = cap;
        }
        w->lat_us[w->n++] = (uint32_t)((bench_now_ns() - t0) / 1000);
    }
    if (fd >= 0)
        close(fd);
    free(body);
    return NULL;
}

static void usage(FILE *f)
{
    fputs("usage: hsc-bench publish [options]\n"
          "  C publishers, each on its own keep-alive connection, flat out.\n"
          "  --url URL         publish URL, POST, {ch} = the channel\n"
          "                    (default http://127.0.0.1:8000/v1/events?channel={ch})\n"
          "  --channel NAME    default bench-pub\n"
          "  --per-channel     each publisher its own channel NAME-i (default: all on one)\n"
          "  --channels K      events spread over K channels NAME-0..NAME-(K-1), in turn\n"
          "  -c C              publishers (default 1)\n"
          "  -t SECONDS        publish for this long (default 5)\n"
          "  -m M              or publish M events in all (split among the publishers)\n"
          "  -s BYTES          event data size (default 64)\n"
          "  --label TEXT      a name for the server in the report\n"
          "  --json            one JSON object on stdout\n",
          f);
}

int bench_publish_main(int argc, char **argv)
{
    pub_opts_t o = {.conns = 1,
                    .size = 64,
                    .seconds = 5,
                    .channel = "bench-pub",
                    .url_s = "http://127.0.0.1:8000/v1/events?channel={ch}",
                    .label = "server"};
    enum { O_URL = 256, O_CHANNEL, O_PER, O_LABEL, O_JSON, O_HELP, O_CHANNELS };
    static const struct option opts[] = {{"url", required_argument, NULL, O_URL},
                                         {"channel", required_argument, NULL, O_CHANNEL},
                                         {"per-channel", no_argument, NULL, O_PER},
                                         {"label", required_argument, NULL, O_LABEL},
                                         {"json", no_argument, NULL, O_JSON},
                                         {"channels", required_argument, NULL, O_CHANNELS},
                                         {"help", no_argument, NULL, O_HELP},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:t:m:s:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.conns = atol(optarg);
            break;
        case 't':
            o.seconds = atof(optarg);
            break;
        case 'm':
            o.events = atol(optarg);
            break;
        case 's':
            o.size = atol(optarg);
            break;
        case O_URL:
            o.url_s = optarg;
            break;
        case O_CHANNEL:
            o.channel = optarg;
            break;
        case O_PER:
            o.per_channel = true;
            break;
        case O_LABEL:
            o.label = optarg;
            break;
        case O_CHANNELS:
            o.channels = atol(optarg);
            break;
        case O_JSON:
            o.json = true;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o.conns < 1 || o.conns > 4096 || o.channels < 0 || o.size < 1 || o.size > (1 << 20) ||
        o.seconds <= 0 || o.events < 0 || optind < argc) {
        usage(stderr);
        return 2;
    }
    worker_t *w = calloc((size_t)o.conns, sizeof *w);
    if (w == NULL)
        return 3;
    uint64_t t0 = bench_now_ns();
    uint64_t deadline = o.events > 0 ? 0 : t0 + (uint64_t)(o.seconds * 1e9);
    for (long i = 0; i < o.conns; i++) {
        char ch[256];
        snprintf(ch, sizeof ch, o.per_channel ? "%s-%ld" : "%s", o.channel, i);
        if (bench_url_parse(o.url_s, ch, &w[i].url) != 0) {
            fprintf(stderr, "hsc-bench publish: bad --url %s\n", o.url_s);
            return 2;
        }
        w[i].o = &o;
        w[i].index = i;
        w[i].deadline_ns = deadline;
        w[i].quota = o.events > 0 ? o.events / o.conns + (i < o.events % o.conns) : 0;
        pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
    }
    size_t total = 0;
    uint64_t errors = 0;
    for (long i = 0; i < o.conns; i++) {
        pthread_join(w[i].thread, NULL);
        total += w[i].n;
        errors += w[i].errors;
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    uint32_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (long i = 0; i < o.conns; i++) {
        if (all != NULL && w[i].n > 0)
            memcpy(all + k, w[i].lat_us, w[i].n * sizeof *all);
        k += w[i].n;
        free(w[i].lat_us);
    }
    free(w);
    bench_lat_t lat = {0};
    if (all != NULL)
        bench_lat_summarize(all, total, &lat);
    free(all);
    json_t *r = json_object();
    json_object_set_new(r, "scenario", json_string("publish"));
    json_object_set_new(r, "server", json_string(o.label));
    json_object_set_new(r, "publishers", json_integer(o.conns));
    json_object_set_new(r, "payload_bytes", json_integer(o.size));
    json_object_set_new(r, "published", json_integer((json_int_t)total));
    json_object_set_new(r, "publish_errors", json_integer((json_int_t)errors));
    json_object_set_new(r, "duration_s", json_real(secs));
    json_object_set_new(r, "publishes_per_s", json_real(secs > 0 ? (double)total / secs : 0));
    json_object_set_new(r, "latency", bench_lat_json(&lat));
    bench_report(r, o.json);
    json_decref(r);
    return errors > 0 || total == 0 ? 3 : 0;
}
