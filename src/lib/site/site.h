/*
 * site: the embedded web/ files and /healthz.
 */
#ifndef HSC_SITE_H
#define HSC_SITE_H

#include "http/http.h"

/* ---- embedded web files (generated web_assets.c) --------------------------------------------- */

typedef struct hsc_asset_s {
    const char *path; /* "/index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} hsc_asset_t;

extern const hsc_asset_t hsc_assets[];
extern const size_t hsc_assets_count;

/** The embedded file served at `path` ("/" is /index.html), or NULL. */
const hsc_asset_t *hsc_asset_find(const char *path, size_t len);

/* Route handlers: the embedded files and /healthz. */
void hsc_static_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);
void hsc_healthz_handle(void *ctx, hsc_req_t *req, hsc_res_t *res);

#endif
