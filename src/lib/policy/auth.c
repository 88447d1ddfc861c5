/*
 * Who may publish, subscribe and ask the responder (docs/security.md). Off by default: with no
 * token and no JWT key configured every request is allowed, so the demo works with no flags.
 *
 * An action is protected when its static token (--publish-token, --subscribe-token,
 * --stream-token) is set, or when a JWT key is (then all three are). The request's token comes
 * from "Authorization: Bearer", else the hsc_token cookie (EventSource cannot set headers), else
 * the access_token query parameter. It is accepted when it equals the action's static token
 * (compared in constant time, through SHA-256 so that lengths leak nothing either) or when it is
 * a valid JWT whose claims cover the action: every channel of the request (a subscription to
 * several channels is refused whole), or hsc_stream. 401 for a missing or bad token, 403 for a
 * valid one that does not cover the request.
 */
#include "policy/policy.h"
#include "policy/jwt.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *static_token(const hsc_server_config_t *cfg, hsc_auth_action_t act)
{
    switch (act) {
    case HSC_AUTH_PUBLISH:
        return cfg->publish_token;
    case HSC_AUTH_SUBSCRIBE:
        return cfg->subscribe_token;
    case HSC_AUTH_STREAM:
        return cfg->stream_token;
    }
    return NULL;
}

bool hsc_auth_protects(const hsc_server_config_t *cfg, hsc_auth_action_t act)
{
    const char *t = static_token(cfg, act);
    return (t != NULL && t[0] != '\0') || cfg->jwt_key_len > 0;
}

static bool token_equal(const char *given, size_t len, const char *want)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)given, len, a);
    SHA256((const unsigned char *)want, strlen(want), b);
    return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

/* The value of cookie `name` in a Cookie header ("a=1; hsc_token=...; b=2"). */
static const char *cookie_value(const char *h, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    while (h != NULL && *h != '\0') {
        while (*h == ' ' || *h == ';')
            h++;
        const char *end = strchr(h, ';');
        size_t l = end ? (size_t)(end - h) : strlen(h);
        if (l > nl && memcmp(h, name, nl) == 0 && h[nl] == '=') {
            *len = l - nl - 1;
            return h + nl + 1;
        }
        h = end;
    }
    return NULL;
}

/*
 * Finds the request's token: copies it into `buf` (capacity HSC_JWT_MAX + 1) and returns its
 * length, 0 when there is none, or -1 when one is present but unusable (too long, bad encoding).
 */
/* Room for a request's token (HSC_JWT_MAX + 1 bytes), or NULL after answering 503. */
static char *token_buffer(hsc_res_t *res)
{
    char *tok = malloc(HSC_JWT_MAX + 1);
    if (tok == NULL)
        hsc_res_error(res, 503, "Retry-After: 1\r\n", "out of memory", false);
    return tok;
}

static ssize_t request_token(const hsc_req_t *req, char *buf)
{
    const char *h = hsc_req_header(req, "Authorization");
    const char *p = NULL;
    size_t len = 0;
    if (h != NULL) {
        if (strncasecmp(h, "Bearer ", 7) != 0)
            return -1;
        p = h + 7;
        while (*p == ' ')
            p++;
        len = strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            len--;
    } else if ((h = hsc_req_header(req, "Cookie")) != NULL &&
               (p = cookie_value(h, "hsc_token", &len)) != NULL) {
        /* taken as is */
    } else if (req->query != NULL) {
        ssize_t n = hsc_query_get(req->query, req->query_len, "access_token", buf, HSC_JWT_MAX);
        if (n == HSC_ENOTFOUND)
            return 0;
        if (n < 0)
            return -1;
        buf[n] = '\0';
        return n;
    } else {
        return 0;
    }
    if (len > HSC_JWT_MAX)
        return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return (ssize_t)len;
}

static int deny(hsc_res_t *res, int status, const char *reason)
{
    const char *extra = status == 401 ? "WWW-Authenticate: Bearer realm=\"hscd\"\r\n" : NULL;
    hsc_res_error(res, status, extra, reason, false);
    return status;
}

/* Copies a JWT's string `sub` claim into `out` (cap > 0), cut at a UTF-8 character boundary. */
static void copy_subject(const json_t *claims, char *out, size_t cap)
{
    const json_t *sub = json_object_get(claims, "sub");
    out[0] = '\0';
    if (!json_is_string(sub))
        return;
    size_t n = json_string_length(sub);
    const char *p = json_string_value(sub);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80)
            n--; /* p[n] would start the cut: stop before its character */
    }
    if (memchr(p, '\0', n) != NULL)
        return; /* a NUL inside: not a name to show */
    memcpy(out, p, n);
    out[n] = '\0';
}

void hsc_client_id_peer(const hsc_req_t *req, hsc_client_id_t *who)
{
    const char *peer = hsc_req_peer(req);
    const char *colon = strrchr(peer, ':');
    size_t len = colon != NULL ? (size_t)(colon - peer) : strlen(peer);
    char ip[64];
    struct in6_addr a6;
    if (len >= 2 && peer[0] == '[' && len - 2 < sizeof ip) {
        memcpy(ip, peer + 1, len - 2);
        ip[len - 2] = '\0';
        if (inet_pton(AF_INET6, ip, &a6) == 1) { /* by its /64 */
            memcpy(who->b, "ip6:", 4);
            memcpy(who->b + 4, &a6, 8);
            who->len = 12;
            return;
        }
    }
    if (len > sizeof who->b - 3)
        len = sizeof who->b - 3;
    memcpy(who->b, "ip:", 3);
    memcpy(who->b + 3, peer, len);
    who->len = 3 + len;
}

/* Who a verified JWT speaks for: its subject, else its signature (the text after the last '.'). */
static void client_id_jwt(const json_t *claims, const char *tok, size_t len, hsc_client_id_t *who)
{
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    const char *p = sub;
    size_t n = sub != NULL ? strlen(sub) : 0;
    memcpy(who->b, sub != NULL ? "sub:" : "sig:", 4);
    if (sub == NULL) {
        const char *dot = memchr(tok, '.', len);
        for (const char *d = dot; d != NULL; d = memchr(d + 1, '.', len - (size_t)(d + 1 - tok)))
            dot = d;
        p = dot != NULL ? dot + 1 : tok;
        n = len - (size_t)(p - tok);
    }
    if (n > sizeof who->b - 4)
        n = sizeof who->b - 4;
    memcpy(who->b + 4, p, n);
    who->len = 4 + n;
}

int hsc_auth_require(const hsc_server_config_t *cfg, hsc_req_t *req, hsc_res_t *res,
                     hsc_auth_action_t act, const char *names, size_t stride, size_t n)
{
    return hsc_auth_require_who(cfg, req, res, act, names, stride, n, NULL, NULL, 0);
}

int hsc_auth_require_who(const hsc_server_config_t *cfg, hsc_req_t *req, hsc_res_t *res,
                         hsc_auth_action_t act, const char *names, size_t stride, size_t n,
                         hsc_client_id_t *who, char *subject, size_t cap)
{
    if (who != NULL)
        hsc_client_id_peer(req, who);
    if (subject != NULL)
        subject[0] = '\0';
    if (!hsc_auth_protects(cfg, act))
        return 0;
    char *tok = token_buffer(res);
    if (tok == NULL)
        return 503;
    ssize_t len = request_token(req, tok);
    int status = 0;
    const char *st = static_token(cfg, act);
    if (len <= 0) {
        status = deny(res, 401,
                      len == 0 ? "a token is required (Authorization: Bearer, the hsc_token "
                                 "cookie or access_token=)"
                               : "unusable token (use Authorization: Bearer TOKEN)");
    } else if (st != NULL && st[0] != '\0' && token_equal(tok, (size_t)len, st)) {
        status = 0;
    } else if (cfg->jwt_key_len == 0) {
        status = deny(res, 401, "bad token");
    } else {
        json_t *claims = NULL;
        const char *why = NULL;
        if (hsc_jwt_verify(cfg->jwt_key, cfg->jwt_key_len, tok, (size_t)len, (int64_t)time(NULL),
                           &claims, &why) != 0) {
            status = deny(res, 401, why);
        } else if (act == HSC_AUTH_STREAM) {
            if (!json_is_true(json_object_get(claims, HSC_JWT_STREAM)))
                status = deny(res, 403, "the token does not allow asking the responder");
        } else {
            if (who != NULL)
                client_id_jwt(claims, tok, (size_t)len, who);
            const char *claim = act == HSC_AUTH_PUBLISH ? HSC_JWT_PUBLISH : HSC_JWT_SUBSCRIBE;
            for (size_t i = 0; i < n && status == 0; i++) {
                const char *name = names + i * stride;
                if (!hsc_jwt_covers(claims, claim, name, strlen(name))) {
                    char why_buf[256];
                    snprintf(why_buf, sizeof why_buf, "the token does not allow %s channel %s",
                             act == HSC_AUTH_PUBLISH ? "publishing to" : "subscribing to", name);
                    status = deny(res, 403, why_buf);
                }
            }
        }
        if (status == 0 && subject != NULL)
            copy_subject(claims, subject, cap);
        json_decref(claims);
    }
    free(tok);
    return status;
}

int hsc_auth_admin(const hsc_server_config_t *cfg, hsc_req_t *req, hsc_res_t *res)
{
    const char *want = cfg->admin_token;
    if (want == NULL || want[0] == '\0') {
        hsc_res_error(res, 404, NULL,
                      "the admin API is off: start hscd with --admin-token (docs/api.md)", false);
        return 404;
    }
    char *tok = token_buffer(res);
    if (tok == NULL)
        return 503;
    ssize_t len = request_token(req, tok);
    int status = 0;
    json_t *claims = NULL;
    const char *why = NULL;
    if (len <= 0)
        status = deny(res, 401,
                      len == 0 ? "the admin API needs the admin token (Authorization: Bearer)"
                               : "unusable token (use Authorization: Bearer TOKEN)");
    else if (token_equal(tok, (size_t)len, want))
        status = 0;
    else if (cfg->jwt_key_len > 0 &&
             hsc_jwt_verify(cfg->jwt_key, cfg->jwt_key_len, tok, (size_t)len, (int64_t)time(NULL),
                            &claims, &why) == 0)
        status =
            deny(res, 403, "the token does not allow the admin API (it takes the --admin-token)");
    else
        status = deny(res, 401, "bad admin token");
    json_decref(claims);
    free(tok);
    return status;
}
