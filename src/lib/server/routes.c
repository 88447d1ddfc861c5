/*
 * The route table: the one file that names the handlers. Every worker's transport hands its
 * complete requests here (hsc_routes_owner); a request is matched by path and method, OPTIONS
 * is answered from the route's methods (a CORS preflight included), a GET that matches nothing
 * may be the Python template's GET /<text> (--legacy-get), and everything else is 404 or 405
 * with an Allow header. Each route says which context its handler gets: the handlers of one loop
 * get that loop's share (its hub, its responder state), never the server.
 */
#include "server/server.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Where a route's handler finds its context: the worker itself, its hub, its stream context,
 * or the server. */
enum { CTX_WORKER, CTX_HUB, CTX_STREAM, CTX_SERVER, CTX_NONE };

#define ALL_GET (HSC_M_GET | HSC_M_HEAD)

static const hsc_route_t routes[] = {
    {"/v1/stream", ALL_GET | HSC_M_POST | HSC_M_OPTIONS, hsc_stream_handle, CTX_STREAM},
    {"/v1/chat/completions", HSC_M_POST | HSC_M_OPTIONS, hsc_openai_chat_handle, CTX_STREAM},
    {"/v1/completions", HSC_M_POST | HSC_M_OPTIONS, hsc_openai_completions_handle, CTX_STREAM},
    {"/v1/models", ALL_GET | HSC_M_OPTIONS, hsc_openai_models_handle, CTX_STREAM},
    {"/v1/events", HSC_M_GET | HSC_M_POST | HSC_M_OPTIONS, hsc_events_handle, CTX_HUB},
    {"/v1/admin/channels", ALL_GET, hsc_admin_channels_handle, CTX_HUB},
    {"/v1/admin/channel", ALL_GET, hsc_admin_channel_handle, CTX_HUB},
    {"/v1/admin/disconnect", HSC_M_POST, hsc_admin_disconnect_handle, CTX_HUB},
    {"/healthz", ALL_GET, hsc_server_healthz_handle, CTX_SERVER},
    {"/metrics", ALL_GET, hsc_metrics_handle, CTX_SERVER},
    {"/", ALL_GET, hsc_static_handle, CTX_NONE},
};

static void *route_ctx(hsc_worker_t *w, uintptr_t which)
{
    switch (which) {
    case CTX_WORKER:
        return w;
    case CTX_HUB:
        return &w->hub;
    case CTX_STREAM:
        return &w->stream;
    case CTX_SERVER:
        return w->srv;
    default:
        return NULL;
    }
}

/* Writes a path into a log- and reply-safe form: printable ASCII, cut at 80 bytes. */
static void printable(char *out, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < cap; i++)
        out[o++] = (s[i] > 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (o + 4 >= cap)
        memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
}

static void on_request(void *ctx, hsc_req_t *r, hsc_res_t *res)
{
    hsc_worker_t *w = ctx;
    const hsc_server_t *srv = w->srv;
    const hsc_route_t *route = NULL;
    unsigned allowed = 0;
    int rc = hsc_router_match(routes, sizeof routes / sizeof routes[0], r->path, r->path_len,
                              r->method, &route, &allowed);
    /* The embedded web/ files are routes of their own (GET and HEAD). */
    if (rc == HSC_ENOTFOUND && hsc_asset_find(r->path, r->path_len) != NULL) {
        static const hsc_route_t asset = {"", ALL_GET, hsc_static_handle, CTX_NONE};
        rc = (asset.methods & r->method) ? 0 : HSC_EMETHOD;
        route = &asset;
        allowed = asset.methods;
    }
    if (rc == 0) {
        if (r->method == HSC_M_OPTIONS)
            hsc_cors_options(&w->snap->cors, r, res, route->methods);
        else
            route->handler(route_ctx(w, route->data), r, res);
        return;
    }
    if (rc == HSC_ENOTFOUND && srv->cfg.legacy_get && (r->method & ALL_GET)) {
        hsc_legacy_handle(&w->stream, r, res);
        return;
    }
    if (rc == HSC_EMETHOD) {
        char allow[96], extra[128], reason[160];
        hsc_methods_format(allowed, allow, sizeof allow);
        snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
        snprintf(reason, sizeof reason, "method %s is not allowed here; use %s", r->method_name,
                 allow);
        hsc_res_error(res, 405, extra, reason, false);
        return;
    }
    char path[96], reason[160];
    printable(path, sizeof path, r->path, r->path_len);
    snprintf(reason, sizeof reason, "no such resource: %s", path);
    hsc_res_error(res, 404, NULL, reason, false);
}

static void response_headers(void *ctx, const hsc_req_t *req, char *out, size_t cap)
{
    hsc_worker_t *w = ctx;
    hsc_cors_headers(&w->snap->cors, req, out, cap);
}

static void on_closed(void *ctx)
{
    hsc_worker_maybe_finish(ctx);
}

const hsc_http_owner_t hsc_routes_owner = {on_request, response_headers, on_closed};
