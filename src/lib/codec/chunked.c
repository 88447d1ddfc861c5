/*
 * Chunked transfer coding, encoder side (RFC 9112 §7.1): a size line in hex, the data, CRLF.
 * The response writer uses hsc_chunked_header() to build an iovec [size line, data, CRLF] so the
 * data itself is never copied on the fast path; hsc_chunked_encode() is the one-buffer form.
 */
#include "hsc/codec.h"

#include <string.h>

size_t hsc_chunked_header(char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = hex[len & 0xf];
        len >>= 4;
    } while (len != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\r';
    out[n + 1] = '\n';
    return n + 2;
}

size_t hsc_chunked_encode(char *out, size_t cap, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    char head[HSC_CHUNK_HEADER_MAX];
    size_t hl = hsc_chunked_header(head, len);
    size_t total = hl + len + 2;
    if (total > cap)
        return total;
    memcpy(out, head, hl);
    memcpy(out + hl, data, len);
    memcpy(out + hl + len, HSC_CHUNK_CRLF, 2);
    return total;
}
