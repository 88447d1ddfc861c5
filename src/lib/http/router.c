/*
 * The router: a small table of routes, matched in order. A route matches a path exactly. When a
 * path matches some route but none for the request's method, the result is HSC_EMETHOD with the
 * union of allowed methods, which the server turns into 405 and an Allow header. Pure: no I/O, no
 * allocation.
 */
#include "http/http.h"

#include <string.h>

static const struct {
    unsigned bit;
    const char *name;
} method_names[] = {
    {HSC_M_GET, "GET"},     {HSC_M_HEAD, "HEAD"},     {HSC_M_POST, "POST"},
    {HSC_M_PUT, "PUT"},     {HSC_M_DELETE, "DELETE"}, {HSC_M_OPTIONS, "OPTIONS"},
    {HSC_M_PATCH, "PATCH"},
};

unsigned hsc_method_bit(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof method_names / sizeof method_names[0]; i++)
        if (strlen(method_names[i].name) == len && memcmp(method_names[i].name, name, len) == 0)
            return method_names[i].bit;
    return HSC_M_OTHER;
}

size_t hsc_methods_format(unsigned mask, char *out, size_t cap)
{
    size_t len = 0;
    if (cap == 0)
        return 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof method_names / sizeof method_names[0]; i++) {
        if (!(mask & method_names[i].bit))
            continue;
        size_t n = strlen(method_names[i].name);
        size_t sep = len ? 2 : 0;
        if (len + sep + n + 1 > cap)
            break;
        if (sep)
            memcpy(out + len, ", ", 2);
        memcpy(out + len + sep, method_names[i].name, n);
        len += sep + n;
        out[len] = '\0';
    }
    return len;
}

static int path_matches(const hsc_route_t *r, const char *path, size_t len)
{
    size_t rl = strlen(r->path);
    return len == rl && memcmp(path, r->path, rl) == 0;
}

int hsc_router_match(const hsc_route_t *routes, size_t n, const char *path, size_t len,
                     unsigned method, const hsc_route_t **out, unsigned *allowed)
{
    unsigned allow = 0;
    for (size_t i = 0; i < n; i++) {
        if (!path_matches(&routes[i], path, len))
            continue;
        if (routes[i].methods & method) {
            *out = &routes[i];
            return 0;
        }
        allow |= routes[i].methods;
    }
    if (allowed != NULL)
        *allowed = allow;
    return allow ? HSC_EMETHOD : HSC_ENOTFOUND;
}
