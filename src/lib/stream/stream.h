/*
 * stream: answers that arrive piece by piece (/v1/stream) and the responders behind them.
 */
#ifndef HSC_STREAM_H
#define HSC_STREAM_H

#include "hsc/responder.h"
#include "http/http.h"
#include "policy/policy.h"

typedef struct hsc_worker_s hsc_worker_t;

/* ---- answers and responders (answer.c, demo.c) ----------------------------------------------- */

struct hsc_answer_s {
    hsc_worker_t *w; /* the loop's */
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

/* Route handlers: /v1/stream and the template's GET /<text>. */
void hsc_stream_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);
void hsc_legacy_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);

#endif
