/*
 * The pool responder (--pool N --exec CMD): N long-lived worker processes, started once (a model
 * loads once), each serving one request at a time through the framed protocol of
 * docs/responder-protocol.md on its stdin and stdout:
 *
 *     frame = TYPE " " LENGTH "\n" PAYLOAD          (LENGTH decimal bytes of payload)
 *     hscd -> worker: meta (key=value lines), request (the text), cancel
 *     worker -> hscd: piece (bytes of the answer), end, error (a one-line reason)
 *
 * Each process belongs to one loop (hscd runs at most N loops in pool mode), so nothing is shared
 * across threads; proc.c runs them. Requests wait in a per-loop FIFO when every process is busy
 * (bounded by --queue split across loops; past it, 503). A process that exits or breaks the
 * protocol fails its current answer (the client is told) and is restarted with a backoff that
 * doubles while it keeps dying young. A client that goes away gets its request cancelled: the
 * process is sent a cancel frame and stays busy until it answers end or error, its late pieces
 * dropped. Backpressure is the exec responder's: stdout stops being read while the client lags.
 *
 * A request that cannot be handed over (its frames cannot be allocated or written, or its text is
 * over the protocol's frame limit) fails its answer at once; the process stays idle for the next.
 */
#include "stream/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX_FRAME   (1024 * 1024)
#define POOL_BACKOFF_MIN 100
#define POOL_BACKOFF_MAX 5000

enum { F_NONE, F_PIECE, F_END, F_ERROR };
enum { PT_NONE, PT_RESTART, PT_TIMEOUT, PT_DRAIN };

typedef struct pool_s pool_t;

typedef struct pool_proc_s {
    hsc_proc_t proc; /* first: the process's callbacks find the rest; proc.worker is its number */
    pool_t *pool;
    int timer_mode; /* what the process's timer means when it is ours */
    bool busy, cancelled;
    hsc_answer_t *a; /* NULL when idle, cancelled or failed */
    uint64_t started_ms;
    unsigned backoff_ms;
    /* stdout frame parser */
    char head[64];
    size_t head_len;
    int ftype;
    size_t fneed;
    hsc_buf_t payload;
} pool_proc_t;

struct pool_s {
    hsc_procs_t procs;
    pool_proc_t *ps;
    unsigned n;
    hsc_waitq_t queue;
    bool stopping;
    hsc_stream_stats_t *st; /* the loop's counters (restarts) */
};

static void dispatch(pool_t *pool);

static const hsc_server_config_t *cfg_of(pool_proc_t *p)
{
    return p->pool->procs.cfg;
}

static void arm(pool_proc_t *p, int mode, uint64_t ms)
{
    if (p->proc.grace)
        return; /* a kill runs: `closed` comes after it */
    p->timer_mode = mode;
    hsc_proc_arm(&p->proc, ms);
}

static void disarm(pool_proc_t *p, int mode)
{
    if (p->timer_mode == mode) {
        hsc_proc_disarm(&p->proc);
        p->timer_mode = PT_NONE;
    }
}

/* The current request is over (ended, failed, or cancelled and acknowledged). */
static void job_done(pool_proc_t *p)
{
    p->busy = false;
    p->a = NULL;
    p->cancelled = false;
    p->proc.req_id = 0;
    disarm(p, PT_TIMEOUT);
    hsc_proc_resume(&p->proc);
    if (p->pool->stopping && p->proc.stdin_open)
        hsc_proc_close_stdin(&p->proc); /* EOF: the worker may exit */
    dispatch(p->pool);
}

static void fail_current(pool_proc_t *p, const char *reason)
{
    hsc_answer_t *a = p->a;
    if (a != NULL) {
        p->a = NULL;
        hsc_answer_fail(a, reason);
    }
}

static void protocol_error(pool_proc_t *p, const char *what)
{
    HSC_LOG(HSC_LOG_ERROR, "pool worker %d (pid %d): protocol error: %s; restarting it",
            p->proc.worker, p->proc.proc.pid, what);
    fail_current(p, "the pool worker broke the responder protocol");
    p->busy = true; /* reserved until it has been replaced: no request may go to it */
    hsc_proc_stop_output(&p->proc);
    hsc_proc_kill(&p->proc);
}

/* One complete frame from the worker. */
static void on_frame(pool_proc_t *p)
{
    const char *data = p->payload.data ? p->payload.data : "";
    size_t len = p->payload.len;
    if (!p->busy) {
        protocol_error(p, "a frame while no request is running");
        return;
    }
    switch (p->ftype) {
    case F_PIECE:
        if (p->a != NULL && len > 0)
            hsc_proc_forward(&p->proc, p->a, data, len); /* an error: cancel() follows */
        break;
    case F_END:
        if (p->a != NULL) {
            hsc_answer_t *a = p->a;
            p->a = NULL;
            hsc_answer_end(a);
        }
        job_done(p);
        break;
    case F_ERROR: {
        char reason[200];
        size_t n = len < 120 ? len : 120;
        size_t o = (size_t)snprintf(reason, sizeof reason, "the responder failed: ");
        for (size_t i = 0; i < n; i++)
            reason[o++] = (data[i] == '\r' || data[i] == '\n') ? ' ' : data[i];
        reason[o] = '\0';
        fail_current(p, reason);
        job_done(p);
        break;
    }
    }
}

static int parse_head(pool_proc_t *p)
{
    p->head[p->head_len] = '\0';
    char type[16];
    unsigned long long len;
    char extra;
    if (sscanf(p->head, "%15s %llu%c", type, &len, &extra) != 2)
        return -1;
    if (strcmp(type, "piece") == 0)
        p->ftype = F_PIECE;
    else if (strcmp(type, "end") == 0)
        p->ftype = F_END;
    else if (strcmp(type, "error") == 0)
        p->ftype = F_ERROR;
    else
        return -1;
    if (len > POOL_MAX_FRAME)
        return -1;
    p->fneed = (size_t)len;
    p->payload.len = 0;
    return 0;
}

/* Bytes from the worker's stdout: frames, cut anywhere. */
static void on_output(hsc_proc_t *proc, const char *d, size_t left)
{
    pool_proc_t *p = (pool_proc_t *)proc;
    while (left > 0 && proc->alive && !proc->out_stopped) {
        if (p->ftype == F_NONE) {
            const char *nl = memchr(d, '\n', left);
            size_t take = nl ? (size_t)(nl - d) : left;
            if (p->head_len + take >= sizeof p->head) {
                protocol_error(p, "frame header too long");
                return;
            }
            memcpy(p->head + p->head_len, d, take);
            p->head_len += take;
            d += take + (nl ? 1 : 0);
            left -= take + (nl ? 1 : 0);
            if (nl == NULL)
                break;
            if (parse_head(p) != 0) {
                protocol_error(p, "bad frame header");
                return;
            }
            p->head_len = 0;
        }
        size_t take = left < p->fneed ? left : p->fneed;
        int rc = take > 0 ? hsc_buf_append(&p->payload, d, take) : 0;
        if (rc != 0) {
            protocol_error(p, rc == HSC_ETOOBIG ? "frame too large" : "out of memory for a frame");
            return;
        }
        d += take;
        left -= take;
        p->fneed -= take;
        if (p->fneed == 0) {
            on_frame(p);
            p->ftype = F_NONE;
        }
    }
}

static void on_exited(hsc_proc_t *proc)
{
    pool_proc_t *p = (pool_proc_t *)proc;
    pool_t *pool = p->pool;
    uint64_t lived = uv_now(pool->procs.loop) - p->started_ms;
    p->backoff_ms =
        lived < 5000 ? (p->backoff_ms ? p->backoff_ms * 2 : POOL_BACKOFF_MIN) : POOL_BACKOFF_MIN;
    if (p->backoff_ms > POOL_BACKOFF_MAX)
        p->backoff_ms = POOL_BACKOFF_MAX;
    if (!pool->stopping)
        HSC_LOG(HSC_LOG_WARN,
                "pool worker %d (pid %d) exited (status %lld, signal %d); restart in %u ms",
                proc->worker, proc->proc.pid, (long long)proc->status, proc->signal, p->backoff_ms);
    if (p->busy) {
        char reason[128];
        snprintf(reason, sizeof reason, "the pool worker crashed (%s %d)",
                 proc->signal ? "signal" : "exit status",
                 proc->signal ? proc->signal : (int)proc->status);
        fail_current(p, reason);
        p->busy = false;
    }
    /* A running kill grace goes on: the shell may be gone while its child (the real worker)
     * ignores SIGTERM; the group gets its SIGKILL on time, and `closed` (the restart) waits. */
    disarm(p, PT_TIMEOUT);
    disarm(p, PT_DRAIN);
    hsc_proc_close(proc);
    proc->req_id = 0;
}

static void spawn(pool_proc_t *p)
{
    p->head_len = 0;
    p->ftype = F_NONE;
    p->started_ms = uv_now(p->pool->procs.loop);
    if (hsc_proc_spawn(&p->proc, NULL) != 0)
        p->backoff_ms = POOL_BACKOFF_MAX; /* closed: `closed` arms the restart */
}

static void on_closed(hsc_proc_t *proc)
{
    pool_proc_t *p = (pool_proc_t *)proc;
    if (p->pool->stopping)
        hsc_proc_dispose(proc, NULL);
    else
        arm(p, PT_RESTART, p->backoff_ms);
}

static void on_timer(hsc_proc_t *proc)
{
    pool_proc_t *p = (pool_proc_t *)proc;
    int mode = p->timer_mode;
    p->timer_mode = PT_NONE;
    switch (mode) {
    case PT_RESTART:
        HSC_STAT_ADD(p->pool->st->restarts, 1);
        spawn(p);
        dispatch(p->pool);
        break;
    case PT_TIMEOUT: {
        char reason[96];
        snprintf(reason, sizeof reason, "the responder timed out after %llu ms",
                 (unsigned long long)cfg_of(p)->responder_timeout_ms);
        fail_current(p, reason);
        hsc_proc_kill(proc);
        break;
    }
    case PT_DRAIN:
        hsc_proc_kill(proc);
        break;
    default:
        break;
    }
}

static const hsc_proc_ops_t pool_ops = {
    .output = on_output,
    .exited = on_exited,
    .timer = on_timer,
    .closed = on_closed,
};

/* The meta and request frames, in one write: a worker never sees one without the other. */
static int send_request(pool_proc_t *p, hsc_answer_t *a)
{
    if (a->text_len > POOL_MAX_FRAME)
        return HSC_ETOOBIG;
    size_t meta_len;
    char *meta = hsc_proc_meta(a, &meta_len);
    if (meta == NULL)
        return HSC_ENOMEM;
    if (meta_len > POOL_MAX_FRAME) { /* the OpenAI front's request JSON makes it large */
        free(meta);
        return HSC_ETOOBIG;
    }
    char h1[32], h2[32];
    int n1 = snprintf(h1, sizeof h1, "meta %zu\n", meta_len);
    int n2 = snprintf(h2, sizeof h2, "request %zu\n", a->text_len);
    uv_buf_t b[4] = {uv_buf_init(h1, (unsigned)n1), uv_buf_init(meta, (unsigned)meta_len),
                     uv_buf_init(h2, (unsigned)n2), uv_buf_init(a->text, (unsigned)a->text_len)};
    int rc = hsc_proc_send(&p->proc, b, 4, false);
    free(meta);
    return rc;
}

static void hand_over(pool_proc_t *p, hsc_answer_t *a)
{
    int rc = send_request(p, a);
    if (rc != 0) {
        char reason[160];
        if (rc == HSC_ETOOBIG)
            snprintf(reason, sizeof reason,
                     "the request %s is larger than the pool protocol's %d-byte frame limit",
                     a->text_len > POOL_MAX_FRAME ? "text" : "JSON", POOL_MAX_FRAME);
        else
            snprintf(reason, sizeof reason, "the request could not be sent to pool worker %d: %s",
                     p->proc.worker, hsc_strerror(rc));
        hsc_answer_fail(a, reason);
        return;
    }
    p->busy = true;
    p->a = a;
    p->proc.req_id = a->req->id;
    a->state = p;
    if (cfg_of(p)->responder_timeout_ms > 0)
        arm(p, PT_TIMEOUT, cfg_of(p)->responder_timeout_ms);
    HSC_LOG(HSC_LOG_INFO, "req %llu: to pool worker %d (pid %d)", (unsigned long long)a->req->id,
            p->proc.worker, p->proc.proc.pid);
}

static pool_proc_t *idle_proc(pool_t *pool)
{
    for (unsigned i = 0; i < pool->n; i++)
        if (pool->ps[i].proc.alive && !pool->ps[i].busy)
            return &pool->ps[i];
    return NULL;
}

/* Hands waiting requests to idle processes, oldest first. */
static void dispatch(pool_t *pool)
{
    pool_proc_t *p;
    hsc_answer_t *a;
    while (!pool->stopping && (p = idle_proc(pool)) != NULL &&
           (a = hsc_waitq_pop(&pool->queue)) != NULL)
        hand_over(p, a);
}

static int pool_admit(hsc_answer_t *a)
{
    pool_t *pool = hsc_answer_loop_data(a);
    return idle_proc(pool) != NULL || !hsc_waitq_full(&pool->queue) ? 0 : HSC_EFULL;
}

static int pool_start(hsc_answer_t *a)
{
    pool_t *pool = hsc_answer_loop_data(a);
    a->state = NULL;
    hsc_waitq_push(&pool->queue, a);
    dispatch(pool);
    return 0;
}

static void pool_cancel(hsc_answer_t *a)
{
    pool_t *pool = hsc_answer_loop_data(a);
    pool_proc_t *p = a->state;
    if (p == NULL) {
        hsc_waitq_remove(&pool->queue, a); /* never reached a worker */
        return;
    }
    HSC_LOG(HSC_LOG_INFO, "req %llu: client gone, cancelling on pool worker %d",
            (unsigned long long)p->proc.req_id, p->proc.worker);
    p->a = NULL;
    p->cancelled = true;
    hsc_proc_resume(&p->proc);
    static const char cancel[] = "cancel 0\n";
    uv_buf_t b = uv_buf_init((char *)cancel, sizeof cancel - 1);
    int rc = hsc_proc_send(&p->proc, &b, 1, false);
    if (rc != 0) {
        /* It would work on for nobody until its end or --responder-timeout: replace it. */
        HSC_LOG(HSC_LOG_WARN, "pool worker %d: cannot send cancel (%s); restarting it",
                p->proc.worker, hsc_strerror(rc));
        hsc_proc_kill(&p->proc);
    }
}

/*
 * The loop's share of the --pool processes (spread evenly over the loops; each process has a
 * number unique across loops) and of --queue; they start at once, before any request.
 */
static int pool_loop_start(hsc_responder_loop_t *l)
{
    const hsc_server_config_t *cfg = l->cfg;
    unsigned n = cfg->pool / l->nloops + (l->index < cfg->pool % l->nloops);
    pool_t *pool = calloc(1, sizeof *pool);
    pool_proc_t *ps = calloc(n ? n : 1, sizeof *ps);
    if (pool == NULL || ps == NULL) {
        free(pool);
        free(ps);
        return HSC_ENOMEM;
    }
    pool->procs.loop = l->loop;
    pool->procs.cfg = cfg;
    pool->ps = ps;
    pool->n = n;
    hsc_waitq_init(&pool->queue, (cfg->queue + l->nloops - 1) / l->nloops);
    pool->st = &hsc_stream_ctx_of(l)->st;
    l->data = pool;
    for (unsigned i = 0; i < n; i++) {
        pool_proc_t *p = &ps[i];
        p->pool = pool;
        hsc_proc_init(&p->proc, &pool->procs, &pool_ops);
        p->proc.worker = (int)(l->index + i * l->nloops);
        hsc_buf_init(&p->payload, POOL_MAX_FRAME);
        spawn(p);
    }
    return 0;
}

/* Shutdown: idle workers get EOF at once, busy ones after their answer; --drain-timeout, then
 * SIGTERM and SIGKILL after --kill-grace. */
static void pool_loop_drain(hsc_responder_loop_t *l)
{
    pool_t *pool = l->data;
    pool->stopping = true;
    for (unsigned i = 0; i < pool->n; i++) {
        pool_proc_t *p = &pool->ps[i];
        if (p->proc.alive) {
            if (!p->busy && p->proc.stdin_open)
                hsc_proc_close_stdin(&p->proc);
            arm(p, PT_DRAIN, l->cfg->drain_timeout_ms);
        } else if (!p->proc.closing) {
            hsc_proc_dispose(&p->proc, NULL); /* waiting to restart */
        } /* else closing (or a kill's grace runs): `closed` disposes of it */
    }
}

static void pool_loop_free(hsc_responder_loop_t *l)
{
    pool_t *pool = l->data;
    for (unsigned i = 0; i < pool->n; i++)
        hsc_buf_dispose(&pool->ps[i].payload);
    free(pool->ps);
    free(pool);
}

const hsc_responder_t hsc_pool_responder = {
    .name = "pool",
    .start = pool_start,
    .resume = hsc_proc_answer_resume,
    .cancel = pool_cancel,
    .admit = pool_admit,
    .loop_start = pool_loop_start,
    .loop_drain = pool_loop_drain,
    .loop_free = pool_loop_free,
};
