/*
 * The server's lifecycle: hsc_server_new() (the configuration copied, the address checked, the
 * engine, journal and workers set up), hsc_server_run() (the worker threads started and joined),
 * hsc_server_stop() and hsc_server_free(). The configuration and reload are config.c's, the
 * listening sockets listen.c's, a worker's loop worker.c's.
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
 */
#include "server/server.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void on_stop_async(uv_async_t *a);

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

int hsc_server_new(const hsc_server_config_t *cfg, hsc_server_t **out)
{
    *out = NULL;
    hsc_server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return HSC_ENOMEM;
    uv_timeval64_t now;
    if (uv_gettimeofday(&now) == 0)
        srv->start_time = (double)now.tv_sec + (double)now.tv_usec / 1e6;
    int rc = hsc_server_copy_config(srv, cfg);
    srv->cfg.listen_fds = NULL;
    srv->cfg.n_listen_fds = 0;
    srv->cfg.listen_tls_fds = NULL;
    srv->cfg.n_listen_tls_fds = 0;
    if (rc == 0 && cfg->n_listen_fds > 0)
        rc = hsc_server_adopt_sockets(srv, cfg);
    else if (rc == 0)
        rc = hsc_server_parse_listen(srv, srv->cfg.listen);
    if (rc == 0 && cfg->n_listen_tls_fds > 0)
        rc = hsc_server_adopt_tls_sockets(srv, cfg);
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
    if ((rc = hsc_snapshot_new(&srv->cfg, &srv->snap)) != 0 ||
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

    if ((srv->n_inherited == 0 && (rc = hsc_server_probe_address(srv)) != 0) ||
        (srv->cfg.listen_tls != NULL && (rc = hsc_server_listen_tls_setup(srv)) != 0)) {
        hsc_server_free(srv);
        return rc;
    }
    srv->tls_main = srv->cfg.tls_cert != NULL && srv->cfg.listen_tls == NULL;
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
        uv_async_init(&w->loop, &w->wake, hsc_worker_on_wake);
        w->wake.data = w;
        uv_timer_init(&w->loop, &w->drain_timer);
        w->drain_timer.data = w;
        hsc_http_init(&w->http, &w->loop, &w->cfg, &hsc_routes_owner, w, &srv->nconns,
                      &srv->next_req_id);
        hsc_hub_init(&w->hub, &w->loop, i, &w->cfg, srv->engine);
        w->hub.create_limit = srv->create_limit;
        hsc_stream_init(&w->stream, srv->responder, &w->loop, &w->cfg, i, srv->nworkers);
        if ((rc = hsc_worker_listen(w)) != 0) {
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
        int rc = uv_thread_create(&srv->workers[i].thread, hsc_worker_main, &srv->workers[i]);
        if (rc != 0) {
            HSC_LOG(HSC_LOG_ERROR, "cannot start worker thread: %s", uv_strerror(rc));
            abort();
        }
    }
    hsc_server_warn_if_open(srv);
    HSC_LOG(HSC_LOG_NOTICE, "listening on %s://%s%s%s:%d (%u thread%s)",
            srv->tls_main ? "https" : "http", srv->addr.ss_family == AF_INET6 ? "[" : "", srv->host,
            srv->addr.ss_family == AF_INET6 ? "]" : "", srv->port, srv->nworkers,
            srv->nworkers == 1 ? "" : "s");
    if (srv->cfg.listen_tls != NULL)
        HSC_LOG(HSC_LOG_NOTICE, "listening on https://%s%s%s:%d (TLS)",
                srv->addr_tls.ss_family == AF_INET6 ? "[" : "", srv->host_tls,
                srv->addr_tls.ss_family == AF_INET6 ? "]" : "", srv->port_tls);
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
            if (w->listener_tls.type == UV_TCP && !uv_is_closing((uv_handle_t *)&w->listener_tls))
                uv_close((uv_handle_t *)&w->listener_tls, NULL);
            hsc_hub_close(&w->hub);
            uv_run(&w->loop, UV_RUN_DEFAULT);
            uv_loop_close(&w->loop);
            hsc_hub_dispose(&w->hub);
            hsc_snapshot_release(w->snap);
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
    for (unsigned i = 0; i < srv->n_inherited_tls; i++)
        if (srv->inherited_tls[i] >= 0)
            close(srv->inherited_tls[i]);
    free(srv->inherited_tls);
    hsc_snapshot_release(srv->snap);
    if (srv->snap_lock_ready)
        uv_mutex_destroy(&srv->snap_lock);
    for (size_t i = 0; i < sizeof srv->owned / sizeof srv->owned[0]; i++)
        free(srv->owned[i]);
    free(srv->jwt_key_copy);
    free(srv);
}
