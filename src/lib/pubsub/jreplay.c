/*
 * The journal's start (journal_int.h, docs/internals/journal.md): the meta file and the replay
 * of the segments into the memory engine's histories.
 *
 * Replay reads each segment whole, in number order, and takes a record only when its length
 * fits and its CRC32C matches (jrecord.c). An incomplete record at the end of a segment is a
 * write the process did not finish: it is cut off. A damaged record followed by good ones is
 * skipped with one log line and counted; the next good record bounds what was lost, and resumes
 * from before it get hsc.gap (lost_upto). Damage with nothing good after it, a machine restarted
 * without a clean shutdown under --fsync batch or off: ids jump by 2^32, so no number anyone may
 * have seen is handed out again. A newer format stops the start. The meta file holds the epoch,
 * written atomically.
 */
#include "pubsub/journal_int.h"

#include "pubsub/jrecord.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads a whole file opened at `fd`; *out is malloc'd (NULL for an empty file). */
static int read_file(int fd, char **out, size_t *len)
{
    struct stat st;
    *out = NULL;
    *len = 0;
    if (fstat(fd, &st) != 0)
        return uv_translate_sys_error(errno);
    if (st.st_size == 0)
        return 0;
    char *b = malloc((size_t)st.st_size);
    if (b == NULL)
        return HSC_ENOMEM;
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = pread(fd, b + got, (size_t)st.st_size - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    *out = b;
    *len = got;
    return 0;
}

static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const seg_t *)a)->num, y = ((const seg_t *)b)->num;
    return x < y ? -1 : x > y;
}

/* ---- the meta file: format, epoch, how the last run ended ------------------------------------ */

void hsc_journal_read_boot_id(char *out, size_t n)
{
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f == NULL)
        return;
    char line[64];
    if (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        snprintf(out, n, "%s", line);
    }
    fclose(f);
}

/* Reads the meta file: 1 when there is none, 0 when read, HSC_ESTATE (logged) when unusable. */
int hsc_journal_meta_read(hsc_journal_t *j, hsc_jmeta_t *m)
{
    memset(m, 0, sizeof *m);
    int fd = openat(j->dirfd, "meta", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        HSC_LOG(HSC_LOG_ERROR, "--data-dir %s: cannot read meta: %s", j->dir, strerror(errno));
        return HSC_ESTATE;
    }
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    unsigned long long epoch = 0;
    if (sscanf(buf, "hsc-journal %u\n", &m->version) != 1) {
        HSC_LOG(HSC_LOG_ERROR,
                "--data-dir %s: the file 'meta' is not an hsc journal's (or is damaged); move "
                "the directory away or give hscd another --data-dir",
                j->dir);
        return HSC_ESTATE;
    }
    if (m->version > HSC_JOURNAL_VERSION) {
        HSC_LOG(HSC_LOG_ERROR,
                "--data-dir %s was written by a newer hscd (journal format %u; this hscd reads "
                "format %d): run the newer hscd, or give this one another --data-dir",
                j->dir, m->version, HSC_JOURNAL_VERSION);
        return HSC_ESTATE;
    }
    const char *e = strstr(buf, "\nepoch ");
    if (e == NULL || sscanf(e, "\nepoch %llu", &epoch) != 1 || epoch < HSC_EPOCH_MIN) {
        HSC_LOG(HSC_LOG_ERROR,
                "--data-dir %s: 'meta' has no valid epoch (damaged); move it away "
                "to start a new epoch",
                j->dir);
        return HSC_ESTATE;
    }
    m->epoch = epoch;
    const char *b = strstr(buf, "\nboot ");
    if (b != NULL)
        sscanf(b, "\nboot %63s", m->boot);
    const char *s = strstr(buf, "\nstate ");
    if (s != NULL)
        sscanf(s, "\nstate %15s", m->state);
    const char *f = strstr(buf, "\nfsync ");
    if (f != NULL)
        sscanf(f, "\nfsync %15s", m->fsync);
    return 0;
}

/* Replaces the meta file atomically: a temporary file, synced, renamed over it, then the dir. */
int hsc_journal_meta_write(hsc_journal_t *j, const char *state)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "hsc-journal %d\nepoch %" PRIu64 "\nboot %s\nstate %s\nfsync %s\n",
                     HSC_JOURNAL_VERSION, j->epoch, j->boot, state, hsc_journal_mode_name(j->mode));
    int fd = openat(j->dirfd, "meta.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int rc = hsc_journal_write_all(fd, buf, (size_t)n, 0);
    if (rc == 0 && fsync(fd) != 0)
        rc = uv_translate_sys_error(errno);
    close(fd);
    if (rc == 0 && renameat(j->dirfd, "meta.tmp", j->dirfd, "meta") != 0)
        rc = uv_translate_sys_error(errno);
    if (rc == 0)
        rc = hsc_journal_sync_dir(j);
    return rc;
}

/* ---- replay ---------------------------------------------------------------------------------- */

typedef struct replay_s {
    hsc_journal_t *j;
    uint64_t max_seq;
    uint64_t lost_upto;
    bool lost_pending; /* a damaged record was skipped: the next good one bounds what was lost */
    bool lost_tail;    /* a damaged record with nothing good after it */
    uint64_t now;
    uint64_t events;
} replay_t;

static void apply(replay_t *r, const hsc_jrec_t *rec)
{
    hsc_journal_t *j = r->j;
    if (rec->seq > r->max_seq)
        r->max_seq = rec->seq;
    if (r->lost_pending) {
        r->lost_pending = false;
        if (rec->seq > 0 && rec->seq - 1 > r->lost_upto)
            r->lost_upto = rec->seq - 1;
    }
    if (rec->kind == HSC_JREC_FREED) {
        hsc_memory_restore_evicted(j->engine, NULL, 0, rec->seq);
        return;
    }
    if (rec->kind == HSC_JREC_LOST) { /* a loss found by an earlier start, kept by compaction */
        if (rec->seq > r->lost_upto)
            r->lost_upto = rec->seq;
        return;
    }
    if (!hsc_channel_name_valid(rec->chan, rec->chan_len)) {
        atomic_fetch_add(&j->st_skipped, 1);
        return;
    }
    if (rec->kind == HSC_JREC_EVICTED) {
        hsc_memory_restore_evicted(j->engine, rec->chan, rec->chan_len, rec->seq);
        return;
    }
    uint64_t age = r->now > rec->time_ms ? r->now - rec->time_ms : 0;
    if (age >= j->history_age_ms) { /* gone from history by now: only the mark stays */
        hsc_memory_restore_evicted(j->engine, rec->chan, rec->chan_len, rec->seq);
        return;
    }
    hsc_frame_t *f = NULL;
    if (rec->kind == HSC_JREC_EVENT) {
        char type[HSC_EVENT_TYPE_MAX + 1], id[HSC_EVENT_ID_MAX];
        if ((rec->type_len > 0 && !hsc_event_type_valid(rec->type, rec->type_len)) ||
            !hsc_utf8_valid(rec->data, rec->data_len)) {
            atomic_fetch_add(&j->st_skipped, 1);
            return;
        }
        memcpy(type, rec->type ? rec->type : "", rec->type_len);
        type[rec->type_len] = '\0';
        hsc_event_id_format(id, j->epoch, rec->seq);
        f = hsc_event_frame_new(rec->type_len ? type : NULL, id, rec->data, rec->data_len);
    } else if (rec->data_len > 0) {
        char head[HSC_CHUNK_HEADER_MAX];
        size_t hl = hsc_chunked_header(head, rec->data_len);
        if ((f = hsc_frame_try_new(hl + rec->data_len + 2)) != NULL) {
            memcpy(f->data, head, hl);
            memcpy(f->data + hl, rec->data, rec->data_len);
            memcpy(f->data + hl + rec->data_len, HSC_CHUNK_CRLF, 2);
        }
    }
    if (f == NULL) {
        atomic_fetch_add(&j->st_skipped, 1);
        return;
    }
    int rc = hsc_memory_restore(j->engine, rec->chan, rec->chan_len, rec->seq, age, f);
    if (rc != 0) {
        HSC_LOG(HSC_LOG_WARN, "journal: channel %.*s not restored: %s", (int)rec->chan_len,
                rec->chan, hsc_strerror(rc));
        hsc_memory_restore_evicted(j->engine, NULL, 0, rec->seq);
    }
    r->events++;
}

/* The next offset after `off` where a whole good record starts; `n` when none. */
static size_t resync(const char *b, size_t n, size_t off)
{
    const unsigned char *u = (const unsigned char *)b;
    for (size_t q = off + 1; q + HSC_JREC_PREFIX_LEN + HSC_JREC_HEAD_LEN <= n; q++) {
        /* The fixed fields first (version, kind, zero bytes): garbage rarely passes, so the
         * checksum, over up to 64 MiB, is computed for few candidates. */
        const unsigned char *h = u + q + HSC_JREC_PREFIX_LEN;
        if (h[0] != HSC_JOURNAL_VERSION || h[1] < HSC_JREC_EVENT || h[1] > HSC_JREC_LOST ||
            h[3] != 0 || h[6] != 0 || h[7] != 0)
            continue;
        hsc_jrec_t rec;
        size_t used;
        if (hsc_jrec_decode(b + q, n - q, &rec, &used) == HSC_JREC_OK)
            return q;
    }
    return n;
}

/* Replays segment `name`. Returns its good length (*keep), or HSC_ESTATE (logged). */
static int replay_segment(replay_t *r, const char *name, bool newest, uint64_t *keep)
{
    hsc_journal_t *j = r->j;
    int fd = openat(j->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        HSC_LOG(HSC_LOG_ERROR, "--data-dir %s: cannot open %s: %s", j->dir, name, strerror(errno));
        return HSC_ESTATE;
    }
    char *b;
    size_t n;
    int rc = read_file(fd, &b, &n);
    if (rc != 0) {
        HSC_LOG(HSC_LOG_ERROR, "--data-dir %s: cannot read %s: %s", j->dir, name, hsc_strerror(rc));
        close(fd);
        return HSC_ESTATE;
    }
    uint32_t version;
    hsc_jrec_status_t st = n == 0 ? HSC_JREC_SHORT : hsc_jseg_check(b, n, &version);
    size_t off = HSC_JSEG_HEADER_LEN;
    if (st == HSC_JREC_NEWER) {
        HSC_LOG(HSC_LOG_ERROR,
                "--data-dir %s: %s was written by a newer hscd (journal format %u; this hscd "
                "reads format %d): run the newer hscd, or give this one another --data-dir",
                j->dir, name, version, HSC_JOURNAL_VERSION);
        free(b);
        close(fd);
        return HSC_ESTATE;
    }
    if (st == HSC_JREC_SHORT) {
        /* Empty or a header cut short: the process died creating it; nothing was in it. */
        HSC_LOG(HSC_LOG_NOTICE, "journal: %s is empty (%zu bytes): removed", name, n);
        free(b);
        close(fd);
        unlinkat(j->dirfd, name, 0);
        *keep = 0;
        return 0;
    }
    if (st != HSC_JREC_OK) {
        /* A damaged header: its records cannot be trusted. Kept aside, counted as a loss. */
        char aside[SEG_NAME_LEN + 16];
        snprintf(aside, sizeof aside, "%s.damaged", name);
        HSC_LOG(HSC_LOG_WARN,
                "journal: %s has a damaged header: moved aside as %s, its events skipped "
                "(resumes from before them get hsc.gap)",
                name, aside);
        renameat(j->dirfd, name, j->dirfd, aside);
        atomic_fetch_add(&j->st_skipped, 1);
        if (newest)
            r->lost_tail = true;
        else
            r->lost_pending = true;
        free(b);
        close(fd);
        *keep = 0;
        return 0;
    }
    while (off < n) {
        hsc_jrec_t rec;
        size_t used;
        st = hsc_jrec_decode(b + off, n - off, &rec, &used);
        if (st == HSC_JREC_OK) {
            apply(r, &rec);
            off += used;
            continue;
        }
        if (st == HSC_JREC_NEWER) {
            HSC_LOG(HSC_LOG_ERROR,
                    "--data-dir %s: %s holds a record of a newer journal format (this hscd reads "
                    "format %d): run the newer hscd, or give this one another --data-dir",
                    j->dir, name, HSC_JOURNAL_VERSION);
            free(b);
            close(fd);
            return HSC_ESTATE;
        }
        size_t next = resync(b, n, off);
        if (next < n) {
            HSC_LOG(HSC_LOG_WARN,
                    "journal: %s: damaged record at offset %zu, %zu bytes skipped (resumes "
                    "from before it get hsc.gap)",
                    name, off, next - off);
            atomic_fetch_add(&j->st_skipped, 1);
            r->lost_pending = true;
            off = next;
            continue;
        }
        /* Nothing good follows: a write the process did not finish, or damage at the end. */
        bool whole = st == HSC_JREC_BAD && n - off >= HSC_JREC_PREFIX_LEN;
        if (whole) {
            uint32_t len = (uint32_t)(unsigned char)b[off] |
                           (uint32_t)(unsigned char)b[off + 1] << 8 |
                           (uint32_t)(unsigned char)b[off + 2] << 16 |
                           (uint32_t)(unsigned char)b[off + 3] << 24;
            whole = len >= HSC_JREC_HEAD_LEN && len <= n - off - HSC_JREC_PREFIX_LEN;
        }
        if (whole) {
            HSC_LOG(HSC_LOG_WARN,
                    "journal: %s: damaged record at offset %zu, the last one: %zu bytes cut off "
                    "(resumes from before it get hsc.gap)",
                    name, off, n - off);
            atomic_fetch_add(&j->st_skipped, 1);
            if (newest)
                r->lost_tail = true;
            else
                r->lost_pending = true; /* the next segment's first record bounds it */
        } else {
            HSC_LOG(HSC_LOG_NOTICE,
                    "journal: %s: incomplete last record (a write cut short), "
                    "%zu bytes cut off",
                    name, n - off);
        }
        if (ftruncate(fd, (off_t)off) != 0)
            HSC_LOG(HSC_LOG_WARN, "journal: cannot truncate %s: %s", name, strerror(errno));
        else if (fdatasync(fd) != 0)
            HSC_LOG(HSC_LOG_WARN, "journal: cannot sync %s: %s", name, strerror(errno));
        n = off;
        break;
    }
    free(b);
    close(fd);
    *keep = n;
    return 0;
}

/* Lists the segments, replays them in order; the sequence and epoch go to the engine. */
int hsc_journal_replay(hsc_journal_t *j, const hsc_jmeta_t *meta, bool have_meta)
{
    DIR *d = fdopendir(dup(j->dirfd));
    if (d == NULL) {
        HSC_LOG(HSC_LOG_ERROR, "--data-dir %s: cannot list: %s", j->dir, strerror(errno));
        return HSC_ESTATE;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t num;
        char tail[8];
        if (strcmp(de->d_name, "compact.tmp") == 0) {
            unlinkat(j->dirfd, de->d_name, 0); /* a compaction cut short: the old ones stand */
            continue;
        }
        if (strlen(de->d_name) != SEG_NAME_LEN ||
            sscanf(de->d_name, "seg-%16" SCNx64 "%4s", &num, tail) != 2 ||
            strcmp(tail, ".hsj") != 0)
            continue;
        if (hsc_journal_segs_push(j, num, 0) != 0) {
            closedir(d);
            return HSC_ENOMEM;
        }
    }
    closedir(d);
    if (j->nsegs > 1)
        qsort(j->segs, j->nsegs, sizeof *j->segs, seg_cmp);
    replay_t r = {.j = j, .now = hsc_journal_wall_ms()};
    size_t kept = 0;
    for (size_t i = 0; i < j->nsegs; i++) {
        char name[SEG_NAME_LEN + 1];
        hsc_journal_seg_name(name, j->segs[i].num);
        uint64_t keep = 0;
        int rc = replay_segment(&r, name, i + 1 == j->nsegs, &keep);
        if (rc != 0)
            return rc;
        if (keep > 0)
            j->segs[kept++] = (seg_t){j->segs[i].num, keep};
    }
    size_t total = j->nsegs;
    j->nsegs = kept;
    uint64_t bytes = 0;
    for (size_t i = 0; i < kept; i++)
        bytes += j->segs[i].bytes;
    atomic_store(&j->st_bytes, bytes);
    atomic_store(&j->st_segments, kept);
    uint64_t seq = r.max_seq;
    if (r.lost_pending) /* damage with no good record after it, in any segment */
        r.lost_tail = true;
    bool crashed = have_meta && strcmp(meta->state, "clean") != 0;
    bool rebooted = crashed && strcmp(meta->boot, j->boot) != 0;
    if ((rebooted && strcmp(meta->fsync, "always") != 0) || r.lost_tail) {
        /* Records seen by someone may be gone: never hand their numbers out again. */
        seq += SEQ_JUMP;
        r.lost_upto = seq;
        HSC_LOG(HSC_LOG_WARN,
                "journal: %s: ids continue after a jump, and resumes from before it get "
                "hsc.gap",
                r.lost_tail ? "the newest records were damaged"
                            : "the machine restarted without a clean shutdown and records "
                              "written without fsync may be lost");
    }
    hsc_memory_restore_done(j->engine, j->epoch, seq, r.lost_upto);
    hsc_engine_stats_t es;
    hsc_engine_stats(j->engine, &es);
    HSC_LOG(HSC_LOG_NOTICE,
            "journal: %s: %zu segment(s), %" PRIu64 " event(s) replayed, %zu in history on %zu "
            "channel(s); epoch %" PRIu64 ", next id %" PRIu64 "%s",
            j->dir, total, r.events, es.history_events, es.channels, j->epoch, seq + 1,
            crashed ? " (the last run did not stop cleanly)" : "");
    return 0;
}
