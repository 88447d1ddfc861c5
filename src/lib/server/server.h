/*
 * server: configuration, listening sockets, worker threads, the route table and shutdown. The
 * only layer that knows every other.
 */
#ifndef HSC_SERVER_INT_H
#define HSC_SERVER_INT_H

#include "pubsub/journal.h"
#include "pubsub/pubsub.h"
#include "pubsub/redis.h"
#include "site/site.h"
#include "stream/stream.h"

/* ---- server and workers (server.c, worker.c, config.c, listen.c)
 * ----------------------------------------------------------- */

typedef struct hsc_worker_s hsc_worker_t;

/*
 * A configuration as one immutable object (config.c): its strings, JWT key and parsed CORS list
 * are its own. The server holds the current one; each worker holds the one its loop uses, and
 * changes to a newer one only in its own loop (on_wake), between callbacks. The last holder to
 * let go frees it.
 */
typedef struct hsc_snapshot_s {
    atomic_uint refs;
    hsc_server_config_t cfg;
    char *owned[11];
    void *jwt_key_copy;
    hsc_cors_t cors;            /* --cors-origin */
    struct ssl_ctx_st *tls_ctx; /* cfg.tls_cert's context (tlsctx.c), or NULL; owned */
    int64_t tls_not_after;      /* the certificate's notAfter, seconds since the epoch */
} hsc_snapshot_t;

/* One worker thread: its loop, its listener, and each layer's share of that loop. */
struct hsc_worker_s {
    hsc_server_t *srv;
    unsigned index;
    hsc_server_config_t cfg; /* what this loop's layers read: snap->cfg, copied in this loop */
    hsc_snapshot_t *snap;    /* held: cfg's strings, key and cors are snap's */
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_tcp_t listener_tls; /* --listen-tls, when set */
    uv_async_t wake;
    uv_timer_t drain_timer;
    uv_thread_t thread;
    hsc_http_t http;         /* this loop's connections */
    hsc_stream_ctx_t stream; /* /v1/stream on this loop: the responder and its loop state */
    hsc_hub_t hub;           /* this loop's channel subscribers */
};

struct hsc_server_s {
    hsc_server_config_t cfg; /* its strings and key point into owned[] and jwt_key_copy */
    char *owned[14];
    void *jwt_key_copy;
    struct sockaddr_storage addr;
    char host[64];
    int port;
    bool tls_main; /* the --listen listener speaks TLS (a certificate and no --listen-tls) */
    struct sockaddr_storage addr_tls; /* --listen-tls */
    char host_tls[64];
    int port_tls;
    unsigned nworkers;
    hsc_worker_t *workers;
    atomic_uint nconns;
    atomic_uint_fast64_t next_req_id;
    atomic_bool stopping;
    bool ran;
    uv_loop_t main_loop;
    uv_async_t stop_async;
    uv_signal_t sigint, sigterm, sighup; /* sighup: unreferenced, it outlives the main loop */
    const hsc_responder_t *responder;
    hsc_engine_t *engine;          /* channels: ids, history, resume (pubsub/engine.h) */
    hsc_ratelimit_t *create_limit; /* channels created per client (--channel-create-rate) */
    hsc_journal_t *journal;        /* the engine's journal (pubsub/journal.h); NULL: memory only */
    uv_timer_t sweep_timer;
    uv_mutex_t snap_lock; /* guards snap */
    bool snap_lock_ready;
    hsc_snapshot_t *snap; /* the current configuration; workers take it up in on_wake() */
    unsigned conns_room;  /* --max-connections' ceiling from the open files limit; 0: none */
    hsc_server_hup_fn on_hup, on_usr2;
    void *on_hup_data, *on_usr2_data;
    uv_signal_t sigusr2; /* like sighup */
    int *inherited;      /* cfg.listen_fds, owned until a worker opens them */
    unsigned n_inherited;
    int *inherited_tls; /* cfg.listen_tls_fds, likewise */
    unsigned n_inherited_tls;
    atomic_uint reloads; /* hsc_server_reload() calls that applied (/metrics) */
    double start_time;   /* seconds since the epoch, at hsc_server_new() (/metrics) */
    unsigned trim_peak;  /* connections at the last malloc_trim() or since: see on_sweep() */
};

/* ---- a worker's loop (worker.c) -------------------------------------------------------------- */

/** Called when a worker's connection has closed: the worker ends once drained and empty. */
void hsc_worker_maybe_finish(hsc_worker_t *w);

/** The wake handle's callback: takes up a reloaded configuration, or begins the drain. */
void hsc_worker_on_wake(uv_async_t *a);

/** The worker thread: runs the loop until its last handle is closed. */
void hsc_worker_main(void *arg);

/* ---- configuration and reload (config.c) ----------------------------------------------------- */

/** Makes srv->cfg the server's own copy of `cfg` (strings and JWT key); 0 or HSC_ENOMEM. */
int hsc_server_copy_config(hsc_server_t *srv, const hsc_server_config_t *cfg);

/** A snapshot of `cfg` with its own copies of every string and the key; one reference. */
int hsc_snapshot_new(const hsc_server_config_t *cfg, hsc_snapshot_t **out);

/** Drops a reference to `snap` (NULL: nothing); the last one frees it. */
void hsc_snapshot_release(hsc_snapshot_t *snap);

/* ---- listening sockets (listen.c) ------------------------------------------------------------ */

/** Parses "HOST:PORT", "[V6]:PORT" or ":PORT" into srv->addr, host and port; 0 or HSC_EINVAL. */
int hsc_server_parse_listen(hsc_server_t *srv, const char *s);

/** Binds an ordinary socket to srv->addr: fails if anyone listens there; resolves port 0. */
int hsc_server_probe_address(hsc_server_t *srv);

/** Checks the inherited sockets of cfg->listen_fds and takes the address from the first. */
int hsc_server_adopt_sockets(hsc_server_t *srv, const hsc_server_config_t *cfg);

/** Likewise cfg->listen_tls_fds, taking addr_tls, host_tls and port_tls from the first; without
 * cfg->listen_tls they are closed (with a warning). */
int hsc_server_adopt_tls_sockets(hsc_server_t *srv, const hsc_server_config_t *cfg);

/** Opens worker w's listener: bound with SO_REUSEPORT, or an inherited socket. */
int hsc_worker_listen(hsc_worker_t *w);

/** Parses cfg.listen_tls into addr_tls, host_tls and port_tls, and probes it; 0 or an error. */
int hsc_server_listen_tls_setup(hsc_server_t *srv);

/* ---- TLS contexts (tlsctx.c) ----------------------------------------------------------------- */

struct ssl_ctx_st;
/**
 * A TLS context from cfg->tls_cert and cfg->tls_key (read now) and *not_after, the certificate's
 * expiry. Logs one line saying what is wrong and returns HSC_ETLS, or HSC_ENOMEM. Free with
 * hsc_tls_ctx_free().
 */
int hsc_tls_ctx_new(const hsc_server_config_t *cfg, struct ssl_ctx_st **out, int64_t *not_after);
void hsc_tls_ctx_free(struct ssl_ctx_st *ctx);

/** Warns, once, when the address is not loopback and nothing needs a token. */
void hsc_server_warn_if_open(const hsc_server_t *srv);

/* ---- the route table (routes.c) -------------------------------------------------------------- */

/** What a worker's transport calls: routing, OPTIONS and CORS, 404 and 405. */
extern const hsc_http_owner_t hsc_routes_owner;

/* ---- /metrics (metrics.c) -------------------------------------------------------------------- */

void hsc_metrics_handle(void *srv, hsc_req_t *req, hsc_res_t *res);
/** /healthz: 503 with the reason while Redis is unreachable (cluster mode), else "ok". */
void hsc_server_healthz_handle(void *srv, hsc_req_t *req, hsc_res_t *res);

#endif
