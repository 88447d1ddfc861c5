/*
 * The server's configuration: its defaults (hsc_server_config_init), the server's own copy of
 * the caller's (every string and the JWT key copied), and reload.
 *
 * Reload. The configuration the layers read is a snapshot (hsc_snapshot_t): one allocation that
 * owns its strings, JWT key and parsed CORS list, never changed once published, freed by whoever
 * drops the last reference. srv->snap is the current one, under snap_lock. Each worker holds a
 * reference to the snapshot its loop uses and a by-value copy of its hsc_server_config_t
 * (w->cfg), which every layer of that loop points to. hsc_server_reload() builds a new snapshot
 * (the running values for what only a restart changes, the new ones for the rest), swaps it in
 * and wakes every worker; hsc_worker_on_wake() (worker.c) then copies it into w->cfg and drops the
 * old one. The copy happens on the worker's own thread between two callbacks, so nothing on that
 * loop ever reads a half-written configuration, and a request sees one snapshot or the next (a
 * stream already running keeps the limits it started with where it copied them). srv->cfg stays the
 * startup configuration, read by the main thread (drain timeout); the engine copies the history
 * bounds and takes new ones through its reconfigure() (under its own lock).
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

void hsc_server_config_init(hsc_server_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = "127.0.0.1:8000";
    cfg->threads = 0;
    cfg->max_connections = 10000;
    cfg->max_header_bytes = 16 * 1024;
    cfg->http2 = 1;
    cfg->h2_max_streams = 100;
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
int hsc_server_copy_config(hsc_server_t *srv, const hsc_server_config_t *cfg)
{
    srv->cfg = *cfg;
    hsc_server_config_t *c = &srv->cfg;
    if (c->listen == NULL)
        c->listen = "127.0.0.1:8000";
    const char **strings[] = {
        &c->listen,          &c->exec,         &c->cors_origin,        &c->publish_token,
        &c->subscribe_token, &c->stream_token, &c->admin_token,        &c->jwt_key_env,
        &c->data_dir,        &c->redis,        &c->redis_password_env, &c->tls_cert,
        &c->tls_key,         &c->listen_tls};
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

void hsc_snapshot_release(hsc_snapshot_t *snap)
{
    if (snap == NULL || atomic_fetch_sub(&snap->refs, 1) != 1)
        return;
    hsc_cors_dispose(&snap->cors);
    hsc_tls_ctx_free(snap->tls_ctx);
    for (size_t i = 0; i < sizeof snap->owned / sizeof snap->owned[0]; i++)
        free(snap->owned[i]);
    free(snap->jwt_key_copy);
    free(snap);
}

/* A snapshot of `cfg` with its own copies of every string and the key; one reference. */
int hsc_snapshot_new(const hsc_server_config_t *cfg, hsc_snapshot_t **out)
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
        &c->subscribe_token, &c->stream_token, &c->admin_token, &c->jwt_key_env,
        &c->tls_cert,        &c->tls_key,      &c->listen_tls};
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
    if (rc == 0 && c->tls_cert != NULL) /* read now: a reload takes new certificate files */
        rc = hsc_tls_ctx_new(c, &snap->tls_ctx, &snap->tls_not_after);
    if (rc != 0) {
        hsc_snapshot_release(snap);
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
    c.http2 = in->http2;
    c.h2_max_streams = in->h2_max_streams;
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
    if (run->tls_cert != NULL && in->tls_cert != NULL) { /* the files are read again below */
        c.tls_cert = in->tls_cert;
        c.tls_key = in->tls_key;
    } else {
        KEEP_STR(tls_cert, "tls-cert");
    }
    KEEP_STR(listen_tls, "listen-tls");

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
    int rc = hsc_snapshot_new(&c, &snap);
    if (rc != 0)
        return rc;
    if (engine_bounds)
        srv->engine->vt->reconfigure(srv->engine, &c);
    uv_mutex_lock(&srv->snap_lock);
    hsc_snapshot_t *old = srv->snap;
    srv->snap = snap;
    uv_mutex_unlock(&srv->snap_lock);
    hsc_snapshot_release(old);
    atomic_fetch_add(&srv->reloads, 1);
    for (unsigned i = 0; i < srv->nworkers; i++)
        uv_async_send(&srv->workers[i].wake);
    return 0;
}
