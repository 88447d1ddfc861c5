/*
 * The Redis engine's fan-out, catch-up and pub/sub notices (redis.c has the engine, redis_int.h
 * what its files share).
 *
 * Order and exactness. Redis sends one connection's pub/sub messages in the order the scripts
 * ran, which is SEQ order: the node fans them out in that order. Each notice names the channel's
 * previous SEQ; a notice whose previous is above the last one this node delivered on that channel
 * means a hole (a lost message, a reconnect): the node stops fanning out, reads the missing range
 * of the channel's stream once (XRANGE), delivers it, then goes on with the queued notices.
 * Every pub/sub reconnect is treated as a hole on every channel.
 *
 * Epochs. When Redis lost its data the chains start again in a new epoch, whose SEQs may start
 * below those this node delivered. Hubs compare plain numbers, so they get hsc_redis_pos()'s,
 * which a new epoch moves above every earlier one; subscribers are told with one hsc.gap
 * ("epoch") as soon as the node sees the new epoch, and then get every event of it. A catch-up read
 * made after a SEQ of another epoch is dropped and made again from the new chain's start.
 */
#include "pubsub/redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fan-out --------------------------------------------------------------------------------- */

static void deliver_hubs(rengine_t *r, rchan_t *ch, uint64_t seq, hsc_frame_t *f);

/*
 * The hsc.gap event live subscribers get when events of their channel were lost for good (Redis
 * lost its data: "epoch"; the stream was trimmed before this node read it: "expired"). It has no
 * id, so a client's last event id stays that of the last event it received.
 */
static hsc_frame_t *live_gap_frame(const char *reason, uint64_t epoch)
{
    char id[HSC_EVENT_ID_MAX], data[160];
    hsc_event_id_format(id, epoch, 0);
    char *dash = strrchr(id, '-');
    if (dash != NULL)
        *dash = '\0';
    int n = snprintf(data, sizeof data, "{\"reason\":\"%s\",\"epoch\":\"%s\",\"live\":true}",
                     reason, id);
    return hsc_event_frame_new("hsc.gap", NULL, data, (size_t)n);
}

/* One event reaches this node's hubs with subscribers on `ch`, and its ring. */
void hsc_redis_fan_out(rengine_t *r, rchan_t *ch, uint64_t seq, hsc_frame_t *f)
{
    if (ch->known && seq <= ch->last)
        return; /* already here (a catch-up overlapping live notices) */
    ch->last = seq;
    ch->known = true;
    f->born_ns = uv_hrtime(); /* hsc_publish_delivery_seconds: from this node's receipt */
    if (seq > r->highest)
        r->highest = seq;
    if (seq > r->fanned)
        r->fanned = seq;
    hsc_history_push(&ch->ring, seq, 0, f);
    if (ch->gap != NULL) {
        /* Numbered as the event it precedes: every subscriber that gets the event gets it. */
        hsc_frame_t *g = live_gap_frame(ch->gap, r->epoch);
        ch->gap = NULL;
        if (g != NULL) {
            deliver_hubs(r, ch, seq, g);
            hsc_frame_unref(g);
        }
    }
    deliver_hubs(r, ch, seq, f);
}

static void deliver_hubs(rengine_t *r, rchan_t *ch, uint64_t seq, hsc_frame_t *f)
{
    uint64_t pos = hsc_redis_pos(r, seq);
    for (unsigned i = 0; i < r->base.nhubs && !r->stopped; i++) {
        if (ch->nsubs[i] == 0)
            continue;
        hsc_engine_hub_t *hub = &r->base.hubs[i];
        atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
        if (!hub->sink->deliver(hub->ctx, &ch->pub, pos, f)) {
            atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_relaxed);
            HSC_LOG(HSC_LOG_ERROR, "channel %s: out of memory queueing an event", ch->name);
            continue;
        }
        r->wake_mask |= i < 64 ? 1ull << i : ~0ull;
    }
}

/*
 * An event's frame from what Redis carried (a notice or a stream entry), with the id EPOCH-SEQ.
 * What another node published was checked there; a type or data that is not valid here (someone
 * else wrote to the keys) is refused. NULL when malformed or out of memory.
 */
static hsc_frame_t *event_frame(uint64_t epoch, const hsc_redis_notice_t *n)
{
    char type[HSC_EVENT_TYPE_MAX + 1];
    if (n->type_len > 0) {
        if (!hsc_event_type_valid(n->type, n->type_len))
            return NULL;
        memcpy(type, n->type, n->type_len);
        type[n->type_len] = '\0';
    }
    if (!hsc_utf8_valid(n->data, n->len))
        return NULL;
    char id[HSC_EVENT_ID_MAX];
    hsc_event_id_format(id, epoch, n->seq);
    return hsc_event_frame_new(n->type_len > 0 ? type : NULL, id, n->data, n->len);
}

/* A stream entry as a frame of `epoch` (read with it, atomically); NULL when malformed. */
hsc_frame_t *hsc_redis_entry_frame(uint64_t epoch, const redisReply *e, uint64_t *seq,
                                   uint64_t *prev)
{
    hsc_redis_notice_t n;
    if (hsc_redis_entry_parse(e, &n) != 0)
        return NULL;
    *seq = n.seq;
    *prev = n.prev;
    return event_frame(epoch, &n);
}

/*
 * Redis's epoch as a reply shows it. Epochs are drawn from Redis's clock and only ever grow; a
 * new one means Redis lost its data: the channels' chains start again, and the new epoch's SEQs
 * may start below those this node handed out (another node, whose floor was lower, published
 * first). So the numbers hubs see move above every earlier one (`pos_base`), `fanned` starts again,
 * and what a catch-up read of the old epoch found is dropped. The channels' subscribers get
 * hsc.gap ("epoch") at once, then every event of the new epoch.
 */
void hsc_redis_epoch_seen(rengine_t *r, uint64_t epoch)
{
    if (epoch <= r->epoch)
        return;
    if (r->epoch != 0) {
        HSC_LOG(HSC_LOG_WARN, "redis: a new epoch (%llu): Redis lost its data",
                (unsigned long long)epoch);
        r->pos_base = r->handed + 1; /* the gaps below are numbered pos_base + 0 */
        r->fanned = 0;
        for (size_t i = 0; i < r->ncu; i++) {
            hsc_frame_unref(r->cu[i].frame);
            hsc_redis_chan_unref(rchan(r->cu[i].chan));
        }
        r->ncu = 0;
        for (size_t i = 0; i < r->chans.cap; i++) {
            for (rchan_t *ch = rent(r->chans.slots[i]); ch != NULL; ch = rent(ch->hent.next)) {
                ch->last = 0; /* the chain starts again: every event of the new epoch is after 0 */
                ch->known = true;
                ch->synced = false;
                hsc_history_dispose(&ch->ring); /* the old epoch's events */
                hsc_history_init(&ch->ring, RING_EVENTS, SIZE_MAX, 0);
                ch->gap = NULL; /* a pending "expired" is said by this one too */
                if (ch->total_subs == 0)
                    continue;
                /* Told now, numbered above every cut taken before and below every event of the
                 * new epoch: the channel's subscribers get it first, later ones never. */
                hsc_frame_t *g = live_gap_frame("epoch", epoch);
                if (g != NULL) {
                    deliver_hubs(r, ch, 0, g);
                    hsc_frame_unref(g);
                }
            }
        }
    }
    r->epoch = epoch;
}

/* ---- catch-up -------------------------------------------------------------------------------- */

static void process_notice(rengine_t *r, const char *chan, size_t chan_len, const char *payload,
                           size_t len);

int hsc_redis_replay_cmp(const void *a, const void *b)
{
    uint64_t x = ((const hsc_replay_t *)a)->seq, y = ((const hsc_replay_t *)b)->seq;
    return x < y ? -1 : x > y;
}

/* The last catch-up read answered: deliver what was read in SEQ order, then the held notices. */
static void catchup_finish(rengine_t *r)
{
    if (r->ncu > 1)
        qsort(r->cu, r->ncu, sizeof *r->cu, hsc_redis_replay_cmp);
    for (size_t i = 0; i < r->ncu; i++) {
        hsc_redis_fan_out(r, rchan(r->cu[i].chan), r->cu[i].seq, r->cu[i].frame);
        hsc_frame_unref(r->cu[i].frame);
        hsc_redis_chan_unref(rchan(r->cu[i].chan));
    }
    r->ncu = 0;
    while (r->held != NULL && r->catching == 0) {
        held_t *h = r->held;
        r->held = h->next;
        if (r->held == NULL)
            r->held_tail = &r->held;
        r->nheld--;
        process_notice(r, h->chan, h->chan_len, h->payload, h->len);
        free(h);
    }
    if (r->catching == 0 && r->sub_wait != NULL)
        hsc_redis_sub_retry(r); /* subscriptions that waited for the catch-up */
}

/* A catch-up read on its way: its channel, and the epoch its `after` (ch->last) belonged to. */
typedef struct cu_read_s {
    rchan_t *ch;
    uint64_t epoch;
} cu_read_t;

static bool catchup_send(rengine_t *r, cu_read_t *rd, bool eval);

static void catchup_done(rengine_t *r, void *arg, redisReply *x)
{
    cu_read_t *rd = arg;
    rchan_t *ch = rd->ch;
    bool again = false;
    if (x != NULL && x->type == REDIS_REPLY_ERROR && strncmp(x->str, "NOSCRIPT", 8) == 0 &&
        catchup_send(r, rd, true))
        return;
    /* The read script's answer for one channel: {epoch, seq, last, entries}. */
    if (x == NULL || x->type != REDIS_REPLY_ARRAY || x->elements != 4) {
        r->need_catchup = true;
        x = NULL;
    } else {
        uint64_t epoch = reply_u64(x->element[0]), S = reply_u64(x->element[1]);
        hsc_redis_epoch_seen(r, epoch);
        if (S > r->highest)
            r->highest = S;
        x = x->element[3];
        if (epoch != 0 && (epoch != r->epoch || (rd->epoch != 0 && rd->epoch != epoch))) {
            /* Read after a SEQ of another epoch, or an epoch already left behind: the current
             * chain is read again from where this node is (its start, after a new epoch). */
            again = true;
            x = NULL;
        }
    }
    free(rd);
    if (x != NULL && x->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < x->elements; i++) {
            uint64_t seq, prev;
            hsc_frame_t *f = hsc_redis_entry_frame(r->epoch, x->element[i], &seq, &prev);
            if (f == NULL)
                continue;
            if (i == 0 && ch->known && prev > ch->last && ch->total_subs > 0)
                ch->gap = "expired";
            if (i == 0 && ch->known && prev > ch->last)
                ch->synced = false; /* the ring misses what Redis trimmed: reads from now on */
            if (i == 0 && ch->known && prev > ch->last)
                HSC_LOG(HSC_LOG_WARN,
                        "channel %s: events %llu to %llu left the stream before "
                        "this node read them",
                        ch->name, (unsigned long long)ch->last + 1, (unsigned long long)prev);
            if (r->ncu == r->cucap) {
                size_t cap = r->cucap ? r->cucap * 2 : 64;
                hsc_replay_t *v = realloc(r->cu, cap * sizeof *v);
                if (v == NULL) {
                    hsc_frame_unref(f);
                    break;
                }
                r->cu = v;
                r->cucap = cap;
            }
            atomic_fetch_add(&ch->refs, 1);
            r->cu[r->ncu++] = (hsc_replay_t){seq, f, &ch->pub};
        }
    }
    if (again)
        hsc_redis_catchup(r, ch); /* before this read counts as done: the round goes on */
    ch->pins--;
    hsc_redis_chan_unref(ch);
    if (--r->catching == 0)
        catchup_finish(r);
}

/* The read script for one channel after ch->last: the entries with the epoch they belong to. */
static bool catchup_send(rengine_t *r, cu_read_t *rd, bool eval)
{
    rchan_t *ch = rd->ch;
    char ks[HSC_CHANNEL_MAX + 16], kl[HSC_CHANNEL_MAX + 16], after[24];
    size_t sl = hsc_redis_key(ks, sizeof ks, ch, "s"),
           ll = hsc_redis_key(kl, sizeof kl, ch, "last");
    snprintf(after, sizeof after, "%llu", (unsigned long long)ch->last);
    const char *argv[] = {eval ? "EVAL" : "EVALSHA",
                          eval ? hsc_redis_read_lua : r->read_sha,
                          "4",
                          "hsc:epoch",
                          "hsc:seq",
                          ks,
                          kl,
                          "a",
                          after};
    size_t lens[9];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(argv[i]);
    lens[5] = sl;
    lens[6] = ll;
    return hsc_redis_conn_send(&r->cmd, 9, argv, lens, catchup_done, rd) == 0;
}

/* Reads `ch`'s stream after what this node has: notices are held until every read answered. */
void hsc_redis_catchup(rengine_t *r, rchan_t *ch)
{
    cu_read_t *rd = malloc(sizeof *rd);
    if (r->cmd.state != CONN_READY || rd == NULL) {
        free(rd);
        r->need_catchup = true; /* once the command connection is back (or memory) */
        return;
    }
    *rd = (cu_read_t){ch, r->epoch};
    atomic_fetch_add(&ch->refs, 1);
    ch->pins++;
    r->catching++;
    atomic_fetch_add(&r->catchups, 1);
    if (!catchup_send(r, rd, false)) {
        r->need_catchup = true;
        catchup_done(r, rd, NULL);
    }
}

/* ---- pub/sub --------------------------------------------------------------------------------- */

/* Parses "EPOCH SEQ PREV TYPE\nDATA" and fans it out, or catches up first when it shows a hole. */
static void process_notice(rengine_t *r, const char *chan, size_t chan_len, const char *payload,
                           size_t len)
{
    /* "hsc:{NAME}:live" */
    if (chan_len < 11 || memcmp(chan, "hsc:{", 5) != 0)
        return;
    uint64_t h = hsc_siphash(r->hash_key, chan + 5, chan_len - 11);
    rchan_t *ch = hsc_redis_table_find(r, chan + 5, chan_len - 11, h);
    if (ch == NULL)
        return;
    hsc_redis_notice_t nt;
    if (hsc_redis_notice_parse(payload, len, &nt) != 0) {
        HSC_LOG(HSC_LOG_WARN, "channel %s: a malformed notice from Redis", ch->name);
        return;
    }
    uint64_t epoch = nt.epoch, seq = nt.seq, prev = nt.prev;
    if (epoch < r->epoch)
        return; /* from before Redis lost its data, read late */
    hsc_redis_epoch_seen(r, epoch);
    if (ch->known && seq <= ch->last)
        return;
    if (ch->known && prev > ch->last) {
        hsc_redis_catchup(r, ch); /* reads this event too: the held notice is then a duplicate */
        return;
    }
    hsc_frame_t *f = event_frame(epoch, &nt);
    if (f == NULL) {
        HSC_LOG(HSC_LOG_ERROR, "channel %s: an event from Redis is invalid or out of memory",
                ch->name);
        return;
    }
    hsc_redis_fan_out(r, ch, seq, f);
    hsc_frame_unref(f);
}

void hsc_redis_pubsub_reply(rengine_t *r, redisReply *x)
{
    const char *kind = x->element[0]->str;
    if (strcmp(kind, "message") == 0) {
        if (x->elements != 3 || x->element[1]->type != REDIS_REPLY_STRING ||
            x->element[2]->type != REDIS_REPLY_STRING)
            return;
        const redisReply *c = x->element[1], *m = x->element[2];
        if (r->catching > 0) {
            if (r->nheld >= MAX_QUEUED) {
                hsc_redis_conn_fail(&r->ps, "too many notices held during a catch-up");
                return;
            }
            held_t *h = malloc(sizeof *h + c->len + m->len);
            if (h == NULL) {
                hsc_redis_conn_fail(&r->ps, "out of memory holding notices");
                return;
            }
            h->next = NULL;
            h->chan = (char *)(h + 1);
            h->payload = h->chan + c->len;
            h->chan_len = c->len;
            h->len = m->len;
            memcpy(h->chan, c->str, c->len);
            memcpy(h->payload, m->str, m->len);
            *r->held_tail = h;
            r->held_tail = &h->next;
            r->nheld++;
            return;
        }
        process_notice(r, c->str, c->len, m->str, m->len);
        return;
    }
    if (strcmp(kind, "subscribe") == 0 && x->elements >= 2 &&
        x->element[1]->type == REDIS_REPLY_STRING) {
        const redisReply *c = x->element[1];
        if (c->len < 11)
            return;
        rchan_t *ch = hsc_redis_table_find(r, c->str + 5, c->len - 11,
                                           hsc_siphash(r->hash_key, c->str + 5, c->len - 11));
        if (ch != NULL && ch->sub_state == 1) {
            ch->sub_state = 2;
            hsc_redis_sub_retry(r);
        }
    }
}

/* Asks Redis for the channel's notices (its first local subscriber is on its way). */
void hsc_redis_pubsub_subscribe(rengine_t *r, rchan_t *ch)
{
    if (ch->sub_state != 0 || r->ps.state != CONN_READY)
        return;
    char k[HSC_CHANNEL_MAX + 16];
    size_t kl = hsc_redis_key(k, sizeof k, ch, "live");
    const char *argv[] = {"SUBSCRIBE", k};
    size_t lens[] = {9, kl};
    if (hsc_redis_conn_send(&r->ps, 2, argv, lens, NULL, NULL) == 0)
        ch->sub_state = 1;
}

/* The pub/sub connection is gone: every channel must be subscribed again and caught up. */
void hsc_redis_pubsub_lost(rengine_t *r)
{
    r->need_catchup = true;
    for (size_t i = 0; i < r->chans.cap; i++) {
        for (rchan_t *ch = rent(r->chans.slots[i]); ch != NULL; ch = rent(ch->hent.next)) {
            ch->sub_state = 0;
            if (ch->total_subs == 0)
                ch->synced = false; /* not caught up (no subscriber): its ring has a hole */
        }
    }
    hsc_redis_sub_fail_waiting(r);
}
