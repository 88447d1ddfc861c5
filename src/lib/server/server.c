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
 * SIGHUP would end the process at once (its default action), with no drain and no word. There is
 * no reload yet, so it is caught and logged as ignored. Its handle is unreferenced: it does not
 * keep the main loop running, and it stays installed until the workers are joined, so a SIGHUP
 * during the drain is ignored too (silently: the main loop has ended by then).
 */
#include "server/server.h"

#include <errno.h>
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

static int worker_listen(hsc_worker_t *w)
{
    hsc_server_t *srv = w->srv;
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

static void on_wake(uv_async_t *a)
{
    hsc_worker_t *w = a->data;
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
        &c->listen,       &c->exec,        &c->cors_origin, &c->publish_token, &c->subscribe_token,
        &c->stream_token, &c->admin_token, &c->jwt_key_env, &c->data_dir};
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

int hsc_server_new(const hsc_server_config_t *cfg, hsc_server_t **out)
{
    *out = NULL;
    hsc_server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return HSC_ENOMEM;
    int rc = copy_config(srv, cfg);
    if (rc == 0)
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
    uv_loop_init(&srv->main_loop);
    uv_async_init(&srv->main_loop, &srv->stop_async, on_stop_async);
    srv->stop_async.data = srv;
    uv_timer_init(&srv->main_loop, &srv->sweep_timer);
    srv->sweep_timer.data = srv;
    if ((rc = hsc_cors_setup(&srv->cors, srv->cfg.cors_origin, srv->cfg.cors_credentials)) != 0 ||
        (rc = srv->cfg.redis != NULL
                  ? hsc_redis_engine_new(&srv->cfg, srv->nworkers, &srv->engine)
                  : hsc_memory_engine_new(&srv->cfg, srv->nworkers, &srv->engine)) != 0 ||
        (rc = hsc_ratelimit_new(srv->cfg.channel_create_rate, srv->cfg.channel_create_burst,
                                HSC_RATELIMIT_CLIENTS, &srv->create_limit)) != 0) {
        hsc_server_free(srv);
        return rc;
    }
    raise_fd_limit(srv);

    if ((rc = probe_address(srv)) != 0) {
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
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->wake, on_wake);
        w->wake.data = w;
        uv_timer_init(&w->loop, &w->drain_timer);
        w->drain_timer.data = w;
        hsc_http_init(&w->http, &w->loop, &srv->cfg, &hsc_routes_owner, w, &srv->nconns,
                      &srv->next_req_id);
        hsc_hub_init(&w->hub, &w->loop, i, &srv->cfg, srv->engine);
        w->hub.create_limit = srv->create_limit;
        hsc_stream_init(&w->stream, srv->responder, &w->loop, &srv->cfg, i, srv->nworkers);
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
    (void)s;
    (void)signum;
    HSC_LOG(HSC_LOG_NOTICE, "SIGHUP ignored: hscd cannot reload its configuration yet "
                            "(restart it to apply changes; SIGTERM stops it cleanly)");
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
        uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
        uv_unref((uv_handle_t *)&srv->sighup);
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
        }
        free(srv->workers);
    }
    close_main_loop(srv);
    hsc_journal_free(srv->journal);
    hsc_engine_free(srv->engine);
    hsc_ratelimit_free(srv->create_limit);
    hsc_cors_dispose(&srv->cors);
    for (size_t i = 0; i < sizeof srv->owned / sizeof srv->owned[0]; i++)
        free(srv->owned[i]);
    free(srv->jwt_key_copy);
    free(srv);
}
