/*
 * Channel names, event types and event ids: the identifiers a client may send back to the
 * server, so each has one strict validator here and nowhere else. An id is "EPOCH-SEQ" with the
 * epoch (a server run's start time in milliseconds) in base 36 and the sequence number in
 * decimal; parsing accepts exactly what formatting writes, so an id has one spelling.
 */
#include "hsc/codec.h"

#include <string.h>

static int is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int hsc_channel_name_valid(const char *p, size_t len)
{
    if (len == 0 || len > HSC_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!is_alnum(c) && (c == 0 || strchr("-_.:@/", c) == NULL))
            return 0;
    }
    return 1;
}

int hsc_event_type_valid(const char *p, size_t len)
{
    if (len == 0 || len > HSC_EVENT_TYPE_MAX)
        return 0;
    if (len >= 4 && memcmp(p, "hsc.", 4) == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!is_alnum(c) && (c == 0 || strchr("-_.:", c) == NULL))
            return 0;
    }
    return 1;
}

static size_t put_base(char *out, uint64_t v, unsigned base)
{
    char tmp[24];
    size_t n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t hsc_event_id_format(char *out, uint64_t epoch, uint64_t seq)
{
    size_t n = put_base(out, epoch, 36);
    out[n++] = '-';
    n += put_base(out + n, seq, 10);
    out[n] = '\0';
    return n;
}

/* Parses digits of `base` (lowercase letters only); no leading zeros unless the number is 0. */
static int get_base(const char *s, size_t len, unsigned base, uint64_t *out)
{
    if (len == 0 || (len > 1 && s[0] == '0'))
        return HSC_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d;
        if (s[i] >= '0' && s[i] <= '9')
            d = (unsigned)(s[i] - '0');
        else if (s[i] >= 'a' && s[i] <= 'z')
            d = (unsigned)(s[i] - 'a') + 10;
        else
            return HSC_EINVAL;
        if (d >= base || v > (UINT64_MAX - d) / base)
            return HSC_EINVAL;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

int hsc_event_id_parse(const char *s, size_t len, uint64_t *epoch, uint64_t *seq)
{
    const char *dash = memchr(s, '-', len);
    if (dash == NULL)
        return HSC_EINVAL;
    size_t elen = (size_t)(dash - s);
    uint64_t e, q;
    if (get_base(s, elen, 36, &e) != 0 || get_base(dash + 1, len - elen - 1, 10, &q) != 0)
        return HSC_EINVAL;
    *epoch = e;
    *seq = q;
    return 0;
}
