/*
 * libhsc internals: the structures behind the public handles and the functions modules share.
 * Nothing here is installed. Ownership words follow STYLE.md: *borrows* (valid during the call),
 * *takes ownership*, *valid until the callback*.
 */
#ifndef HSC_INTERNAL_H
#define HSC_INTERNAL_H

#include "hsc/codec.h"
#include "hsc/hsc.h"
#include "hsc/responder.h"
#include "hsc/server.h"

#include <llhttp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

/* ---- logging (log.c) ------------------------------------------------------------------------- */

extern atomic_int hsc_log_level_v;
void hsc_log_set_level(hsc_log_level_t level);
/** Logs one line to stderr with a timestamp and level; lines are written whole, never torn. */
void hsc_log(hsc_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define HSC_LOG(level, ...)                                                                        \
    do {                                                                                           \
        if ((int)(level) <= atomic_load_explicit(&hsc_log_level_v, memory_order_relaxed))          \
            hsc_log((level), __VA_ARGS__);                                                         \
    } while (0)

/* ---- bounded buffers (buf.c) ----------------------------------------------------------------- */

typedef struct hsc_buf_s {
    char *data;
    size_t len, cap;
    size_t max; /* ceiling: len never exceeds it */
} hsc_buf_t;

void hsc_buf_init(hsc_buf_t *b, size_t max);
void hsc_buf_dispose(hsc_buf_t *b);
/** Makes room for `extra` more bytes. Returns 0, HSC_ETOOBIG past the ceiling, or HSC_ENOMEM. */
int hsc_buf_reserve(hsc_buf_t *b, size_t extra);
/** Appends bytes; on failure (HSC_ETOOBIG, HSC_ENOMEM) the buffer is unchanged. */
int hsc_buf_append(hsc_buf_t *b, const void *p, size_t n);
/** Drops the first `n` bytes (all of them when n >= len). */
void hsc_buf_consume(hsc_buf_t *b, size_t n);
/* Gives back the storage past the content (a request head kept for a long response). The data
 * may move: pointers into it must be taken afterwards. */
void hsc_buf_shrink(hsc_buf_t *b);

/* ---- frames (frame.c) ------------------------------------------------------------------------ */

typedef struct hsc_frame_s {
    atomic_uint refs;
    size_t len;
    char data[];
} hsc_frame_t;

/** A frame of `len` bytes for the caller to fill, with one reference; NULL when out of memory. */
hsc_frame_t *hsc_frame_try_new(size_t len);
hsc_frame_t *hsc_frame_ref(hsc_frame_t *f);
void hsc_frame_unref(hsc_frame_t *f);

/* ---- history rings (history.c) --------------------------------------------------------------- */

typedef struct hsc_hist_entry_s {
    uint64_t seq;
    uint64_t time_ms;
    hsc_frame_t *frame; /* one reference */
} hsc_hist_entry_t;

typedef struct hsc_history_s {
    hsc_hist_entry_t *ring;
    size_t head, count, cap;
    size_t bytes; /* sum of the frames' lengths */
    size_t max_count, max_bytes;
    uint64_t max_age_ms;
    uint64_t evicted_seq; /* newest sequence number evicted (or never kept); 0 when none */
} hsc_history_t;

void hsc_history_init(hsc_history_t *h, size_t max_count, size_t max_bytes, uint64_t max_age_ms);
void hsc_history_dispose(hsc_history_t *h);
/**
 * Appends an event (takes a new reference to `frame`), first evicting the oldest entries that the
 * count and byte bounds require. An event that can never fit (bounds of 0, or a frame larger than
 * max_bytes) empties the history and is recorded as evicted. Returns 0 or HSC_ENOMEM.
 */
int hsc_history_push(hsc_history_t *h, uint64_t seq, uint64_t now_ms, hsc_frame_t *frame);
/** Evicts entries at least max_age_ms old; frees the ring when it empties. Returns how many. */
size_t hsc_history_expire(hsc_history_t *h, uint64_t now_ms);
void hsc_history_evict_oldest(hsc_history_t *h);
/** The i-th entry, 0 the oldest. */
const hsc_hist_entry_t *hsc_history_at(const hsc_history_t *h, size_t i);
/** The index of the first entry with a sequence number above `seq` (count when none). */
size_t hsc_history_first_after(const hsc_history_t *h, uint64_t seq);

/* ---- router (router.c) ----------------------------------------------------------------------- */

enum {
    HSC_M_GET = 1u << 0,
    HSC_M_HEAD = 1u << 1,
    HSC_M_POST = 1u << 2,
    HSC_M_PUT = 1u << 3,
    HSC_M_DELETE = 1u << 4,
    HSC_M_OPTIONS = 1u << 5,
    HSC_M_PATCH = 1u << 6,
    HSC_M_OTHER = 1u << 7
};

typedef struct hsc_conn_s hsc_conn_t;
typedef struct hsc_req_s hsc_req_t;
typedef struct hsc_res_s hsc_res_t;
typedef void (*hsc_handler_fn)(hsc_req_t *req, hsc_res_t *res);

typedef struct hsc_route_s {
    const char *path;
    bool prefix; /* match every path that starts with `path` */
    unsigned methods;
    hsc_handler_fn handler;
} hsc_route_t;

unsigned hsc_method_bit(const char *name, size_t len);
/** Writes "GET, HEAD, POST" for a mask; returns the length. */
size_t hsc_methods_format(unsigned mask, char *out, size_t cap);
/**
 * Finds the first route for `path` and `method`. Returns 0 and sets *out; HSC_EMETHOD when only
 * other methods match (*allowed gets their union); HSC_ENOTFOUND when no path matches.
 */
int hsc_router_match(const hsc_route_t *routes, size_t n, const char *path, size_t len,
                     unsigned method, const hsc_route_t **out, unsigned *allowed);

/* ---- requests (conn.c) ----------------------------------------------------------------------- */

#define HSC_MAX_HEADERS 64

/* Offsets into a request head, which is at most HSC_HEAD_MAX bytes: 8 bytes a header, so that
 * an idle subscriber's connection stays small. */
#define HSC_HEAD_MAX 65535u
typedef struct hsc_header_ref_s {
    uint16_t name_off, name_len, value_off, value_len;
} hsc_header_ref_t;

struct hsc_req_s {
    hsc_conn_t *conn;
    uint64_t id;     /* unique in this process, for logs and responders */
    unsigned method; /* HSC_M_* bit */
    const char *method_name;
    uint8_t http_major, http_minor;
    bool head_only;       /* HEAD: the writer sends headers and drops the body */
    bool expect_continue; /* "Expect: 100-continue" */
    /* Valid from the end of the head until the response ends; point into `head`. */
    const char *target; /* the raw request-target */
    size_t target_len;
    const char *path; /* raw (still percent-encoded) path */
    size_t path_len;
    const char *query; /* raw query without '?', or NULL */
    size_t query_len;
    hsc_buf_t body;
    /* Parsing state. */
    hsc_buf_t head; /* target and headers, each NUL-terminated; bounded by max_header_bytes */
    uint32_t target_off;
    hsc_header_ref_t hdr[HSC_MAX_HEADERS];
    unsigned nhdr;
    unsigned nhdr_done; /* headers whose value is complete: a parse error can stop mid-header */
    int last_cb;        /* 0 none, 1 target, 2 header field, 3 header value */
    int error_status;   /* a limit hit while parsing: 413, 431 ... */
    const char *error_reason;
};

/** Returns a header's value (NUL-terminated) by case-insensitive name, or NULL. */
const char *hsc_req_header(const hsc_req_t *req, const char *name);
/** Whether a comma-separated header (Accept) lists `token` as a media range or value. */
bool hsc_req_accepts(const hsc_req_t *req, const char *token);
/** The peer's address as text ("127.0.0.1:51234"); valid for the connection's life. */
const char *hsc_req_peer(const hsc_req_t *req);
const hsc_server_config_t *hsc_req_config(const hsc_req_t *req);
uv_loop_t *hsc_req_loop(const hsc_req_t *req);

/* ---- authorization (auth.c, docs/security.md) ---------------------------------------------- */

typedef enum hsc_auth_action_e {
    HSC_AUTH_PUBLISH,
    HSC_AUTH_SUBSCRIBE,
    HSC_AUTH_STREAM
} hsc_auth_action_t;

/** Whether the configuration asks for a token for `act`. */
bool hsc_auth_protects(const hsc_server_config_t *cfg, hsc_auth_action_t act);
/**
 * Checks the request's token for `act` on the `n` channel names at `names`, `stride` bytes
 * apart (NUL-terminated; none for HSC_AUTH_STREAM). Returns 0 when allowed; otherwise it has
 * answered (401 with WWW-Authenticate, 403, or 503) and returns that status.
 */
int hsc_auth_require(hsc_req_t *req, hsc_res_t *res, hsc_auth_action_t act, const char *names,
                     size_t stride, size_t n);

/* ---- the response writer (res.c) ------------------------------------------------------------ */

typedef void (*hsc_res_cb)(hsc_res_t *res, void *user);

typedef enum hsc_body_mode_e {
    HSC_BODY_LENGTH,  /* Content-Length known up front */
    HSC_BODY_CHUNKED, /* HTTP/1.1 streaming */
    HSC_BODY_CLOSE    /* HTTP/1.0 streaming: the body ends when the connection closes */
} hsc_body_mode_t;

#define HSC_STREAMING (-1)

struct hsc_res_s {
    hsc_conn_t *conn;
    int status;
    bool started, ended;
    hsc_body_mode_t mode;
    uint64_t remaining; /* HSC_BODY_LENGTH: body bytes still expected */
    /* Callbacks of whoever produces the body (a responder, a subscriber). */
    hsc_res_cb on_close; /* the connection closed before hsc_res_end(): stop producing */
    hsc_res_cb on_drain; /* the queue fell below its low mark after hsc_res_writable() said no */
    void *user;
    bool want_drain;
};

/**
 * Sends the status line and headers. `content_type` may be NULL; `extra` is NULL or complete
 * header lines ("Name: value\r\n..."). `content_length` is the body size, or HSC_STREAMING for a
 * body of unknown length (chunked on HTTP/1.1, close-delimited on HTTP/1.0). Returns 0 or
 * HSC_ECLOSED / HSC_EFULL when the connection is gone or going.
 */
int hsc_res_start(hsc_res_t *res, int status, const char *content_type, const char *extra,
                  int64_t content_length);
/** Writes body bytes, framed as the body mode requires. Borrows `p` (copied if it must wait). */
int hsc_res_write(hsc_res_t *res, const void *p, size_t n);
/** Ends a complete response: the last chunk, or the connection closes (HTTP/1.0 streaming). */
int hsc_res_end(hsc_res_t *res);
/**
 * Ends a response that failed midway, so the client can tell it from a complete one: a chunked
 * body is closed without its last chunk, a close-delimited one with a TCP reset. Bytes already
 * written are still delivered first (except with the reset). The connection closes.
 */
void hsc_res_abort(hsc_res_t *res);
/** A whole response with a body, e.g. a static file or JSON. */
int hsc_res_send(hsc_res_t *res, int status, const char *content_type, const char *extra,
                 const void *body, size_t len);
/**
 * An error response: status, a one-line plain-text reason ("reason\n"), and Connection: close
 * when `close` (or the request cannot be trusted to have been read whole).
 */
int hsc_res_error(hsc_res_t *res, int status, const char *extra, const char *reason, bool close);
/**
 * Whether the producer may write more: false when the output queue is above its high mark. After
 * a false, on_drain is called once the queue falls below the low mark.
 */
bool hsc_res_writable(hsc_res_t *res);
const char *hsc_status_reason(int status);

/* ---- connections (conn.c) -------------------------------------------------------------------- */

typedef struct hsc_outq_item_s {
    hsc_frame_t *frame;
    size_t off; /* next byte of the frame to write */
    size_t end; /* one past the last byte to write (a slice of a shared frame) */
} hsc_outq_item_t;

typedef struct hsc_worker_s hsc_worker_t;

struct hsc_conn_s {
    uv_tcp_t tcp; /* first: the handle's address is the connection's */
    uv_timer_t timer;
    hsc_worker_t *w;
    hsc_conn_t *prev, *next; /* on the worker's list */
    llhttp_t parser;
    hsc_buf_t pending; /* received, not yet parsed: pipelined requests wait here */
    hsc_req_t req;
    hsc_res_t res;
    int state;      /* CONN_* in conn.c */
    int timer_mode; /* what the timer is armed for */
    bool keep_alive, reading, closing, close_after_flush, reset_after_flush, shutdown_sent;
    bool corked;      /* hsc_conn_cork(): sends are queued, written together at hsc_conn_uncork() */
    bool upgrade;     /* the current request asked for Upgrade: close after it */
    bool dispatching; /* inside conn_dispatch(): a response ending now is picked up there */
    bool close_pending; /* hsc_conn_close_soon() was called: nothing else may re-arm the timer */
    /* Output queue: a ring of frame slices; `queued` counts unsent bytes, in flight included. */
    hsc_outq_item_t *q;
    size_t q_head, q_count, q_cap;
    size_t queued;
    uv_write_t wreq;
    unsigned in_flight; /* items handed to the current uv_write, 0 when none */
    int open_handles;
    char peer[64];
};

/** Queues bytes for the socket: written at once when possible, the rest copied and queued. */
int hsc_conn_send(hsc_conn_t *c, const uv_buf_t *bufs, unsigned n);
/**
 * Cork: until hsc_conn_uncork(), sends are copied to the queue and not written, so that several
 * small writes produced in one turn of the loop (a burst of pieces) leave in one writev().
 */
void hsc_conn_cork(hsc_conn_t *c);
void hsc_conn_uncork(hsc_conn_t *c);
/**
 * Sends slices of shared frames in order with as few system calls as possible: one
 * uv_try_write() for up to 64 of them when nothing is queued, then references for the rest while
 * the queue stays under its high-water mark. Returns how many slices were taken (written or
 * queued; the caller keeps the others for on_drain), or HSC_ECLOSED / HSC_ENOMEM.
 */
int hsc_conn_send_slices(hsc_conn_t *c, const hsc_outq_item_t *it, unsigned n);
/** Called by the writer when a response is complete: next request, or close. */
void hsc_conn_response_done(hsc_conn_t *c, bool reset);
/** Closes on the next loop turn (never re-enters the caller). */
void hsc_conn_close_soon(hsc_conn_t *c);
void hsc_conn_close(hsc_conn_t *c);
void hsc_conn_accept(hsc_worker_t *w);
/**
 * Serves a connected stream socket as if it had been accepted (a Unix socketpair in the request
 * path's fuzz target). Takes ownership of `fd`. Returns 0 or an error.
 */
int hsc_conn_adopt(hsc_worker_t *w, uv_os_sock_t fd);
void hsc_conn_start_reading(hsc_conn_t *c);
/** Shutdown: an idle connection closes now, a busy one after its current response. */
void hsc_conn_drain(hsc_conn_t *c);
size_t hsc_conn_low_water(const hsc_conn_t *c);
size_t hsc_conn_high_water(const hsc_conn_t *c);

/* ---- answers and responders (answer.c, demo.c) ----------------------------------------------- */

struct hsc_answer_s {
    hsc_res_t *res;
    hsc_req_t *req;
    uv_loop_t *loop;
    const hsc_server_config_t *cfg;
    char *text; /* the request text, NUL-terminated, valid UTF-8 */
    size_t text_len;
    bool sse;
    unsigned pieces;
    uint64_t bytes;
    const hsc_responder_t *responder;
    void *state;          /* the responder's own */
    uv_timer_t keepalive; /* SSE: a comment line while the responder is silent */
    unsigned pieces_at_last_tick;
    unsigned char carry[4]; /* SSE: the start of a UTF-8 character cut by the last piece */
    size_t carry_len;
};

extern const hsc_responder_t hsc_demo_responder;
extern const hsc_responder_t hsc_exec_responder;
extern const hsc_responder_t hsc_pool_responder;

/* Child processes (child.c), shared by exec.c and pool.c. */
/** Starts /bin/sh -c CMD in its own session; initialises the three pipes whatever the result. */
int hsc_child_spawn(uv_loop_t *loop, uv_process_t *proc, uv_pipe_t *in, uv_pipe_t *out,
                    uv_pipe_t *err, const char *cmd, char **env, uv_exit_cb exit_cb);
/** Signals a process group (falling back to its leader alone). */
void hsc_child_signal(int pgid, int sig, bool leader_alive);
/** A child's stderr, logged a line at a time as "PREFIX: stderr: line". */
typedef struct hsc_lines_s {
    char line[512];
    size_t len;
} hsc_lines_t;
void hsc_lines_feed(hsc_lines_t *l, const char *prefix, const char *p, size_t n);
void hsc_lines_flush(hsc_lines_t *l, const char *prefix);

/* The pool (pool.c): long-lived worker processes of one loop. */
typedef struct hsc_pool_s hsc_pool_t;
int hsc_pool_new(hsc_worker_t *w, unsigned nprocs, unsigned qlimit);
void hsc_pool_start(hsc_worker_t *w); /* on the worker's thread, before its loop runs */
void hsc_pool_stop(hsc_worker_t *w);  /* draining: stdin EOF, then kill after --drain-timeout */
void hsc_pool_free(hsc_worker_t *w);

/* Per-worker admission for --exec: at most `limit` processes, then a FIFO of `qlimit`. */
typedef struct hsc_exec_slots_s {
    unsigned running, limit;
    unsigned queued, qlimit;
    struct exec_proc_s *head, *tail;
} hsc_exec_slots_t;

/* ---- channels (channels.c) ------------------------------------------------------------------- */

typedef struct hsc_registry_s hsc_registry_t;
typedef struct hsc_sub_s hsc_sub_t;
typedef struct hsc_chan_s hsc_chan_t;

/** An event on its way to a worker's subscribers. */
typedef struct hsc_delivery_s {
    hsc_chan_t *chan; /* one reference */
    hsc_frame_t *frame;
    uint64_t seq;
} hsc_delivery_t;

/** A worker's share of the channels machinery. */
typedef struct hsc_chw_s {
    uv_async_t wake; /* publishers signal new deliveries */
    uv_timer_t keepalive;
    uv_mutex_t mu; /* guards inbox */
    hsc_delivery_t *inbox, *spare;
    size_t inbox_n, inbox_cap, spare_cap;
    void *scratch; /* on_inbox(): deliveries regrouped per subscriber */
    size_t npairs, scratch_cap;
    hsc_sub_t *subs; /* this loop's subscribers */
    size_t nsubs;
    bool ready;
    uint64_t rng; /* xorshift state for retry jitter, per loop: no shared rand() */
    /* Shutdown: subscribers are ended a few at a time over drain_window ms (hsc_chw_drain). */
    uint64_t drain_start, drain_window;
    size_t drain_total, drain_closed;
} hsc_chw_t;

int hsc_registry_new(hsc_server_t *srv);
void hsc_registry_free(hsc_server_t *srv);
/** Evicts aged history and frees empty channels (the server calls it every second). */
void hsc_registry_sweep(hsc_server_t *srv);
void hsc_chw_init(hsc_worker_t *w);
/**
 * Shutdown: ends the worker's subscriptions spread over time (at most about one per millisecond,
 * within 3/4 of the drain timeout), each told by a last retry: line to come back after the
 * window, with jitter, so that a restart does not bring every client back at once.
 */
void hsc_chw_drain(hsc_worker_t *w);
void hsc_chw_close(hsc_worker_t *w);
/** After the worker's loop has ended: frees what is left in its inbox. */
void hsc_chw_free(hsc_worker_t *w);
void hsc_events_handle(hsc_req_t *req, hsc_res_t *res);
void hsc_metrics_handle(hsc_req_t *req, hsc_res_t *res);

/* ---- CORS (cors.c) --------------------------------------------------------------------------- */

/** Splits --cors-origin into srv->cors / cors_any. Returns 0, HSC_EINVAL or HSC_ENOMEM. */
int hsc_cors_setup(hsc_server_t *srv, const char *list);
void hsc_cors_free(hsc_server_t *srv);
/** Appends the CORS response headers for the request's Origin to `out` (NUL-terminated). */
void hsc_cors_headers(const hsc_req_t *req, char *out, size_t cap);
/** Answers an OPTIONS request (a CORS preflight or a plain OPTIONS) for a route's methods. */
void hsc_options_handle(hsc_req_t *req, hsc_res_t *res, unsigned methods);

/* Route handlers. */
void hsc_stream_handle(hsc_req_t *req, hsc_res_t *res);
void hsc_legacy_handle(hsc_req_t *req, hsc_res_t *res);
void hsc_static_handle(hsc_req_t *req, hsc_res_t *res);
void hsc_healthz_handle(hsc_req_t *req, hsc_res_t *res);

/* ---- embedded web files (generated web_assets.c) --------------------------------------------- */

typedef struct hsc_asset_s {
    const char *path; /* "/index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} hsc_asset_t;

extern const hsc_asset_t hsc_assets[];
extern const size_t hsc_assets_count;

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

/** Adds to a counter that only the calling thread writes (no locked instruction needed). */
#define HSC_STAT_ADD(counter, n)                                                                   \
    atomic_store_explicit(&(counter),                                                              \
                          atomic_load_explicit(&(counter), memory_order_relaxed) + (n),            \
                          memory_order_relaxed)

/** Called by a worker when its last connection has closed while draining. */
void hsc_worker_maybe_finish(hsc_worker_t *w);

#endif
