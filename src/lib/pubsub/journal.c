/*
 * The journal (journal.h, docs/internals/journal.md): channel events appended to segment files
 * in the data directory by one writer thread, replayed into the memory engine's histories on
 * start.
 *
 * Writing. With --fsync always, publishes on any loop queue their records under the engine's
 * lock (so in sequence order) into one buffer; the writer thread takes the whole buffer at once,
 * fills in the checksums, writes it with one pwrite() and one fdatasync(), then hands the group
 * to the engine, which puts the events into history, delivers them and answers their
 * publishers: group commit, while the writer syncs the next group gathers. With batch and off
 * there is no fsync to share, so a publish writes its own record at once, under the engine's
 * lock (one pwrite() into the page cache, a few microseconds), and is delivered and answered as
 * without a journal: a hand-off to the writer thread and back costs more than the write (bench/
 * journal.sh: 4,500 against 16,500 publishes/s for one publisher). The writer thread then syncs
 * at most --fsync-interval after the first unsynced write (batch), never (off), and rolls and
 * compacts segments in every mode.
 *
 * Start (jreplay.c): the meta file and the replay of the segments. Ids are never reused. Deliveries
 * wait for the write, so after a crash of the process (the page cache survives) everything anyone
 * saw is in the files and the sequence continues after the newest record. After a crash of the
 * machine (the boot id in the meta file differs) with batch or off, records written but not synced
 * may be gone: the sequence then jumps by 2^32 and resumes from before the jump get hsc.gap
 * (expired). With always nothing seen was unsynced.
 *
 * Damage. A record is taken only when its length fits and its CRC32C matches. An incomplete
 * record at the end of the newest segment is a torn write (the process died in the middle of
 * it): it is cut off. A damaged record followed by good ones is skipped with one log line and
 * counted (hsc_journal_records_skipped_total), and resumes from before it get hsc.gap. A segment
 * or record of a newer format, a directory locked by another process or not writable stops the
 * start with a message that says what to do.
 *
 * Disk full or a write error: the group's records are cut off again (ftruncate), their
 * publishes answer 503 with the reason, subscribers go on, and the next group tries again, so
 * the journal recovers by itself once space returns. Nothing acknowledged is lost.
 *
 * Compaction: when the segments hold more than twice what history holds plus one segment, the
 * writer writes what history still holds into a new segment and deletes the old ones
 * (docs/internals/journal.md states the disk bound). It looks when a segment fills and when a
 * write takes the segments past the bound it last saw (maintain()).
 */
#include "pubsub/journal_int.h"

#include "pubsub/jrecord.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t hsc_journal_wall_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

const char *hsc_journal_mode_name(int mode)
{
    return mode == HSC_FSYNC_ALWAYS ? "always" : mode == HSC_FSYNC_OFF ? "off" : "batch";
}

/* ---- files ----------------------------------------------------------------------------------- */

int hsc_journal_sync_dir(hsc_journal_t *j)
{
    return fsync(j->dirfd) == 0 ? 0 : uv_translate_sys_error(errno);
}

int hsc_journal_write_all(int fd, const void *p, size_t n, uint64_t off)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, c, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return uv_translate_sys_error(errno);
        }
        if (w == 0)
            return UV_EIO;
        c += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int hsc_journal_segs_push(hsc_journal_t *j, uint64_t num, uint64_t bytes)
{
    if (j->nsegs == j->segs_cap) {
        size_t cap = j->segs_cap ? j->segs_cap * 2 : 16;
        seg_t *v = realloc(j->segs, cap * sizeof *v);
        if (v == NULL)
            return HSC_ENOMEM;
        j->segs = v;
        j->segs_cap = cap;
    }
    j->segs[j->nsegs++] = (seg_t){num, bytes};
    return 0;
}

void hsc_journal_seg_name(char *out, uint64_t num)
{
    snprintf(out, SEG_NAME_LEN + 1, SEG_NAME_FMT, num);
}

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
static int seg_begin(hsc_journal_t *j, uint64_t num)
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

/* ---- writing --------------------------------------------------------------------------------- */

/* Syncs what the segment being written holds, if anything is unsynced (a dup of its fd, so no
 * lock is held during the fdatasync and direct writes go on meanwhile). */
static int sync_active(hsc_journal_t *j)
{
    uv_mutex_lock(&j->fmu);
    if (!j->dirty) {
        uv_mutex_unlock(&j->fmu);
        return 0;
    }
    int fd = dup(j->fd);
    if (fd >= 0)
        j->dirty = false;
    uv_mutex_unlock(&j->fmu);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int rc = fdatasync(fd) == 0 ? 0 : uv_translate_sys_error(errno);
    close(fd);
    if (rc == 0) {
        atomic_fetch_add(&j->st_fsyncs, 1);
    } else {
        uv_mutex_lock(&j->fmu);
        j->dirty = true; /* tried again at the next interval */
        uv_mutex_unlock(&j->fmu);
        HSC_LOG(HSC_LOG_ERROR, "journal: cannot sync %s: %s", j->dir, hsc_strerror(rc));
    }
    return rc;
}

/* A write failed (fmu held or the writer's own segment): cut the segment back, say so once. */
static void write_failed(hsc_journal_t *j, const seg_t *s, int rc)
{
    if (ftruncate(j->fd, (off_t)s->bytes) != 0)
        HSC_LOG(HSC_LOG_WARN, "journal: cannot truncate after a failed write: %s", strerror(errno));
    atomic_fetch_add(&j->st_errors, 1);
    if (atomic_exchange(&j->st_failing, 1) == 0)
        HSC_LOG(HSC_LOG_ERROR,
                "journal: cannot write to %s: %s; publishes answer 503 until it works again",
                j->dir, hsc_strerror(rc));
}

static void write_done(hsc_journal_t *j, size_t len, size_t records, uint64_t ns)
{
    atomic_fetch_add(&j->st_bytes, len);
    atomic_fetch_add(&j->st_writes, 1);
    atomic_fetch_add(&j->st_records, records);
    atomic_fetch_add(&j->st_ns_sum, ns);
    if (ns > atomic_load(&j->st_ns_max))
        atomic_store(&j->st_ns_max, ns);
    if (atomic_load(&j->st_failing) && atomic_exchange(&j->st_failing, 0) != 0)
        HSC_LOG(HSC_LOG_NOTICE, "journal: writing to %s works again", j->dir);
}

static void kick(hsc_journal_t *j, unsigned what)
{
    uv_mutex_lock(&j->qmu);
    j->kick |= what;
    uv_cond_signal(&j->qcond);
    uv_mutex_unlock(&j->qmu);
}

bool hsc_journal_direct(const hsc_journal_t *j)
{
    return j->direct;
}

/* The record of a publish's event, and its encoded size; 0 when its body would be too long. */
static size_t event_record(const hsc_publish_t *p, uint64_t seq, uint64_t time_ms, hsc_jrec_t *rec)
{
    *rec = (hsc_jrec_t){.kind = HSC_JREC_EVENT,
                        .seq = seq,
                        .time_ms = time_ms,
                        .chan = p->channel,
                        .chan_len = p->channel_len,
                        .type = p->type,
                        .type_len = p->type ? strlen(p->type) : 0,
                        .data = p->data,
                        .data_len = p->len};
    size_t need = hsc_jrec_size(rec);
    return need - HSC_JREC_PREFIX_LEN > HSC_JREC_BODY_MAX ? 0 : need;
}

int hsc_journal_write(hsc_journal_t *j, const hsc_publish_t *p, uint64_t seq, uint64_t time_ms)
{
    hsc_jrec_t rec;
    size_t need = event_record(p, seq, time_ms, &rec);
    if (need == 0)
        return HSC_ETOOBIG;
    unsigned what = 0;
    int rc = 0;
    uv_mutex_lock(&j->fmu);
    if (need > j->dcap) {
        size_t cap = need < 4096 ? 4096 : need;
        char *b = realloc(j->dbuf, cap);
        if (b == NULL)
            rc = HSC_ENOMEM;
        else {
            j->dbuf = b;
            j->dcap = cap;
        }
    }
    if (rc == 0) {
        hsc_jrec_encode(j->dbuf, &rec, 1);
        seg_t *s = &j->segs[j->nsegs - 1];
        uint64_t t0 = uv_hrtime();
        rc = hsc_journal_write_all(j->fd, j->dbuf, need, s->bytes);
        if (rc != 0) {
            write_failed(j, s, rc);
        } else {
            s->bytes += need;
            write_done(j, need, 1, uv_hrtime() - t0);
            if (!j->dirty && j->mode == HSC_FSYNC_BATCH)
                what |= KICK_DIRTY;
            j->dirty = true;
            if (!j->full_kicked &&
                (s->bytes >= j->seg_max || atomic_load(&j->st_bytes) > j->compact_at)) {
                j->full_kicked = true;
                what |= KICK_FULL;
            }
        }
    }
    uv_mutex_unlock(&j->fmu);
    if (what != 0)
        kick(j, what);
    return rc;
}

/* --fsync always: the writer thread's group, one pwrite and one fdatasync. */
static void write_group(hsc_journal_t *j, char *buf, size_t len, hsc_jpending_t **v, size_t n)
{
    for (size_t off = 0; off < len;) {
        hsc_jrec_seal(buf + off);
        const unsigned char *p = (const unsigned char *)buf + off;
        off += HSC_JREC_PREFIX_LEN +
               ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    }
    /* Only this thread writes the segment in this mode: no lock while writing and syncing. */
    seg_t *s = &j->segs[j->nsegs - 1];
    uint64_t t0 = uv_hrtime();
    int rc = hsc_journal_write_all(j->fd, buf, len, s->bytes);
    if (rc == 0 && fdatasync(j->fd) != 0)
        rc = uv_translate_sys_error(errno);
    else if (rc == 0)
        atomic_fetch_add(&j->st_fsyncs, 1);
    if (rc != 0) {
        write_failed(j, s, rc);
    } else {
        uv_mutex_lock(&j->fmu);
        s->bytes += len;
        uv_mutex_unlock(&j->fmu);
        write_done(j, len, n, uv_hrtime() - t0);
    }
    for (size_t i = 0; i < n; i++)
        v[i]->rc = rc;
    hsc_memory_commit(j->engine, v, n);
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

static int maintain(hsc_journal_t *j)
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
        int rc = seg_begin(j, last + 1);
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

/*
 * The writer thread: with --fsync always, the groups; with batch, the sync at most
 * --fsync-interval after a write made the segment unsynced; with every mode, full segments and
 * compaction.
 */
static void writer_main(void *arg)
{
    hsc_journal_t *j = arg;
    char *spare = NULL;
    size_t spare_cap = 0;
    hsc_jpending_t **vspare = NULL;
    size_t vspare_cap = 0;
    uint64_t deadline = 0; /* batch: when the unsynced writes must be synced; 0: none */
    uint64_t retry = 0;    /* when maintain() failed: when it is tried again; 0: none */
    uv_mutex_lock(&j->qmu);
    for (;;) {
        uint64_t now = uv_hrtime();
        if ((j->kick & KICK_DIRTY) && deadline == 0)
            deadline = now + j->interval_ns;
        bool full = (j->kick & KICK_FULL) != 0 || (retry != 0 && now >= retry && !j->stop);
        j->kick = 0;
        bool sync_now = deadline != 0 && (now >= deadline || j->stop);
        if (j->qn == 0 && !full && !sync_now) {
            if (j->stop)
                break;
            uint64_t until = deadline;
            if (retry != 0 && (until == 0 || retry < until))
                until = retry;
            if (until != 0)
                uv_cond_timedwait(&j->qcond, &j->qmu, until - now);
            else
                uv_cond_wait(&j->qcond, &j->qmu);
            continue;
        }
        char *buf = j->qbuf;
        size_t len = j->qlen, cap = j->qcap;
        hsc_jpending_t **v = j->qv;
        size_t n = j->qn, vcap = j->qvcap;
        j->qbuf = spare;
        j->qcap = spare_cap;
        j->qlen = 0;
        j->qv = vspare;
        j->qvcap = vspare_cap;
        j->qn = 0;
        uv_mutex_unlock(&j->qmu);
        if (n > 0)
            write_group(j, buf, len, v, n);
        if (sync_now) {
            deadline = 0;
            sync_active(j);
        }
        if (n > 0 || full)
            retry = maintain(j) == 0 ? 0 : uv_hrtime() + 1000000000u;
        spare = buf;
        spare_cap = cap;
        vspare = v;
        vspare_cap = vcap;
        uv_mutex_lock(&j->qmu);
    }
    uv_mutex_unlock(&j->qmu);
    sync_active(j); /* a clean stop leaves nothing unsynced, whatever the mode */
    free(spare);
    free(vspare);
}

int hsc_journal_append(hsc_journal_t *j, hsc_jpending_t *pend, uint64_t time_ms)
{
    hsc_publish_t *p = pend->p;
    hsc_jrec_t rec;
    size_t need = event_record(p, pend->seq, time_ms, &rec);
    if (need == 0)
        return HSC_ETOOBIG;
    uv_mutex_lock(&j->qmu);
    int rc = 0;
    if (j->stop) {
        rc = HSC_ESTATE;
    } else if (j->qlen + need > QUEUE_MAX && j->qlen > 0) {
        rc = HSC_ETOOBIG;
    } else if (j->qlen + need > j->qcap) {
        size_t cap = j->qcap ? j->qcap : 1 << 16;
        while (cap < j->qlen + need)
            cap *= 2;
        char *b = realloc(j->qbuf, cap);
        if (b == NULL)
            rc = HSC_ENOMEM;
        else {
            j->qbuf = b;
            j->qcap = cap;
        }
    }
    if (rc == 0 && j->qn == j->qvcap) {
        size_t cap = j->qvcap ? j->qvcap * 2 : 256;
        hsc_jpending_t **v = realloc(j->qv, cap * sizeof *v);
        if (v == NULL)
            rc = HSC_ENOMEM;
        else {
            j->qv = v;
            j->qvcap = cap;
        }
    }
    if (rc == 0) {
        j->qlen += hsc_jrec_encode(j->qbuf + j->qlen, &rec, 0);
        j->qv[j->qn++] = pend;
        if (j->qn == 1)
            uv_cond_signal(&j->qcond);
    }
    uv_mutex_unlock(&j->qmu);
    return rc;
}

/* ---- open and close -------------------------------------------------------------------------- */

/* mkdir -p, each missing level with mode 0755. */
static int make_dirs(const char *path)
{
    char *p = strdup(path);
    if (p == NULL)
        return HSC_ENOMEM;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            rc = uv_translate_sys_error(errno);
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    return rc;
}

/*
 * Takes the directory's lock: one hscd per data directory. A successor in a hand-over waits up
 * to `wait_ms` for its predecessor, which lets go when its drain ends.
 */
static int lock_dir(hsc_journal_t *j, uint64_t wait_ms)
{
    j->lockfd = openat(j->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (j->lockfd < 0) {
        HSC_LOG(HSC_LOG_ERROR,
                "--data-dir %s: cannot create its lock file: %s (the directory must be writable "
                "by hscd; --data-dir none keeps channels in memory only)",
                j->dir, strerror(errno));
        return HSC_ESTATE;
    }
    uint64_t deadline = uv_hrtime() + wait_ms * 1000000u;
    bool said = false;
    while (flock(j->lockfd, LOCK_EX | LOCK_NB) != 0 && uv_hrtime() < deadline) {
        if (!said)
            HSC_LOG(HSC_LOG_NOTICE, "--data-dir %s: waiting for the previous hscd to let go",
                    j->dir);
        said = true;
        usleep(20000);
    }
    if (flock(j->lockfd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(j->lockfd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\r\n")] = '\0';
        HSC_LOG(HSC_LOG_ERROR,
                "--data-dir %s is in use by another hscd%s%s%s: give each hscd its own "
                "--data-dir",
                j->dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
        return HSC_ESTATE;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(j->lockfd, 0) != 0 || hsc_journal_write_all(j->lockfd, pid, (size_t)n, 0) != 0) {
        HSC_LOG(HSC_LOG_ERROR, "--data-dir %s: cannot write: %s (it must be writable by hscd)",
                j->dir, strerror(errno));
        return HSC_ESTATE;
    }
    return 0;
}

static void journal_release(hsc_journal_t *j)
{
    if (j->fd >= 0)
        close(j->fd);
    if (j->lockfd >= 0)
        close(j->lockfd); /* and with it the lock */
    if (j->dirfd >= 0)
        close(j->dirfd);
    uv_mutex_destroy(&j->qmu);
    uv_mutex_destroy(&j->fmu);
    uv_cond_destroy(&j->qcond);
    free(j->dbuf);
    free(j->qbuf);
    free(j->qv);
    free(j->segs);
    free(j->dir);
    free(j);
}

int hsc_journal_open(const hsc_server_config_t *cfg, hsc_engine_t *e, hsc_journal_t **out)
{
    *out = NULL;
    hsc_journal_t *j = calloc(1, sizeof *j);
    if (j == NULL || (j->dir = strdup(cfg->data_dir)) == NULL) {
        free(j);
        return HSC_ENOMEM;
    }
    j->engine = e;
    j->fd = j->dirfd = j->lockfd = -1;
    j->mode = cfg->fsync_mode;
    j->interval_ns = cfg->fsync_interval_ms * 1000000u;
    j->seg_max = cfg->journal_segment_bytes ? cfg->journal_segment_bytes : 64u << 20;
    j->history_age_ms = cfg->history_age_ms;
    j->direct = j->mode != HSC_FSYNC_ALWAYS;
    uv_mutex_init(&j->qmu);
    uv_mutex_init(&j->fmu);
    uv_cond_init(&j->qcond);
    hsc_journal_read_boot_id(j->boot, sizeof j->boot);
    int rc = make_dirs(j->dir);
    if (rc != 0) {
        HSC_LOG(HSC_LOG_ERROR,
                "--data-dir %s: cannot create it: %s (give a writable directory, or --data-dir "
                "none to keep channels in memory only)",
                j->dir, hsc_strerror(rc));
        journal_release(j);
        return HSC_ESTATE;
    }
    j->dirfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dirfd < 0) {
        HSC_LOG(HSC_LOG_ERROR, "--data-dir %s: cannot open it: %s", j->dir, strerror(errno));
        journal_release(j);
        return HSC_ESTATE;
    }
    if ((rc = lock_dir(j, cfg->data_dir_wait_ms)) != 0) {
        journal_release(j);
        return rc;
    }
    hsc_jmeta_t meta;
    rc = hsc_journal_meta_read(j, &meta);
    if (rc < 0) {
        journal_release(j);
        return rc;
    }
    bool have_meta = rc == 0;
    j->epoch = have_meta ? meta.epoch : hsc_journal_wall_ms();
    if (!have_meta && (rc = hsc_journal_replay(j, &meta, false)) == 0 && j->nsegs > 0)
        HSC_LOG(HSC_LOG_WARN, "--data-dir %s: segments without a meta file: a new epoch begins",
                j->dir);
    else if (have_meta)
        rc = hsc_journal_replay(j, &meta, true);
    if (rc == 0 && (rc = hsc_journal_meta_write(j, "running")) != 0)
        HSC_LOG(HSC_LOG_ERROR, "--data-dir %s: cannot write: %s (it must be writable by hscd)",
                j->dir, hsc_strerror(rc));
    if (rc == 0) {
        uint64_t num = j->nsegs > 0 ? j->segs[j->nsegs - 1].num + 1 : 1;
        if (j->nsegs > 0 && j->segs[j->nsegs - 1].bytes == HSC_JSEG_HEADER_LEN) {
            /* The newest holds no record (an idle run): begun again, not one more file. */
            num--;
            j->nsegs--;
            atomic_fetch_sub(&j->st_bytes, HSC_JSEG_HEADER_LEN);
            atomic_fetch_sub(&j->st_segments, 1);
        }
        rc = seg_begin(j, num);
        if (rc != 0)
            HSC_LOG(HSC_LOG_ERROR, "--data-dir %s: cannot create a segment: %s", j->dir,
                    hsc_strerror(rc));
    }
    if (rc != 0) {
        journal_release(j);
        return rc < 0 && rc != HSC_ENOMEM ? HSC_ESTATE : rc;
    }
    if ((rc = uv_thread_create(&j->thread, writer_main, j)) != 0) {
        journal_release(j);
        return rc;
    }
    j->running = true;
    hsc_memory_set_journal(e, j);
    HSC_LOG(HSC_LOG_INFO, "journal: %s, --fsync %s", j->dir, hsc_journal_mode_name(j->mode));
    *out = j;
    return 0;
}

void hsc_journal_stop(hsc_journal_t *j)
{
    if (j == NULL || !j->running)
        return;
    uv_mutex_lock(&j->qmu);
    j->stop = true;
    uv_cond_signal(&j->qcond);
    uv_mutex_unlock(&j->qmu);
    uv_thread_join(&j->thread);
    j->running = false;
}

void hsc_journal_free(hsc_journal_t *j)
{
    if (j == NULL)
        return;
    hsc_journal_stop(j);
    if (hsc_journal_meta_write(j, "clean") != 0)
        HSC_LOG(HSC_LOG_WARN, "journal: cannot mark %s cleanly closed", j->dir);
    journal_release(j);
}

void hsc_journal_stats(hsc_journal_t *j, hsc_journal_stats_t *o)
{
    o->bytes = atomic_load(&j->st_bytes);
    o->segments = atomic_load(&j->st_segments);
    o->fsyncs = atomic_load(&j->st_fsyncs);
    o->writes = atomic_load(&j->st_writes);
    o->records = atomic_load(&j->st_records);
    o->write_ns_sum = atomic_load(&j->st_ns_sum);
    o->write_ns_max = atomic_load(&j->st_ns_max);
    o->skipped = atomic_load(&j->st_skipped);
    o->write_errors = atomic_load(&j->st_errors);
    o->compactions = atomic_load(&j->st_compactions);
    o->failing = atomic_load(&j->st_failing);
}
