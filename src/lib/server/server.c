/*
 * The server: configuration, listening sockets, worker threads and shutdown.
 *
 * Each worker thread runs its own libuv loop and accepts on its own listening socket; all the
 * sockets share one address through SO_REUSEPORT, so the kernel spreads new connections across
 * workers and no lock is taken on the accept path. A connection never leaves the loop that
 * accepted it.
 *
 * SO_REUSEPORT would also let a second hscd on the same port silently share it, so before binding,
 * hsc_server_new() probes the address with an ordinary socket: if that bind fails the address is
 * really in use and the error is reported. With port 0 the probe also picks the port that every
 * worker then binds.
 *
 * Shutdown (hsc_server_stop(), or SIGINT/SIGTERM on the main thread's loop): every worker is woken
 * through its uv_async_t, closes its listener, closes idle connections, lets busy ones finish
 * their current response (then close), and after drain_timeout closes whatever is left. A worker's
 * loop ends when its last handle is closed; hsc_server_run() joins the threads and returns.
 *
 * SIGHUP would end the process at once (its default action), with no drain and no word, so it is
 * caught: it calls the program's hsc_server_on_sighup() function (hscd reads its configuration
 * again and calls hsc_server_reload()), or is logged as ignored when there is none. Its handle is
 * unreferenced: it does not keep the main loop running, and it stays installed until the workers
 * are joined, so a SIGHUP during the drain is ignored too (silently: the main loop has ended).
 *
 * Reload. The configuration the layers read is a snapshot (hsc_snapshot_t): one allocation that
 * owns its strings, JWT key and parsed CORS list, never changed once published, freed by whoever
 * drops the last reference. srv->snap is the current one, under snap_lock. Each worker holds a
 * reference to the snapshot its loop uses and a by-value copy of its hsc_server_config_t
 * (w->cfg), which every layer of that loop points to. hsc_server_reload() builds a new snapshot
 * (the running values for what only a restart changes, the new ones for the rest), swaps it in
 * and wakes every worker; on_wake() then copies it into w->cfg and drops the old one. The copy
 * happens on the worker's own thread between two callbacks, so nothing on that loop ever reads a
 * half-written configuration, and a request sees one snapshot or the next (a stream already
 * running keeps the limits it started with where it copied them). srv->cfg stays the startup
 * configuration, read by the main thread (drain timeout); the engine copies the history bounds and
 * takes new ones through its reconfigure() (under its own lock).
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

void hsc_server_config_init(hsc_server_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = "127.0.0.1:8000";
    cfg->threads = 0;
    cfg->max_connections = 10000;
    cfg->max_header_bytes = 16 * 1024;
    cfg->max_body_bytes = 1024 * 1024;
    cfg->max_queue_bytes = 1024 * 1024;
    cfg->header_timeout_ms = 10000;
    cfg->idle_timeout_ms = 60000;
    cfg->drain_timeout_ms = 5000;
    cfg->max_gen_len = 10;
    cfg->interval_ms = 200;
    cfg->legacy_get = 0;
    cfg->exec = NULL;
    cfg->max_processes = 64;
    cfg->queue = 256;
    cfg->responder_timeout_ms = 600000;
    cfg->kill_grace_ms = 500;
    cfg->keepalive_ms = 15000;
    cfg->handle_signals = 1;
    cfg->history = 100;
    cfg->history_bytes = 256 * 1024;
    cfg->history_total_bytes = (size_t)256 * 1024 * 1024;
    cfg->history_age_ms = 3600 * 1000;
    cfg->max_event_bytes = 64 * 1024;
    cfg->max_channels = 10000;
    cfg->channel_create_rate = 100;
    cfg->channel_create_burst = 1000;
    cfg->max_subscription_channels = 16;
    cfg->retry_ms = 2000;
    cfg->cors_origin = NULL;
    cfg->data_dir = NULL; /* a library user asks for a journal; hscd does by default */
    cfg->fsync_mode = HSC_FSYNC_BATCH;
    cfg->fsync_interval_ms = 50;
    cfg->journal_segment_bytes = 64u << 20;
}

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT"; "localhost" means 127.0.0.1. */
static int parse_listen(hsc_server_t *srv, const char *s)
{
    char host[64];
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            return HSC_EINVAL;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof host)
            return HSC_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 0 || port > 65535)
        return HSC_EINVAL;
    if (host[0] == '\0')
        strcpy(host, "0.0.0.0");
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&srv->addr) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&srv->addr) != 0)
        return HSC_EINVAL;
    snprintf(srv->host, sizeof srv->host, "%s", host);
    srv->port = (int)port;
    return 0;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Binds an ordinary socket to the address: fails if anyone listens there; resolves port 0. */
static int probe_address(hsc_server_t *srv)
{
    int fd = socket(srv->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc = 0;
    if (bind(fd, (struct sockaddr *)&srv->addr, addr_len(&srv->addr)) != 0) {
        rc = uv_translate_sys_error(errno);
    } else if (srv->port == 0) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &len);
        srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
        set_port(&srv->addr, srv->port);
    }
    close(fd);
    return rc;
}

static void on_connection(uv_stream_t *listener, int status)
{
    hsc_worker_t *w = listener->data;
    if (status < 0) {
        HSC_LOG(HSC_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    hsc_http_accept(&w->http, listener);
}

/* An inherited socket: worker i takes socket i, or with one socket each worker a duplicate. */
static int worker_adopt(hsc_worker_t *w)
{
    hsc_server_t *srv = w->srv;
    int rc = uv_tcp_init(&w->loop, &w->listener);
    if (rc != 0)
        return rc;
    w->listener.data = w;
    int fd;
    if (srv->n_inherited > 1) {
        fd = srv->inherited[w->index];
        srv->inherited[w->index] = -1;
    } else if ((fd = fcntl(srv->inherited[0], F_DUPFD_CLOEXEC, 3)) < 0) {
        return uv_translate_sys_error(errno);
    }
    if ((rc = uv_tcp_open(&w->listener, fd)) != 0) {
        close(fd);
        return rc;
    }
    return uv_listen((uv_stream_t *)&w->listener, 1024, on_connection);
}

/* Checks the inherited sockets and takes the address from the first. */
static int adopt_sockets(hsc_server_t *srv, const hsc_server_config_t *cfg)
{
    srv->inherited = malloc(cfg->n_listen_fds * sizeof *srv->inherited);
    if (srv->inherited == NULL)
        return HSC_ENOMEM;
    srv->n_inherited = cfg->n_listen_fds;
    memcpy(srv->inherited, cfg->listen_fds, cfg->n_listen_fds * sizeof *srv->inherited);
    for (unsigned i = 0; i < srv->n_inherited; i++) {
        int fd = srv->inherited[i], type = 0, listening = 0;
        socklen_t len = sizeof type;
        struct sockaddr_storage ss;
        socklen_t slen = sizeof ss;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &(socklen_t){sizeof listening}) !=
                0 ||
            !listening || getsockname(fd, (struct sockaddr *)&ss, &slen) != 0 ||
            (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
            HSC_LOG(HSC_LOG_ERROR, "inherited descriptor %d is not a listening TCP socket", fd);
            return HSC_EINVAL;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        if (i == 0)
            srv->addr = ss;
    }
    void *a = srv->addr.ss_family == AF_INET6
                  ? (void *)&((struct sockaddr_in6 *)&srv->addr)->sin6_addr
                  : (void *)&((struct sockaddr_in *)&srv->addr)->sin_addr;
    inet_ntop(srv->addr.ss_family, a, srv->host, sizeof srv->host);
    srv->port =
        ntohs(srv->addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&srv->addr)->sin6_port
                                              : ((struct sockaddr_in *)&srv->addr)->sin_port);
    return 0;
}

static int worker_listen(hsc_worker_t *w)
{
    hsc_server_t *srv = w->srv;
    if (srv->n_inherited > 0)
        return worker_adopt(w);
    int rc = uv_tcp_init_ex(&w->loop, &w->listener, srv->addr.ss_family);
    if (rc != 0)
        return rc;
    w->listener.data = w;
    uv_os_fd_t fd;
    int one = 1;
    if ((rc = uv_fileno((uv_handle_t *)&w->listener, &fd)) != 0)
        return rc;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        return uv_translate_sys_error(errno);
    if ((rc = uv_tcp_bind(&w->listener, (struct sockaddr *)&srv->addr, 0)) != 0)
        return rc;
    return uv_listen((uv_stream_t *)&w->listener, 1024, on_connection);
}

static void on_stop_async(uv_async_t *a);

static void on_worker_handle_closed(uv_handle_t *h)
{
    (void)h;
}

void hsc_worker_maybe_finish(hsc_worker_t *w)
{
    if (!w->http.draining || w->http.nconns > 0 || uv_is_closing((uv_handle_t *)&w->wake))
        return;
    uv_close((uv_handle_t *)&w->drain_timer, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->wake, on_worker_handle_closed);
    hsc_hub_close(&w->hub);
}

static void on_drain_timeout(uv_timer_t *t)
{
    hsc_worker_t *w = t->data;
    if (w->http.nconns > 0)
        HSC_LOG(HSC_LOG_NOTICE, "worker %u: --drain-timeout reached, closing %zu connection(s)",
                w->index, w->http.nconns);
    hsc_http_close_all(&w->http);
    hsc_worker_maybe_finish(w);
}

static void snapshot_release(hsc_snapshot_t *snap);

/* Takes up the server's current configuration if it is newer than the loop's: in this loop's
 * thread, between callbacks, so no request of this loop sees a mix of the two. */
static void worker_take_config(hsc_worker_t *w)
{
    hsc_server_t *srv = w->srv;
    uv_mutex_lock(&srv->snap_lock);
    hsc_snapshot_t *snap = srv->snap, *old = w->snap;
    if (snap != old)
        atomic_fetch_add(&snap->refs, 1);
    uv_mutex_unlock(&srv->snap_lock);
    if (snap == old)
        return;
    w->cfg = snap->cfg;
    w->snap = snap;
    snapshot_release(old);
}

static void on_wake(uv_async_t *a)
{
    hsc_worker_t *w = a->data;
    worker_take_config(w);
    if (!atomic_load(&w->srv->stopping) || w->http.draining)
        return;
    uv_close((uv_handle_t *)&w->listener, on_worker_handle_closed);
    hsc_stream_drain(&w->stream);
    hsc_http_drain(&w->http);
    hsc_hub_drain(&w->hub);
    uv_timer_start(&w->drain_timer, on_drain_timeout, w->srv->cfg.drain_timeout_ms, 0);
    hsc_worker_maybe_finish(w);
}

static void worker_main(void *arg)
{
    hsc_worker_t *w = arg;
    hsc_stream_start(&w->stream);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    hsc_stream_dispose(&w->stream);
}

static void raise_fd_limit(hsc_server_t *srv)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Keep room for listeners, pipes and logs: past the cap clients get a 503, never EMFILE. */
    rlim_t room = rl.rlim_cur > 128 ? rl.rlim_cur - 64 - srv->nworkers : 64;
    if (rl.rlim_cur != RLIM_INFINITY && srv->cfg.max_connections > room) {
        HSC_LOG(HSC_LOG_WARN, "--max-connections %u lowered to %llu (open files limit %llu)",
                srv->cfg.max_connections, (unsigned long long)room,
                (unsigned long long)rl.rlim_cur);
        srv->cfg.max_connections = (unsigned)room;
    }
    if (rl.rlim_cur != RLIM_INFINITY)
        srv->conns_room = (unsigned)(room < UINT_MAX ? room : UINT_MAX);
}

/* Copies a string the configuration only borrows; false when out of memory. */
static bool copy_string(const char **field)
{
    if (*field == NULL)
        return true;
    char *c = strdup(*field);
    *field = c;
    return c != NULL;
}

/*
 * The configuration is the server's own copy (server.h): every string and the JWT key are
 * copied, so the caller may free or reuse its own at once.
 */
static int copy_config(hsc_server_t *srv, const hsc_server_config_t *cfg)
{
    srv->cfg = *cfg;
    hsc_server_config_t *c = &srv->cfg;
    if (c->listen == NULL)
        c->listen = "127.0.0.1:8000";
    const char **strings[] = {
        &c->listen,          &c->exec,         &c->cors_origin,       &c->publish_token,
        &c->subscribe_token, &c->stream_token, &c->admin_token,       &c->jwt_key_env,
        &c->data_dir,        &c->redis,        &c->redis_password_env};
    bool ok = true;
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        srv->owned[i] = NULL;
        if (ok) {
            ok = copy_string(strings[i]);
            srv->owned[i] = (char *)*strings[i];
        } else {
            *strings[i] = NULL;
        }
    }
    if (ok && c->jwt_key_len > 0) {
        void *key = malloc(c->jwt_key_len);
        if (key != NULL)
            memcpy(key, cfg->jwt_key, c->jwt_key_len);
        c->jwt_key = srv->jwt_key_copy = key;
        ok = key != NULL;
    }
    return ok ? 0 : HSC_ENOMEM;
}

/* ---- configuration snapshots and reload -------------------------------------------------- */

static void snapshot_release(hsc_snapshot_t *snap)
{
    if (snap == NULL || atomic_fetch_sub(&snap->refs, 1) != 1)
        return;
    hsc_cors_dispose(&snap->cors);
    for (size_t i = 0; i < sizeof snap->owned / sizeof snap->owned[0]; i++)
        free(snap->owned[i]);
    free(snap->jwt_key_copy);
    free(snap);
}

/* A snapshot of `cfg` with its own copies of every string and the key; one reference. */
static int snapshot_new(const hsc_server_config_t *cfg, hsc_snapshot_t **out)
{
    *out = NULL;
    hsc_snapshot_t *snap = calloc(1, sizeof *snap);
    if (snap == NULL)
        return HSC_ENOMEM;
    atomic_init(&snap->refs, 1);
    snap->cfg = *cfg;
    hsc_server_config_t *c = &snap->cfg;
    const char **strings[] = {
        &c->listen,          &c->exec,         &c->cors_origin, &c->publish_token,
        &c->subscribe_token, &c->stream_token, &c->admin_token, &c->jwt_key_env};
    bool ok = true;
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        if (!ok)
            *strings[i] = NULL;
        else if ((ok = copy_string(strings[i])))
            snap->owned[i] = (char *)*strings[i];
    }
    if (ok && c->jwt_key_len > 0) {
        c->jwt_key = snap->jwt_key_copy = malloc(c->jwt_key_len);
        if ((ok = c->jwt_key != NULL))
            memcpy(snap->jwt_key_copy, cfg->jwt_key, c->jwt_key_len);
    }
    int rc = ok ? hsc_cors_setup(&snap->cors, c->cors_origin, c->cors_credentials) : HSC_ENOMEM;
    if (rc != 0) {
        snapshot_release(snap);
        return rc;
    }
    *out = snap;
    return 0;
}

static bool same_string(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Says that a setting which only a restart changes was changed in the file, and is kept. */
#define KEEP_NUM(field, flag)                                                                      \
    do {                                                                                           \
        if (in->field != run->field)                                                               \
            HSC_LOG(HSC_LOG_WARN,                                                                  \
                    "reload: --%s changed: it needs a restart, the running value "                 \
                    "stays",                                                                       \
                    flag);                                                                         \
    } while (0)
#define KEEP_STR(field, flag)                                                                      \
    do {                                                                                           \
        if (!same_string(in->field, run->field))                                                   \
            HSC_LOG(HSC_LOG_WARN,                                                                  \
                    "reload: --%s changed: it needs a restart, the running value "                 \
                    "stays",                                                                       \
                    flag);                                                                         \
    } while (0)

int hsc_server_reload(hsc_server_t *srv, const hsc_server_config_t *in)
{
    if (atomic_load(&srv->stopping))
        return HSC_ESTATE; /* the workers may be closing their wake handles */
    /* The running configuration, with what a reload may change taken from `in`. */
    const hsc_server_config_t *run = &srv->cfg;
    hsc_server_config_t c = *run;
    c.publish_token = in->publish_token;
    c.subscribe_token = in->subscribe_token;
    c.stream_token = in->stream_token;
    c.admin_token = in->admin_token;
    c.jwt_key = in->jwt_key;
    c.jwt_key_len = in->jwt_key_len;
    c.cors_origin = in->cors_origin;
    c.cors_credentials = in->cors_credentials;
    c.max_connections = in->max_connections;
    if (srv->conns_room > 0 && c.max_connections > srv->conns_room) {
        HSC_LOG(HSC_LOG_WARN, "reload: --max-connections %u lowered to %u (open files limit)",
                c.max_connections, srv->conns_room);
        c.max_connections = srv->conns_room;
    }
    c.max_header_bytes = in->max_header_bytes;
    c.max_body_bytes = in->max_body_bytes;
    c.max_queue_bytes = in->max_queue_bytes;
    c.header_timeout_ms = in->header_timeout_ms;
    c.idle_timeout_ms = in->idle_timeout_ms;
    c.responder_timeout_ms = in->responder_timeout_ms;
    c.kill_grace_ms = in->kill_grace_ms;
    c.max_event_bytes = in->max_event_bytes;
    c.max_subscription_channels = in->max_subscription_channels;
    c.retry_ms = in->retry_ms;
    c.access_log = in->access_log;

    KEEP_STR(listen, "listen");
    KEEP_NUM(threads, "threads");
    KEEP_STR(exec, "exec");
    KEEP_NUM(pool, "pool");
    KEEP_NUM(max_processes, "max-processes");
    KEEP_NUM(queue, "queue");
    KEEP_NUM(keepalive_ms, "keepalive");
    KEEP_NUM(max_gen_len, "max-gen-len");
    KEEP_NUM(interval_ms, "interval");
    bool engine_bounds = srv->engine->vt->reconfigure != NULL;
    if (engine_bounds) { /* the engine takes them below, once the snapshot is made */
        c.history = in->history;
        c.history_bytes = in->history_bytes;
        c.history_total_bytes = in->history_total_bytes;
        c.history_age_ms = in->history_age_ms;
        c.max_channels = in->max_channels;
    } else {
        KEEP_NUM(history, "history");
        KEEP_NUM(history_bytes, "history-bytes");
        KEEP_NUM(history_total_bytes, "history-total-bytes");
        KEEP_NUM(history_age_ms, "history-age");
        KEEP_NUM(max_channels, "max-channels");
    }
    KEEP_NUM(channel_create_rate, "channel-create-rate");
    KEEP_NUM(channel_create_burst, "channel-create-burst");
    KEEP_NUM(drain_timeout_ms, "drain-timeout");
    KEEP_NUM(legacy_get, "legacy-get");

    hsc_snapshot_t *snap;
    int rc = snapshot_new(&c, &snap);
    if (rc != 0)
        return rc;
    if (engine_bounds)
        srv->engine->vt->reconfigure(srv->engine, &c);
    uv_mutex_lock(&srv->snap_lock);
    hsc_snapshot_t *old = srv->snap;
    srv->snap = snap;
    uv_mutex_unlock(&srv->snap_lock);
    snapshot_release(old);
    atomic_fetch_add(&srv->reloads, 1);
    for (unsigned i = 0; i < srv->nworkers; i++)
        uv_async_send(&srv->workers[i].wake);
    return 0;
}

void hsc_server_on_sighup(hsc_server_t *srv, hsc_server_hup_fn fn, void *data)
{
    srv->on_hup = fn;
    srv->on_hup_data = data;
}

void hsc_server_on_sigusr2(hsc_server_t *srv, hsc_server_hup_fn fn, void *data)
{
    srv->on_usr2 = fn;
    srv->on_usr2_data = data;
}

unsigned hsc_server_listen_fds(const hsc_server_t *srv, int *fds, unsigned cap)
{
    unsigned n = 0;
    bool shared = srv->n_inherited == 1; /* every worker holds a duplicate of one socket */
    for (unsigned i = 0; i < srv->nworkers && n < cap && (!shared || n == 0); i++) {
        uv_os_fd_t fd;
        if (srv->workers[i].listener.type == UV_TCP &&
            !uv_is_closing((const uv_handle_t *)&srv->workers[i].listener) &&
            uv_fileno((const uv_handle_t *)&srv->workers[i].listener, &fd) == 0)
            fds[n++] = fd;
    }
    return n;
}

int hsc_server_new(const hsc_server_config_t *cfg, hsc_server_t **out)
{
    *out = NULL;
    hsc_server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return HSC_ENOMEM;
    uv_timeval64_t now;
    if (uv_gettimeofday(&now) == 0)
        srv->start_time = (double)now.tv_sec + (double)now.tv_usec / 1e6;
    int rc = copy_config(srv, cfg);
    srv->cfg.listen_fds = NULL;
    srv->cfg.n_listen_fds = 0;
    if (rc == 0 && cfg->n_listen_fds > 0)
        rc = adopt_sockets(srv, cfg);
    else if (rc == 0)
        rc = parse_listen(srv, srv->cfg.listen);
    if (rc != 0) {
        hsc_server_free(srv);
        return rc;
    }
    uv_cpu_info_t *cpus;
    int ncpu = 1;
    if (uv_cpu_info(&cpus, &ncpu) == 0)
        uv_free_cpu_info(cpus, ncpu);
    srv->nworkers = cfg->threads ? cfg->threads : (unsigned)(ncpu > 0 ? ncpu : 1);
    srv->responder = hsc_stream_responder(&srv->cfg);
    if (srv->nworkers > hsc_stream_max_loops(srv->responder, &srv->cfg))
        srv->nworkers = hsc_stream_max_loops(srv->responder, &srv->cfg);
    if (srv->n_inherited > 1 && srv->n_inherited != srv->nworkers) {
        /* One worker per inherited socket: each has its own queue of accepted connections. */
        if (srv->n_inherited > hsc_stream_max_loops(srv->responder, &srv->cfg)) {
            HSC_LOG(HSC_LOG_ERROR, "cannot take over %u sockets with --pool %u: restart instead",
                    srv->n_inherited, srv->cfg.pool);
            hsc_server_free(srv);
            return HSC_EINVAL;
        }
        HSC_LOG(HSC_LOG_NOTICE, "%u threads, one per inherited socket", srv->n_inherited);
        srv->nworkers = srv->n_inherited;
    }
    uv_loop_init(&srv->main_loop);
    uv_async_init(&srv->main_loop, &srv->stop_async, on_stop_async);
    srv->stop_async.data = srv;
    uv_timer_init(&srv->main_loop, &srv->sweep_timer);
    srv->sweep_timer.data = srv;
    uv_mutex_init(&srv->snap_lock);
    srv->snap_lock_ready = true;
    if ((rc = snapshot_new(&srv->cfg, &srv->snap)) != 0 ||
        (rc = srv->cfg.redis != NULL
                  ? hsc_redis_engine_new(&srv->cfg, srv->nworkers, &srv->engine)
                  : hsc_memory_engine_new(&srv->cfg, srv->nworkers, &srv->engine)) != 0 ||
        (rc = hsc_ratelimit_new(srv->cfg.channel_create_rate, srv->cfg.channel_create_burst,
                                HSC_RATELIMIT_CLIENTS, &srv->create_limit)) != 0) {
        hsc_server_free(srv);
        return rc;
    }
    raise_fd_limit(srv);
    srv->snap->cfg.max_connections = srv->cfg.max_connections;

    if (srv->n_inherited == 0 && (rc = probe_address(srv)) != 0) {
        hsc_server_free(srv);
        return rc;
    }
    /* After the address: a start that fails there never touches the data directory. In cluster
     * mode Redis holds ids and history: no journal (docs/cluster.md). */
    if (srv->cfg.redis == NULL && srv->cfg.data_dir != NULL &&
        strcmp(srv->cfg.data_dir, "none") != 0 &&
        (rc = hsc_journal_open(&srv->cfg, srv->engine, &srv->journal)) != 0) {
        hsc_server_free(srv);
        return rc;
    }
    srv->workers = calloc(srv->nworkers, sizeof *srv->workers);
    if (srv->workers == NULL) {
        hsc_server_free(srv);
        return HSC_ENOMEM;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        hsc_worker_t *w = &srv->workers[i];
        w->srv = srv;
        w->index = i;
        w->snap = srv->snap;
        atomic_fetch_add(&w->snap->refs, 1);
        w->cfg = w->snap->cfg;
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->wake, on_wake);
        w->wake.data = w;
        uv_timer_init(&w->loop, &w->drain_timer);
        w->drain_timer.data = w;
        hsc_http_init(&w->http, &w->loop, &w->cfg, &hsc_routes_owner, w, &srv->nconns,
                      &srv->next_req_id);
        hsc_hub_init(&w->hub, &w->loop, i, &w->cfg, srv->engine);
        w->hub.create_limit = srv->create_limit;
        hsc_stream_init(&w->stream, srv->responder, &w->loop, &w->cfg, i, srv->nworkers);
        if ((rc = worker_listen(w)) != 0) {
            hsc_server_free(srv);
            return rc;
        }
    }
    *out = srv;
    return 0;
}

int hsc_server_port(const hsc_server_t *srv)
{
    return srv->port;
}

static void begin_stop(hsc_server_t *srv)
{
    if (atomic_exchange(&srv->stopping, true))
        return;
    for (unsigned i = 0; i < srv->nworkers; i++)
        uv_async_send(&srv->workers[i].wake);
    uv_close((uv_handle_t *)&srv->stop_async, NULL);
    uv_close((uv_handle_t *)&srv->sweep_timer, NULL);
    if (srv->cfg.handle_signals) {
        uv_close((uv_handle_t *)&srv->sigint, NULL);
        uv_close((uv_handle_t *)&srv->sigterm, NULL);
    }
}

static void on_stop_async(uv_async_t *a)
{
    hsc_server_t *srv = a->data;
    HSC_LOG(HSC_LOG_NOTICE, "stopping: draining streams for up to %llu ms",
            (unsigned long long)srv->cfg.drain_timeout_ms);
    begin_stop(srv);
}

/*
 * Once a second: aged history leaves, empty channels are freed, and after many connections have
 * closed the allocator gives the freed memory back, so RSS returns to its baseline after a burst.
 */
static void on_sweep(uv_timer_t *t)
{
    hsc_server_t *srv = t->data;
    hsc_engine_sweep(srv->engine);
    unsigned n = atomic_load_explicit(&srv->nconns, memory_order_relaxed);
    if (n > srv->trim_peak)
        srv->trim_peak = n;
    else if (srv->trim_peak - n >= 256) {
        malloc_trim(0);
        srv->trim_peak = n;
    }
}

/* Whether the address is reachable from this machine only: 127.0.0.0/8, ::1, ::ffff:127.x. */
static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24 == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/*
 * Everything is open by default (docs/security.md), which is what the demo on 127.0.0.1 wants;
 * on an address other machines can reach, say so once, before the "listening on" line.
 */
static void warn_if_open(const hsc_server_t *srv)
{
    const hsc_server_config_t *c = &srv->cfg;
    if (is_loopback(&srv->addr) || c->publish_token != NULL || c->subscribe_token != NULL ||
        c->stream_token != NULL || c->jwt_key_len > 0)
        return;
    bool any = strcmp(srv->host, "0.0.0.0") == 0 || strcmp(srv->host, "::") == 0;
    HSC_LOG(HSC_LOG_WARN,
            "%s%s is not loopback and no token or JWT key is set: anyone who can reach port %d "
            "may publish, subscribe to every channel and ask the responder (/v1/stream). "
            "Protect them with --publish-token, --subscribe-token and --stream-token, or "
            "--jwt-key-file (docs/security.md), or listen on 127.0.0.1; /metrics stays open "
            "either way (keep the port private or put it behind a proxy)",
            srv->host, any ? " (every interface)" : "", srv->port);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    hsc_server_t *srv = s->data;
    (void)signum;
    if (srv->on_hup != NULL && !atomic_load(&srv->stopping)) {
        srv->on_hup(srv, srv->on_hup_data);
        return;
    }
    HSC_LOG(HSC_LOG_NOTICE, "SIGHUP ignored: hscd cannot reload its configuration yet "
                            "(restart it to apply changes; SIGTERM stops it cleanly)");
}

static void on_sigusr2(uv_signal_t *s, int signum)
{
    hsc_server_t *srv = s->data;
    (void)signum;
    if (srv->on_usr2 != NULL && !atomic_load(&srv->stopping)) {
        srv->on_usr2(srv, srv->on_usr2_data);
        return;
    }
    HSC_LOG(HSC_LOG_NOTICE, "SIGUSR2 ignored");
}

static void on_signal(uv_signal_t *s, int signum)
{
    hsc_server_t *srv = s->data;
    HSC_LOG(HSC_LOG_NOTICE, "%s: draining streams for up to %llu ms",
            signum == SIGINT ? "SIGINT" : "SIGTERM", (unsigned long long)srv->cfg.drain_timeout_ms);
    begin_stop(srv);
}

int hsc_server_run(hsc_server_t *srv)
{
    if (srv->ran)
        return HSC_ESTATE;
    srv->ran = true;
    if (srv->cfg.handle_signals) {
        uv_signal_init(&srv->main_loop, &srv->sigint);
        uv_signal_init(&srv->main_loop, &srv->sigterm);
        srv->sigint.data = srv->sigterm.data = srv;
        uv_signal_start(&srv->sigint, on_signal, SIGINT);
        uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
        uv_signal_init(&srv->main_loop, &srv->sighup);
        srv->sighup.data = srv;
        uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
        uv_unref((uv_handle_t *)&srv->sighup);
        uv_signal_init(&srv->main_loop, &srv->sigusr2);
        srv->sigusr2.data = srv;
        uv_signal_start(&srv->sigusr2, on_sigusr2, SIGUSR2);
        uv_unref((uv_handle_t *)&srv->sigusr2);
    }
    uv_timer_start(&srv->sweep_timer, on_sweep, 1000, 1000);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        int rc = uv_thread_create(&srv->workers[i].thread, worker_main, &srv->workers[i]);
        if (rc != 0) {
            HSC_LOG(HSC_LOG_ERROR, "cannot start worker thread: %s", uv_strerror(rc));
            abort();
        }
    }
    warn_if_open(srv);
    HSC_LOG(HSC_LOG_NOTICE, "listening on http://%s%s%s:%d (%u thread%s)",
            srv->addr.ss_family == AF_INET6 ? "[" : "", srv->host,
            srv->addr.ss_family == AF_INET6 ? "]" : "", srv->port, srv->nworkers,
            srv->nworkers == 1 ? "" : "s");
    uv_run(&srv->main_loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < srv->nworkers; i++)
        uv_thread_join(&srv->workers[i].thread);
    /* The loops have ended, not closed: the journal's last completions still reach the hubs. */
    hsc_journal_stop(srv->journal);
    if (srv->cfg.handle_signals) {
        uv_close((uv_handle_t *)&srv->sighup, NULL);
        uv_close((uv_handle_t *)&srv->sigusr2, NULL);
        uv_run(&srv->main_loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&srv->main_loop);
    HSC_LOG(HSC_LOG_NOTICE, "stopped");
    return 0;
}

void hsc_server_stop(hsc_server_t *srv)
{
    if (!atomic_load(&srv->stopping))
        uv_async_send(&srv->stop_async);
}

static void close_main_loop(hsc_server_t *srv)
{
    if (srv->stop_async.type != UV_ASYNC)
        return;
    if (!srv->ran) {
        uv_close((uv_handle_t *)&srv->stop_async, NULL);
        uv_close((uv_handle_t *)&srv->sweep_timer, NULL);
        uv_run(&srv->main_loop, UV_RUN_DEFAULT);
        uv_loop_close(&srv->main_loop);
    }
}

void hsc_server_free(hsc_server_t *srv)
{
    if (srv == NULL)
        return;
    hsc_journal_stop(srv->journal); /* before the hubs go: it completes publishes through them */
    if (srv->workers != NULL) {
        for (unsigned i = 0; i < srv->nworkers; i++) {
            hsc_worker_t *w = &srv->workers[i];
            if (w->srv == NULL)
                continue;
            /* Close whatever a failed start or a finished run left open, then the loop. */
            if (!uv_is_closing((uv_handle_t *)&w->wake))
                uv_close((uv_handle_t *)&w->wake, NULL);
            if (!uv_is_closing((uv_handle_t *)&w->drain_timer))
                uv_close((uv_handle_t *)&w->drain_timer, NULL);
            if (w->listener.type == UV_TCP && !uv_is_closing((uv_handle_t *)&w->listener))
                uv_close((uv_handle_t *)&w->listener, NULL);
            hsc_hub_close(&w->hub);
            uv_run(&w->loop, UV_RUN_DEFAULT);
            uv_loop_close(&w->loop);
            hsc_hub_dispose(&w->hub);
            snapshot_release(w->snap);
        }
        free(srv->workers);
    }
    close_main_loop(srv);
    hsc_journal_free(srv->journal);
    hsc_engine_free(srv->engine);
    hsc_ratelimit_free(srv->create_limit);
    for (unsigned i = 0; i < srv->n_inherited; i++)
        if (srv->inherited[i] >= 0)
            close(srv->inherited[i]);
    free(srv->inherited);
    snapshot_release(srv->snap);
    if (srv->snap_lock_ready)
        uv_mutex_destroy(&srv->snap_lock);
    for (size_t i = 0; i < sizeof srv->owned / sizeof srv->owned[0]; i++)
        free(srv->owned[i]);
    free(srv->jwt_key_copy);
    free(srv);
}
