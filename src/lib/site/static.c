/*
 * Static files of web/, embedded into the binary at build time (cmake/embed.cmake generates
 * web_assets.c), so hscd alone serves the demo page. "/" serves /index.html. Plus /healthz.
 */
#include "site/site.h"

#include <string.h>

const hsc_asset_t *hsc_asset_find(const char *path, size_t len)
{
    if (len == 1 && path[0] == '/') {
        path = "/index.html";
        len = strlen(path);
    }
    for (size_t i = 0; i < hsc_assets_count; i++) {
        const hsc_asset_t *as = &hsc_assets[i];
        if (strlen(as->path) == len && memcmp(as->path, path, len) == 0)
            return as;
    }
    return NULL;
}

void hsc_static_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    const hsc_asset_t *as = hsc_asset_find(req->path, req->path_len);
    if (as == NULL) {
        hsc_res_error(res, 404, NULL, "no such file", false);
        return;
    }
    hsc_res_send(res, 200, as->content_type, "Cache-Control: no-cache\r\n", as->data, as->len);
}

void hsc_healthz_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    (void)req;
    static const char ok[] = "ok\n";
    hsc_res_send(res, 200, "text/plain; charset=utf-8", "Cache-Control: no-store\r\n", ok,
                 sizeof ok - 1);
}
