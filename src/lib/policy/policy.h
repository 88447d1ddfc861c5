/*
 * policy: who may do what. Bearer tokens and HS256 JWTs (auth.c, jwt.c, docs/security.md) and
 * cross-origin rules (cors.c). Handlers of the layers above ask it; it answers refusals itself.
 */
#ifndef HSC_POLICY_H
#define HSC_POLICY_H

#include "http/http.h"

/* ---- authorization (auth.c, docs/security.md) ---------------------------------------------- */

typedef enum hsc_auth_action_e {
    HSC_AUTH_PUBLISH,
    HSC_AUTH_SUBSCRIBE,
    HSC_AUTH_STREAM
} hsc_auth_action_t;

/** Whether the configuration asks for a token for `act`. */
bool hsc_auth_protects(const hsc_server_config_t *cfg, hsc_auth_action_t act);
/**
 * Checks the request's token for `act` on the `n` channel names at `names`, `stride` bytes
 * apart (NUL-terminated; none for HSC_AUTH_STREAM). Returns 0 when allowed; otherwise it has
 * answered (401 with WWW-Authenticate, 403, or 503) and returns that status.
 */
int hsc_auth_require(const hsc_server_config_t *cfg, hsc_req_t *req, hsc_res_t *res,
                     hsc_auth_action_t act, const char *names, size_t stride, size_t n);

/** The longest `sub` claim kept for presence (the admin API); a longer one is cut. */
#define HSC_SUBJECT_MAX 256

/**
 * hsc_auth_require(), and who is asking: when the request was allowed by a JWT with a string
 * `sub` claim, that claim goes into `subject` (capacity `cap` > 0; cut at a character boundary
 * to fit), otherwise "" (anonymous: no token needed, a static token, no `sub`).
 */
int hsc_auth_require_subject(const hsc_server_config_t *cfg, hsc_req_t *req, hsc_res_t *res,
                             hsc_auth_action_t act, const char *names, size_t stride, size_t n,
                             char *subject, size_t cap);

/**
 * The admin API's guard (--admin-token): returns 0 when the request carries the admin token.
 * Otherwise it has answered and returns the status: 404 when no admin token is configured (the
 * API is off), 401 for a missing, unusable or wrong token, 403 for a valid JWT (a token for
 * something else), 503 when out of memory.
 */
int hsc_auth_admin(const hsc_server_config_t *cfg, hsc_req_t *req, hsc_res_t *res);

/* ---- CORS (cors.c) --------------------------------------------------------------------------- */

/** --cors-origin, split: exact origins, and whether "*" (any origin) is allowed. */
typedef struct hsc_cors_s {
    char **origins;
    size_t n;
    bool any;
    bool credentials; /* --cors-credentials: the exact origins (never "*") may send cookies */
} hsc_cors_t;

/**
 * Fills `cors` from a comma-separated list (NULL: none); `credentials` allows the exact origins
 * to make credentialed requests. Returns 0, HSC_EINVAL or HSC_ENOMEM.
 */
int hsc_cors_setup(hsc_cors_t *cors, const char *list, bool credentials);
void hsc_cors_dispose(hsc_cors_t *cors);
/** Appends the CORS response headers for the request's Origin to `out` (NUL-terminated). */
void hsc_cors_headers(const hsc_cors_t *cors, const hsc_req_t *req, char *out, size_t cap);
/** Answers an OPTIONS request (a CORS preflight or a plain OPTIONS) for a route's methods. */
void hsc_cors_options(const hsc_cors_t *cors, hsc_req_t *req, hsc_res_t *res, unsigned methods);

#endif
