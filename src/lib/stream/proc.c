/*
 * Child processes, as the exec responder (a process per request) and the pool responder
 * (long-lived workers) both run them. This file is the mechanism; when to spawn, kill or restart
 * is the owner's (exec.c, pool.c).
 *
 * - Spawning: `/bin/sh -c CMD` with UV_PROCESS_DETACHED (setsid()), so the pid is also the process
 *   group and a signal reaches whatever the shell started, grandchildren included.
 * - Output: stdout is read into the loop's one read buffer (hsc_procs_t) and handed to the owner
 *   before the next read; hsc_proc_forward() turns it into pieces of an answer and stops reading
 *   while the client lags (backpressure: the process then blocks in write()). stderr is logged a
 *   line at a time as "NAME: stderr: LINE", NAME being "req ID" or "pool worker N".
 * - Stopping: SIGTERM to the group, SIGKILL after --kill-grace (the process's one timer, which
 *   otherwise serves the owner's deadlines). The group is signalled until the owner forgets it;
 *   `closed` waits for a running grace, so a restart never races its predecessor's SIGKILL.
 * - Lifetime: spawn initialises four handles (process and pipes) whatever its result; close
 *   closes them and `closed` follows; the timer lives from init to dispose, whose callback is
 *   where the owner frees the memory.
 *
 * The wait queue and what a responder process learns about its request (the environment of an
 * exec process, the meta frame of a pool worker; docs/responders.md) are here too, so that both
 * responders share one definition.
 */
#include "stream/stream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define PROC_OF(h) ((hsc_proc_t *)(h)->data)

/* ---- the wait queue ------------------------------------------------------------------------- */

#define ANSWER_OF(w) ((hsc_answer_t *)((char *)(w)-offsetof(hsc_answer_t, wait)))

void hsc_waitq_init(hsc_waitq_t *q, unsigned limit)
{
    q->head.prev = q->head.next = &q->head;
    q->n = 0;
    q->limit = limit;
}

bool hsc_waitq_full(const hsc_waitq_t *q)
{
    return q->n >= q->limit;
}

void hsc_waitq_push(hsc_waitq_t *q, hsc_answer_t *a)
{
    hsc_wait_t *w = &a->wait;
    w->prev = q->head.prev;
    w->next = &q->head;
    q->head.prev->next = w;
    q->head.prev = w;
    q->n++;
    HSC_STAT_ADD(a->ctx->st.queued, 1);
}

bool hsc_waitq_remove(hsc_waitq_t *q, hsc_answer_t *a)
{
    hsc_wait_t *w = &a->wait;
    if (w->next == NULL)
        return false;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->prev = w->next = NULL;
    q->n--;
    HSC_STAT_ADD(a->ctx->st.queued, (unsigned)-1);
    return true;
}

hsc_answer_t *hsc_waitq_pop(hsc_waitq_t *q)
{
    if (q->head.next == &q->head)
        return NULL;
    hsc_answer_t *a = ANSWER_OF(q->head.next);
    hsc_waitq_remove(q, a);
    return a;
}

/* ---- processes ------------------------------------------------------------------------------ */

void hsc_proc_name(const hsc_proc_t *p, char *out, size_t cap)
{
    if (p->req_id != 0 || p->worker < 0)
        snprintf(out, cap, "req %llu", (unsigned long long)p->req_id);
    else
        snprintf(out, cap, "pool worker %d", p->worker);
}

static void on_timer(uv_timer_t *t);

void hsc_proc_init(hsc_proc_t *p, hsc_procs_t *procs, const hsc_proc_ops_t *ops)
{
    p->procs = procs;
    p->ops = ops;
    uv_timer_init(procs->loop, &p->timer);
    p->timer.data = p;
}

/* `closed` once the handles are closed and no kill's grace runs: its SIGKILL comes first. */
static void maybe_closed(hsc_proc_t *p)
{
    if (!p->closing || p->open > 0 || p->grace)
        return;
    p->closing = false;
    if (p->ops->closed != NULL)
        p->ops->closed(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    hsc_proc_t *p = PROC_OF(h);
    p->open--;
    maybe_closed(p);
}

static void close_handle(uv_handle_t *h)
{
    if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

static void signal_group(hsc_proc_t *p, int sig)
{
    /* The group outlives the shell when a child keeps running; the leader alone is a fallback
     * for a group that could not be signalled. */
    if (p->pgid > 0 && uv_kill(-p->pgid, sig) != 0 && p->alive)
        uv_kill(p->pgid, sig);
}

static void on_timer(uv_timer_t *t)
{
    hsc_proc_t *p = t->data;
    if (p->grace) {
        signal_group(p, SIGKILL);
        p->grace = false;
        maybe_closed(p);
        return;
    }
    if (p->ops->timer != NULL)
        p->ops->timer(p);
}

void hsc_proc_arm(hsc_proc_t *p, uint64_t ms)
{
    if (!p->grace)
        uv_timer_start(&p->timer, on_timer, ms, 0);
}

void hsc_proc_disarm(hsc_proc_t *p)
{
    if (!p->grace)
        uv_timer_stop(&p->timer);
}

void hsc_proc_kill(hsc_proc_t *p)
{
    if (p->killed || p->pgid == 0)
        return;
    p->killed = true;
    signal_group(p, SIGTERM);
    p->grace = true;
    uv_timer_start(&p->timer, on_timer, p->procs->cfg->kill_grace_ms, 0);
}

void hsc_proc_forget(hsc_proc_t *p)
{
    p->pgid = 0;
    if (p->grace) {
        p->grace = false;
        uv_timer_stop(&p->timer);
        maybe_closed(p);
    }
}

static void flush_line(hsc_proc_t *p)
{
    if (p->line_len == 0)
        return;
    char name[32];
    hsc_proc_name(p, name, sizeof name);
    HSC_LOG(HSC_LOG_NOTICE, "%s: stderr: %.*s", name, (int)p->line_len, p->line);
    p->line_len = 0;
}

static void maybe_finished(hsc_proc_t *p)
{
    if (!p->alive && p->out_eof && p->err_eof && p->ops->finished != NULL)
        p->ops->finished(p);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    hsc_procs_t *procs = PROC_OF(h)->procs;
    *buf = uv_buf_init(procs->rbuf, sizeof procs->rbuf);
}

static void on_stdout(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    hsc_proc_t *p = PROC_OF(s);
    if (n < 0) {
        uv_read_stop(s);
        p->out_eof = true;
        maybe_finished(p);
    } else if (n > 0) {
        p->ops->output(p, buf->base, (size_t)n);
    }
}

static void on_stderr(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    hsc_proc_t *p = PROC_OF(s);
    if (n < 0) {
        uv_read_stop(s);
        flush_line(p);
        p->err_eof = true;
        maybe_finished(p);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char c = buf->base[i];
        if (c != '\n' && p->line_len < sizeof p->line)
            p->line[p->line_len++] = c;
        if (c == '\n' || p->line_len == sizeof p->line)
            flush_line(p);
    }
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    hsc_proc_t *p = PROC_OF(proc);
    p->alive = false;
    p->status = status;
    p->signal = sig;
    if (p->ops->exited != NULL)
        p->ops->exited(p);
    maybe_finished(p);
}

int hsc_proc_spawn(hsc_proc_t *p, char **env)
{
    uv_loop_t *loop = p->procs->loop;
    p->alive = p->out_eof = p->err_eof = p->stdin_open = false;
    p->paused = p->out_stopped = p->killed = false;
    p->pgid = 0;
    p->status = 0;
    p->signal = 0;
    p->line_len = 0;
    uv_pipe_init(loop, &p->in, 0);
    uv_pipe_init(loop, &p->out, 0);
    uv_pipe_init(loop, &p->err, 0);
    p->proc.data = p->in.data = p->out.data = p->err.data = p;
    p->open = 4; /* the process and its pipes are initialised whatever the result */
    char *args[] = {"/bin/sh", "-c", (char *)p->procs->cfg->exec, NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&p->in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->err},
    };
    uv_process_options_t opts = {
        .exit_cb = on_exit_cb,
        .file = args[0],
        .args = args,
        .env = env,
        .flags = UV_PROCESS_DETACHED, /* setsid(): the pid is also the process group */
        .stdio_count = 3,
        .stdio = stdio,
    };
    char name[32];
    hsc_proc_name(p, name, sizeof name);
    char **base = env == NULL ? hsc_proc_env_base(p->procs->cfg) : NULL;
    opts.env = env != NULL ? env : base;
    int rc = opts.env != NULL ? uv_spawn(loop, &p->proc, &opts) : HSC_ENOMEM;
    free(base);
    p->proc.data = p;
    if (rc != 0) {
        HSC_LOG(HSC_LOG_ERROR, "%s: cannot start: %s", name, hsc_strerror(rc));
        hsc_proc_close(p);
        return rc;
    }
    p->alive = p->stdin_open = true;
    p->pgid = p->proc.pid;
    HSC_LOG(HSC_LOG_INFO, "%s: pid %d started", name, p->proc.pid);
    uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
    uv_read_start((uv_stream_t *)&p->err, on_alloc, on_stderr);
    return 0;
}

typedef struct proc_write_s {
    uv_write_t req;
    bool then_close;
    char data[];
} proc_write_t;

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* EPIPE: a process that does not read; its exit tells the rest */
    proc_write_t *w = (proc_write_t *)req;
    hsc_proc_t *p = PROC_OF(req->handle);
    if (w->then_close)
        hsc_proc_close_stdin(p);
    free(w);
}

int hsc_proc_send(hsc_proc_t *p, const uv_buf_t *bufs, unsigned n, bool then_close)
{
    if (!p->stdin_open)
        return HSC_ECLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    proc_write_t *w = malloc(sizeof *w + total);
    if (w == NULL)
        return HSC_ENOMEM;
    w->then_close = then_close;
    size_t off = 0;
    for (unsigned i = 0; i < n; i++) {
        memcpy(w->data + off, bufs[i].base, bufs[i].len);
        off += bufs[i].len;
    }
    uv_buf_t b = uv_buf_init(w->data, (unsigned)total);
    int rc = uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, on_written);
    if (rc != 0)
        free(w);
    return rc;
}

void hsc_proc_close_stdin(hsc_proc_t *p)
{
    p->stdin_open = false;
    close_handle((uv_handle_t *)&p->in);
}

void hsc_proc_pause(hsc_proc_t *p)
{
    if (!p->paused && !p->out_eof && !p->out_stopped)
        uv_read_stop((uv_stream_t *)&p->out);
    p->paused = true;
}

void hsc_proc_resume(hsc_proc_t *p)
{
    if (!p->paused)
        return;
    p->paused = false;
    if (!p->out_eof && !p->out_stopped && !uv_is_closing((uv_handle_t *)&p->out))
        uv_read_start((uv_stream_t *)&p->out, on_alloc, on_stdout);
}

void hsc_proc_answer_resume(hsc_answer_t *a)
{
    hsc_proc_t *p = a->state;
    if (p != NULL)
        hsc_proc_resume(p);
}

void hsc_proc_stop_output(hsc_proc_t *p)
{
    p->out_stopped = true;
    uv_read_stop((uv_stream_t *)&p->out);
}

int hsc_proc_forward(hsc_proc_t *p, hsc_answer_t *a, const char *data, size_t n)
{
    int rc = hsc_answer_write(a, data, n);
    if (rc == 0 && !hsc_answer_writable(a))
        hsc_proc_pause(p);
    return rc;
}

void hsc_proc_close(hsc_proc_t *p)
{
    flush_line(p); /* a last line without its line end */
    p->closing = true;
    p->stdin_open = false;
    close_handle((uv_handle_t *)&p->proc);
    close_handle((uv_handle_t *)&p->in);
    close_handle((uv_handle_t *)&p->out);
    close_handle((uv_handle_t *)&p->err);
    maybe_closed(p); /* nothing was open */
}

void hsc_proc_dispose(hsc_proc_t *p, uv_close_cb cb)
{
    uv_timer_stop(&p->timer);
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, cb);
}

/* ---- what a responder process learns about its request --------------------------------------- */

/*
 * One list for both responders (docs/responders.md): an exec process gets each field as an
 * environment variable, a pool worker as a `key=value` line of the meta frame. Values are passed
 * whole (the request head is bounded by --max-header-bytes); the request target cannot hold a
 * line break (the HTTP parser refuses it), so a value never breaks a meta line.
 */
enum { F_ID, F_METHOD, F_PATH, F_QUERY, F_ADDR, F_PORT, F_LENGTH, F_TYPE, F_SOFTWARE, F_COUNT };

static const struct {
    const char *env, *meta;
} field_names[F_COUNT] = {
    {"HSC_REQUEST_ID", "request_id"},
    {"REQUEST_METHOD", "method"},
    {"PATH_INFO", "path"},
    {"QUERY_STRING", "query"},
    {"REMOTE_ADDR", "remote_ip"},
    {"REMOTE_PORT", "remote_port"},
    {"CONTENT_LENGTH", "content_length"},
    {"HSC_CONTENT_TYPE", "content_type"},
    {"SERVER_SOFTWARE", "server_software"},
};

typedef struct fields_s {
    const char *v[F_COUNT];
    size_t n[F_COUNT];
    char id[24], port[8], length[24], software[32];
    char *query; /* the query without its token (malloc(); free after use), or NULL */
} fields_t;

static void set_field(fields_t *f, int i, const char *v, size_t n)
{
    f->v[i] = v;
    f->n[i] = n;
}

static void get_fields(const hsc_answer_t *a, fields_t *f)
{
    const hsc_req_t *r = a->req;
    /* The peer is "IP:PORT" or "[IPv6]:PORT": the address goes without its brackets. */
    const char *peer = hsc_req_peer(r);
    const char *colon = strrchr(peer, ':');
    size_t ip_len = colon != NULL ? (size_t)(colon - peer) : strlen(peer);
    const char *ip = peer;
    if (ip_len >= 2 && ip[0] == '[' && ip[ip_len - 1] == ']')
        ip++, ip_len -= 2;
    snprintf(f->port, sizeof f->port, "%s", colon != NULL ? colon + 1 : "");
    snprintf(f->id, sizeof f->id, "%llu", (unsigned long long)r->id);
    snprintf(f->length, sizeof f->length, "%zu", a->text_len);
    snprintf(f->software, sizeof f->software, "hsc/%s", HSC_VERSION_STRING);
    const char *type = a->sse ? "text/event-stream" : "text/plain";
    set_field(f, F_ID, f->id, strlen(f->id));
    set_field(f, F_METHOD, r->method_name, strlen(r->method_name));
    set_field(f, F_PATH, r->path, r->path_len);
    /* Without the token: a responder must not be able to act as its client (issue 21). Out of
     * memory, the query is left out rather than passed with its token. */
    f->query = r->query != NULL && r->query_len > 0 ? malloc(r->query_len) : NULL;
    size_t qlen =
        f->query != NULL ? hsc_query_without(f->query, r->query, r->query_len, "access_token") : 0;
    set_field(f, F_QUERY, f->query != NULL ? f->query : "", qlen);
    set_field(f, F_ADDR, ip, ip_len);
    set_field(f, F_PORT, f->port, strlen(f->port));
    set_field(f, F_LENGTH, f->length, strlen(f->length));
    set_field(f, F_TYPE, type, strlen(type));
    set_field(f, F_SOFTWARE, f->software, strlen(f->software));
}

/*
 * Whether an inherited variable stays out of a responder's environment: hscd's own (HSC_*: its
 * tokens, and nothing can pass for HSC_REQUEST_ID), the one the JWT key was read from, and any
 * whose value is the key or a static token (a secret exported under another name).
 */
static bool secret_var(const hsc_server_config_t *cfg, const char *var)
{
    if (strncmp(var, "HSC_", 4) == 0)
        return true;
    const char *eq = strchr(var, '=');
    if (eq == NULL)
        return false;
    size_t nl = (size_t)(eq - var);
    const char *v = eq + 1;
    const char *env = cfg->jwt_key_env;
    if (env != NULL && strlen(env) == nl && memcmp(var, env, nl) == 0)
        return true;
    if (cfg->jwt_key_len > 0 && strlen(v) == cfg->jwt_key_len &&
        memcmp(v, cfg->jwt_key, cfg->jwt_key_len) == 0)
        return true;
    const char *tokens[] = {cfg->publish_token, cfg->subscribe_token, cfg->stream_token};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
        if (tokens[i] != NULL && tokens[i][0] != '\0' && strcmp(v, tokens[i]) == 0)
            return true;
    return false;
}

/* hscd's environment less secret_var()'s, with room for `extra` more entries and `bytes` more
 * bytes after the array (*store points there). */
static char **base_env(const hsc_server_config_t *cfg, size_t extra, size_t bytes, size_t *k,
                       char **store)
{
    size_t inherited = 0;
    while (environ[inherited] != NULL)
        inherited++;
    size_t slots = inherited + extra + 1;
    char **env = malloc(slots * sizeof *env + bytes);
    if (env == NULL)
        return NULL;
    *store = (char *)(env + slots);
    *k = 0;
    for (size_t i = 0; i < inherited; i++)
        if (!secret_var(cfg, environ[i]))
            env[(*k)++] = environ[i];
    env[*k] = NULL;
    return env;
}

char **hsc_proc_env_base(const hsc_server_config_t *cfg)
{
    size_t k;
    char *store;
    return base_env(cfg, 0, 0, &k, &store);
}

char **hsc_proc_env(const hsc_answer_t *a, const char *json_file)
{
    fields_t f;
    get_fields(a, &f);
    /* The OpenAI front's three (docs/openai.md): how it was asked, the limit, the whole request. */
    char front[2][64];
    const char *extra[3] = {front[0], front[1], json_file};
    size_t nextra = 0;
    if (a->api != NULL) {
        snprintf(front[0], sizeof front[0], "HSC_API=%s", a->api);
        snprintf(front[1], sizeof front[1], "HSC_MAX_TOKENS=%llu",
                 (unsigned long long)a->max_tokens);
        nextra = json_file != NULL ? 3 : 2;
    }
    size_t bytes = 0;
    for (int i = 0; i < F_COUNT; i++)
        bytes += strlen(field_names[i].env) + 1 + f.n[i] + 1;
    for (size_t i = 0; i < nextra; i++)
        bytes += strlen(extra[i]) + sizeof "HSC_REQUEST_JSON_FILE=";
    size_t k;
    char *store;
    char **env = base_env(a->cfg, F_COUNT + nextra, bytes, &k, &store);
    for (int i = 0; env != NULL && i < F_COUNT; i++) {
        env[k++] = store;
        store += sprintf(store, "%s=", field_names[i].env);
        memcpy(store, f.v[i], f.n[i]);
        store += f.n[i];
        *store++ = '\0';
    }
    for (size_t i = 0; env != NULL && i < nextra; i++) {
        env[k++] = store;
        store += sprintf(store, "%s%s", i == 2 ? "HSC_REQUEST_JSON_FILE=" : "", extra[i]) + 1;
    }
    if (env != NULL)
        env[k] = NULL;
    free(f.query);
    return env;
}

char *hsc_proc_meta(const hsc_answer_t *a, size_t *len)
{
    size_t json_len = 0;
    const char *json = a->api != NULL ? hsc_answer_request_json(a, &json_len) : NULL;
    if (a->api != NULL && json == NULL)
        return NULL;
    fields_t f;
    get_fields(a, &f);
    /* Before the list: remote_addr, "IP:PORT" as hsc_req_peer() has it, for the workers written
     * when it was the only address field. */
    const char *peer = hsc_req_peer(a->req);
    size_t cap = sizeof "remote_addr=\n" + strlen(peer);
    if (a->api != NULL) /* the OpenAI front's (docs/openai.md); the JSON is one line */
        cap +=
            sizeof "api=completions\nmax_tokens=18446744073709551615\nrequest_json=\n" + json_len;
    for (int i = 0; i < F_COUNT; i++)
        cap += strlen(field_names[i].meta) + 2 + f.n[i];
    char *out = malloc(cap);
    if (out == NULL) {
        free(f.query);
        return NULL;
    }
    size_t o = 0;
    for (int i = 0; i < F_COUNT; i++) {
        if (i == F_ADDR)
            o += (size_t)sprintf(out + o, "remote_addr=%s\n", peer);
        o += (size_t)sprintf(out + o, "%s=", field_names[i].meta);
        memcpy(out + o, f.v[i], f.n[i]);
        o += f.n[i];
        out[o++] = '\n';
    }
    if (a->api != NULL) {
        o += (size_t)sprintf(out + o, "api=%s\nmax_tokens=%llu\nrequest_json=", a->api,
                             (unsigned long long)a->max_tokens);
        memcpy(out + o, json, json_len);
        o += json_len;
        out[o++] = '\n';
    }
    free(f.query);
    *len = o;
    return out;
}
