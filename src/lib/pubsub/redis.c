/*
 * The Redis engine (engine.h, docs/cluster.md): ids, history and fan-out shared by many hscd
 * nodes through one Redis.
 *
 * Keys. "hsc:epoch" and "hsc:seq" number every event of every node (EPOCH-SEQ); per channel, a
 * hash tag keeps its keys in one slot: "hsc:{NAME}:s" is its history (a stream whose entry ids
 * are "SEQ-0", trimmed with MAXLEN ~ --history, expiring after --history-age without publishes),
 * "hsc:{NAME}:last" its newest SEQ (lives longer than the stream, so a resume can tell "expired"
 * from "never published"), "hsc:{NAME}:live" the pub/sub channel of its live notices.
 *
 * A publish is one script (EVALSHA, EVAL when Redis does not know it): INCR the sequence, XADD
 * the event with the channel's previous SEQ, PUBLISH the notice "EPOCH SEQ PREV TYPE\nDATA". The
 * publisher is answered once Redis answered; nothing is acknowledged from a local buffer. When
 * Redis lost "hsc:epoch" (a restart without persistence) the script draws a new epoch and starts
 * the sequence above the highest one this node saw (its floor: what it fanned out, was given,
 * and what its pings read of "hsc:seq"). Ids keep increasing as (EPOCH, SEQ) pairs even where the
 * new SEQs start lower (another node's floor): redis_feed.c, "Epochs".
 *
 * Threads. The engine runs its own thread and libuv loop with two connections: one for commands,
 * one for pub/sub. hiredis only formats commands and parses replies; the sockets, deadlines,
 * pings and reconnects are ours. Hubs' calls (publish, subscribe, unsubscribe) are copied into
 * operations queued under a small mutex and run on the engine's loop, which alone touches the
 * channel table; completions go back through the hubs' call(), deliveries through deliver().
 *
 * The files. Here: the scripts, the channel table (its chains are chantable.c's), publish, the
 * engine's loop and thread, the vtable and the engine's creation; redis_conn.c: the two connections
 * (sockets, deadlines, pings, reconnects); redis_feed.c: fan-out, catch-up and the pub/sub notices;
 * redis_sub.c: subscriptions; redis_int.h: what they share. The configuration (the --redis URL) and
 * the wire formats are parsed in redis_wire.c.
 */
#include "pubsub/redis_int.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- scripts --------------------------------------------------------------------------------- */

/* KEYS: epoch, seq, stream, last, live. ARGV: type, data, maxlen, stream ttl (s), floor,
 * last ttl (s). Returns {epoch, seq}. */
static const char PUBLISH_LUA[] =
    "local ep = redis.call('GET', KEYS[1])\n"
    "if not ep then\n"
    "  local t = redis.call('TIME')\n"
    "  ep = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))\n"
    "  redis.call('SET', KEYS[1], ep)\n"
    "  local cur = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "  if tonumber(ARGV[5]) > cur then redis.call('SET', KEYS[2], ARGV[5]) end\n"
    "end\n"
    "local seq = redis.call('INCR', KEYS[2])\n"
    "local prev = redis.call('GET', KEYS[4]) or '0'\n"
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], seq .. '-0', 't', ARGV[1], 'd', "
    "ARGV[2], 'p', prev)\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[4])\n"
    "redis.call('SET', KEYS[4], seq, 'PX', ARGV[6])\n"
    "redis.call('PUBLISH', KEYS[5], ep .. ' ' .. seq .. ' ' .. prev .. ' ' .. ARGV[1] .. '\\n' "
    ".. ARGV[2])\n"
    "return {ep, tostring(seq)}\n";

/* KEYS: epoch, seq, then (stream, last) per channel. ARGV: mode ("a": after ARGV[2], "r": the
 * newest ARGV[2], "n": none). Returns {epoch, seq, last1, entries1, last2, entries2, ...}. */
const char hsc_redis_read_lua[] =
    "local out = {redis.call('GET', KEYS[1]) or '0', redis.call('GET', KEYS[2]) or '0'}\n"
    "for i = 3, #KEYS, 2 do\n"
    "  local e = {}\n"
    "  if ARGV[1] == 'a' then\n"
    "    local from = '-'\n"
    "    if ARGV[2] ~= '0' then from = '(' .. ARGV[2] .. '-0' end\n"
    "    e = redis.call('XRANGE', KEYS[i], from, '+')\n"
    "  elseif ARGV[1] == 'r' then\n"
    "    e = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', ARGV[2])\n"
    "  end\n"
    "  out[#out + 1] = redis.call('GET', KEYS[i + 1]) or '0'\n"
    "  out[#out + 1] = e\n"
    "end\n"
    "return out\n";

static void sha1_hex(const char *s, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}
/* ---- the channel table (the engine's loop) --------------------------------------------------- */

void hsc_redis_chan_unref(rchan_t *ch)
{
    if (atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1)
        return;
    hsc_history_dispose(&ch->ring);
    hsc_frame_unref(ch->pub.tag);
    free(ch->pub.slot);
    free(ch);
}

rchan_t *hsc_redis_table_find(rengine_t *r, const char *name, size_t len, uint64_t h)
{
    return rent(hsc_chantable_find(&r->chans, name, len, h));
}

rchan_t *hsc_redis_chan_get(rengine_t *r, const char *name, size_t len)
{
    uint64_t h = hsc_siphash(r->hash_key, name, len);
    rchan_t *ch = hsc_redis_table_find(r, name, len, h);
    if (ch != NULL)
        return ch;
    if (hsc_chantable_reserve(&r->chans) != 0)
        return NULL;
    unsigned nhubs = r->base.nhubs;
    ch = calloc(1, sizeof *ch + len + 1);
    void *arrays = ch ? calloc(nhubs, sizeof(void *) + sizeof(unsigned)) : NULL;
    if (arrays == NULL) {
        free(ch);
        return NULL;
    }
    atomic_init(&ch->refs, 1);
    ch->hent.hash = h;
    ch->pub.slot = arrays;
    ch->nsubs = (unsigned *)(ch->pub.slot + nhubs);
    hsc_history_init(&ch->ring, RING_EVENTS, SIZE_MAX, 0);
    ch->name_len = len;
    memcpy(ch->name, name, len);
    hsc_chantable_insert(&r->chans, &ch->hent);
    ch->idle_since = now_ms();
    return ch;
}

static void chan_remove(rengine_t *r, rchan_t *ch)
{
    hsc_chantable_remove(&r->chans, &ch->hent);
    hsc_redis_chan_unref(ch);
}

/* Builds "hsc:{NAME}:SUFFIX" into buf (names are at most HSC_CHANNEL_MAX bytes). */
size_t hsc_redis_key(char *buf, size_t cap, const rchan_t *ch, const char *suffix)
{
    int n = snprintf(buf, cap, "hsc:{%.*s}:%s", (int)ch->name_len, ch->name, suffix);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- publish --------------------------------------------------------------------------------- */

void hsc_redis_op_free(op_t *op)
{
    free(op->type);
    free(op->data);
    free(op->channel);
    free(op->last);
    free(op->chans);
    free(op);
}

/*
 * Runs op->call.fn on its hub's loop. When the engine is being freed the hubs are gone (the
 * server frees the engine last): the request is dropped with the process, never completed.
 */
void hsc_redis_complete(rengine_t *r, op_t *op)
{
    if (r->stopped) {
        if (op->kind == OP_SUBSCRIBE)
            hsc_redis_replay_drop(op->s->replay, op->s->nreplay);
        hsc_redis_op_free(op);
        return;
    }
    r->base.hubs[op->hub].sink->call(r->base.hubs[op->hub].ctx, &op->call);
}

static void publish_complete(hsc_engine_call_t *call)
{
    op_t *op = (op_t *)((char *)call - offsetof(op_t, call));
    hsc_publish_t *p = op->p;
    hsc_redis_op_free(op);
    p->cb(p);
}

/* Completes the publish on its hub's loop with rc. */
static void publish_answer(rengine_t *r, op_t *op, int rc)
{
    op->p->rc = rc;
    op->call.fn = publish_complete;
    hsc_redis_complete(r, op);
}

static void publish_send(rengine_t *r, op_t *op, bool eval);

static void publish_done(rengine_t *r, void *arg, redisReply *x)
{
    op_t *op = arg;
    if (x != NULL && x->type == REDIS_REPLY_ERROR && strncmp(x->str, "NOSCRIPT", 8) == 0 &&
        op->tries++ == 0) {
        publish_send(r, op, true);
        return;
    }
    if (x == NULL || x->type != REDIS_REPLY_ARRAY || x->elements != 2) {
        if (x != NULL && x->type == REDIS_REPLY_ERROR)
            HSC_LOG(HSC_LOG_ERROR, "redis: the publish script failed: %s", x->str);
        publish_answer(r, op, HSC_ECLOSED);
        return;
    }
    uint64_t epoch = reply_u64(x->element[0]), seq = reply_u64(x->element[1]);
    hsc_redis_epoch_seen(r, epoch);
    if (seq > r->highest)
        r->highest = seq;
    hsc_event_id_format(op->p->id, epoch, seq);
    op->p->seq = seq;
    op->p->subscribers = 0;
    atomic_fetch_add(&r->published, 1);
    publish_answer(r, op, 0);
}

static void publish_send(rengine_t *r, op_t *op, bool eval)
{
    char ks[HSC_CHANNEL_MAX + 16], kl[HSC_CHANNEL_MAX + 16], kv[HSC_CHANNEL_MAX + 16];
    rchan_t tmp_hdr; /* hsc_redis_key() reads only the name */
    (void)tmp_hdr;
    int n1 = snprintf(ks, sizeof ks, "hsc:{%s}:s", op->channel);
    int n2 = snprintf(kl, sizeof kl, "hsc:{%s}:last", op->channel);
    int n3 = snprintf(kv, sizeof kv, "hsc:{%s}:live", op->channel);
    char maxlen[24], ttl[24], floor_[24], lttl[24];
    snprintf(maxlen, sizeof maxlen, "%zu", r->history ? r->history : 1);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)r->history_age_ms);
    snprintf(floor_, sizeof floor_, "%llu", (unsigned long long)r->highest);
    snprintf(lttl, sizeof lttl, "%llu", (unsigned long long)r->history_age_ms * LAST_TTL_FACTOR);
    const char *argv[] = {eval ? "EVAL" : "EVALSHA",
                          eval ? PUBLISH_LUA : r->publish_sha,
                          "5",
                          "hsc:epoch",
                          "hsc:seq",
                          ks,
                          kl,
                          kv,
                          op->type,
                          op->data,
                          maxlen,
                          ttl,
                          floor_,
                          lttl};
    size_t lens[14];
    for (int i = 0; i < 14; i++)
        lens[i] = strlen(argv[i]);
    lens[5] = (size_t)n1;
    lens[6] = (size_t)n2;
    lens[7] = (size_t)n3;
    lens[9] = op->len;
    if (atomic_load(&r->in_flight) >= MAX_IN_FLIGHT ||
        hsc_redis_conn_send(&r->cmd, 14, argv, lens, publish_done, op) != 0)
        publish_answer(r, op, HSC_ECLOSED);
}

/* ---- the engine's loop ----------------------------------------------------------------------- */

static void unsubscribe_run(op_t *op)
{
    for (size_t i = 0; i < op->n; i++) {
        rchan_t *ch = op->chans[i];
        ch->nsubs[op->hub]--;
        ch->total_subs--;
        if (ch->total_subs == 0 && ch->pins == 0)
            ch->idle_since = now_ms();
    }
    hsc_redis_op_free(op);
}

static void on_wake(uv_async_t *a)
{
    rengine_t *r = a->data;
    uv_mutex_lock(&r->mu);
    op_t *ops = r->ops;
    bool stopping = r->stopping;
    r->ops = NULL;
    r->ops_tail = &r->ops;
    uv_mutex_unlock(&r->mu);
    while (ops != NULL) {
        op_t *op = ops;
        ops = op->next;
        op->next = NULL;
        switch (op->kind) {
        case OP_PUBLISH:
            atomic_fetch_sub(&r->queued, 1);
            publish_send(r, op, false);
            break;
        case OP_SUBSCRIBE:
            hsc_redis_subscribe_start(r, op);
            break;
        default:
            unsubscribe_run(op);
        }
    }
    hsc_redis_flush_hubs(r);
    if (stopping) {
        r->stopped = true;
        uv_close((uv_handle_t *)&r->wake, NULL);
        uv_close((uv_handle_t *)&r->tick, NULL);
        hsc_redis_conn_fail(&r->cmd, "shutting down");
        hsc_redis_conn_fail(&r->ps, "shutting down");
    }
}

/* Idle channels leave pub/sub and the table. */
static void sweep_idle(rengine_t *r, uint64_t now)
{
    for (size_t i = 0; i < r->chans.cap; i++) {
        for (rchan_t *ch = rent(r->chans.slots[i]), *next; ch != NULL; ch = next) {
            next = rent(ch->hent.next);
            if (ch->total_subs > 0 || ch->pins > 0 || ch->idle_since == 0 ||
                now - ch->idle_since < IDLE_UNSUB_MS)
                continue;
            if (ch->sub_state != 0 && r->ps.state == CONN_READY) {
                char k[HSC_CHANNEL_MAX + 16];
                size_t kl = hsc_redis_key(k, sizeof k, ch, "live");
                const char *argv[] = {"UNSUBSCRIBE", k};
                size_t lens[] = {11, kl};
                hsc_redis_conn_send(&r->ps, 2, argv, lens, NULL, NULL);
            }
            chan_remove(r, ch);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    rengine_t *r = t->data;
    uint64_t now = now_ms();
    hsc_redis_conn_tick(&r->cmd, now);
    hsc_redis_conn_tick(&r->ps, now);
    sweep_idle(r, now);
    /* After a reconnect (or a failed catch-up), every channel with subscribers reads what it
     * may have missed, once both connections are up and its SUBSCRIBE was confirmed. */
    if (r->need_catchup && r->catching == 0 && r->cmd.state == CONN_READY &&
        r->ps.state == CONN_READY) {
        bool all = true;
        for (size_t i = 0; i < r->chans.cap; i++)
            for (rchan_t *ch = rent(r->chans.slots[i]); ch != NULL; ch = rent(ch->hent.next))
                if (ch->total_subs > 0 && ch->sub_state != 2)
                    all = false;
        if (all) {
            r->need_catchup = false;
            for (size_t i = 0; i < r->chans.cap; i++)
                for (rchan_t *ch = rent(r->chans.slots[i]); ch != NULL; ch = rent(ch->hent.next))
                    if (ch->total_subs > 0)
                        hsc_redis_catchup(r, ch); /* from its start when it never had an event */
        }
    }
    if (r->sub_wait != NULL && r->catching == 0 && !r->need_catchup)
        hsc_redis_sub_retry(r);
    hsc_redis_flush_hubs(r);
    atomic_store(&r->nchans_seen, r->chans.n);
}

/* A connection became ready: the pub/sub one subscribes again and catches every channel up. */
void hsc_redis_on_ready(conn_t *c)
{
    rengine_t *r = c->r;
    atomic_store(c == &r->cmd ? &r->cmd_up : &r->ps_up, true);
    if (c == &r->ps) {
        for (size_t i = 0; i < r->chans.cap; i++)
            for (rchan_t *ch = rent(r->chans.slots[i]); ch != NULL; ch = rent(ch->hent.next))
                if (ch->total_subs > 0 || ch->pins > 0)
                    hsc_redis_pubsub_subscribe(r, ch);
    }
    if (r->ps.state == CONN_READY)
        hsc_redis_sub_retry(r);
}

static void engine_thread(void *arg)
{
    rengine_t *r = arg;
    uv_run(&r->loop, UV_RUN_DEFAULT);
}

static void enqueue(rengine_t *r, op_t *op)
{
    uv_mutex_lock(&r->mu);
    *r->ops_tail = op;
    r->ops_tail = &op->next;
    uv_mutex_unlock(&r->mu);
    uv_async_send(&r->wake);
}

/* ---- the vtable (hubs' threads) -------------------------------------------------------------- */

static void r_publish(hsc_engine_t *e, hsc_publish_t *p)
{
    rengine_t *r = (rengine_t *)e;
    p->subscribers = 0;
    p->seq = 0;
    op_t *op = calloc(1, sizeof *op);
    if (op != NULL) {
        op->kind = OP_PUBLISH;
        op->p = p;
        op->hub = p->hub;
        op->len = p->len;
        op->channel = strndup(p->channel, p->channel_len);
        op->type = strdup(p->type ? p->type : "");
        op->data = malloc(p->len + 1);
    }
    if (op == NULL || op->channel == NULL || op->type == NULL || op->data == NULL) {
        if (op != NULL)
            hsc_redis_op_free(op);
        p->rc = HSC_ENOMEM;
        p->cb(p);
        return;
    }
    if (!atomic_load(&r->cmd_up) ||
        atomic_load(&r->in_flight) + atomic_load(&r->queued) >= MAX_IN_FLIGHT) {
        hsc_redis_op_free(op);
        p->rc = HSC_ECLOSED; /* 503 at once: never acknowledged from a local buffer */
        p->cb(p);
        return;
    }
    memcpy(op->data, p->data, p->len);
    op->data[p->len] = '\0';
    atomic_fetch_add(&r->queued, 1);
    enqueue(r, op);
}

static void r_subscribe(hsc_engine_t *e, hsc_subscribe_t *s)
{
    rengine_t *r = (rengine_t *)e;
    s->gap = HSC_GAP_NONE;
    s->replay = NULL;
    s->nreplay = 0;
    s->cut = 0;
    s->epoch = r->epoch;
    op_t *op = calloc(1, sizeof *op);
    if (op != NULL) {
        op->kind = OP_SUBSCRIBE;
        op->s = s;
        op->hub = s->hub;
        op->n = s->n;
        op->chans = calloc(s->n ? s->n : 1, sizeof *op->chans);
        if (s->last != NULL) {
            op->last = strndup(s->last, s->last_len);
            op->last_len = s->last_len;
        }
    }
    if (op == NULL || op->chans == NULL || (s->last != NULL && op->last == NULL)) {
        if (op != NULL)
            hsc_redis_op_free(op);
        s->rc = HSC_ENOMEM;
        s->cb(s);
        return;
    }
    if (!atomic_load(&r->cmd_up) || !atomic_load(&r->ps_up)) {
        hsc_redis_op_free(op);
        s->rc = HSC_ECLOSED;
        s->cb(s);
        return;
    }
    /* The names are borrowed during this call only: keep a copy in the request's stead. */
    size_t sz = s->n * s->stride;
    char *names = malloc(sz ? sz : 1);
    if (names == NULL) {
        hsc_redis_op_free(op);
        s->rc = HSC_ENOMEM;
        s->cb(s);
        return;
    }
    memcpy(names, s->names, sz);
    op->data = names; /* freed with the op */
    op->len = s->stride;
    enqueue(r, op);
}

static void r_unsubscribe(hsc_engine_t *e, unsigned hub, hsc_chan_t *const *chans, size_t n)
{
    rengine_t *r = (rengine_t *)e;
    op_t *op = calloc(1, sizeof *op);
    rchan_t **v = op ? calloc(n ? n : 1, sizeof *v) : NULL;
    if (v == NULL) {
        /* No memory to queue it: the counts stay one too high until the channel's end. */
        HSC_LOG(HSC_LOG_ERROR, "redis engine: out of memory unsubscribing");
        free(op);
        return;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = rchan(chans[i]);
    op->kind = OP_UNSUBSCRIBE;
    op->hub = hub;
    op->chans = v;
    op->n = n;
    enqueue(r, op);
}

static void r_release(hsc_engine_t *e, hsc_chan_t *chan)
{
    (void)e;
    hsc_redis_chan_unref(rchan(chan));
}

static void r_sweep(hsc_engine_t *e)
{
    (void)e; /* Redis trims and expires the streams; the engine's loop drops idle channels */
}

static void r_stats(hsc_engine_t *e, hsc_engine_stats_t *out)
{
    rengine_t *r = (rengine_t *)e;
    memset(out, 0, sizeof *out);
    out->channels = atomic_load(&r->nchans_seen);
    out->published = atomic_load(&r->published);
}

static void r_free(hsc_engine_t *e)
{
    rengine_t *r = (rengine_t *)e;
    uv_mutex_lock(&r->mu);
    r->stopping = true;
    uv_mutex_unlock(&r->mu);
    uv_async_send(&r->wake);
    uv_thread_join(&r->thread);
    /* The loop ended: what is left is freed here. */
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    while (r->held != NULL) {
        held_t *h = r->held;
        r->held = h->next;
        free(h);
    }
    for (size_t i = 0; i < r->ncu; i++) {
        hsc_frame_unref(r->cu[i].frame);
        hsc_redis_chan_unref(rchan(r->cu[i].chan));
    }
    free(r->cu);
    for (size_t i = 0; i < r->chans.cap; i++) {
        for (rchan_t *ch = rent(r->chans.slots[i]), *next; ch != NULL; ch = next) {
            next = rent(ch->hent.next);
            hsc_redis_chan_unref(ch);
        }
    }
    hsc_chantable_free(&r->chans);
    free(r->cmd.q);
    free(r->ps.q);
    free(r->base.hubs);
    uv_mutex_destroy(&r->mu);
    free(r);
}

static const hsc_engine_vt_t redis_vt = {
    r_publish, r_subscribe, r_unsubscribe, r_release, r_sweep, r_stats, r_free, NULL,
};

bool hsc_redis_status(hsc_engine_t *e, hsc_redis_status_t *out)
{
    if (e == NULL || e->vt != &redis_vt)
        return false;
    rengine_t *r = (rengine_t *)e;
    out->cmd_up = atomic_load(&r->cmd_up);
    out->pubsub_up = atomic_load(&r->ps_up);
    out->reconnects = atomic_load(&r->reconnects);
    out->in_flight = atomic_load(&r->in_flight);
    out->timeouts = atomic_load(&r->timeouts);
    out->catchups = atomic_load(&r->catchups);
    out->local_subs = atomic_load(&r->local_subs);
    out->read_subs = atomic_load(&r->read_subs);
    out->shared_subs = atomic_load(&r->shared_subs);
    out->why = !out->cmd_up      ? "redis: the command connection is down"
               : !out->pubsub_up ? "redis: the pub/sub connection is down"
                                 : NULL;
    return true;
}

int hsc_redis_engine_new(const hsc_server_config_t *cfg, unsigned nhubs, hsc_engine_t **out)
{
    *out = NULL;
    rengine_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return HSC_ENOMEM;
    const char *why = NULL;
    if (hsc_redis_url_parse(cfg->redis, &r->url, &why) != 0) {
        HSC_LOG(HSC_LOG_ERROR, "--redis: %s", why);
        free(r);
        return HSC_EINVAL;
    }
    if (cfg->redis_password_env != NULL) {
        const char *pw = getenv(cfg->redis_password_env);
        if (pw == NULL || *pw == '\0' || strlen(pw) >= sizeof r->url.password) {
            HSC_LOG(HSC_LOG_ERROR, "--redis-password-env: %s is not set (or too long)",
                    cfg->redis_password_env);
            free(r);
            return HSC_EINVAL;
        }
        snprintf(r->url.password, sizeof r->url.password, "%s", pw);
    }
    int trc = hsc_chantable_init(&r->chans, offsetof(rchan_t, name) - offsetof(rchan_t, hent),
                                 offsetof(rchan_t, name_len) - offsetof(rchan_t, hent));
    r->base.hubs = calloc(nhubs ? nhubs : 1, sizeof *r->base.hubs);
    if (trc != 0 || r->base.hubs == NULL) {
        hsc_chantable_free(&r->chans);
        free(r->base.hubs);
        free(r);
        return HSC_ENOMEM;
    }
    r->base.vt = &redis_vt;
    r->base.nhubs = nhubs;
    r->history = cfg->history;
    r->history_age_ms = cfg->history_age_ms ? cfg->history_age_ms : 3600 * 1000;
    r->ops_tail = &r->ops;
    r->held_tail = &r->held;
    sha1_hex(PUBLISH_LUA, r->publish_sha);
    sha1_hex(hsc_redis_read_lua, r->read_sha);
    if (getrandom(r->hash_key, sizeof r->hash_key, GRND_NONBLOCK) != sizeof r->hash_key) {
        uint64_t a = uv_hrtime() ^ (uint64_t)(uintptr_t)r;
        memcpy(r->hash_key, &a, sizeof a);
    }
    uv_mutex_init(&r->mu);
    uv_loop_init(&r->loop);
    uv_async_init(&r->loop, &r->wake, on_wake);
    r->wake.data = r;
    uv_timer_init(&r->loop, &r->tick);
    r->tick.data = r;
    conn_t *cs[] = {&r->cmd, &r->ps};
    for (int i = 0; i < 2; i++) {
        cs[i]->r = r;
        cs[i]->pubsub = i == 1;
        cs[i]->name = i == 1 ? "pub/sub" : "command";
        cs[i]->state = CONN_DOWN;
        cs[i]->backoff_ms = BACKOFF_MIN_MS;
        cs[i]->retry_at = 0;
    }
    hsc_redis_conn_tick(&r->cmd, now_ms());
    hsc_redis_conn_tick(&r->ps, now_ms());
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    if (uv_thread_create(&r->thread, engine_thread, r) != 0) {
        HSC_LOG(HSC_LOG_ERROR, "redis engine: cannot start its thread");
        uv_close((uv_handle_t *)&r->wake, NULL);
        uv_close((uv_handle_t *)&r->tick, NULL);
        hsc_redis_conn_fail(&r->cmd, "no thread");
        hsc_redis_conn_fail(&r->ps, "no thread");
        uv_run(&r->loop, UV_RUN_DEFAULT);
        uv_loop_close(&r->loop);
        hsc_chantable_free(&r->chans);
        free(r->base.hubs);
        uv_mutex_destroy(&r->mu);
        free(r);
        return HSC_ENOMEM;
    }
    *out = &r->base;
    return 0;
}
