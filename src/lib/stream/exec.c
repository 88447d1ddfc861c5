/*
 * The exec responder (--exec CMD): one process per request, any language.
 *
 * The process (proc.c: `/bin/sh -c CMD` in a process group of its own) gets the request text on
 * stdin, then EOF, and what it may know about the request in its environment (docs/responders.md).
 * Every byte it writes to stdout is forwarded to the client as it arrives, with backpressure; its
 * stderr goes to hscd's log line by line, prefixed with the request id. Exit status 0 completes
 * the answer; any other status, a signal, or --responder-timeout fails it.
 *
 * The answer is over when the process has been reaped and both its stdout and stderr have reached
 * end of file: a grandchild that keeps stdout open keeps the answer going, and is still reached by
 * a kill until then.
 *
 * Cancellation: when the client goes away, the process group gets SIGTERM, then SIGKILL after
 * --kill-grace. The process outlives the answer until it has been reaped and every handle is
 * closed; then its slot is released and the next waiting request starts.
 *
 * The OpenAI front's request JSON (docs/openai.md) goes into a file of its own, in a directory
 * private to the loop (mode 0700 under $TMPDIR), named by HSC_REQUEST_JSON_FILE: the environment
 * has a size limit a long conversation would pass, and stdin stays the text alone. The file is
 * written at spawn (synchronously: a request body is bounded by --max-body-bytes) and removed when
 * the process is gone; the directory when the loop ends.
 *
 * Admission: each loop runs at most ceil(--max-processes / loops) processes; further requests
 * wait in a FIFO of ceil(--queue / loops) (their SSE streams get keep-alive comments meanwhile);
 * past that, 503 with Retry-After. From the drain on, waiting requests stay waiting (the drain
 * timeout closes their clients).
 */
#include "stream/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One loop's share of --max-processes and --queue. */
typedef struct exec_loop_s {
    hsc_procs_t procs;
    unsigned running, limit; /* processes of this loop, from spawn to the last handle closed */
    hsc_waitq_t queue;
    bool draining;
    char tmpdir[PATH_MAX - 64]; /* "" until the first request JSON needs it */
} exec_loop_t;

typedef struct exec_proc_s {
    hsc_proc_t proc; /* first: the process's callbacks find the rest */
    exec_loop_t *el;
    hsc_answer_t *a;          /* NULL once the answer has ended or the client has gone */
    char reason[160];         /* set when the answer must fail whatever the exit status */
    char json_file[PATH_MAX]; /* the request JSON's file, removed with the process; "" */
} exec_proc_t;

static void spawn_next(exec_loop_t *el);

static void on_freed(uv_handle_t *h)
{
    exec_proc_t *p = h->data;
    exec_loop_t *el = p->el;
    if (p->json_file[0] != '\0')
        unlink(p->json_file);
    free(p);
    el->running--;
    spawn_next(el);
}

static void on_closed(hsc_proc_t *proc)
{
    hsc_proc_dispose(proc, on_freed);
}

static void on_output(hsc_proc_t *proc, const char *data, size_t n)
{
    exec_proc_t *p = (exec_proc_t *)proc;
    if (p->a != NULL)
        hsc_proc_forward(proc, p->a, data, n); /* an error: cancel() follows */
    /* else cancelled: drain and drop until the process is gone */
}

static void on_exited(hsc_proc_t *proc)
{
    /* A running timeout (or kill grace) goes on: children may still hold stdout open. */
    char name[32];
    hsc_proc_name(proc, name, sizeof name);
    HSC_LOG(HSC_LOG_INFO, "%s: responder pid %d exited, status %lld, signal %d", name,
            proc->proc.pid, (long long)proc->status, proc->signal);
}

/* Reaped, and its output has ended: end the answer, close everything. */
static void on_finished(hsc_proc_t *proc)
{
    exec_proc_t *p = (exec_proc_t *)proc;
    hsc_proc_forget(proc);
    hsc_proc_disarm(proc);
    hsc_answer_t *a = p->a;
    p->a = NULL;
    if (a != NULL) {
        if (p->reason[0] == '\0' && proc->signal != 0)
            snprintf(p->reason, sizeof p->reason, "the responder was killed by signal %d",
                     proc->signal);
        else if (p->reason[0] == '\0' && proc->status != 0)
            snprintf(p->reason, sizeof p->reason, "the responder exited with status %lld",
                     (long long)proc->status);
        if (p->reason[0] != '\0')
            hsc_answer_fail(a, p->reason);
        else
            hsc_answer_end(a);
    }
    hsc_proc_close(proc);
}

static void on_timeout(hsc_proc_t *proc)
{
    exec_proc_t *p = (exec_proc_t *)proc;
    snprintf(p->reason, sizeof p->reason, "the responder timed out after %llu ms",
             (unsigned long long)proc->procs->cfg->responder_timeout_ms);
    hsc_proc_kill(proc);
}

static const hsc_proc_ops_t exec_ops = {
    .output = on_output,
    .exited = on_exited,
    .finished = on_finished,
    .timer = on_timeout,
    .closed = on_closed,
};

/* The request JSON into a new file of the loop's private directory: 0 or a libuv error. */
static int write_json(exec_loop_t *el, const hsc_answer_t *a, char *path, size_t cap)
{
    size_t len;
    const char *json = hsc_answer_request_json(a, &len);
    if (json == NULL)
        return HSC_ENOMEM;
    if (el->tmpdir[0] == '\0') {
        const char *t = getenv("TMPDIR");
        snprintf(el->tmpdir, sizeof el->tmpdir, "%s/hscd-XXXXXX", t && t[0] ? t : "/tmp");
        if (mkdtemp(el->tmpdir) == NULL) {
            int rc = -errno;
            HSC_LOG(HSC_LOG_ERROR, "cannot create a directory for request files: %s",
                    strerror(errno));
            el->tmpdir[0] = '\0';
            return rc;
        }
    }
    int w = snprintf(path, cap, "%s/req-%llu.json", el->tmpdir, (unsigned long long)a->req->id);
    if (w < 0 || (size_t)w >= cap)
        return UV_ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, json + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int rc = n < 0 ? -errno : UV_EIO;
            close(fd);
            unlink(path);
            return rc;
        }
        off += (size_t)n;
    }
    close(fd);
    return 0;
}

/* Starts a process for `a`: 0, or an error for which the answer has not been touched. */
static int spawn_for(exec_loop_t *el, hsc_answer_t *a)
{
    exec_proc_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return HSC_ENOMEM;
    if (a->oai != NULL) {
        int rc = write_json(el, a, p->json_file, sizeof p->json_file);
        if (rc != 0) {
            free(p);
            return rc;
        }
    }
    char **env = hsc_proc_env(a, p->json_file[0] ? p->json_file : NULL);
    if (env == NULL) {
        if (p->json_file[0] != '\0')
            unlink(p->json_file);
        free(p);
        return HSC_ENOMEM;
    }
    p->el = el;
    el->running++; /* until on_freed, whatever happens now */
    hsc_proc_init(&p->proc, &el->procs, &exec_ops);
    p->proc.worker = -1;
    p->proc.req_id = a->req->id;
    int rc = hsc_proc_spawn(&p->proc, env);
    free(env);
    if (rc != 0)
        return rc; /* closed by hsc_proc_spawn(): on_freed follows */
    uv_buf_t text = uv_buf_init(a->text, (unsigned)a->text_len);
    rc = hsc_proc_send(&p->proc, &text, 1, true);
    if (rc != 0) {
        HSC_LOG(HSC_LOG_ERROR, "req %llu: cannot write the request text: %s",
                (unsigned long long)a->req->id, hsc_strerror(rc));
        hsc_proc_kill(&p->proc); /* it ends without an answer: on_finished finds none */
        return rc;
    }
    p->a = a;
    a->state = p;
    uint64_t timeout = el->procs.cfg->responder_timeout_ms;
    if (timeout > 0)
        hsc_proc_arm(&p->proc, timeout);
    return 0;
}

static void start_or_fail(exec_loop_t *el, hsc_answer_t *a)
{
    int rc = spawn_for(el, a);
    if (rc != 0) {
        char reason[128];
        snprintf(reason, sizeof reason, "the responder could not start: %s", hsc_strerror(rc));
        hsc_answer_fail(a, reason);
    }
}

static void spawn_next(exec_loop_t *el)
{
    hsc_answer_t *a;
    while (!el->draining && el->running < el->limit && (a = hsc_waitq_pop(&el->queue)) != NULL)
        start_or_fail(el, a);
}

static int exec_admit(hsc_answer_t *a)
{
    exec_loop_t *el = hsc_answer_loop_data(a);
    if (el->running < el->limit || !hsc_waitq_full(&el->queue))
        return 0;
    return HSC_EFULL;
}

static int exec_start(hsc_answer_t *a)
{
    exec_loop_t *el = hsc_answer_loop_data(a);
    a->state = NULL;
    if (el->running < el->limit)
        return spawn_for(el, a);
    hsc_waitq_push(&el->queue, a);
    HSC_LOG(HSC_LOG_INFO, "req %llu: queued (%u waiting)", (unsigned long long)a->req->id,
            el->queue.n);
    return 0;
}

static void exec_cancel(hsc_answer_t *a)
{
    exec_loop_t *el = hsc_answer_loop_data(a);
    exec_proc_t *p = a->state;
    if (p == NULL) {
        hsc_waitq_remove(&el->queue, a); /* still waiting: nothing else holds it */
        return;
    }
    p->a = NULL;
    /* Keep draining stdout so the process is not stuck in write() while being killed. */
    hsc_proc_resume(&p->proc);
    HSC_LOG(HSC_LOG_INFO, "req %llu: client gone, stopping responder pid %d",
            (unsigned long long)p->proc.req_id, p->proc.proc.pid);
    hsc_proc_kill(&p->proc);
}

/* --max-processes and --queue are split across the loops: no lock on the request path. */
static int exec_loop_start(hsc_responder_loop_t *l)
{
    exec_loop_t *el = calloc(1, sizeof *el);
    if (el == NULL)
        return HSC_ENOMEM;
    el->procs.loop = l->loop;
    el->procs.cfg = l->cfg;
    el->limit = (l->cfg->max_processes + l->nloops - 1) / l->nloops;
    hsc_waitq_init(&el->queue, (l->cfg->queue + l->nloops - 1) / l->nloops);
    l->data = el;
    return 0;
}

static void exec_loop_drain(hsc_responder_loop_t *l)
{
    exec_loop_t *el = l->data;
    el->draining = true;
}

static void exec_loop_free(hsc_responder_loop_t *l)
{
    exec_loop_t *el = l->data;
    if (el->tmpdir[0] != '\0')
        rmdir(el->tmpdir); /* each file went with its process */
    free(l->data);
}

const hsc_responder_t hsc_exec_responder = {
    .name = "exec",
    .start = exec_start,
    .resume = hsc_proc_answer_resume,
    .cancel = exec_cancel,
    .admit = exec_admit,
    .loop_start = exec_loop_start,
    .loop_drain = exec_loop_drain,
    .loop_free = exec_loop_free,
};
