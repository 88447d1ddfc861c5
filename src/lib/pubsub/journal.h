/*
 * pubsub/journal.h: the journal behind the memory engine (docs/internals/journal.md).
 *
 * The memory engine keeps histories in RAM; with a journal attached (hsc_memory_set_journal())
 * a publish, under the engine's lock, takes its sequence number and hands its record to the
 * journal, so records reach it in sequence order:
 *
 * - --fsync always: queued (hsc_journal_append()); the journal's writer thread writes
 *   everything queued since its last write with one write() and one fdatasync(), across all
 *   loops (group commit), then gives the group back to the engine (hsc_memory_commit()), which,
 *   under its lock, puts each event into history, delivers it and completes its publish through
 *   the hub's call();
 * - --fsync batch and off: written at once by the publisher (hsc_journal_write(), one pwrite()
 *   into the page cache); the event then enters history and is delivered as without a journal;
 *   the writer thread syncs every --fsync-interval (batch).
 *
 * Either way nothing reaches a subscriber or a publisher before the record is written (batch,
 * off) or on disk (always).
 *
 * On start the journal replays its segments into the engine's histories
 * (hsc_memory_restore()), keeps the epoch and continues the sequence.
 */
#ifndef HSC_PUBSUB_JOURNAL_H
#define HSC_PUBSUB_JOURNAL_H

#include "pubsub/engine.h"

typedef struct hsc_journal_s hsc_journal_t;

/** A publish waiting for the journal: made by the memory engine, completed through call(). */
typedef struct hsc_jpending_s {
    hsc_engine_call_t call; /* runs on p->hub's loop: fills p's results and calls p->cb */
    hsc_publish_t *p;
    hsc_chan_t *chan;   /* one reference, the engine's */
    hsc_frame_t *frame; /* one reference */
    uint64_t seq;
    int rc; /* set by the writer: 0, or why the record could not be written */
    unsigned subscribers;
} hsc_jpending_t;

/** Counters for /metrics; each exact, the set not a snapshot. */
typedef struct hsc_journal_stats_s {
    uint64_t bytes;        /* bytes in segment files */
    uint64_t segments;     /* segment files */
    uint64_t fsyncs;       /* fsync calls */
    uint64_t writes;       /* group writes */
    uint64_t records;      /* records written */
    uint64_t write_ns_sum; /* time spent in write() + fsync, summed over groups */
    uint64_t write_ns_max; /* the slowest group */
    uint64_t skipped;      /* damaged records skipped at start */
    uint64_t write_errors; /* groups that failed (their publishes got 503) */
    uint64_t compactions;  /* compactions done */
    int failing;           /* the last write failed: publishes answer 503 until one succeeds */
} hsc_journal_stats_t;

/**
 * Opens the journal in cfg->data_dir for engine `e` (a fresh memory engine): creates the
 * directory, locks it, reads the epoch, replays the segments into `e`'s histories and starts the
 * writer thread. Errors are logged in full (which directory, why, what to do) and returned:
 * HSC_ESTATE (locked by another process, a newer format, damaged metadata) or a libuv error.
 */
int hsc_journal_open(const hsc_server_config_t *cfg, hsc_engine_t *e, hsc_journal_t **out);

/**
 * Drains what is queued (written and committed) and ends the writer thread. Call it while the
 * hubs still exist and their loops are not closed. Idempotent; NULL is ignored.
 */
void hsc_journal_stop(hsc_journal_t *j);

/** Stops the journal if needed, marks a clean shutdown, unlocks and frees. NULL is ignored. */
void hsc_journal_free(hsc_journal_t *j);

void hsc_journal_stats(hsc_journal_t *j, hsc_journal_stats_t *out);

/**
 * Whether publishes write their record themselves (hsc_journal_write(): --fsync batch and off)
 * rather than queue it for the writer thread's group commit (hsc_journal_append(): always).
 */
bool hsc_journal_direct(const hsc_journal_t *j);

/**
 * Writes the record of a publish numbered `seq` now, on the caller's thread (the memory engine,
 * under its lock, so in sequence order): one pwrite() into the page cache, synced later by the
 * writer thread. Borrows the publish's strings. Returns 0, or why nothing was written (the
 * segment is as it was): a libuv error (disk full...), HSC_ETOOBIG, HSC_ENOMEM.
 */
int hsc_journal_write(hsc_journal_t *j, const hsc_publish_t *p, uint64_t seq, uint64_t time_ms);

/**
 * --fsync always: queues the record of a publish (called by the memory engine under its lock, so
 * in sequence order). Borrows the publish's strings; takes `pend` (the writer commits it). Returns
 * 0, or HSC_ETOOBIG when the queue is over its bound (the disk is far behind): nothing queued.
 */
int hsc_journal_append(hsc_journal_t *j, hsc_jpending_t *pend, uint64_t time_ms);

/* ---- the memory engine's side (memory.c) ----------------------------------------------------- */

/** Publishes go through `j` from now on. Before any publish. */
void hsc_memory_set_journal(hsc_engine_t *e, hsc_journal_t *j);

/**
 * The writer's group is written: under the engine's lock, each entry (in sequence order) with rc
 * 0 enters history and is delivered; every entry's publish completes through its hub's call()
 * (which frees the entry). Hubs are flushed after the lock is released.
 */
void hsc_memory_commit(hsc_engine_t *e, hsc_jpending_t **v, size_t n);

/**
 * Replay: puts an event (takes one reference to `f`) into the history of channel `name`,
 * created if needed, as published `age_ms` ago. An event not newer than what the channel already
 * holds is ignored (compaction may leave it twice). Returns 0, HSC_EFULL (--max-channels) or
 * HSC_ENOMEM.
 */
int hsc_memory_restore(hsc_engine_t *e, const char *name, size_t len, uint64_t seq, uint64_t age_ms,
                       hsc_frame_t *f);
/** Replay: channel `name` (NULL: channels freed) had evicted events up to `seq`. */
void hsc_memory_restore_evicted(hsc_engine_t *e, const char *name, size_t len, uint64_t seq);
/**
 * Replay is over: the engine continues with `epoch`, the next number after `seq`; a resume from
 * an id below `lost_upto` (0: none) gets HSC_GAP_EXPIRED (records were lost). Ages history out.
 */
void hsc_memory_restore_done(hsc_engine_t *e, uint64_t epoch, uint64_t seq, uint64_t lost_upto);

/**
 * Compaction: under the engine's lock, calls `fn` first with kind 0 (the cut: nothing is
 * committed until the snapshot ends), then for every event history holds (channel by channel,
 * each in sequence order), each channel's evicted mark and the freed channels' mark. Returns the
 * newest number committed. `fn` returns non-zero to stop.
 */
typedef int (*hsc_memory_visit_fn)(void *ctx, unsigned kind, const char *name, size_t len,
                                   uint64_t seq, uint64_t time_ms, const hsc_frame_t *f);
uint64_t hsc_memory_snapshot(hsc_engine_t *e, hsc_memory_visit_fn fn, void *ctx, int *stopped);

#endif
