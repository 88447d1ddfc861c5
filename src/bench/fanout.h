/*
 * What fanout.c (options, the publisher, the report) and fanout_sub.c (the subscriber worker
 * processes) share: the options, the shared-memory counters, and how subscribers and events are
 * spread over the servers and channels.
 *
 * Channels. With --channels C > 1 the channels are "<channel>-0" .. "<channel>-(C-1)"; event seq
 * (1..m) goes to channel (seq - 1) % C, so every channel gets the same share of a steady rate.
 * With --hot H the first H subscribers are all on channel 0 (the hot one) and the others are
 * spread evenly over channels 1..C-1; without it subscriber i is on channel i % C.
 *
 * Servers. --sub-url and --pub-url may be given up to BENCH_MAX_URLS times (nodes of a cluster):
 * subscribers are spread so that each channel's subscribers land on every node, event seq is
 * published through --pub-url number seq % P. With --resume a subscriber whose stream ends after
 * its headers reconnects to another subscribe URL with Last-Event-ID (the subscribers of a node
 * that died spread evenly over the others), as an EventSource behind a load balancer would, and
 * every event must still arrive exactly once. --midway runs a command (kill a node) once half the
 * events are published.
 */
#ifndef HSC_BENCH_FANOUT_H
#define HSC_BENCH_FANOUT_H

#include "bench.h"

#include <stdatomic.h>

#define MAX_WORKERS    64
#define BENCH_MAX_URLS 8

typedef struct worker_result_s {
    uint64_t distinct, duplicated, out_of_order, disconnects, errors, other_events, retries;
    uint64_t resumed, last_recv_ns, nlat;
    int done;
} worker_result_t;

typedef struct shared_s {
    _Atomic uint64_t connected, failed, warm, received, expected;
    _Atomic int go, stop;
    worker_result_t results[MAX_WORKERS];
} shared_t;

typedef struct opts_s {
    const char *sub[BENCH_MAX_URLS], *pub[BENCH_MAX_URLS]; /* URL templates, {ch} = channel */
    int nsub, npub;
    const char *pub_format; /* "body" or "pushpin" */
    char channel[128];
    const char *label;
    const char *midway; /* a shell command run once half the events are published, or NULL */
    long n, m, size, procs, sources, channels, hot;
    long h2; /* --h2 K: subscribers are HTTP/2 streams, K per connection (h2.c); 0 = HTTP/1.1 */
    double rate, idle_s, settle_s;
    int pids[BENCH_MAX_PIDS], aux_pids[BENCH_MAX_PIDS];
    int npids, naux;
    bool json, connect_only, resume;
} opts_t;

/* The channel of subscriber i, and the subscribe URL it starts on. */
long fanout_sub_channel(const opts_t *o, long i);
int fanout_sub_url(const opts_t *o, long i);

/* The channel an event goes to, and its index among that channel's events (0-based). */
static inline long fanout_event_channel(const opts_t *o, long seq)
{
    return (seq - 1) % o->channels;
}
static inline long fanout_event_index(const opts_t *o, long seq)
{
    return (seq - 1) / o->channels;
}

/* How many of the m events go to channel c. */
long fanout_channel_events(const opts_t *o, long c);

/* The name of channel c (o->channel itself when there is one channel). */
void fanout_channel_name(const opts_t *o, long c, char *out, size_t cap);

/*
 * A subscriber process: subscribers first .. first+count-1; their latency samples go to
 * lat_all + lat_off[i] (room for their channel's events). Returns the process's exit status.
 */
int fanout_worker_main(const opts_t *o, shared_t *sh, uint32_t *lat_all, const size_t *lat_off,
                       int wi, long first, long count);

#endif
