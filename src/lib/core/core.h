/*
 * core: what every layer of libhsc stands on: logging, bounded buffers, shared frames, counters.
 * Pure (no libuv, no sockets); the codec archive carries it, so the client has it too. Ownership
 * words follow STYLE.md: *borrows* (valid during the call), *takes ownership*, *valid until the
 * callback*.
 */
#ifndef HSC_CORE_H
#define HSC_CORE_H

#include "hsc/hsc.h"
#include "hsc/server.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- logging (log.c) ------------------------------------------------------------------------- */

extern atomic_int hsc_log_level_v;
/** Logs one line to stderr with a timestamp and level; lines are written whole, never torn. */
void hsc_log(hsc_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define HSC_LOG(level, ...)                                                                        \
    do {                                                                                           \
        if ((int)(level) <= atomic_load_explicit(&hsc_log_level_v, memory_order_relaxed))          \
            hsc_log((level), __VA_ARGS__);                                                         \
    } while (0)

/** One line of the access log (--access-log): a response, complete or cut short. */
typedef struct hsc_access_s {
    uint64_t id;
    const char *peer, *method, *path; /* path as hsc_req_log_target() shows it */
    int status;                       /* 0: no response was started */
    uint64_t bytes;                   /* sent for the response, head included */
    double duration_ms;               /* from the request's head to the response's end */
    bool complete;
} hsc_access_t;

/** Writes an access log line in the process's log format, whatever the log level. */
void hsc_log_access(const hsc_access_t *a);

/* ---- bounded buffers (buf.c) ----------------------------------------------------------------- */

typedef struct hsc_buf_s {
    char *data;
    size_t len, cap;
    size_t max; /* ceiling: len never exceeds it */
} hsc_buf_t;

void hsc_buf_init(hsc_buf_t *b, size_t max);
void hsc_buf_dispose(hsc_buf_t *b);
/** Makes room for `extra` more bytes. Returns 0, HSC_ETOOBIG past the ceiling, or HSC_ENOMEM. */
int hsc_buf_reserve(hsc_buf_t *b, size_t extra);
/** Appends bytes; on failure (HSC_ETOOBIG, HSC_ENOMEM) the buffer is unchanged. */
int hsc_buf_append(hsc_buf_t *b, const void *p, size_t n);
/** Drops the first `n` bytes (all of them when n >= len). */
void hsc_buf_consume(hsc_buf_t *b, size_t n);
/* Gives back the storage past the content (a request head kept for a long response). The data
 * may move: pointers into it must be taken afterwards. */
void hsc_buf_shrink(hsc_buf_t *b);

/* ---- frames (frame.c) ------------------------------------------------------------------------ */

typedef struct hsc_frame_s {
    atomic_uint refs;
    uint64_t born_ns; /* an event's: when the engine took its publish (uv_hrtime()); else 0 */
    size_t len;
    char data[];
} hsc_frame_t;

/** A frame of `len` bytes for the caller to fill, with one reference; NULL when out of memory. */
hsc_frame_t *hsc_frame_try_new(size_t len);
hsc_frame_t *hsc_frame_ref(hsc_frame_t *f);
void hsc_frame_unref(hsc_frame_t *f);

/* ---- keyed hashing (siphash.c) -------------------------------------------------------------- */

#define HSC_SIPHASH_KEY 16

/**
 * SipHash-2-4 of `len` bytes under a 16-byte key: a hash for tables whose keys a peer chooses
 * (channel names, client addresses). With a random key no one outside can make keys collide.
 */
uint64_t hsc_siphash(const unsigned char key[HSC_SIPHASH_KEY], const void *data, size_t len);

/** Adds to a counter that only the calling thread writes (no locked instruction needed). */
#define HSC_STAT_ADD(counter, n)                                                                   \
    atomic_store_explicit(&(counter),                                                              \
                          atomic_load_explicit(&(counter), memory_order_relaxed) + (n),            \
                          memory_order_relaxed)

/* ---- duration histograms (timing.c) -------------------------------------------------------- */

/** Upper bounds (seconds) of the histograms' buckets, then +Inf (docs/api.md). */
#define HSC_TIMING_BUCKETS 14
extern const double hsc_timing_bounds[HSC_TIMING_BUCKETS];

/**
 * A histogram of durations, per loop: each observation goes into the first bucket whose bound
 * it does not exceed (the last, HSC_TIMING_BUCKETS, is +Inf); /metrics sums the loops and makes
 * the counts cumulative. Written by its loop's thread only, read by /metrics on any thread.
 */
typedef struct hsc_timing_s {
    atomic_uint_fast64_t bucket[HSC_TIMING_BUCKETS + 1];
    atomic_uint_fast64_t sum_us; /* the observations' sum, in microseconds */
} hsc_timing_t;

/** Records one duration (nanoseconds) on the histogram's own loop. */
void hsc_timing_observe(hsc_timing_t *t, uint64_t ns);

#endif
