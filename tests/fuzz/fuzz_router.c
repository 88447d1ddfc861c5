/*
 * Fuzz target for src/lib/http/router.c: route matching and method names.
 *
 * Properties checked (abort() on a violation):
 *  - hsc_router_match() with random tables, paths and method masks reads only the `len` bytes of
 *    the path and the routes' NUL-terminated paths (all exact-size heap blocks), and agrees with
 *    the reference: the first route whose path equals the request's and whose methods include the
 * method; otherwise HSC_EMETHOD with the union of the matching routes' methods, or HSC_ENOTFOUND;
 * `*allowed` may be NULL;
 *  - hsc_methods_format() with every capacity (exact-size heap blocks) never writes past `cap`,
 *    returns strlen of a NUL-terminated result, and that result is the longest run of whole
 *    names, in table order and joined by ", ", that fits with its NUL;
 *  - hsc_method_bit() names exactly the seven methods it knows, case-sensitively.
 *
 * Input layout: byte 0: the number of routes (mod 9); per route a flags byte (low bits:
 * methods) and a length byte, then that many path bytes (cut at a NUL); then a method
 * byte and a capacity byte; the rest is the request's path and the method name.
 */
#include "http/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_router: %s:%d: property violated: %s\n", __FILE__, __LINE__,     \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_ROUTES 8

static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
#define NNAMES (sizeof names / sizeof names[0])

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    return p;
}

static int ref_path_matches(const hsc_route_t *r, const char *path, size_t len)
{
    size_t rl = strlen(r->path);
    return len == rl && memcmp(path, r->path, rl) == 0;
}

static void check_match(const hsc_route_t *routes, size_t n, const char *path, size_t len,
                        unsigned method)
{
    size_t want = n;
    unsigned allow = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ref_path_matches(&routes[i], path, len))
            continue;
        if (routes[i].methods & method) {
            want = i;
            break;
        }
        allow |= routes[i].methods;
    }
    const hsc_route_t *out = NULL;
    unsigned allowed = 0xdeadu;
    int rc = hsc_router_match(routes, n, path, len, method, &out, &allowed);
    if (want < n) {
        CHECK(rc == 0 && out == &routes[want]);
    } else {
        CHECK(rc == (allow ? HSC_EMETHOD : HSC_ENOTFOUND));
        if (rc == HSC_EMETHOD)
            CHECK(allowed == allow);
    }
    out = NULL;
    int rc2 = hsc_router_match(routes, n, path, len, method, &out, NULL);
    CHECK(rc2 == rc);
}

static void check_format(unsigned mask)
{
    char full[128];
    size_t flen = 0;
    for (size_t i = 0; i < NNAMES; i++)
        if (mask & (1u << i))
            flen += (size_t)snprintf(full + flen, sizeof full - flen, "%s%s", flen ? ", " : "",
                                     names[i]);
    for (size_t cap = 0; cap <= flen + 2; cap++) {
        /* The reference for this capacity: whole names while they fit with the NUL. */
        size_t want = 0;
        for (size_t i = 0, len = 0; i < NNAMES; i++) {
            if (!(mask & (1u << i)))
                continue;
            size_t next = len + (len ? 2 : 0) + strlen(names[i]);
            if (next + 1 > cap)
                break;
            len = want = next;
        }
        char *out = xmalloc(cap);
        size_t n = hsc_methods_format(mask, out, cap);
        CHECK(n == want);
        if (cap > 0) {
            CHECK(out[n] == '\0' && strlen(out) == n);
            CHECK(memcmp(out, full, n) == 0);
        }
        free(out);
    }
}

static void check_method_bit(const char *name, size_t len)
{
    unsigned want = HSC_M_OTHER;
    for (size_t i = 0; i < NNAMES; i++)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
            want = 1u << i;
    CHECK(hsc_method_bit(name, len) == want);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    const uint8_t *p = in, *end = in + size;
    if (size < 1)
        return 0;
    size_t n = *p++ % (MAX_ROUTES + 1);
    hsc_route_t routes[MAX_ROUTES];
    char *paths[MAX_ROUTES];
    size_t made = 0;
    for (; made < n && end - p >= 2; made++) {
        unsigned flags = p[0];
        size_t plen = p[1];
        p += 2;
        if (plen > (size_t)(end - p))
            plen = (size_t)(end - p);
        const uint8_t *nul = memchr(p, '\0', plen);
        size_t slen = nul ? (size_t)(nul - p) : plen;
        paths[made] = xmalloc(slen + 1);
        memcpy(paths[made], p, slen);
        paths[made][slen] = '\0';
        p += plen;
        routes[made] = (hsc_route_t){.path = paths[made], .methods = flags & 0x7f, .handler = NULL};
    }
    unsigned method = 0, capsel = 0;
    if (end - p >= 2) {
        /* One method bit most of the time, as a request has; any mask otherwise. */
        method = p[0] & 0x80 ? p[0] & 0x7f : 1u << (p[0] % 8);
        capsel = p[1];
        p += 2;
    }
    size_t len = (size_t)(end - p);
    char *path = xmalloc(len);
    memcpy(path, p, len);

    check_match(routes, made, path, len, method);
    /* Prefixes of the request's path exercise the exact rule at every length. */
    check_match(routes, made, path, capsel % (len + 1), method);
    check_format(method | capsel);
    check_method_bit(path, len);
    check_method_bit(path, capsel % (len + 1));

    free(path);
    for (size_t i = 0; i < made; i++)
        free(paths[i]);
    return 0;
}
