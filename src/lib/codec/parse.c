/*
 * Command-line values: durations ("250ms", "1s", "1.5m") and byte sizes ("16k", "1MiB"). Strict:
 * trailing garbage, negative numbers and overflow are errors, so a typo in a flag is reported
 * instead of silently meaning something else.
 */
#include "hsc/codec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>

int hsc_parse_duration(const char *s, uint64_t *ms)
{
    if (s == NULL)
        return HSC_EINVAL;
    /* Digits with at most one '.', then the unit: strtod alone would take "0x10" or "1e3". */
    size_t digits = 0, dots = 0, i = 0;
    for (; isdigit((unsigned char)s[i]) || s[i] == '.'; i++)
        s[i] == '.' ? dots++ : digits++;
    if (digits == 0 || dots > 1)
        return HSC_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end != s + i || !isfinite(v) || v < 0)
        return HSC_EINVAL;
    double mult;
    if (*end == '\0' || strcasecmp(end, "s") == 0)
        mult = 1000;
    else if (strcasecmp(end, "ms") == 0)
        mult = 1;
    else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "min") == 0)
        mult = 60000;
    else if (strcasecmp(end, "h") == 0)
        mult = 3600000;
    else
        return HSC_EINVAL;
    double r = v * mult;
    if (r > 1e15)
        return HSC_EINVAL;
    *ms = (uint64_t)llround(r);
    return 0;
}

int hsc_parse_size(const char *s, uint64_t *bytes)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return HSC_EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return HSC_EINVAL;
    unsigned shift = 0;
    switch (tolower((unsigned char)*end)) {
    case '\0':
        break;
    case 'b':
        if (end[1] != '\0')
            return HSC_EINVAL;
        break;
    case 'k':
        shift = 10;
        break;
    case 'm':
        shift = 20;
        break;
    case 'g':
        shift = 30;
        break;
    default:
        return HSC_EINVAL;
    }
    if (shift != 0) {
        const char *u = end + 1;
        if (!(*u == '\0' || strcasecmp(u, "b") == 0 || strcasecmp(u, "ib") == 0))
            return HSC_EINVAL;
        if (v > (UINT64_MAX >> shift))
            return HSC_EINVAL;
    }
    *bytes = (uint64_t)v << shift;
    return 0;
}
