/*
 * stream: answers that arrive piece by piece (/v1/stream) and the responders behind them.
 * answer.c turns pieces into chunks or SSE events and holds each loop's stream context; demo.c,
 * exec.c (a process per request) and pool.c (long-lived workers) are the built-in responders;
 * proc.c runs the child processes of the last two. Uses core, codec, http and policy only.
 */
#ifndef HSC_STREAM_H
#define HSC_STREAM_H

#include "hsc/responder.h"
#include "http/http.h"
#include "policy/policy.h"

/* ---- counters for /metrics (answer.c) -------------------------------------------------------- */

/** One loop's answer counters (its loop writes, /metrics reads). */
typedef struct hsc_stream_stats_s {
    atomic_uint_fast64_t started;   /* handed to the responder's start() */
    atomic_uint_fast64_t completed; /* hsc_answer_end() */
    atomic_uint_fast64_t failed;    /* hsc_answer_fail(), a start() that failed included */
    atomic_uint_fast64_t cancelled; /* the client went away first */
    atomic_uint_fast64_t restarts;  /* pool workers started again after they exited */
    atomic_uint queued;             /* answers waiting for a process (exec, pool) now */
    hsc_timing_t first_piece;       /* from start to the first piece written */
    hsc_timing_t duration;          /* from start to the end, completed or failed */
} hsc_stream_stats_t;

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
    hsc_stream_stats_t st;   /* this loop's counters, summed by /metrics */
} hsc_stream_ctx_t;

/** The stream context a responder's loop belongs to (every hsc_responder_loop_t is in one). */
static inline hsc_stream_ctx_t *hsc_stream_ctx_of(hsc_responder_loop_t *l)
{
    return (hsc_stream_ctx_t *)((char *)l - offsetof(hsc_stream_ctx_t, rl));
}

/** The kind of responder, as /metrics labels it: "demo", "exec", "pool" or "callback". */
const char *hsc_stream_kind(const hsc_responder_t *r);

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

/* ---- waiting requests (proc.c) --------------------------------------------------------------- */

/** A link in a wait queue; unlinked when `next` is NULL. */
typedef struct hsc_wait_s {
    struct hsc_wait_s *prev, *next;
} hsc_wait_t;

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
    uint64_t started_ns; /* uv_hrtime() when handed to the responder; 0 before */
    const hsc_responder_t *responder;
    void *state;          /* the responder's own */
    uv_timer_t keepalive; /* SSE: a comment line while the responder is silent */
    unsigned pieces_at_last_tick;
    unsigned char carry[4]; /* SSE: the start of a UTF-8 character cut by the last piece */
    size_t carry_len;
    hsc_wait_t wait; /* in a responder's wait queue (proc.c) while no process is free */
    /* The OpenAI front (openai.c); all NULL / 0 on /v1/stream. */
    struct hsc_oai_answer_s *oai;
    const char *api;     /* "chat" or "completions" */
    uint64_t max_tokens; /* 0: none */
    bool finished;       /* ended early by the front (stop sequence, max_tokens): cancel is due */
};

extern const hsc_responder_t hsc_demo_responder;
extern const hsc_responder_t hsc_exec_responder;
extern const hsc_responder_t hsc_pool_responder;

/** A FIFO of answers waiting for a process: push, pop and remove are O(1). */
typedef struct hsc_waitq_s {
    hsc_wait_t head; /* sentinel of a circular list */
    unsigned n, limit;
} hsc_waitq_t;

void hsc_waitq_init(hsc_waitq_t *q, unsigned limit);
bool hsc_waitq_full(const hsc_waitq_t *q);
void hsc_waitq_push(hsc_waitq_t *q, hsc_answer_t *a);
/** The answer that has waited longest, unlinked; NULL when none waits. */
hsc_answer_t *hsc_waitq_pop(hsc_waitq_t *q);
/** Unlinks `a` if it waits (its client left); returns whether it did. */
bool hsc_waitq_remove(hsc_waitq_t *q, hsc_answer_t *a);

/* ---- child processes (proc.c), shared by exec.c and pool.c ----------------------------------- */

/** What the processes of one loop share: the loop, the configuration, one read buffer. */
typedef struct hsc_procs_s {
    uv_loop_t *loop;
    const hsc_server_config_t *cfg;
    char rbuf[65536]; /* every read of a stdout or stderr is handed on before the next */
} hsc_procs_t;

typedef struct hsc_proc_s hsc_proc_t;

/** What a process tells its owner, on the loop's thread. Optional unless said otherwise. */
typedef struct hsc_proc_ops_s {
    void (*output)(hsc_proc_t *p, const char *data, size_t n); /* stdout bytes; required */
    void (*exited)(hsc_proc_t *p);                             /* reaped: p->status, p->signal */
    void (*finished)(hsc_proc_t *p); /* exited, and stdout and stderr are at end of file */
    void (*timer)(hsc_proc_t *p);    /* the time given to hsc_proc_arm() has passed */
    void (*closed)(hsc_proc_t *p);   /* after hsc_proc_close(): handles closed, no kill pending */
} hsc_proc_ops_t;

/**
 * One child process: `/bin/sh -c CMD` (--exec) in a session of its own, so its pid is its process
 * group and a kill reaches whatever the shell started, with three pipes. The owner embeds it and
 * may spawn it again after `closed`.
 */
struct hsc_proc_s {
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_timer_t timer; /* the owner's hsc_proc_arm(), or the grace between SIGTERM and SIGKILL */
    hsc_procs_t *procs;
    const hsc_proc_ops_t *ops;
    uint64_t req_id; /* the request served (0: none): log lines say "req ID" */
    int worker;      /* otherwise "pool worker N" */
    int pgid;        /* the process group, while it may be signalled; 0 after */
    int open;        /* process and pipe handles not yet closed */
    bool alive, out_eof, err_eof, stdin_open, paused, out_stopped, killed, grace, closing;
    int64_t status;
    int signal;
    char line[512]; /* stderr: the line so far */
    size_t line_len;
};

/** Prepares `p` (its timer); no process yet. */
void hsc_proc_init(hsc_proc_t *p, hsc_procs_t *procs, const hsc_proc_ops_t *ops);
/**
 * Starts the --exec command with `env` (NULL: hsc_proc_env_base()) and reads its stdout and
 * stderr. On failure (logged) the handles are closed at once: `closed` follows.
 */
int hsc_proc_spawn(hsc_proc_t *p, char **env);
/**
 * Writes to stdin (copies `bufs`; one write), and closes stdin after it when `then_close`.
 * Returns 0, HSC_ECLOSED when stdin is closed, HSC_ENOMEM or a libuv error.
 */
int hsc_proc_send(hsc_proc_t *p, const uv_buf_t *bufs, unsigned n, bool then_close);
/** Closes stdin now: the process reads end of file. */
void hsc_proc_close_stdin(hsc_proc_t *p);
/**
 * Hands stdout bytes to an answer and stops reading stdout while the client lags (its resume()
 * calls hsc_proc_resume()). Returns hsc_answer_write()'s result: not 0, cancel() follows.
 */
int hsc_proc_forward(hsc_proc_t *p, hsc_answer_t *a, const char *data, size_t n);
void hsc_proc_pause(hsc_proc_t *p);
void hsc_proc_resume(hsc_proc_t *p);
/** A responder's resume() when the answer's state is NULL (waiting) or starts with its process. */
void hsc_proc_answer_resume(hsc_answer_t *a);
/** Stops reading stdout for good (the output makes no sense any more). */
void hsc_proc_stop_output(hsc_proc_t *p);
/** One-shot: `timer` after `ms`; replaces an earlier one. Ignored while a kill's grace runs. */
void hsc_proc_arm(hsc_proc_t *p, uint64_t ms);
void hsc_proc_disarm(hsc_proc_t *p);
/** SIGTERM to the process group, SIGKILL after --kill-grace. Once per spawn. */
void hsc_proc_kill(hsc_proc_t *p);
/** The group may no longer be signalled (its output has ended): a kill's grace stops. */
void hsc_proc_forget(hsc_proc_t *p);
/** Closes the process and its pipes; `closed` follows (after a kill's grace, if one runs). */
void hsc_proc_close(hsc_proc_t *p);
/** Closes the timer, once closed: `cb` (may be NULL) is where the owner may free `p`. */
void hsc_proc_dispose(hsc_proc_t *p, uv_close_cb cb);
/** "req ID" or "pool worker N": how log lines name the process. */
void hsc_proc_name(const hsc_proc_t *p, char *out, size_t cap);

/**
 * What a responder process learns about its request (docs/responders.md, "The request"): for
 * exec, hscd's environment (less hsc_proc_env_base()'s secrets) plus the request's variables,
 * NULL-terminated, in one allocation (free()); NULL when out of memory. An answer of the OpenAI
 * front adds HSC_API, HSC_MAX_TOKENS and HSC_REQUEST_JSON_FILE=`json_file` (where its request
 * JSON was written).
 */
char **hsc_proc_env(const hsc_answer_t *a, const char *json_file);
/**
 * The environment a pool worker starts with: hscd's, less what no responder may see (HSC_*, the
 * variable of --jwt-key-env, any variable holding the key or a token). One allocation (free());
 * NULL when out of memory.
 */
char **hsc_proc_env_base(const hsc_server_config_t *cfg);
/** The same for a pool worker: the `meta` frame's payload, key=value lines; free(). */
char *hsc_proc_meta(const hsc_answer_t *a, size_t *len);

/* Route handlers: /v1/stream and the template's GET /<text>. */
void hsc_stream_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);
void hsc_legacy_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);

/* ---- the OpenAI-compatible front (openai.c, docs/openai.md) ---------------------------------- */

/* Route handlers: POST /v1/chat/completions, POST /v1/completions, GET /v1/models. */
void hsc_openai_chat_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);
void hsc_openai_completions_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);
void hsc_openai_models_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);

/**
 * Starts an answer to `text` (answer.c): /v1/stream's path, shared by the front. With `oai`
 * (taken: freed on every path) the answer is framed by openai.c and errors are JSON.
 */
void hsc_answer_begin(hsc_stream_ctx_t *ctx, hsc_req_t *req, hsc_res_t *res, const char *text,
                      size_t len, struct hsc_oai_answer_s *oai);
/**
 * The front has ended the answer (a stop sequence, max_tokens): on the next loop turn the
 * responder is cancelled and the answer completed, unless the responder ends it first.
 */
void hsc_answer_finish_early(hsc_answer_t *a);

/* What answer.c asks of openai.c for an answer with `oai`. */
void hsc_openai_attach(hsc_answer_t *a, struct hsc_oai_answer_s *o); /* the answer holds it */
int hsc_openai_emit(hsc_answer_t *a, const char *p, size_t n);       /* text, whole characters */
void hsc_openai_complete(hsc_answer_t *a); /* the final chunks and [DONE], or the JSON answer */
void hsc_openai_fail(hsc_answer_t *a, const char *reason); /* an error event, or a JSON error */
void hsc_openai_free(struct hsc_oai_answer_s *o);
/* The request JSON, encoded on the first call (NULL: out of memory). */
const char *hsc_openai_request_json(struct hsc_oai_answer_s *o, size_t *len);

#endif
