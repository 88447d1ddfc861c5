/*
 * pubsub/journal_int.h: what the journal's files share: journal.c (file helpers, open and close,
 * the counters), jwriter.c (the writer thread, group commit, direct writes), jsegment.c
 * (segments, compaction, maintenance) and jreplay.c (the meta file and replay on start). Private
 * to them.
 */
#ifndef HSC_PUBSUB_JOURNAL_INT_H
#define HSC_PUBSUB_JOURNAL_INT_H

#include "pubsub/journal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <uv.h>

#define QUEUE_MAX    (64u << 20) /* bytes queued for the writer; past it publishes get 503 */
#define SEG_NAME_FMT "seg-%016" PRIx64 ".hsj"
#define SEG_NAME_LEN 24
#define SEQ_JUMP     (1ull << 32) /* after a machine crash with batch or off */
#define KICK_DIRTY   1u           /* batch: a write made the segment unsynced */
#define KICK_FULL    2u           /* the segment reached --journal-segment-size */

typedef struct seg_s {
    uint64_t num;
    uint64_t bytes;
} seg_t;

struct hsc_journal_s {
    hsc_engine_t *engine;
    char *dir;
    int dirfd, lockfd;
    int mode; /* HSC_FSYNC_* */
    uint64_t interval_ns;
    uint64_t seg_max;
    uint64_t history_age_ms;
    uint64_t epoch;
    char boot[64];
    bool direct; /* batch, off: publishes write their record themselves (see the top) */
    /* Segments, oldest first; the last is the one written (fd). Under fmu: direct writes take
     * it (inside the engine's lock), the writer thread when it changes them. */
    uv_mutex_t fmu;
    seg_t *segs;
    size_t nsegs, segs_cap;
    int fd;
    bool dirty;          /* written since the last fdatasync */
    bool full_kicked;    /* the writer was told to look (the segment is full, or compact_at) */
    uint64_t compact_at; /* the segments' bytes past which the writer looks again for compaction
                          * (2 x history + one segment when it last looked), although the
                          * segment written is not full */
    char *dbuf;          /* a direct write's record */
    size_t dcap;
    /* The queue, under qmu: records encoded back to back, and their publishes (always); and
     * what direct writes tell the writer thread (kick). */
    uv_mutex_t qmu;
    uv_cond_t qcond;
    char *qbuf;
    size_t qlen, qcap;
    hsc_jpending_t **qv;
    size_t qn, qvcap;
    unsigned kick; /* KICK_DIRTY, KICK_FULL */
    bool stop;
    bool running;
    uv_thread_t thread;
    /* Counters (any thread reads them). */
    atomic_uint_fast64_t st_bytes, st_segments, st_fsyncs, st_writes, st_records, st_ns_sum,
        st_ns_max, st_skipped, st_errors, st_compactions;
    atomic_int st_failing;
};

/* The file helpers (journal.c). */
uint64_t hsc_journal_wall_ms(void);
const char *hsc_journal_mode_name(int mode);
int hsc_journal_sync_dir(hsc_journal_t *j);
/* pwrite() until all of `n` is written at `off`: 0 or a libuv error. */
int hsc_journal_write_all(int fd, const void *p, size_t n, uint64_t off);
/* Appends {num, bytes} to j->segs: 0 or HSC_ENOMEM. */
int hsc_journal_segs_push(hsc_journal_t *j, uint64_t num, uint64_t bytes);
/* A segment's file name, SEG_NAME_LEN characters. */
void hsc_journal_seg_name(char *out, uint64_t num);

/* Segments (jsegment.c). Begins segment `num` as the one written; the previous one is synced
 * (unless off) and closed. 0 or an error. */
int hsc_journal_seg_begin(hsc_journal_t *j, uint64_t num);
/* The writer thread's look after the segments: compaction or the next segment. 0, or non-zero
 * when it failed (logged; the writer tries again after a while). */
int hsc_journal_maintain(hsc_journal_t *j);

/* The writer thread (jwriter.c), started by hsc_journal_open() with the journal as `arg`. */
void hsc_journal_writer_main(void *arg);

/* The meta file (jreplay.c): format, epoch, boot id, how the last run ended, fsync mode. */
typedef struct hsc_jmeta_s {
    unsigned version;
    uint64_t epoch;
    char boot[64];
    char state[16]; /* "running" (or a crash) or "clean" */
    char fsync[16];
} hsc_jmeta_t;

void hsc_journal_read_boot_id(char *out, size_t n);
/* 1 when there is no meta file, 0 when read, HSC_ESTATE (logged) when it is unusable. */
int hsc_journal_meta_read(hsc_journal_t *j, hsc_jmeta_t *m);
/* Replaces the meta file atomically (temporary file, fsync, rename, directory fsync). */
int hsc_journal_meta_write(hsc_journal_t *j, const char *state);
/* Lists and replays the segments into the engine; sets the epoch and the sequence. 0, or an
 * error already logged (HSC_ESTATE) or HSC_ENOMEM. */
int hsc_journal_replay(hsc_journal_t *j, const hsc_jmeta_t *meta, bool have_meta);

#endif
