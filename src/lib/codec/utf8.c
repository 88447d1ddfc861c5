/*
 * UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF) and the
 * "complete prefix" used to cut a byte stream into pieces without splitting a character, and the
 * repair a browser applies to bad bytes (each maximal invalid subpart becomes U+FFFD).
 */
#include "hsc/codec.h"

#include <stdint.h>
#include <string.h>

/* Length of the sequence a lead byte starts, or 0 for a byte that cannot lead one. */
static int seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

/* Whether b is a valid second byte after lead c (the first continuation is the constrained one). */
static int second_ok(unsigned char c, unsigned char b)
{
    switch (c) {
    case 0xe0:
        return b >= 0xa0 && b <= 0xbf;
    case 0xed:
        return b >= 0x80 && b <= 0x9f;
    case 0xf0:
        return b >= 0x90 && b <= 0xbf;
    case 0xf4:
        return b >= 0x80 && b <= 0x8f;
    default:
        return (b & 0xc0) == 0x80;
    }
}

/*
 * Checks the sequence at s (avail bytes). Returns its length when complete and valid, 0 when
 * invalid, or -1 when valid so far but cut short by the end of input.
 */
static int check_seq(const unsigned char *s, size_t avail)
{
    int n = seq_len(s[0]);
    if (n <= 1)
        return n;
    for (int k = 1; k < n; k++) {
        if ((size_t)k >= avail)
            return -1;
        int ok = k == 1 ? second_ok(s[0], s[1]) : (s[k] & 0xc0) == 0x80;
        if (!ok)
            return 0;
    }
    return n;
}

int hsc_utf8_valid(const void *p, size_t len)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < len) {
        /* ASCII eight bytes at a time: most events are mostly ASCII (replay checks every one). */
        while (len - i >= sizeof(uint64_t)) {
            uint64_t w;
            memcpy(&w, s + i, sizeof w);
            if ((w & 0x8080808080808080u) != 0)
                break;
            i += sizeof w;
        }
        if (i == len)
            break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int n = check_seq(s + i, len - i);
        if (n <= 0)
            return 0;
        i += (size_t)n;
    }
    return 1;
}

size_t hsc_utf8_complete_prefix(const void *p, size_t len)
{
    const unsigned char *s = p;
    /* Only the last three bytes can start an incomplete sequence. */
    size_t from = len > 3 ? len - 3 : 0;
    for (size_t i = len; i > from; i--) {
        unsigned char c = s[i - 1];
        if ((c & 0xc0) == 0x80)
            continue; /* a continuation byte: look further back for its lead */
        if (c < 0x80)
            return len;
        return check_seq(s + i - 1, len - (i - 1)) == -1 ? i - 1 : len;
    }
    return len;
}

size_t hsc_utf8_repair(char *out, const void *in, size_t len)
{
    const unsigned char *s = in;
    size_t i = 0, o = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            out[o++] = (char)s[i++];
            continue;
        }
        int n = seq_len(s[i]);
        /* The maximal valid prefix of a sequence (WHATWG): lead plus continuations so far. */
        int k = 1;
        while (n > 1 && k < n && (size_t)k < len - i &&
               (k == 1 ? second_ok(s[i], s[i + 1]) : (s[i + k] & 0xc0) == 0x80))
            k++;
        if (n > 1 && k == n) {
            for (int j = 0; j < n; j++)
                out[o++] = (char)s[i + j];
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3); /* U+FFFD for the bad or cut sequence */
            o += 3;
        }
        i += (size_t)k;
    }
    return o;
}
