/*
 * The Redis engine's subscriptions (redis.c has the engine, redis_feed.c the fan-out, redis_int.h
 * what its files share).
 *
 * Exactness. A subscribe first waits until the node is SUBSCRIBEd to its channels, then runs a
 * read script (the stream after the last id, or the newest N, plus the current sequence S) and
 * registers when its answer arrives: the cut is max(S, the highest SEQ this node fanned out);
 * events after S that were already fanned out come from a small per-channel ring of recent
 * deliveries, and events up to the cut that arrive later are skipped by the hub. If the ring no
 * longer covers them the read is made again. A cut is of the answer's epoch: an answer from an
 * epoch this node already left behind is read again, and what the hub gets (the cut, the replay's
 * numbers) is hsc_redis_pos()'s, so that a later epoch's events pass every earlier cut.
 *
 * One read for many. A subscription that needs a read of one channel while another one's read
 * of that channel, asking the same (the same id to resume after, or the same newest N), is on
 * its way joins it instead (op->joined) and is answered from the same reply, registered at the
 * same moment with the same cut. So a resume storm on a node that had no subscriber of the
 * channel yet (the first read has not answered, nothing is in the rings) costs one read per
 * channel, not one per subscriber; once answered, the seeded ring serves the later ones.
 */
#include "pubsub/redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- subscribe ------------------------------------------------------------------------------- */

static void subscribe_complete(hsc_engine_call_t *call)
{
    op_t *op = (op_t *)((char *)call - offsetof(op_t, call));
    hsc_subscribe_t *s = op->s;
    hsc_redis_op_free(op);
    s->cb(s);
}

/* Ends a subscribe that failed: nothing registered. */
static void subscribe_fail(rengine_t *r, op_t *op, int rc)
{
    for (size_t i = 0; i < op->n; i++) {
        op->chans[i]->pins--;
        if (op->chans[i]->pins == 0 && op->chans[i]->total_subs == 0)
            op->chans[i]->idle_since = now_ms();
    }
    op->s->rc = rc;
    op->call.fn = subscribe_complete;
    hsc_redis_complete(r, op);
}

static int subscribe_read(rengine_t *r, op_t *op, bool eval);
static void subscribe_register(rengine_t *r, op_t *op, uint64_t cut, hsc_replay_t *v, size_t n);

static bool replay_push(hsc_replay_t **v, size_t *n, size_t *cap, hsc_replay_t e)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        hsc_replay_t *w = realloc(*v, c * sizeof *w);
        if (w == NULL)
            return false;
        *v = w;
        *cap = c;
    }
    (*v)[(*n)++] = e;
    return true;
}

void hsc_redis_replay_drop(hsc_replay_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hsc_frame_unref(v[i].frame);
    free(v);
}

/* The read answered: registers with the cut and the replay, or reads again. */
static void subscribe_answer(rengine_t *r, op_t *op, redisReply *x)
{
    hsc_subscribe_t *s = op->s;
    if (x == NULL || x->type != REDIS_REPLY_ARRAY || x->elements != 2 + 2 * op->n) {
        subscribe_fail(r, op, HSC_ECLOSED);
        return;
    }
    if (r->catching > 0 || r->need_catchup) {
        /* Events the catch-up will deliver may lie between S and the cut: read again after. */
        op->next = r->sub_wait;
        r->sub_wait = op;
        return;
    }
    uint64_t epoch = reply_u64(x->element[0]), S = reply_u64(x->element[1]);
    hsc_redis_epoch_seen(r, epoch);
    if (epoch != 0 && epoch < r->epoch) {
        /* Read before Redis lost its data, answered after this node saw the new epoch: its
         * SEQs and cut belong to a chain that is gone. */
        if (op->tries++ < 3)
            subscribe_read(r, op, false);
        else
            subscribe_fail(r, op, HSC_ECLOSED);
        return;
    }
    uint64_t cut = S > r->fanned ? S : r->fanned;
    if (S > r->highest)
        r->highest = S;
    s->epoch = epoch != 0 ? epoch : r->epoch;
    if (s->epoch == 0) { /* nothing was ever published: any epoch of ours is later than now */
        uv_timeval64_t tv;
        uv_gettimeofday(&tv);
        s->epoch = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    }
    s->gap = HSC_GAP_NONE;
    uint64_t after = 0;
    bool replay = s->recent > 0 && op->last == NULL;
    if (op->last != NULL) {
        s->gap = hsc_resume_point(op->last, op->last_len, s->epoch, cut, &after);
        replay = s->gap != HSC_GAP_UNKNOWN;
        if (replay && after != op->after && op->tries++ < 3) { /* the epoch moved: read again */
            op->after = after;
            subscribe_read(r, op, false);
            return;
        }
    }
    hsc_replay_t *v = NULL;
    size_t n = 0, cap = 0;
    bool redo = false;
    for (size_t i = 0; i < op->n && replay; i++) {
        rchan_t *ch = op->chans[i];
        const redisReply *lastr = x->element[2 + 2 * i], *es = x->element[3 + 2 * i];
        uint64_t chan_last = reply_u64(lastr);
        /* Fanned out nothing yet: the notices after S continue from here, and the ring starts
         * with what this read found (seed), so that later resumes need no read. */
        bool seed = !ch->known && ch->ring.count == 0 && op->last != NULL;
        if (!ch->known) {
            ch->known = true;
            ch->last = chan_last;
            ch->synced = true; /* from here on every event is fanned out, in order */
            ch->from = chan_last;
        }
        if (es->type != REDIS_REPLY_ARRAY)
            continue;
        size_t first = n;
        bool hole = false;
        for (size_t j = 0; j < es->elements; j++) {
            uint64_t seq, prev;
            hsc_frame_t *f = hsc_redis_entry_frame(s->epoch, es->element[j], &seq, &prev);
            if (f == NULL)
                continue;
            if (op->last != NULL && j == 0 && prev > after) {
                hole = true;
                if (s->gap == HSC_GAP_NONE)
                    s->gap = HSC_GAP_EXPIRED;
            }
            if (!replay_push(&v, &n, &cap, (hsc_replay_t){seq, f, &ch->pub})) {
                hsc_frame_unref(f);
                hsc_redis_replay_drop(v, n);
                subscribe_fail(r, op, HSC_ENOMEM);
                return;
            }
        }
        if (op->last != NULL && n == first && chan_last > after && chan_last <= S) {
            hole = true;
            if (s->gap == HSC_GAP_NONE)
                s->gap = HSC_GAP_EXPIRED; /* the stream expired; its last id says events were */
        }
        if (seed && !hole && s->gap != HSC_GAP_UNKNOWN) {
            for (size_t j = first; j < n; j++)
                hsc_history_push(&ch->ring, v[j].seq, 0, v[j].frame);
            ch->from = after; /* every event of the channel after the client's id is here */
        }
        /* What this node fanned out after S on the channel, from its ring. */
        if (ch->ring.evicted_seq > S && ch->ring.evicted_seq > after)
            redo = true;
        for (size_t j = hsc_history_first_after(&ch->ring, S > after ? S : after);
             j < ch->ring.count; j++) {
            const hsc_hist_entry_t *en = hsc_history_at(&ch->ring, j);
            if (en->seq > cut)
                break;
            if (!replay_push(&v, &n, &cap,
                             (hsc_replay_t){en->seq, hsc_frame_ref(en->frame), &ch->pub})) {
                hsc_frame_unref(en->frame);
                hsc_redis_replay_drop(v, n);
                subscribe_fail(r, op, HSC_ENOMEM);
                return;
            }
        }
    }
    if (!replay) {
        for (size_t i = 0; i < op->n; i++)
            if (!op->chans[i]->known) {
                op->chans[i]->known = true;
                op->chans[i]->last = reply_u64(x->element[2 + 2 * i]);
                op->chans[i]->synced = true;
                op->chans[i]->from = op->chans[i]->last;
            }
    }
    if (redo && op->tries++ < 3) {
        hsc_redis_replay_drop(v, n);
        subscribe_read(r, op, false);
        return;
    }
    if (n > 1)
        qsort(v, n, sizeof *v, hsc_redis_replay_cmp);
    if (op->last == NULL && n > s->recent) { /* the newest `recent` across channels */
        size_t skip = n - s->recent;
        for (size_t i = 0; i < skip; i++)
            hsc_frame_unref(v[i].frame);
        memmove(v, v + skip, (n - skip) * sizeof *v);
        n -= skip;
    }
    subscribe_register(r, op, cut, v, n);
}

/* A read answered: for its subscription and every one that joined it. */
static void subscribe_done(rengine_t *r, void *arg, redisReply *x)
{
    op_t *op = arg;
    if (op->n == 1 && op->chans[0]->reading == op)
        op->chans[0]->reading = NULL;
    if (x != NULL && x->type == REDIS_REPLY_ERROR && strncmp(x->str, "NOSCRIPT", 8) == 0 &&
        op->tries++ < 3) {
        if (subscribe_read(r, op, true) == 0 && op->n == 1 && op->chans[0]->reading == NULL)
            op->chans[0]->reading = op; /* the joined ones wait on */
        return;
    }
    op_t *joined = op->joined;
    op->joined = NULL;
    subscribe_answer(r, op, x);
    while (joined != NULL) {
        op_t *j = joined;
        joined = j->next;
        j->next = NULL;
        subscribe_answer(r, j, x);
    }
}

/* Registers the subscription with its cut and replay (sorted) and queues its completion. */
static void subscribe_register(rengine_t *r, op_t *op, uint64_t cut, hsc_replay_t *v, size_t n)
{
    hsc_subscribe_t *s = op->s;
    if (s->tag) {
        for (size_t i = 0; i < op->n; i++) {
            rchan_t *ch = op->chans[i];
            if (ch->pub.tag == NULL &&
                (ch->pub.tag = hsc_chan_tag_new(ch->name, ch->name_len)) == NULL) {
                hsc_redis_replay_drop(v, n);
                subscribe_fail(r, op, HSC_ENOMEM);
                return;
            }
        }
    }
    for (size_t i = 0; i < op->n; i++) {
        rchan_t *ch = op->chans[i];
        s->chans[i] = &ch->pub;
        ch->nsubs[op->hub]++;
        ch->total_subs++;
        ch->pins--;
        ch->idle_since = 0;
    }
    /* The hub compares numbers, not (EPOCH, SEQ) pairs: hand it this epoch's (hsc_redis_pos()). */
    for (size_t i = 0; i < n; i++)
        v[i].seq = hsc_redis_pos(r, v[i].seq);
    s->cut = hsc_redis_pos(r, cut);
    s->replay = v;
    s->nreplay = n;
    s->rc = 0;
    op->call.fn = subscribe_complete;
    hsc_redis_complete(r, op);
}

/* A read that could not be sent: fails its subscription and every one that joined it. */
static void read_fail(rengine_t *r, op_t *op, int rc)
{
    op_t *joined = op->joined;
    op->joined = NULL;
    subscribe_fail(r, op, rc);
    while (joined != NULL) {
        op_t *j = joined;
        joined = j->next;
        j->next = NULL;
        subscribe_fail(r, j, rc);
    }
}

/* Sends the read of `op`: 0, or fails the subscription (with every one joined) and -1. */
static int subscribe_read(rengine_t *r, op_t *op, bool eval)
{
    atomic_fetch_add(&r->read_subs, 1);
    size_t argc = 5 + 2 * op->n + 2;
    const char **argv = calloc(argc, sizeof *argv);
    size_t *lens = calloc(argc, sizeof *lens);
    char *keys = malloc(op->n * 2 * (HSC_CHANNEL_MAX + 16));
    if (argv == NULL || lens == NULL || keys == NULL) {
        free(argv);
        free(lens);
        free(keys);
        read_fail(r, op, HSC_ENOMEM);
        return -1;
    }
    char nkeys[16], count[24];
    snprintf(nkeys, sizeof nkeys, "%zu", 2 + 2 * op->n);
    size_t k = 0;
    argv[k++] = eval ? "EVAL" : "EVALSHA";
    argv[k++] = eval ? hsc_redis_read_lua : r->read_sha;
    argv[k++] = nkeys;
    argv[k++] = "hsc:epoch";
    argv[k++] = "hsc:seq";
    for (size_t i = 0; i < op->n; i++) {
        char *a = keys + 2 * i * (HSC_CHANNEL_MAX + 16), *b = a + HSC_CHANNEL_MAX + 16;
        lens[k] = hsc_redis_key(a, HSC_CHANNEL_MAX + 16, op->chans[i], "s");
        argv[k++] = a;
        lens[k] = hsc_redis_key(b, HSC_CHANNEL_MAX + 16, op->chans[i], "last");
        argv[k++] = b;
    }
    if (op->last != NULL) {
        argv[k++] = "a";
        snprintf(count, sizeof count, "%llu", (unsigned long long)op->after);
    } else if (op->s->recent > 0) {
        argv[k++] = "r";
        size_t want = op->s->recent == HSC_REPLAY_ALL ? r->history * 2 + 16 : op->s->recent;
        snprintf(count, sizeof count, "%zu", want);
    } else {
        argv[k++] = "n";
        snprintf(count, sizeof count, "0");
    }
    argv[k++] = count;
    for (size_t i = 0; i < k; i++)
        if (lens[i] == 0)
            lens[i] = strlen(argv[i]);
    int rc = hsc_redis_conn_send(&r->cmd, (int)k, argv, lens, subscribe_done, op);
    free(argv);
    free(lens);
    free(keys);
    if (rc != 0) {
        read_fail(r, op, HSC_ECLOSED);
        return -1;
    }
    return 0;
}

/* The same read: of the same single channel, asking for the same range. */
static bool same_read(const op_t *a, const op_t *b)
{
    if (a->n != 1 || b->n != 1 || a->chans[0] != b->chans[0] ||
        (a->last == NULL) != (b->last == NULL))
        return false;
    if (a->last != NULL)
        return a->after == b->after;
    return a->s->recent == b->s->recent;
}

/* Joins a read of the same range of the same channel already on its way, or reads. */
static void subscribe_fetch(rengine_t *r, op_t *op)
{
    op_t *lead = op->n == 1 ? op->chans[0]->reading : NULL;
    if (lead != NULL && same_read(lead, op)) {
        op->next = lead->joined;
        lead->joined = op;
        atomic_fetch_add(&r->shared_subs, 1);
        return;
    }
    if (subscribe_read(r, op, false) == 0 && op->n == 1 && op->chans[0]->reading == NULL)
        op->chans[0]->reading = op;
}

/*
 * A subscription served by the node alone, with no read from Redis: live only, or a resume that
 * the channels' rings cover. Holds when the node is in step with Redis (SUBSCRIBEd to every
 * channel, no catch-up running or owed) and each ring holds every event of its channel after
 * the client's id: then the cut is the highest SEQ fanned out (every earlier event of these
 * channels has been fanned out, in order) and the replay comes from the rings. So a resume storm
 * after a node died costs Redis one read per channel, not one per subscriber. False: read.
 */
static bool subscribe_local(rengine_t *r, op_t *op)
{
    hsc_subscribe_t *s = op->s;
    if (r->epoch == 0 || (op->last == NULL && s->recent > 0))
        return false;
    /* A ring may hold events a read put there that the node has not fanned out yet (above
     * `fanned`): their notices will be skipped, so the cut would have to include them, and then
     * other channels' events below it might still be on their way. Read instead. */
    for (size_t i = 0; i < op->n; i++)
        if (!op->chans[i]->synced || op->chans[i]->gap != NULL || op->chans[i]->last > r->fanned)
            return false;
    uint64_t cut = r->fanned, after = 0;
    s->epoch = r->epoch;
    s->gap = HSC_GAP_NONE;
    if (op->last != NULL)
        s->gap = hsc_resume_point(op->last, op->last_len, s->epoch, cut, &after);
    if (op->last != NULL && s->gap == HSC_GAP_UNKNOWN)
        return false; /* maybe an id this node has not fanned out yet: Redis knows */
    bool replay = op->last != NULL;
    for (size_t i = 0; i < op->n && replay; i++) {
        rchan_t *ch = op->chans[i];
        if (after < ch->from || after < ch->ring.evicted_seq)
            return false; /* the ring does not reach back that far */
    }
    hsc_replay_t *v = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < op->n && replay; i++) {
        rchan_t *ch = op->chans[i];
        for (size_t j = hsc_history_first_after(&ch->ring, after); j < ch->ring.count; j++) {
            const hsc_hist_entry_t *en = hsc_history_at(&ch->ring, j);
            if (!replay_push(&v, &n, &cap,
                             (hsc_replay_t){en->seq, hsc_frame_ref(en->frame), &ch->pub})) {
                hsc_frame_unref(en->frame);
                hsc_redis_replay_drop(v, n);
                subscribe_fail(r, op, HSC_ENOMEM);
                return true;
            }
        }
    }
    if (n > 1)
        qsort(v, n, sizeof *v, hsc_redis_replay_cmp);
    atomic_fetch_add(&r->local_subs, 1);
    subscribe_register(r, op, cut, v, n);
    return true;
}

/* Reads once every channel of `op` is SUBSCRIBEd; returns false while it must wait. */
static bool subscribe_try(rengine_t *r, op_t *op)
{
    if (r->cmd.state != CONN_READY || r->ps.state != CONN_READY) {
        subscribe_fail(r, op, HSC_ECLOSED);
        return true;
    }
    bool ready = r->catching == 0 && !r->need_catchup; /* see subscribe_done() */
    for (size_t i = 0; i < op->n; i++) {
        hsc_redis_pubsub_subscribe(r, op->chans[i]);
        ready &= op->chans[i]->sub_state == 2;
    }
    if (!ready)
        return false;
    if (!subscribe_local(r, op))
        subscribe_fetch(r, op);
    return true;
}

void hsc_redis_sub_retry(rengine_t *r)
{
    op_t *list = r->sub_wait, **keep = &r->sub_wait;
    r->sub_wait = NULL;
    while (list != NULL) {
        op_t *op = list;
        list = op->next;
        op->next = NULL;
        if (!subscribe_try(r, op)) {
            *keep = op;
            keep = &op->next;
        }
    }
    *keep = NULL;
    /* subscribe_try() never adds to sub_wait itself; what was kept stays, in order. */
}

void hsc_redis_sub_fail_waiting(rengine_t *r)
{
    op_t *list = r->sub_wait;
    r->sub_wait = NULL;
    while (list != NULL) {
        op_t *op = list;
        list = op->next;
        subscribe_fail(r, op, HSC_ECLOSED);
    }
}

void hsc_redis_subscribe_start(rengine_t *r, op_t *op)
{
    for (size_t i = 0; i < op->n; i++) {
        const char *name = op->data + i * op->len;
        rchan_t *ch = hsc_redis_chan_get(r, name, strlen(name));
        if (ch == NULL) {
            op->n = i;
            subscribe_fail(r, op, HSC_ENOMEM);
            return;
        }
        ch->pins++;
        ch->idle_since = 0;
        op->chans[i] = ch;
    }
    if (op->last != NULL) {
        uint64_t e, seq;
        op->after = 0;
        if (hsc_event_id_parse(op->last, op->last_len, &e, &seq) == 0)
            op->after = r->epoch != 0 && e < r->epoch ? 0 : seq;
    }
    if (!subscribe_try(r, op)) {
        op_t **pp = &r->sub_wait;
        while (*pp != NULL)
            pp = &(*pp)->next;
        *pp = op;
    }
}
