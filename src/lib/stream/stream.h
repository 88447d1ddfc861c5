/*
 * stream: answers that arrive piece by piece (/v1/stream) and the responders behind them.
 */
#ifndef HSC_STREAM_H
#define HSC_STREAM_H

#include "hsc/responder.h"
#include "http/http.h"
#include "policy/policy.h"

/* ---- the stream context of one loop (answer.c) ---------------------------------------------- */

/**
 * What /v1/stream and the legacy GET need on one loop: the responder and its view of the loop.
 * The server embeds one per loop and hands it to those routes as their context; it is touched by
 * that loop's thread only.
 */
typedef struct hsc_stream_ctx_s {
    const hsc_responder_t *responder;
    hsc_responder_loop_t rl; /* rl.data: the responder's state for this loop */
    int start_rc;            /* loop_start's result; not 0: this loop refuses answers (503) */
    bool started;            /* loop_start was called */
} hsc_stream_ctx_t;

/** The responder a configuration asks for: its C responder, else the pool, exec or the demo. */
const hsc_responder_t *hsc_stream_responder(const hsc_server_config_t *cfg);
/** How many loops `r` can serve at most (the pool: one loop per worker process at least). */
unsigned hsc_stream_max_loops(const hsc_responder_t *r, const hsc_server_config_t *cfg);
/** Fills a loop's context; creates no handle. Borrows `loop` and `cfg` for its life. */
void hsc_stream_init(hsc_stream_ctx_t *s, const hsc_responder_t *r, uv_loop_t *loop,
                     const hsc_server_config_t *cfg, unsigned index, unsigned nloops);
/** On the loop's thread, before it serves: the responder's loop_start. */
void hsc_stream_start(hsc_stream_ctx_t *s);
/** On the loop's thread, when shutdown begins: the responder's loop_drain. */
void hsc_stream_drain(hsc_stream_ctx_t *s);
/** On the loop's thread, after the loop has ended: the responder's loop_free. */
void hsc_stream_dispose(hsc_stream_ctx_t *s);

/* ---- answers and responders (answer.c, demo.c) ----------------------------------------------- */

struct hsc_answer_s {
    hsc_stream_ctx_t *ctx; /* the loop's */
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

/* Route handlers: /v1/stream and the template's GET /<text>. */
void hsc_stream_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);
void hsc_legacy_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);

#endif
