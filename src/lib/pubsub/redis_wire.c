/*
 * What the Redis engine reads and parses without sockets (redis.h), so that tests/unit/
 * test_redis.c reaches every branch: the URL ("redis://[:PASSWORD@]HOST[:PORT][/DB]" or
 * "unix:///PATH[?db=N]"), a live notice ("EPOCH SEQ PREV TYPE\nDATA") and a stream entry
 * ([ID, [t, TYPE, d, DATA, p, PREV]]).
 */
#include "pubsub/redis.h"

#include <hiredis/hiredis.h>

#include <stdlib.h>
#include <string.h>

/* A decimal number in [lo, hi] filling [s, e). */
static bool number(const char *s, const char *e, unsigned lo, unsigned hi, unsigned *out)
{
    if (s == e || e - s > 10)
        return false;
    unsigned long v = 0;
    for (const char *p = s; p < e; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

static int bad(const char **why, const char *reason)
{
    *why = reason;
    return HSC_EINVAL;
}

int hsc_redis_url_parse(const char *url, hsc_redis_url_t *out, const char **why)
{
    static const char *dummy;
    if (why == NULL)
        why = &dummy;
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (url == NULL || *url == '\0')
        return bad(why, "empty");
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || p[0] != '/')
            return bad(why, "unix:// needs an absolute path, e.g. unix:///run/redis/redis.sock");
        if (len >= sizeof out->path)
            return bad(why, "the socket's path is too long");
        memcpy(out->path, p, len);
        if (q != NULL) {
            if (strncmp(q, "?db=", 4) != 0 || !number(q + 4, q + strlen(q), 0, 1000000, &out->db))
                return bad(why, "after the path only ?db=N may follow");
        }
        out->port = 0;
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return bad(why, "not redis://HOST:PORT or unix:///PATH");
    const char *p = url + 8, *end = p + strlen(p);
    const char *slash = strchr(p, '/');
    const char *auth_end = memchr(p, '@', (size_t)((slash ? slash : end) - p));
    if (auth_end != NULL) {
        /* Only the password form ":PASSWORD@": Redis 6 users are not supported here. */
        const char *last_at = auth_end;
        for (const char *a = auth_end + 1; a < (slash ? slash : end); a++)
            if (*a == '@')
                last_at = a;
        auth_end = last_at;
        if (*p != ':')
            return bad(why, "credentials must be :PASSWORD@ (no user name)");
        size_t len = (size_t)(auth_end - p - 1);
        if (len == 0)
            return bad(why, "an empty password");
        if (len >= sizeof out->password)
            return bad(why, "the password is too long");
        memcpy(out->password, p + 1, len);
        p = auth_end + 1;
    }
    const char *hend = slash ? slash : end;
    const char *host = p, *host_end, *port = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (rb == NULL)
            return bad(why, "an IPv6 address without its closing ]");
        host = p + 1;
        host_end = rb;
        if (rb + 1 < hend) {
            if (rb[1] != ':')
                return bad(why, "after ] only :PORT may follow");
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(hend - p));
        host_end = colon ? colon : hend;
        if (colon != NULL)
            port = colon + 1;
    }
    if (host_end == host)
        return bad(why, "no host");
    if ((size_t)(host_end - host) >= sizeof out->host)
        return bad(why, "the host name is too long");
    for (const char *c = host; c < host_end; c++)
        if (*c == '@' || *c == '/' || *c == '?' || *c == ' ')
            return bad(why, "a bad character in the host");
    memcpy(out->host, host, (size_t)(host_end - host));
    if (port != NULL && !number(port, hend, 1, 65535, &out->port))
        return bad(why, "the port must be a number from 1 to 65535");
    if (slash != NULL && slash + 1 < end && !number(slash + 1, end, 0, 1000000, &out->db))
        return bad(why, "the database must be a number, e.g. redis://127.0.0.1:6379/0");
    return 0;
}

int hsc_redis_url_check(const char *url, const char **why)
{
    hsc_redis_url_t u;
    int rc = hsc_redis_url_parse(url, &u, why);
    memset(u.password, 0, sizeof u.password);
    return rc;
}

/* A decimal number of at most 20 digits filling [s, e) exactly. */
static bool u64(const char *s, const char *e, uint64_t *out)
{
    if (s == e || e - s > 20)
        return false;
    uint64_t v = 0;
    for (const char *p = s; p < e; p++) {
        if (*p < '0' || *p > '9')
            return false;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

int hsc_redis_notice_parse(const char *payload, size_t len, hsc_redis_notice_t *out)
{
    memset(out, 0, sizeof *out);
    const char *end = payload + len, *nl = memchr(payload, '\n', len);
    if (nl == NULL)
        return HSC_EINVAL;
    const char *p = payload;
    uint64_t *v[3] = {&out->epoch, &out->seq, &out->prev};
    for (int i = 0; i < 3; i++) {
        const char *sp = memchr(p, ' ', (size_t)(nl - p));
        if (sp == NULL || !u64(p, sp, v[i]))
            return HSC_EINVAL;
        p = sp + 1;
    }
    if (out->seq == 0 || (size_t)(nl - p) > HSC_EVENT_TYPE_MAX)
        return HSC_EINVAL;
    out->type = p;
    out->type_len = (size_t)(nl - p);
    out->data = nl + 1;
    out->len = (size_t)(end - (nl + 1));
    return 0;
}

int hsc_redis_entry_parse(const struct redisReply *e, hsc_redis_notice_t *out)
{
    memset(out, 0, sizeof *out);
    out->data = "";
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return HSC_EINVAL;
    const char *id = e->element[0]->str, *dash = memchr(id, '-', e->element[0]->len);
    if (dash == NULL || !u64(id, dash, &out->seq) || out->seq == 0)
        return HSC_EINVAL;
    const struct redisReply *f = e->element[1];
    bool data = false;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const struct redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
            return HSC_EINVAL;
        if (k->str[0] == 't') {
            if (v->len > HSC_EVENT_TYPE_MAX)
                return HSC_EINVAL;
            out->type = v->str;
            out->type_len = v->len;
        } else if (k->str[0] == 'd') {
            out->data = v->str;
            out->len = v->len;
            data = true;
        } else if (k->str[0] == 'p' && !u64(v->str, v->str + v->len, &out->prev)) {
            return HSC_EINVAL;
        }
    }
    return data ? 0 : HSC_EINVAL;
}
