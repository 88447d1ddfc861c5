/*
 * What every engine shares (engine.h): the one encoding of an event into a frame, which hubs
 * slice for HTTP/1.0, a channel's tag frame, and the reading of a client's last event id. Pure:
 * no lock, no loop.
 */
#include "pubsub/engine.h"

#include <string.h>

hsc_frame_t *hsc_event_frame_new(const char *type, const char *id, const char *data, size_t len)
{
    hsc_sse_event_t ev = {.type = type, .id = id, .data = data, .data_len = len, .retry_ms = -1};
    char probe[1];
    ssize_t n = hsc_sse_encode(probe, 0, &ev);
    if (n < 0)
        return NULL;
    char head[HSC_CHUNK_HEADER_MAX];
    size_t hl = hsc_chunked_header(head, (size_t)n);
    hsc_frame_t *f = hsc_frame_try_new(hl + (size_t)n + 2);
    if (f == NULL)
        return NULL;
    memcpy(f->data, head, hl);
    hsc_sse_encode(f->data + hl, (size_t)n, &ev);
    memcpy(f->data + hl + n, HSC_CHUNK_CRLF, 2);
    return f;
}

hsc_frame_t *hsc_chan_tag_new(const char *name, size_t len)
{
    return hsc_event_frame_new(HSC_TAG_TYPE, NULL, name, len);
}

void hsc_event_frame_body(const hsc_frame_t *f, size_t *off, size_t *end)
{
    const char *nl =
        memchr(f->data, '\n', f->len < HSC_CHUNK_HEADER_MAX ? f->len : HSC_CHUNK_HEADER_MAX);
    *off = nl ? (size_t)(nl - f->data) + 1 : 0;
    *end = f->len - 2;
}

hsc_gap_t hsc_resume_point(const char *last, size_t len, uint64_t epoch, uint64_t cut,
                           uint64_t *after)
{
    uint64_t e, seq;
    *after = 0;
    /* An epoch is a start time: one before 2020 is a string that merely looks like an id. */
    if (hsc_event_id_parse(last, len, &e, &seq) != 0 || e > epoch || e < HSC_EPOCH_MIN ||
        (e == epoch && seq > cut))
        return HSC_GAP_UNKNOWN;
    if (e < epoch)
        return HSC_GAP_EPOCH;
    *after = seq;
    return HSC_GAP_NONE;
}
