/*
 * The journal's writing (journal.c has the whole story, journal_int.h the shared state): with
 * --fsync always, publishes queue their records (hsc_journal_append()) and the writer thread
 * writes each group with one pwrite() and one fdatasync(), then hands it to the engine (group
 * commit); with batch and off, a publish writes its own record at once (hsc_journal_write())
 * and the writer thread only syncs (batch) and looks after the segments (jsegment.c).
 */
#include "pubsub/journal_int.h"

#include "pubsub/jrecord.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/*
 * The writer thread: with --fsync always, the groups; with batch, the sync at most
 * --fsync-interval after a write made the segment unsynced; with every mode, full segments and
 * compaction.
 */
void hsc_journal_writer_main(void *arg)
{
    hsc_journal_t *j = arg;
    char *spare = NULL;
    size_t spare_cap = 0;
    hsc_jpending_t **vspare = NULL;
    size_t vspare_cap = 0;
    uint64_t deadline = 0; /* batch: when the unsynced writes must be synced; 0: none */
    uint64_t retry = 0;    /* when maintenance failed: when it is tried again; 0: none */
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
            retry = hsc_journal_maintain(j) == 0 ? 0 : uv_hrtime() + 1000000000u;
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
