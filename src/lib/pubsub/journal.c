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
 * write takes the segments past the bound it last saw (hsc_journal_maintain()).
 *
 * The files: journal.c (this one) the file helpers, open with the directory's lock, close and the
 * counters; jwriter.c the writer thread, group commit and direct writes; jsegment.c segments,
 * compaction and the writer's maintenance; jreplay.c the meta file and the replay on start;
 * jrecord.c the record format. journal_int.h is what they share.
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
        rc = hsc_journal_seg_begin(j, num);
        if (rc != 0)
            HSC_LOG(HSC_LOG_ERROR, "--data-dir %s: cannot create a segment: %s", j->dir,
                    hsc_strerror(rc));
    }
    if (rc != 0) {
        journal_release(j);
        return rc < 0 && rc != HSC_ENOMEM ? HSC_ESTATE : rc;
    }
    if ((rc = uv_thread_create(&j->thread, hsc_journal_writer_main, j)) != 0) {
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
