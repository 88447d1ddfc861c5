/*
 * Cross-origin access (--cors-origin). Off by default: without the flag no CORS header is ever
 * sent and browsers keep pages of other origins out. With it, a request whose Origin is listed
 * (or any Origin with "*") gets Access-Control-Allow-Origin naming that origin, and OPTIONS
 * preflights are answered for the route's methods. Origins are compared exactly, as browsers
 * send them ("https://app.example:8443", no path).
 *
 * Credentials (cookies, such as the hsc_token cookie) are not allowed cross-origin unless
 * --cors-credentials asks for it, and then only to the exact origins listed, never to "*": a
 * browser then sends a page's cookies along with its EventSource (withCredentials) or fetch
 * (credentials: "include") and lets the page read the answer. Without it, pages of the listed
 * origins still subscribe, publish and ask, with a token in the Authorization header or the
 * query (docs/security.md).
 */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hsc_cors_setup(hsc_cors_t *cors, const char *list, bool credentials)
{
    memset(cors, 0, sizeof *cors);
    cors->credentials = credentials;
    if (list == NULL)
        return 0;
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 1 && *p == '*') {
            cors->any = true;
        } else if (n > 0) {
            if (memchr(p, '\r', n) || memchr(p, '\n', n))
                return HSC_EINVAL;
            char **v = realloc(cors->origins, (cors->n + 1) * sizeof *v);
            if (v == NULL)
                return HSC_ENOMEM;
            cors->origins = v;
            if ((v[cors->n] = strndup(p, n)) == NULL)
                return HSC_ENOMEM;
            cors->n++;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return 0;
}

void hsc_cors_dispose(hsc_cors_t *cors)
{
    for (size_t i = 0; i < cors->n; i++)
        free(cors->origins[i]);
    free(cors->origins);
    cors->origins = NULL;
    cors->n = 0;
}

/* The request's Origin when it is allowed, else NULL. */
static const char *allowed_origin(const hsc_cors_t *cors, const hsc_req_t *req, bool *any)
{
    const char *origin = hsc_req_header(req, "Origin");
    *any = false;
    if (origin == NULL || strpbrk(origin, "\r\n") != NULL)
        return NULL;
    for (size_t i = 0; i < cors->n; i++)
        if (strcmp(cors->origins[i], origin) == 0)
            return origin;
    if (cors->any) {
        *any = true;
        return origin;
    }
    return NULL;
}

void hsc_cors_headers(const hsc_cors_t *cors, const hsc_req_t *req, char *out, size_t cap)
{
    if (cors->n == 0 && !cors->any)
        return;
    bool any;
    const char *origin = allowed_origin(cors, req, &any);
    size_t len = strlen(out);
    if (origin == NULL || len >= cap)
        return;
    int n;
    if (any)
        n = snprintf(out + len, cap - len, "Access-Control-Allow-Origin: *\r\n");
    else
        n = snprintf(out + len, cap - len, "Access-Control-Allow-Origin: %s\r\n%sVary: Origin\r\n",
                     origin, cors->credentials ? "Access-Control-Allow-Credentials: true\r\n" : "");
    if (n < 0 || (size_t)n >= cap - len)
        out[len] = '\0'; /* all or nothing */
}

/* Whether a header value is a comma-separated list of header names (nothing to forge with). */
static bool token_list(const char *s)
{
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("-_, ", *s) != NULL))
            return false;
    return true;
}

void hsc_cors_options(const hsc_cors_t *cors, hsc_req_t *req, hsc_res_t *res, unsigned methods)
{
    char allow[96], extra[1024];
    hsc_methods_format(methods, allow, sizeof allow);
    int n = snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
    bool any;
    const char *origin = allowed_origin(cors, req, &any);
    const char *want = hsc_req_header(req, "Access-Control-Request-Method");
    if (origin != NULL && want != NULL) {
        const char *hdrs = hsc_req_header(req, "Access-Control-Request-Headers");
        if (hdrs == NULL || strlen(hdrs) > 512 || !token_list(hdrs))
            hdrs = "Content-Type, Last-Event-ID, Authorization";
        snprintf(extra + n, sizeof extra - (size_t)n,
                 "Access-Control-Allow-Methods: %s\r\n"
                 "Access-Control-Allow-Headers: %s\r\n"
                 "Access-Control-Max-Age: 600\r\n",
                 allow, hdrs);
    }
    hsc_res_send(res, 204, NULL, extra, NULL, 0);
}
