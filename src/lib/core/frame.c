/*
 * Frames: immutable, reference-counted byte blocks. A frame is written once by its creator and
 * then only read, by any number of output queues on any threads; the last hsc_frame_unref()
 * frees it. This is how one encoded event is shared by a history ring and every subscriber
 * without a copy, and how the response writer keeps bytes alive until libuv's write callback.
 */
#include "core/core.h"

#include <stdlib.h>

hsc_frame_t *hsc_frame_try_new(size_t len)
{
    hsc_frame_t *f = malloc(sizeof *f + len);
    if (f == NULL)
        return NULL;
    atomic_init(&f->refs, 1);
    f->born_ns = 0;
    f->len = len;
    return f;
}

hsc_frame_t *hsc_frame_ref(hsc_frame_t *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

void hsc_frame_unref(hsc_frame_t *f)
{
    if (f != NULL && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        free(f);
}
