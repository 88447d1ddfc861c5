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

/**
 * Who a request comes from, for per-client limits: "sub:" and the subject of the JWT that
 * authorised it (a JWT without one: its signature), else "ip:" and the peer's address, an IPv6
 * address by its /64 (one host usually has the whole prefix). A static token says nothing of
 * who holds it (every publisher may share it): its requests count by address.
 */
typedef struct hsc_client_id_s {
    size_t len;
    char b[8 + 128];
} hsc_client_id_t;

/** Fills `who` with the peer's address (see hsc_client_id_t). */
void hsc_client_id_peer(const hsc_req_t *req, hsc_client_id_t *who);

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
 * hsc_auth_require(), and who is asking. `who` (may be NULL): the client's identity for
 * per-client limits (see hsc_client_id_t). `subject` (may be NULL; capacity `cap` > 0): when the
 * request was allowed by a JWT with a string `sub` claim, that claim, cut at a character
 * boundary to fit; otherwise "" (anonymous: no token needed, a static token, no `sub`).
 */
int hsc_auth_require_who(const hsc_server_config_t *cfg, hsc_req_t *req, hsc_res_t *res,
                         hsc_auth_action_t act, const char *names, size_t stride, size_t n,
                         hsc_client_id_t *who, char *subject, size_t cap);

/* ---- per-client rate limits (ratelimit.c) ---------------------------------------------------- */

typedef struct hsc_ratelimit_s hsc_ratelimit_t;

/** How many clients the server's per-client limits track at once (about 40 bytes each). */
#define HSC_RATELIMIT_CLIENTS 16384

/**
 * Token buckets of `burst` tokens refilled at `rate` a second, for at most `clients` clients at
 * once (past it the least recently seen is forgotten). Safe from any thread. *out is NULL with
 * rate 0 (no limit). Returns 0, HSC_EINVAL or HSC_ENOMEM; free with hsc_ratelimit_free().
 */
int hsc_ratelimit_new(unsigned rate, unsigned burst, size_t clients, hsc_ratelimit_t **out);
/** NULL is ignored. */
void hsc_ratelimit_free(hsc_ratelimit_t *rl);
/** The client's key in `rl`: a keyed hash of `who`, so no peer can choose a collision. */
uint64_t hsc_ratelimit_key(const hsc_ratelimit_t *rl, const hsc_client_id_t *who);
/**
 * Takes `n` tokens (at most a burst's worth) from `client`'s bucket at `now_ms` (a monotonic
 * clock): 0 when taken, else the milliseconds until they would be there (nothing taken). With
 * `rl` NULL, 0.
 */
uint64_t hsc_ratelimit_take(hsc_ratelimit_t *rl, uint64_t client, size_t n, uint64_t now_ms);

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
