/*
 * The journal's segments (journal.c has the whole story, journal_int.h the shared state):
 * creating and switching to a new segment, compaction (what history still holds written into a
 * new segment, the old ones deleted) and the writer thread's maintenance, which decides between
 * the two (hsc_journal_maintain()).
 */
#include "pubsub/journal_int.h"

#include "pubsub/jrecord.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- segments ------------------------------------------------------------------------------- */

/* Creates segment `num` with its header, synced; *fd gets it. Nothing shared is touched. */
static int seg_open_new(hsc_journal_t *j, uint64_t num, int *out)
{
    char name[SEG_NAME_LEN + 1];
    hsc_journal_seg_name(name, num);
    int fd = openat(j->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    char head[HSC_JSEG_HEADER_LEN];
    hsc_jseg_header(head);
    int rc = hsc_journal_write_all(fd, head, sizeof head, 0);
    if (rc == 0 && j->mode != HSC_FSYNC_OFF && fdatasync(fd) != 0)
        rc = uv_translate_sys_error(errno);
    if (rc == 0 && j->mode != HSC_FSYNC_OFF)
        rc = hsc_journal_sync_dir(j);
    if (rc != 0) {
        close(fd);
        unlinkat(j->dirfd, name, 0);
        return rc;
    }
    *out = fd;
    return 0;
}

/* Makes the new segment `num` (fd) the one written (fmu held); *old gets the previous fd. */
static int seg_switch(hsc_journal_t *j, uint64_t num, int fd, int *old, bool *old_dirty)
{
    int rc = hsc_journal_segs_push(j, num, HSC_JSEG_HEADER_LEN);
    if (rc != 0)
        return rc;
    *old = j->fd;
    *old_dirty = j->dirty;
    j->fd = fd;
    j->dirty = false;
    j->full_kicked = false;
    atomic_fetch_add(&j->st_segments, 1);
    atomic_fetch_add(&j->st_bytes, HSC_JSEG_HEADER_LEN);
    return 0;
}

/* Begins segment `num` as the one written; the previous one is synced (unless off), closed. */
int hsc_journal_seg_begin(hsc_journal_t *j, uint64_t num)
{
    int fd, old = -1;
    bool old_dirty = false;
    int rc = seg_open_new(j, num, &fd);
    if (rc != 0)
        return rc;
    uv_mutex_lock(&j->fmu);
    rc = seg_switch(j, num, fd, &old, &old_dirty);
    uv_mutex_unlock(&j->fmu);
    if (rc != 0) {
        char name[SEG_NAME_LEN + 1];
        hsc_journal_seg_name(name, num);
        close(fd);
        unlinkat(j->dirfd, name, 0);
        return rc;
    }
    if (old >= 0) {
        if (old_dirty && j->mode != HSC_FSYNC_OFF && fdatasync(old) == 0)
            atomic_fetch_add(&j->st_fsyncs, 1);
        close(old);
    }
    return 0;
}

/* ---- compaction ------------------------------------------------------------------------------ */

typedef struct snap_s {
    hsc_journal_t *j;
    char *buf;
    size_t len, cap;
    int rc;
    /* The switch to a new segment, made at the snapshot's cut (under the engine's lock). */
    uint64_t next;
    int next_fd, old_fd;
    bool old_dirty, switched;
    size_t ncut; /* segments before the new one: replaced by the snapshot */
} snap_t;

static int snap_visit(void *ctx, unsigned kind, const char *name, size_t len, uint64_t seq,
                      uint64_t time_ms, const hsc_frame_t *f)
{
    snap_t *s = ctx;
    if (kind == 0) { /* the cut: what follows is written to the new segment */
        hsc_journal_t *j = s->j;
        uv_mutex_lock(&j->fmu);
        s->rc = seg_switch(j, s->next, s->next_fd, &s->old_fd, &s->old_dirty);
        s->ncut = j->nsegs - 1;
        uv_mutex_unlock(&j->fmu);
        s->switched = s->rc == 0;
        return s->rc != 0;
    }
    hsc_jrec_t rec = {
        .kind = kind, .seq = seq, .time_ms = time_ms, .chan = name, .chan_len = name ? len : 0};
    if (f != NULL) {
        size_t off, end;
        hsc_event_frame_body(f, &off, &end);
        rec.data = f->data + off;
        rec.data_len = end - off;
    }
    size_t need = hsc_jrec_size(&rec);
    if (s->len + need > s->cap) {
        size_t cap = s->cap ? s->cap : 1 << 16;
        while (cap < s->len + need)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (b == NULL) {
            s->rc = HSC_ENOMEM;
            return 1;
        }
        s->buf = b;
        s->cap = cap;
    }
    s->len += hsc_jrec_encode(s->buf + s->len, &rec, 1);
    return 0;
}

/*
 * With the newest segment N: begins N+2 at the snapshot's cut (so records after it go there),
 * writes what history holds into compact.tmp, renames it to N+1 and deletes N and older. A
 * crash before the rename leaves the old segments (compact.tmp is removed on start); after it,
 * both are replayed and what history already holds is ignored.
 */
static int compact(hsc_journal_t *j)
{
    uv_mutex_lock(&j->fmu);
    uint64_t last = j->segs[j->nsegs - 1].num;
    uv_mutex_unlock(&j->fmu);
    snap_t s = {.j = j, .cap = 1 << 16, .next = last + 2, .old_fd = -1};
    int rc = seg_open_new(j, s.next, &s.next_fd);
    if (rc != 0 || (s.buf = malloc(s.cap)) == NULL) {
        HSC_LOG(HSC_LOG_WARN, "journal: compaction skipped: %s",
                hsc_strerror(rc ? rc : HSC_ENOMEM));
        if (rc == 0) {
            char name[SEG_NAME_LEN + 1];
            hsc_journal_seg_name(name, s.next);
            close(s.next_fd);
            unlinkat(j->dirfd, name, 0);
        }
        return rc ? rc : HSC_ENOMEM;
    }
    hsc_jseg_header(s.buf);
    s.len = HSC_JSEG_HEADER_LEN;
    int stopped;
    hsc_memory_snapshot(j->engine, snap_visit, &s, &stopped);
    if (!s.switched) {
        char name[SEG_NAME_LEN + 1];
        hsc_journal_seg_name(name, s.next);
        close(s.next_fd);
        unlinkat(j->dirfd, name, 0);
    }
    if (s.old_fd >= 0) {
        if (s.old_dirty && j->mode != HSC_FSYNC_OFF && fdatasync(s.old_fd) == 0)
            atomic_fetch_add(&j->st_fsyncs, 1);
        close(s.old_fd);
    }
    if (s.rc != 0) {
        HSC_LOG(HSC_LOG_WARN, "journal: compaction skipped: %s", hsc_strerror(s.rc));
        free(s.buf);
        return s.rc;
    }
    char name[SEG_NAME_LEN + 1];
    hsc_journal_seg_name(name, last + 1);
    int fd = openat(j->dirfd, "compact.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    rc = fd < 0 ? uv_translate_sys_error(errno) : hsc_journal_write_all(fd, s.buf, s.len, 0);
    if (rc == 0 && fdatasync(fd) != 0)
        rc = uv_translate_sys_error(errno);
    if (fd >= 0)
        close(fd);
    if (rc == 0 && renameat(j->dirfd, "compact.tmp", j->dirfd, name) != 0)
        rc = uv_translate_sys_error(errno);
    if (rc == 0)
        rc = hsc_journal_sync_dir(j);
    free(s.buf);
    if (rc != 0) {
        HSC_LOG(HSC_LOG_WARN, "journal: compaction failed: %s", hsc_strerror(rc));
        unlinkat(j->dirfd, "compact.tmp", 0);
        return rc;
    }
    atomic_fetch_add(&j->st_fsyncs, 2);
    /* The list: the snapshot in place of the segments before the cut, then the newer ones. */
    uv_mutex_lock(&j->fmu);
    seg_t *old = malloc(s.ncut * sizeof *old);
    if (old != NULL)
        memcpy(old, j->segs, s.ncut * sizeof *old);
    uint64_t removed = 0;
    for (size_t i = 0; i < s.ncut; i++)
        removed += j->segs[i].bytes;
    memmove(j->segs + 1, j->segs + s.ncut, (j->nsegs - s.ncut) * sizeof *j->segs);
    j->nsegs = j->nsegs - s.ncut + 1;
    j->segs[0] = (seg_t){last + 1, s.len};
    uv_mutex_unlock(&j->fmu);
    for (size_t i = 0; old != NULL && i < s.ncut; i++) {
        hsc_journal_seg_name(name, old[i].num);
        unlinkat(j->dirfd, name, 0);
    }
    free(old);
    hsc_journal_sync_dir(j);
    atomic_fetch_sub(&j->st_bytes, removed);
    atomic_fetch_add(&j->st_bytes, s.len);
    atomic_fetch_sub(&j->st_segments, s.ncut);
    atomic_fetch_add(&j->st_segments, 1);
    atomic_fetch_add(&j->st_compactions, 1);
    HSC_LOG(HSC_LOG_INFO, "journal: compacted %" PRIu64 " bytes into %zu", removed, s.len);
    return 0;
}

/*
 * Looks after the segments: compaction when they hold more than 2 x history + one segment, else
 * the next segment when the one written is full. Looked at when a segment fills and also when
 * the segments grow past compact_at (the bound when the writer last looked), so a journal over
 * its bound is compacted at the next write even when no segment fills again: with batch and off,
 * publishes go on writing into the old segment while the next one is created (two fsyncs), so
 * the bytes found at the moment a segment is full vary with the load, and a segment that was not
 * full may be the last one for a long time. Every path ends with full_kicked cleared (writes tell
 * the writer again) or returns non-zero (it failed: the writer retries after a while).
 */
static int maintain_failed(hsc_journal_t *j, int rc)
{
    uv_mutex_lock(&j->fmu);
    j->full_kicked = true; /* writes leave it to the writer's retry rather than kick at once */
    uv_mutex_unlock(&j->fmu);
    return rc;
}

int hsc_journal_maintain(hsc_journal_t *j)
{
    for (int round = 0; round < 8; round++) {
        uv_mutex_lock(&j->fmu);
        bool full = j->segs[j->nsegs - 1].bytes >= j->seg_max;
        uint64_t total = 0, last = j->segs[j->nsegs - 1].num;
        for (size_t i = 0; i < j->nsegs; i++)
            total += j->segs[i].bytes;
        if (!full && total <= j->compact_at) {
            j->full_kicked = false;
            uv_mutex_unlock(&j->fmu);
            return 0;
        }
        uv_mutex_unlock(&j->fmu);
        /* Not under fmu: direct writes take it inside the engine's lock. */
        hsc_engine_stats_t es;
        hsc_engine_stats(j->engine, &es);
        uint64_t bound = 2 * (uint64_t)es.history_bytes + j->seg_max;
        if (total > bound) {
            int rc = compact(j);
            if (rc != 0)
                return maintain_failed(j, rc); /* logged */
            continue;
        }
        uv_mutex_lock(&j->fmu);
        j->compact_at = bound;
        uv_mutex_unlock(&j->fmu);
        if (!full)
            continue; /* looked again with the new mark */
        int rc = hsc_journal_seg_begin(j, last + 1);
        if (rc != 0) {
            HSC_LOG(HSC_LOG_WARN, "journal: cannot begin a new segment: %s", hsc_strerror(rc));
            return maintain_failed(j, rc);
        }
    }
    uv_mutex_lock(&j->fmu);
    j->full_kicked = false; /* still busy: the next write tells the writer again */
    uv_mutex_unlock(&j->fmu);
    return 0;
}
