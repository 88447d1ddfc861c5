/**
 * Responders: what turns one request text into a stream of pieces. hscd has three kinds: the
 * built-in demo, external programs (--exec, one process per request), and C callbacks registered
 * by a program that links libhsc (this header; see examples/embed.c).
 *
 * Everything about one answer happens on one libuv loop (hsc_answer_loop()): start, resume and
 * cancel are called there, and hsc_answer_write/end/fail must be called there too. A responder
 * that produces pieces on another thread hands them to the loop itself (uv_async_t).
 *
 * A server runs several loops, one per worker thread. A responder that needs state of its own per
 * loop (processes, queues, a connection to a model) keeps it there through the loop hooks, so that
 * nothing is shared between threads and no lock is taken on the request path.
 */
#ifndef HSC_RESPONDER_H
#define HSC_RESPONDER_H

#include "hsc.h"

#include <stdbool.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One answer in progress: a request text, a client, and the pieces sent so far. */
typedef struct hsc_answer_s hsc_answer_t;

/**
 * A responder. `start` begins producing: pieces go through hsc_answer_write(), the end through
 * hsc_answer_end() or hsc_answer_fail(); a non-zero return fails the answer at once. `resume`
 * (optional) is called once the client has drained after hsc_answer_writable() returned false.
 * `cancel` is called when the client goes away before the end: release everything and never
 * touch the answer again. `admit` (optional) is asked before the response headers go out:
 * returning non-zero (e.g. HSC_EFULL when a queue is full) answers 503 with Retry-After.
 *
 * The loop hooks are optional (NULL: nothing to do). While hsc_server_run() runs, each is called
 * once per loop, in this order, on that loop's own thread (the one that also calls start, resume,
 * cancel and admit for the loop's answers):
 *
 * - `loop_start` before the loop serves its first request: set `l->data` to the responder's
 *   state for this loop (answers reach it with hsc_answer_loop_data()). A non-zero return is
 *   logged and every answer on that loop is refused (503) while the other loops serve; release
 *   what was taken before returning it, as neither hook below is called for that loop then.
 * - `loop_drain` when shutdown begins (hsc_server_stop(), SIGINT or SIGTERM): take no new work,
 *   let what runs finish or stop it (the config's drain_timeout_ms is the server's patience). The
 *   loop ends once every handle is closed, the responder's included: close them all by then.
 *   Answers already in progress still run; start may still be called for requests that arrived
 *   before the drain.
 * - `loop_free` after the loop has ended (every handle closed, no answer left): free the state.
 *
 * Fields added later go at the end, so a positional initialiser of the first five still works.
 */
typedef struct hsc_responder_loop_s hsc_responder_loop_t;
typedef struct hsc_responder_s {
    const char *name;
    int (*start)(hsc_answer_t *a);
    void (*resume)(hsc_answer_t *a);
    void (*cancel)(hsc_answer_t *a);
    int (*admit)(hsc_answer_t *a);
    int (*loop_start)(hsc_responder_loop_t *l);
    void (*loop_drain)(hsc_responder_loop_t *l);
    void (*loop_free)(hsc_responder_loop_t *l);
} hsc_responder_t;

/**
 * One loop as its responder sees it. The server owns it: the same pointer in every hook call for
 * that loop, valid from loop_start until loop_free returns. Only `data` is the responder's to set.
 */
struct hsc_responder_loop_s {
    void *data;                            /* the responder's state for this loop; NULL at first */
    uv_loop_t *loop;                       /* the loop: the responder's handles go there */
    unsigned index;                        /* which loop: 0 .. nloops - 1 */
    unsigned nloops;                       /* how many loops the server runs */
    const struct hsc_server_config_s *cfg; /* the server's configuration (include hsc/server.h) */
};

/** The request text: valid UTF-8, NUL-terminated, never empty. Valid until the answer ends. */
HSC_EXPORT const char *hsc_answer_text(const hsc_answer_t *a, size_t *len);
/** The loop the answer lives on: timers and handles of the responder go there. */
HSC_EXPORT uv_loop_t *hsc_answer_loop(const hsc_answer_t *a);
/** The request id hscd logs (also sent to the client as X-Request-Id). */
HSC_EXPORT uint64_t hsc_answer_id(const hsc_answer_t *a);
/**
 * The whole request of an answer asked through the OpenAI-compatible front (docs/openai.md): its
 * JSON, compact and ASCII-only (one line), so that a model wrapper can apply its own chat template;
 * NULL for /v1/stream. Valid until the answer ends.
 */
HSC_EXPORT const char *hsc_answer_request_json(const hsc_answer_t *a, size_t *len);
/** The most pieces the client wants (max_completion_tokens or max_tokens); 0: no limit given. */
HSC_EXPORT uint64_t hsc_answer_max_tokens(const hsc_answer_t *a);
/** Whether the client asked for Server-Sent Events (else chunked text). */
HSC_EXPORT bool hsc_answer_is_sse(const hsc_answer_t *a);
/** The responder's own pointer for this answer (NULL at first). */
HSC_EXPORT void *hsc_answer_data(const hsc_answer_t *a);
HSC_EXPORT void hsc_answer_set_data(hsc_answer_t *a, void *data);
/** The `responder_data` given in hsc_server_config_t. */
HSC_EXPORT void *hsc_answer_responder_data(const hsc_answer_t *a);
/** The responder's state for the answer's loop (what loop_start put in `l->data`), or NULL. */
HSC_EXPORT void *hsc_answer_loop_data(const hsc_answer_t *a);

/**
 * Sends one piece (borrows `p`). In the SSE form the start of a UTF-8 character cut at the end of
 * `p` is held back and sent with the next piece, so no event ends inside a character. Returns 0,
 * or HSC_ECLOSED / HSC_EFULL when the client is gone or too slow, HSC_ENOMEM when the piece could
 * not be encoded: the answer is over then (the client is disconnected); stop producing, and
 * cancel() follows.
 */
HSC_EXPORT int hsc_answer_write(hsc_answer_t *a, const void *p, size_t n);
/**
 * Whether the client keeps up. When false, stop producing until resume() is called: this is how a
 * slow client slows its responder instead of growing the server's memory.
 */
HSC_EXPORT bool hsc_answer_writable(hsc_answer_t *a);
/** Completes the answer. The answer is gone after the call. */
HSC_EXPORT void hsc_answer_end(hsc_answer_t *a);
/** Fails the answer with a one-line reason (shown to SSE clients). Gone after the call. */
HSC_EXPORT void hsc_answer_fail(hsc_answer_t *a, const char *reason);

#ifdef __cplusplus
}
#endif
#endif
