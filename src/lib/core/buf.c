/*
 * Bounded byte buffers. Every buffer whose size a peer controls (request heads, bodies, pipelined
 * input) is an hsc_buf_t with a ceiling fixed at init: appending past it fails with HSC_ETOOBIG
 * and leaves the buffer unchanged, so the caller can answer 413/431 instead of growing. Storage
 * grows geometrically up to the ceiling and is released by hsc_buf_dispose().
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

void hsc_buf_init(hsc_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void hsc_buf_dispose(hsc_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int hsc_buf_reserve(hsc_buf_t *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return HSC_ETOOBIG;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max)
        cap = b->max;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return HSC_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

void hsc_buf_shrink(hsc_buf_t *b)
{
    if (b->len == 0 || b->len == b->cap)
        return;
    char *p = realloc(b->data, b->len);
    if (p == NULL)
        return; /* keeping the larger block is harmless */
    b->data = p;
    b->cap = b->len;
}

int hsc_buf_append(hsc_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = hsc_buf_reserve(b, n);
    if (rc != 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void hsc_buf_consume(hsc_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
