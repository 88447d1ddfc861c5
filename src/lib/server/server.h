/*
 * server: configuration, listening sockets, worker threads, the route table and shutdown. The
 * only layer that knows every other.
 */
#ifndef HSC_SERVER_INT_H
#define HSC_SERVER_INT_H

#include "pubsub/pubsub.h"
#include "site/site.h"
#include "stream/stream.h"

/* ---- server and workers (server.c) ----------------------------------------------------------- */

struct hsc_worker_s {
    hsc_server_t *srv;
    unsigned index;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wake;
    uv_timer_t drain_timer;
    uv_thread_t thread;
    hsc_conn_t *conns; /* list of open connections */
    size_t nconns;
    bool draining;
    hsc_exec_slots_t exec;
    hsc_pool_t *pool; /* --pool: this loop's share of the worker processes */
    hsc_chw_t ch;
    /* Counters: written by this worker's thread only, read by /metrics on any thread. */
    atomic_uint_fast64_t st_requests, st_bytes_out, st_delivered, st_slow_dropped;
    char rbuf[65536]; /* read buffer: every read is parsed or copied before the next */
};

struct hsc_server_s {
    hsc_server_config_t cfg;
    char *listen_copy;
    char *exec_copy;
    struct sockaddr_storage addr;
    char host[64];
    int port;
    unsigned nworkers;
    hsc_worker_t *workers;
    atomic_uint nconns;
    atomic_uint_fast64_t next_req_id;
    atomic_bool stopping;
    bool ran;
    uv_loop_t main_loop;
    uv_async_t stop_async;
    uv_signal_t sigint, sigterm;
    const hsc_responder_t *responder;
    hsc_route_t *routes;
    size_t nroutes;
    hsc_registry_t *reg;
    uv_timer_t sweep_timer;
    char **cors; /* --cors-origin, split; NULL when off */
    size_t ncors;
    bool cors_any;
    unsigned trim_peak; /* connections at the last malloc_trim() or since: see on_sweep() */
};

/** Called by a worker when its last connection has closed while draining. */
void hsc_worker_maybe_finish(hsc_worker_t *w);

#endif
