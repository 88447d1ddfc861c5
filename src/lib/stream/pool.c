/*
 * The pool responder (--pool N --exec CMD): N long-lived worker processes, started once (a model
 * loads once), each serving one request at a time through the framed protocol of
 * docs/responder-protocol.md on its stdin and stdout:
 *
 *     frame = TYPE " " LENGTH "\n" PAYLOAD          (LENGTH decimal bytes of payload)
 *     hscd -> worker: meta (key=value lines), request (the text), cancel
 *     worker -> hscd: piece (bytes of the answer), end, error (a one-line reason)
 *
 * Each process belongs to one worker thread's loop (hscd runs at most N threads in pool mode), so
 * nothing is shared across threads. Requests wait in a per-loop FIFO when every process is busy
 * (bounded by --queue split across threads; past it, 503). A process that exits or breaks the
 * protocol fails its current answer (the client is told) and is restarted with a backoff that
 * doubles while it keeps dying young. A client that goes away gets its request cancelled: the
 * process is sent a cancel frame and stays busy until it answers end or error, its late pieces
 * dropped. Backpressure is the exec responder's: stdout stops being read while the client lags.
 */
#include "stream/stream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX_FRAME   (1024 * 1024)
#define POOL_BACKOFF_MIN 100
#define POOL_BACKOFF_MAX 5000

enum { F_NONE, F_PIECE, F_END, F_ERROR };
enum { PT_NONE, PT_RESTART, PT_TIMEOUT, PT_GRACE, PT_DRAIN };

typedef struct pool_job_s {
    hsc_answer_t *a;
    struct pool_job_s *next;
} pool_job_t;

typedef struct pool_proc_s {
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_timer_t timer;
    int timer_mode;
    struct pool_s *pool;
    unsigned index;
    int handles; /* process and pipes still open (the timer lives as long as the pool) */
    bool alive, busy, cancelled, paused, in_open, killing;
    int pgid; /* the worker's process group (setsid): kills reach its children */
    hsc_answer_t *a;
    uint64_t req_id;
    uint64_t started_ms;
    unsigned backoff_ms;
    /* stdout frame parser */
    char head[64];
    size_t head_len;
    int ftype;
    size_t fneed;
    hsc_buf_t payload;
    hsc_lines_t err_lines;
} pool_proc_t;

typedef struct pool_s {
    hsc_responder_loop_t *l;
    pool_proc_t *procs;
    unsigned n;
    pool_job_t *head, *tail;
    unsigned queued, qlimit;
    bool stopping;
    char rbuf[65536]; /* stdout and stderr reads: each is handed on before the next */
} pool_t;

typedef struct pool_write_s {
    uv_write_t req;
    char head[48];
    char data[];
} pool_write_t;

static void proc_spawn(pool_proc_t *p);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_stdout(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void pool_dispatch(pool_t *pool);

static const hsc_server_config_t *cfg_of(pool_proc_t *p)
{
    return p->pool->l->cfg;
}

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a dead worker's EPIPE: its exit is handled by on_exit_cb */
    free(req);
}

static void send_frame(pool_proc_t *p, const char *type, const void *data, size_t len)
{
    if (!p->in_open)
        return;
    pool_write_t *w = malloc(sizeof *w + len);
    if (w == NULL)
        return;
    int hl = snprintf(w->head, sizeof w->head, "%s %zu\n", type, len);
    memcpy(w->data, data, len);
    uv_buf_t b[2] = {uv_buf_init(w->head, (unsigned)hl), uv_buf_init(w->data, (unsigned)len)};
    if (uv_write(&w->req, (uv_stream_t *)&p->in, b, len ? 2 : 1, on_written) != 0)
        free(w);
}

static void signal_group(pool_proc_t *p, int sig)
{
    hsc_child_signal(p->pgid, sig, p->alive);
}

static void on_timer(uv_timer_t *t);
static void on_proc_handle_closed(uv_handle_t *h);

/* Closes one of the process's four handles (once); the last one schedules the restart. */
static void close_h(pool_proc_t *p, uv_handle_t *h)
{
    (void)p;
    if (!uv_is_closing(h))
        uv_close(h, on_proc_handle_closed);
}

static void arm(pool_proc_t *p, int mode, uint64_t ms)
{
    p->timer_mode = mode;
    uv_timer_start(&p->timer, on_timer, ms, 0);
}

static void proc_kill(pool_proc_t *p)
{
    p->killing = true;
    signal_group(p, SIGTERM);
    arm(p, PT_GRACE, cfg_of(p)->kill_grace_ms);
}

/* The current request is over (ended, failed, or cancelled and acknowledged). */
static void job_done(pool_proc_t *p)
{
    p->busy = false;
    p->a = NULL;
    p->cancelled = false;
    if (p->timer_mode == PT_TIMEOUT)
        uv_timer_stop(&p->timer), p->timer_mode = PT_NONE;
    if (p->paused && p->alive) {
        p->paused = false;
        uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
    }
    if (p->pool->stopping && p->in_open) {
        close_h(p, (uv_handle_t *)&p->in); /* EOF: the worker may exit */
        p->in_open = false;
    }
    pool_dispatch(p->pool);
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
    HSC_LOG(HSC_LOG_ERROR, "pool worker %u (pid %d): protocol error: %s; restarting it", p->index,
            p->proc.pid, what);
    fail_current(p, "the pool worker broke the responder protocol");
    p->busy = true; /* reserved until it has been replaced: no request may go to it */
    uv_read_stop((uv_stream_t *)&p->out);
    proc_kill(p);
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
        if (p->a == NULL || len == 0)
            break;
        hsc_answer_write(p->a, data, len);
        if (p->a != NULL && !hsc_answer_writable(p->a) && !p->paused) {
            uv_read_stop((uv_stream_t *)&p->out);
            p->paused = true;
        }
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

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    pool_proc_t *p = h->data;
    *buf = uv_buf_init(p->pool->rbuf, sizeof p->pool->rbuf);
}

static void on_stdout(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    pool_proc_t *p = s->data;
    if (n < 0) {
        uv_read_stop(s);
        return; /* the exit callback handles the rest */
    }
    const char *d = buf->base;
    size_t left = (size_t)n;
    while (left > 0 && p->alive) {
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
        if (take > 0 && hsc_buf_append(&p->payload, d, take) != 0) {
            protocol_error(p, "frame too large");
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

static void on_stderr(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    pool_proc_t *p = s->data;
    if (n < 0) {
        uv_read_stop(s);
        return;
    }
    char prefix[32];
    if (p->busy)
        snprintf(prefix, sizeof prefix, "req %llu", (unsigned long long)p->req_id);
    else
        snprintf(prefix, sizeof prefix, "pool worker %u", p->index);
    hsc_lines_feed(&p->err_lines, prefix, buf->base, (size_t)n);
}

static void on_proc_handle_closed(uv_handle_t *h)
{
    pool_proc_t *p = h->data;
    if (--p->handles > 0 || p->timer_mode == PT_GRACE)
        return;
    if (p->pool->stopping) {
        uv_timer_stop(&p->timer);
        if (!uv_is_closing((uv_handle_t *)&p->timer))
            uv_close((uv_handle_t *)&p->timer, NULL);
        return;
    }
    arm(p, PT_RESTART, p->backoff_ms);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    pool_proc_t *p = proc->data;
    p->alive = false;
    uint64_t lived = uv_now(proc->loop) - p->started_ms;
    p->backoff_ms =
        lived < 5000 ? (p->backoff_ms ? p->backoff_ms * 2 : POOL_BACKOFF_MIN) : POOL_BACKOFF_MIN;
    if (p->backoff_ms > POOL_BACKOFF_MAX)
        p->backoff_ms = POOL_BACKOFF_MAX;
    if (!p->pool->stopping)
        HSC_LOG(HSC_LOG_WARN,
                "pool worker %u (pid %d) exited (status %lld, signal %d); restart in "
                "%u ms",
                p->index, proc->pid, (long long)status, sig, p->backoff_ms);
    if (p->busy) {
        char reason[128];
        snprintf(reason, sizeof reason, "the pool worker crashed (%s %d)",
                 sig ? "signal" : "exit status", sig ? sig : (int)status);
        fail_current(p, reason);
        p->busy = false;
    }
    /* A pending kill grace keeps running: the shell may be gone while its child (the real
     * worker) ignores SIGTERM; the group gets its SIGKILL on time, and the restart waits. */
    if (p->timer_mode == PT_TIMEOUT || p->timer_mode == PT_DRAIN)
        uv_timer_stop(&p->timer), p->timer_mode = PT_NONE;
    p->in_open = false;
    close_h(p, (uv_handle_t *)&p->proc);
    close_h(p, (uv_handle_t *)&p->in);
    close_h(p, (uv_handle_t *)&p->out);
    close_h(p, (uv_handle_t *)&p->err);
    if (!p->pool->stopping)
        pool_dispatch(p->pool);
}

static void on_timer(uv_timer_t *t)
{
    pool_proc_t *p = t->data;
    int mode = p->timer_mode;
    p->timer_mode = PT_NONE;
    switch (mode) {
    case PT_RESTART:
        proc_spawn(p);
        pool_dispatch(p->pool);
        break;
    case PT_TIMEOUT: {
        char reason[96];
        snprintf(reason, sizeof reason, "the responder timed out after %llu ms",
                 (unsigned long long)cfg_of(p)->responder_timeout_ms);
        fail_current(p, reason);
        proc_kill(p);
        break;
    }
    case PT_DRAIN:
        proc_kill(p);
        break;
    case PT_GRACE:
        signal_group(p, SIGKILL);
        p->killing = false;
        if (!p->alive && p->handles == 0) {
            p->pgid = 0;
            if (p->pool->stopping)
                uv_close((uv_handle_t *)&p->timer, NULL);
            else
                arm(p, PT_RESTART, p->backoff_ms);
        }
        break;
    default:
        break;
    }
}

static void proc_spawn(pool_proc_t *p)
{
    uv_loop_t *loop = p->pool->l->loop;
    p->handles = 4; /* the process and its pipes, initialised whatever the spawn's result */
    p->head_len = 0;
    p->ftype = F_NONE;
    p->err_lines.len = 0;
    p->paused = false;
    p->started_ms = uv_now(loop);
    int rc = hsc_child_spawn(loop, &p->proc, &p->in, &p->out, &p->err, cfg_of(p)->exec, NULL,
                             on_exit_cb);
    p->in.data = p->out.data = p->err.data = p->proc.data = p;
    if (rc != 0) {
        HSC_LOG(HSC_LOG_ERROR, "pool worker %u: cannot start: %s", p->index, uv_strerror(rc));
        p->backoff_ms = POOL_BACKOFF_MAX;
        close_h(p, (uv_handle_t *)&p->proc);
        close_h(p, (uv_handle_t *)&p->in);
        close_h(p, (uv_handle_t *)&p->out);
        close_h(p, (uv_handle_t *)&p->err);
        return;
    }
    p->alive = true;
    p->in_open = true;
    p->pgid = p->proc.pid;
    HSC_LOG(HSC_LOG_INFO, "pool worker %u: pid %d started", p->index, p->proc.pid);
    uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
    uv_read_start((uv_stream_t *)&p->err, on_alloc, on_stderr);
}

/* Hands waiting requests to idle processes. */
static void pool_dispatch(pool_t *pool)
{
    for (unsigned i = 0; i < pool->n && pool->head != NULL && !pool->stopping; i++) {
        pool_proc_t *p = &pool->procs[i];
        if (!p->alive || p->busy)
            continue;
        pool_job_t *job = pool->head;
        pool->head = job->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        pool->queued--;
        hsc_answer_t *a = job->a;
        free(job);
        p->busy = true;
        p->a = a;
        p->req_id = a->req->id;
        a->state = p;
        char meta[1024];
        const hsc_req_t *r = a->req;
        int m = snprintf(meta, sizeof meta,
                         "request_id=%llu\nmethod=%s\npath=%.*s\nquery=%.*s\nremote_addr=%s\n"
                         "content_type=%s\n",
                         (unsigned long long)r->id, r->method_name, (int)r->path_len, r->path,
                         (int)(r->query_len > 512 ? 512 : r->query_len), r->query ? r->query : "",
                         hsc_req_peer(r), a->sse ? "text/event-stream" : "text/plain");
        send_frame(p, "meta", meta, m > 0 && (size_t)m < sizeof meta ? (size_t)m : 0);
        send_frame(p, "request", a->text, a->text_len);
        if (cfg_of(p)->responder_timeout_ms > 0)
            arm(p, PT_TIMEOUT, cfg_of(p)->responder_timeout_ms);
        HSC_LOG(HSC_LOG_INFO, "req %llu: to pool worker %u (pid %d)", (unsigned long long)p->req_id,
                p->index, p->proc.pid);
    }
}

static pool_t *pool_of(hsc_answer_t *a)
{
    return hsc_answer_loop_data(a);
}

static int pool_admit(hsc_answer_t *a)
{
    pool_t *pool = pool_of(a);
    for (unsigned i = 0; i < pool->n; i++)
        if (pool->procs[i].alive && !pool->procs[i].busy)
            return 0;
    return pool->queued < pool->qlimit ? 0 : HSC_EFULL;
}

static int pool_start(hsc_answer_t *a)
{
    pool_t *pool = pool_of(a);
    pool_job_t *job = calloc(1, sizeof *job);
    if (job == NULL)
        return HSC_ENOMEM;
    job->a = a;
    a->state = NULL;
    if (pool->tail)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    pool->queued++;
    pool_dispatch(pool);
    return 0;
}

static void pool_resume(hsc_answer_t *a)
{
    pool_proc_t *p = a->state;
    if (p != NULL && p->paused && p->alive) {
        p->paused = false;
        uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
    }
}

static void pool_cancel(hsc_answer_t *a)
{
    pool_proc_t *p = a->state;
    if (p == NULL) {
        pool_t *pool = pool_of(a);
        pool_job_t **pp = &pool->head, *prev = NULL;
        while (*pp != NULL && (*pp)->a != a) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp != NULL) {
            pool_job_t *job = *pp;
            *pp = job->next;
            if (pool->tail == job)
                pool->tail = prev;
            pool->queued--;
            free(job);
        }
        return;
    }
    HSC_LOG(HSC_LOG_INFO, "req %llu: client gone, cancelling on pool worker %u",
            (unsigned long long)p->req_id, p->index);
    p->a = NULL;
    p->cancelled = true;
    if (p->paused && p->alive) {
        p->paused = false;
        uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
    }
    send_frame(p, "cancel", "", 0);
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
    pool_proc_t *procs = calloc(n ? n : 1, sizeof *procs);
    if (pool == NULL || procs == NULL) {
        free(pool);
        free(procs);
        return HSC_ENOMEM;
    }
    pool->l = l;
    pool->procs = procs;
    pool->n = n;
    pool->qlimit = (cfg->queue + l->nloops - 1) / l->nloops;
    l->data = pool;
    for (unsigned i = 0; i < n; i++) {
        pool_proc_t *p = &procs[i];
        p->pool = pool;
        p->index = l->index + i * l->nloops;
        hsc_buf_init(&p->payload, POOL_MAX_FRAME);
        uv_timer_init(l->loop, &p->timer);
        p->timer.data = p;
        proc_spawn(p);
    }
    return 0;
}

/* Shutdown: idle workers get EOF at once, busy ones after their answer; --drain-timeout, then
 * SIGTERM and SIGKILL after --kill-grace. */
static void pool_loop_drain(hsc_responder_loop_t *l)
{
    pool_t *pool = l->data;
    if (pool->stopping)
        return;
    pool->stopping = true;
    for (unsigned i = 0; i < pool->n; i++) {
        pool_proc_t *p = &pool->procs[i];
        if (p->alive) {
            if (!p->busy && p->in_open) {
                close_h(p, (uv_handle_t *)&p->in);
                p->in_open = false;
            }
            arm(p, PT_DRAIN, l->cfg->drain_timeout_ms);
        } else if (p->handles == 0 && !uv_is_closing((uv_handle_t *)&p->timer)) {
            uv_timer_stop(&p->timer);
            uv_close((uv_handle_t *)&p->timer, NULL);
        }
    }
}

static void pool_loop_free(hsc_responder_loop_t *l)
{
    pool_t *pool = l->data;
    for (unsigned i = 0; i < pool->n; i++)
        hsc_buf_dispose(&pool->procs[i].payload);
    free(pool->procs);
    free(pool);
}

const hsc_responder_t hsc_pool_responder = {
    .name = "pool",
    .start = pool_start,
    .resume = pool_resume,
    .cancel = pool_cancel,
    .admit = pool_admit,
    .loop_start = pool_loop_start,
    .loop_drain = pool_loop_drain,
    .loop_free = pool_loop_free,
};
