/*
 * A worker thread: its own libuv loop, which takes up a reloaded configuration between callbacks
 * (the snapshot, config.c) and drains on shutdown.
 *
 * On shutdown (server.c) every worker is woken through its uv_async_t, closes its listener,
 * closes idle connections, lets busy ones finish their current response (then close), and after
 * drain_timeout closes whatever is left. A worker's loop ends when its last handle is closed;
 * hsc_server_run() joins the threads and returns.
 */
#include "server/server.h"

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
    hsc_snapshot_release(old);
}

void hsc_worker_on_wake(uv_async_t *a)
{
    hsc_worker_t *w = a->data;
    worker_take_config(w);
    if (!atomic_load(&w->srv->stopping) || w->http.draining)
        return;
    uv_close((uv_handle_t *)&w->listener, on_worker_handle_closed);
    if (w->listener_tls.type == UV_TCP)
        uv_close((uv_handle_t *)&w->listener_tls, on_worker_handle_closed);
    hsc_stream_drain(&w->stream);
    hsc_http_drain(&w->http);
    hsc_hub_drain(&w->hub);
    uv_timer_start(&w->drain_timer, on_drain_timeout, w->srv->cfg.drain_timeout_ms, 0);
    hsc_worker_maybe_finish(w);
}

void hsc_worker_main(void *arg)
{
    hsc_worker_t *w = arg;
    hsc_stream_start(&w->stream);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    hsc_stream_dispose(&w->stream);
}
