/*
 * Percent-decoding (RFC 3986 §2.1) and query-string iteration. Decoding is strict: a '%' must be
 * followed by two hex digits, otherwise the whole input is rejected (a request with a broken
 * escape gets a 400, never a guess). Decoded bytes may be anything, including NUL and invalid
 * UTF-8: callers that need text validate it themselves (hsc_utf8_valid()).
 */
#include "hsc/codec.h"

#include <stdbool.h>
#include <string.h>

int hsc_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ssize_t hsc_url_decode(char *out, const char *in, size_t len, int plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= len)
                return HSC_EINVAL;
            int hi = hsc_hex_value((unsigned char)in[i + 1]);
            int lo = hsc_hex_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return HSC_EINVAL;
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out[o++] = ' ';
        } else {
            out[o++] = (char)c;
        }
    }
    return (ssize_t)o;
}

int hsc_query_next(const char *q, size_t qlen, size_t *pos, hsc_span_t *key, hsc_span_t *value)
{
    size_t i = *pos;
    while (i < qlen && q[i] == '&')
        i++;
    if (i >= qlen) {
        *pos = qlen;
        return 0;
    }
    size_t start = i;
    while (i < qlen && q[i] != '&')
        i++;
    const char *pair = q + start;
    size_t plen = i - start;
    const char *eq = memchr(pair, '=', plen);
    key->p = pair;
    if (eq != NULL) {
        key->len = (size_t)(eq - pair);
        value->p = eq + 1;
        value->len = plen - key->len - 1;
    } else {
        key->len = plen;
        value->p = pair + plen;
        value->len = 0;
    }
    *pos = i;
    return 1;
}

ssize_t hsc_query_get(const char *q, size_t qlen, const char *name, char *out, size_t cap)
{
    size_t pos = 0, nlen = strlen(name);
    hsc_span_t k, v;
    char kbuf[256];
    while (hsc_query_next(q, qlen, &pos, &k, &v)) {
        if (k.len > sizeof kbuf)
            continue;
        ssize_t kl = hsc_url_decode(kbuf, k.p, k.len, 1);
        if (kl < 0 || (size_t)kl != nlen || memcmp(kbuf, name, nlen) != 0)
            continue;
        if (cap == 0)
            return HSC_ETOOBIG;
        /* Decode piecewise so `out` never needs more than the decoded size. */
        size_t o = 0;
        for (size_t i = 0; i < v.len;) {
            size_t n = v.p[i] == '%' ? (v.len - i < 3 ? v.len - i : 3) : 1;
            if (o + 1 >= cap)
                return HSC_ETOOBIG;
            ssize_t d = hsc_url_decode(out + o, v.p + i, n, 1);
            if (d < 0)
                return d;
            o += (size_t)d;
            i += n;
        }
        out[o] = '\0';
        return (ssize_t)o;
    }
    return HSC_ENOTFOUND;
}

static bool key_is(hsc_span_t k, const char *name, size_t nlen)
{
    char kbuf[256];
    if (k.len > sizeof kbuf)
        return false; /* three bytes per byte at most: longer decodes to more than any name here */
    ssize_t kl = hsc_url_decode(kbuf, k.p, k.len, 1);
    return kl >= 0 && (size_t)kl == nlen && memcmp(kbuf, name, nlen) == 0;
}

size_t hsc_query_without(char *out, const char *q, size_t qlen, const char *name)
{
    size_t pos = 0, nlen = strlen(name), o = 0;
    bool dropped = false;
    hsc_span_t k, v;
    while (hsc_query_next(q, qlen, &pos, &k, &v)) {
        if (key_is(k, name, nlen)) {
            dropped = true;
            continue;
        }
        size_t plen = (size_t)(v.p + v.len - k.p);
        if (o > 0)
            out[o++] = '&';
        memcpy(out + o, k.p, plen);
        o += plen;
    }
    if (!dropped) {
        memcpy(out, q, qlen);
        return qlen;
    }
    return o;
}
