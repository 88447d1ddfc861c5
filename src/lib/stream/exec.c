/*
 * The exec responder (--exec CMD): one process per request, any language.
 *
 * The process is `/bin/sh -c CMD`, started in a session of its own (so that a kill reaches the
 * whole process group, grandchildren included). It gets the request text on stdin, then EOF, and
 * request metadata in its environment (docs/responders.md). Every byte it writes to stdout is
 * forwarded to the client as it arrives; its stderr goes to hscd's log line by line, prefixed with
 * the request id. Exit status 0 completes the answer; any other status, a signal, or
 * --responder-timeout fails it.
 *
 * Backpressure: when the client's queue is above its high mark the stdout pipe stops being read
 * (the process then blocks in write()), and reading resumes on the answer's resume callback. So a
 * process that floods cannot grow hscd's memory past the connection's queue bound.
 *
 * Cancellation: when the client goes away, the process group gets SIGTERM, then SIGKILL after
 * --kill-grace. The process state outlives the answer until the process has been reaped and every
 * pipe is closed; then its slot is released and the next queued request starts.
 *
 * Admission: each worker runs at most ceil(--max-processes / threads) processes; further requests
 * wait in a FIFO of ceil(--queue / threads) (their SSE streams get keep-alive comments
 * meanwhile); past that, 503 with Retry-After.
 */
#include "stream/stream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* One loop's share: at most `limit` processes, then a FIFO of `qlimit` waiting requests. */
typedef struct exec_loop_s {
    hsc_responder_loop_t *l;
    unsigned running, limit;
    unsigned queued, qlimit;
    struct exec_proc_s *head, *tail;
    bool draining;
    char rbuf[65536]; /* stdout and stderr reads: each is handed on before the next */
} exec_loop_t;

typedef struct exec_proc_s {
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_timer_t timer; /* --responder-timeout, then the SIGKILL grace */
    uv_write_t wreq;
    hsc_answer_t *a; /* NULL once the answer has ended or the client has gone */
    exec_loop_t *el;
    struct exec_proc_s *next; /* in the worker's queue */
    uint64_t id;
    char *text; /* own copy: stdin may still be written after the answer is gone */
    size_t text_len;
    int handles; /* open handles; freed at 0 */
    int pgid;    /* the process group: valid until the answer is finished */
    bool spawned, exited, out_eof, err_eof, paused, killed, finished;
    int64_t status;
    int signal;
    char reason[160]; /* set when the answer must fail whatever the exit status */
    hsc_lines_t err_lines;
} exec_proc_t;

static void exec_spawn_next(exec_loop_t *el);

static void proc_free_if_closed(exec_proc_t *p)
{
    if (p->handles > 0)
        return;
    exec_loop_t *el = p->el;
    if (p->spawned)
        el->running--;
    free(p->text);
    free(p);
    exec_spawn_next(el);
}

static void on_closed(uv_handle_t *h)
{
    exec_proc_t *p = h->data;
    p->handles--;
    proc_free_if_closed(p);
}

static void close_handle(uv_handle_t *h)
{
    if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h))
        uv_close(h, on_closed);
}

/*
 * Sends `sig` to the process group: the shell and whatever it started. The group outlives the
 * shell when a child keeps running (and usually keeps stdout open), so this works after the
 * shell's exit too, until the answer is finished.
 */
static void signal_group(exec_proc_t *p, int sig)
{
    if (!p->finished)
        hsc_child_signal(p->pgid, sig, !p->exited);
}

static void on_kill_grace(uv_timer_t *t)
{
    exec_proc_t *p = t->data;
    signal_group(p, SIGKILL);
}

static void proc_kill(exec_proc_t *p)
{
    if (p->killed || p->finished)
        return;
    p->killed = true;
    signal_group(p, SIGTERM);
    uv_timer_start(&p->timer, on_kill_grace, p->el->l->cfg->kill_grace_ms, 0);
}

/* The process is reaped and its stdout drained: end the answer, close everything. */
static void proc_maybe_finish(exec_proc_t *p)
{
    if (!p->exited || !p->out_eof || !p->err_eof || p->finished)
        return;
    p->finished = true;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "req %llu", (unsigned long long)p->id);
    hsc_lines_flush(&p->err_lines, prefix);
    hsc_answer_t *a = p->a;
    p->a = NULL;
    if (a != NULL) {
        if (p->reason[0] == '\0' && p->signal != 0)
            snprintf(p->reason, sizeof p->reason, "the responder was killed by signal %d",
                     p->signal);
        else if (p->reason[0] == '\0' && p->status != 0)
            snprintf(p->reason, sizeof p->reason, "the responder exited with status %lld",
                     (long long)p->status);
        if (p->reason[0] != '\0')
            hsc_answer_fail(a, p->reason);
        else
            hsc_answer_end(a);
    }
    uv_timer_stop(&p->timer);
    close_handle((uv_handle_t *)&p->timer);
    close_handle((uv_handle_t *)&p->proc);
    close_handle((uv_handle_t *)&p->in);
    close_handle((uv_handle_t *)&p->out);
    close_handle((uv_handle_t *)&p->err);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    exec_proc_t *p = proc->data;
    p->exited = true;
    p->status = status;
    p->signal = sig;
    /* The timeout (or kill grace) keeps running: children may still hold stdout open. */
    HSC_LOG(HSC_LOG_INFO, "req %llu: responder pid %d exited, status %lld, signal %d",
            (unsigned long long)p->id, proc->pid, (long long)status, sig);
    proc_maybe_finish(p);
}

static void on_timeout(uv_timer_t *t)
{
    exec_proc_t *p = t->data;
    snprintf(p->reason, sizeof p->reason, "the responder timed out after %llu ms",
             (unsigned long long)p->el->l->cfg->responder_timeout_ms);
    proc_kill(p);
}

/* Reads go into the loop's read buffer: each is handed on before the next. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    exec_proc_t *p = h->data;
    *buf = uv_buf_init(p->el->rbuf, sizeof p->el->rbuf);
}

static void on_stdout(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    exec_proc_t *p = s->data;
    if (n < 0) {
        uv_read_stop(s);
        p->out_eof = true;
        proc_maybe_finish(p);
        return;
    }
    if (n == 0 || p->a == NULL)
        return; /* cancelled: drain and drop until the process is gone */
    if (hsc_answer_write(p->a, buf->base, (size_t)n) != 0)
        return; /* the client is going: cancel() follows */
    if (!hsc_answer_writable(p->a)) {
        uv_read_stop(s);
        p->paused = true;
    }
}

static void on_stderr(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    exec_proc_t *p = s->data;
    if (n < 0) {
        uv_read_stop(s);
        p->err_eof = true;
        proc_maybe_finish(p);
        return;
    }
    char prefix[32];
    snprintf(prefix, sizeof prefix, "req %llu", (unsigned long long)p->id);
    hsc_lines_feed(&p->err_lines, prefix, buf->base, (size_t)n);
}

static void on_stdin_written(uv_write_t *req, int status)
{
    exec_proc_t *p = req->data;
    (void)status; /* EPIPE: the process did not read its input; its exit status tells the rest */
    close_handle((uv_handle_t *)&p->in);
}

/* The process environment: hscd's own plus the request's metadata (docs/responders.md). */
static char **build_env(exec_proc_t *p, hsc_answer_t *a, char *store, size_t cap)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + 12, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "HSC_", 4) != 0)
            env[k++] = environ[i];
    const hsc_req_t *r = a->req;
    const char *peer = hsc_req_peer(r);
    const char *colon = strrchr(peer, ':');
    size_t off = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int m = snprintf(store + off, cap - off, __VA_ARGS__);                                     \
        if (m < 0 || (size_t)m >= cap - off)                                                       \
            break;                                                                                 \
        env[k++] = store + off;                                                                    \
        off += (size_t)m + 1;                                                                      \
    } while (0)
    PUT("HSC_REQUEST_ID=%llu", (unsigned long long)p->id);
    PUT("REQUEST_METHOD=%s", r->method_name);
    PUT("PATH_INFO=%.*s", (int)r->path_len, r->path);
    PUT("QUERY_STRING=%.*s", (int)r->query_len, r->query ? r->query : "");
    PUT("REMOTE_ADDR=%.*s", colon ? (int)(colon - peer) : 0, peer);
    PUT("REMOTE_PORT=%s", colon ? colon + 1 : "");
    PUT("CONTENT_LENGTH=%zu", p->text_len);
    PUT("HSC_CONTENT_TYPE=%s", a->sse ? "text/event-stream" : "text/plain");
    PUT("SERVER_SOFTWARE=hsc/%s", HSC_VERSION_STRING);
#undef PUT
    env[k] = NULL;
    return env;
}

static int proc_spawn(exec_proc_t *p)
{
    exec_loop_t *el = p->el;
    const hsc_server_config_t *cfg = el->l->cfg;
    hsc_answer_t *a = p->a;
    uv_loop_t *loop = el->l->loop;
    char store[4096];
    char **env = build_env(p, a, store, sizeof store);
    p->proc.data = p;
    if (env == NULL)
        return HSC_ENOMEM;
    int rc = hsc_child_spawn(loop, &p->proc, &p->in, &p->out, &p->err, cfg->exec, env, on_exit_cb);
    free(env);
    p->in.data = p->out.data = p->err.data = p;
    p->handles += 4; /* the process and its pipes are initialised even when the spawn fails */
    if (rc != 0) {
        HSC_LOG(HSC_LOG_ERROR, "req %llu: cannot start responder: %s", (unsigned long long)p->id,
                uv_strerror(rc));
        return rc;
    }
    p->spawned = true;
    p->pgid = p->proc.pid; /* UV_PROCESS_DETACHED: setsid(), so the pid is the group id */
    el->running++;
    HSC_LOG(HSC_LOG_INFO, "req %llu: responder pid %d started", (unsigned long long)p->id,
            p->proc.pid);

    uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
    uv_read_start((uv_stream_t *)&p->err, on_alloc, on_stderr);
    uv_buf_t b = uv_buf_init(p->text, (unsigned)p->text_len);
    p->wreq.data = p;
    if (uv_write(&p->wreq, (uv_stream_t *)&p->in, &b, 1, on_stdin_written) != 0)
        close_handle((uv_handle_t *)&p->in);
    if (cfg->responder_timeout_ms > 0)
        uv_timer_start(&p->timer, on_timeout, cfg->responder_timeout_ms, 0);
    return 0;
}

/* Starts `p` now; on failure the answer fails and `p` is freed. */
static void proc_start_or_fail(exec_proc_t *p)
{
    int rc = proc_spawn(p);
    if (rc == 0)
        return;
    hsc_answer_t *a = p->a;
    p->a = NULL;
    p->finished = true;
    close_handle((uv_handle_t *)&p->timer);
    close_handle((uv_handle_t *)&p->proc);
    close_handle((uv_handle_t *)&p->in);
    close_handle((uv_handle_t *)&p->out);
    close_handle((uv_handle_t *)&p->err);
    char reason[128];
    snprintf(reason, sizeof reason, "the responder could not start: %s", uv_strerror(rc));
    hsc_answer_fail(a, reason);
}

static void exec_spawn_next(exec_loop_t *el)
{
    while (el->head != NULL && el->running < el->limit && !el->draining) {
        exec_proc_t *p = el->head;
        el->head = p->next;
        if (el->head == NULL)
            el->tail = NULL;
        el->queued--;
        proc_start_or_fail(p);
    }
}

static int exec_admit(hsc_answer_t *a)
{
    exec_loop_t *el = hsc_answer_loop_data(a);
    if (el->running < el->limit || el->queued < el->qlimit)
        return 0;
    return HSC_EFULL;
}

static int exec_start(hsc_answer_t *a)
{
    exec_loop_t *el = hsc_answer_loop_data(a);
    exec_proc_t *p = calloc(1, sizeof *p);
    char *text = malloc(a->text_len);
    if (p == NULL || text == NULL) {
        free(p);
        free(text);
        return HSC_ENOMEM;
    }
    memcpy(text, a->text, a->text_len);
    p->text = text;
    p->text_len = a->text_len;
    p->a = a;
    p->el = el;
    p->id = a->req->id;
    a->state = p;
    uv_timer_init(el->l->loop, &p->timer);
    p->timer.data = p;
    p->handles = 1;
    if (el->running < el->limit) {
        proc_start_or_fail(p);
        return 0;
    }
    if (el->tail)
        el->tail->next = p;
    else
        el->head = p;
    el->tail = p;
    el->queued++;
    HSC_LOG(HSC_LOG_INFO, "req %llu: queued (%u waiting)", (unsigned long long)p->id, el->queued);
    return 0;
}

static void exec_resume(hsc_answer_t *a)
{
    exec_proc_t *p = a->state;
    if (p->paused && !p->out_eof) {
        p->paused = false;
        uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
    }
}

static void exec_cancel(hsc_answer_t *a)
{
    exec_proc_t *p = a->state;
    p->a = NULL;
    if (!p->spawned) {
        /* Still queued: unlink and free. */
        exec_loop_t *el = p->el;
        exec_proc_t **pp = &el->head, *prev = NULL;
        while (*pp != NULL && *pp != p) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp == p) {
            *pp = p->next;
            if (el->tail == p)
                el->tail = prev;
            el->queued--;
        }
        close_handle((uv_handle_t *)&p->timer);
        return;
    }
    if (p->paused) {
        /* Keep draining stdout so the process is not stuck in write() while being killed. */
        p->paused = false;
        uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
    }
    HSC_LOG(HSC_LOG_INFO, "req %llu: client gone, stopping responder pid %d",
            (unsigned long long)p->id, p->proc.pid);
    proc_kill(p);
}

/* --max-processes and --queue are split across the loops: no lock on the request path. */
static int exec_loop_start(hsc_responder_loop_t *l)
{
    exec_loop_t *el = calloc(1, sizeof *el);
    if (el == NULL)
        return HSC_ENOMEM;
    el->l = l;
    el->limit = (l->cfg->max_processes + l->nloops - 1) / l->nloops;
    el->qlimit = (l->cfg->queue + l->nloops - 1) / l->nloops;
    l->data = el;
    return 0;
}

/* Shutdown: queued requests stay queued (their clients are closed by --drain-timeout). */
static void exec_loop_drain(hsc_responder_loop_t *l)
{
    exec_loop_t *el = l->data;
    el->draining = true;
}

static void exec_loop_free(hsc_responder_loop_t *l)
{
    free(l->data);
}

const hsc_responder_t hsc_exec_responder = {
    .name = "exec",
    .start = exec_start,
    .resume = exec_resume,
    .cancel = exec_cancel,
    .admit = exec_admit,
    .loop_start = exec_loop_start,
    .loop_drain = exec_loop_drain,
    .loop_free = exec_loop_free,
};
