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
 * the sequence above the highest one this node saw, so ids keep increasing for live subscribers.
 *
 * Threads. The engine runs its own thread and libuv loop with two connections: one for commands,
 * one for pub/sub. hiredis only formats commands and parses replies; the sockets, deadlines,
 * pings and reconnects are ours. Hubs' calls (publish, subscribe, unsubscribe) are copied into
 * operations queued under a small mutex and run on the engine's loop, which alone touches the
 * channel table; completions go back through the hubs' call(), deliveries through deliver().
 *
 * Order and exactness. Redis sends one connection's pub/sub messages in the order the scripts
 * ran, which is SEQ order: the node fans them out in that order. Each notice names the channel's
 * previous SEQ; a notice whose previous is above the last one this node delivered on that channel
 * means a hole (a lost message, a reconnect): the node stops fanning out, reads the missing range
 * of the channel's stream once (XRANGE), delivers it, then goes on with the queued notices.
 * Every pub/sub reconnect is treated as a hole on every channel. A subscribe first waits until
 * the node is SUBSCRIBEd to its channels, then runs a read script (the stream after the last id,
 * or the newest N, plus the current sequence S) and registers when its answer arrives: the cut
 * is max(S, the highest SEQ this node fanned out); events after S that were already fanned out
 * come from a small per-channel ring of recent deliveries, and events up to the cut that arrive
 * later are skipped by the hub. If the ring no longer covers them the read is made again.
 *
 * Trouble is bounded: every command has a deadline (1 s); both connections are pinged every
 * second; a connection that fails or misses a deadline is closed, its commands fail, and it is
 * reconnected with backoff (100 ms doubling to 2 s). While the command connection is down,
 * publishes and new subscriptions fail at once (the HTTP side answers 503 with Retry-After);
 * subscribers stay connected and are caught up after the pub/sub connection returns.
 */
#include "pubsub/redis.h"
#include "pubsub/pubsub.h" /* the rings of recent deliveries (history.c) */

#include <hiredis/hiredis.h>
#include <netdb.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DEADLINE_MS     1000u   /* a command, a connect or a ping unanswered this long fails */
#define PING_MS         1000u   /* both connections, every second */
#define TICK_MS         100u    /* deadlines are checked this often */
#define BACKOFF_MIN_MS  100u    /* reconnect after the first failure */
#define BACKOFF_MAX_MS  2000u   /* ... doubling up to this */
#define MAX_IN_FLIGHT   20000u  /* commands waiting for Redis; past it publishes fail (bounded) */
#define MAX_QUEUED      100000u /* pub/sub notices held during a catch-up; past it: reconnect */
#define RING_EVENTS     256u    /* recent deliveries kept per channel for registrations */
#define IDLE_UNSUB_MS   5000u   /* a channel without local subscribers leaves pub/sub after this */
#define LAST_TTL_FACTOR 24u     /* "hsc:{NAME}:last" outlives the stream by this factor */

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
static const char READ_LUA[] =
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

/* ---- types ----------------------------------------------------------------------------------- */

typedef struct conn_s conn_t;
typedef struct rengine_s rengine_t;
typedef void (*reply_cb)(rengine_t *r, void *arg, redisReply *reply); /* reply NULL: failed */

typedef struct pending_s {
    reply_cb cb;
    void *arg;
    uint64_t sent_ms;
} pending_t;

enum { CONN_DOWN, CONN_CONNECTING, CONN_HANDSHAKE, CONN_READY };

struct conn_s {
    rengine_t *r;
    const char *name; /* "command" or "pub/sub", for logs */
    bool pubsub;
    int state;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    bool open; /* the handle is initialized and not closed yet */
    uv_connect_t connect_req;
    redisReader *reader;
    pending_t *q; /* a ring of commands waiting for their replies */
    size_t qhead, qlen, qcap;
    uint64_t since_ms;   /* when the connect started (CONNECTING) */
    uint64_t retry_at;   /* DOWN: when to reconnect */
    uint64_t backoff_ms; /* the next wait */
    uint64_t ping_at;    /* READY: the next ping */
    uint64_t ping_sent;  /* pub/sub: a ping unanswered since then; 0: none */
    uint64_t gen;        /* bumped at each reconnect */
};

typedef struct rchan_s {
    hsc_chan_t pub;
    atomic_uint refs; /* the table's, and one per delivery on its way */
    struct rchan_s *hnext;
    uint64_t hash;
    unsigned *nsubs;     /* per hub (the engine's loop) */
    unsigned total_subs; /* registered subscriptions (the engine's loop) */
    unsigned pins;       /* operations working on it */
    int sub_state;       /* pub/sub: 0 not subscribed, 1 asked, 2 subscribed */
    uint64_t last;       /* the newest SEQ fanned out here (or known to be covered) */
    bool known;          /* `last` is set: holes can be told from it */
    uint64_t idle_since; /* no subscribers and no pins since then; 0: in use */
    bool synced;         /* every event after `from` reached the ring (see subscribe_local()) */
    uint64_t from;
    const char *gap;    /* a hole its live subscribers must be told of ("epoch", "expired")
                           before its next event; NULL: none */
    hsc_history_t ring; /* recent deliveries */
    size_t name_len;
    char name[];
} rchan_t;

enum { OP_PUBLISH, OP_SUBSCRIBE, OP_UNSUBSCRIBE };

typedef struct op_s {
    struct op_s *next;
    int kind;
    hsc_engine_call_t call; /* the completion, run on the hub's loop */
    unsigned hub;
    int tries;
    /* publish */
    hsc_publish_t *p;
    char *type; /* NUL-terminated, "" for none */
    char *data;
    size_t len;
    /* subscribe and unsubscribe */
    hsc_subscribe_t *s;
    rchan_t **chans;
    size_t n;
    char *last; /* the client's last id (NUL-terminated) or NULL */
    size_t last_len;
    uint64_t after; /* what the read asked for */
    bool waiting;   /* on the list of subscriptions waiting for SUBSCRIBE */
    /* the channel name, for a publish (NUL-terminated) */
    char *channel;
    size_t channel_len;
} op_t;

/* A pub/sub notice held during a catch-up. */
typedef struct held_s {
    struct held_s *next;
    size_t chan_len, len;
    char *chan, *payload; /* one block */
} held_t;

struct rengine_s {
    hsc_engine_t base;
    hsc_redis_url_t url;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick;
    uv_mutex_t mu; /* the operation queue and `stopping` */
    op_t *ops, **ops_tail;
    bool stopping;
    conn_t cmd, ps;
    /* The channel table (the engine's loop). */
    rchan_t **table;
    size_t tcap, nchans;
    unsigned char hash_key[HSC_SIPHASH_KEY];
    op_t *sub_wait;   /* subscriptions waiting for their channels' SUBSCRIBE */
    uint64_t epoch;   /* Redis's, as last seen */
    uint64_t highest; /* the highest SEQ this node fanned out or was given (the floor) */
    uint64_t fanned;  /* the highest SEQ this node fanned out (cuts are never below it) */
    /* Catch-up: while `catching` reads are out, notices are held, in order. */
    unsigned catching;
    held_t *held, **held_tail;
    size_t nheld;
    hsc_replay_t *cu; /* entries read by the catch-up reads, delivered sorted */
    size_t ncu, cucap;
    uint64_t wake_mask; /* hubs to flush after a round of deliveries */
    bool need_catchup;  /* notices may have been lost: read every channel's stream again */
    bool stopped;       /* the hubs are gone: deliver nothing */
    char publish_sha[41], read_sha[41];
    /* Limits. */
    size_t history;
    uint64_t history_age_ms;
    /* Counters (any thread). */
    atomic_uint_fast64_t published, reconnects, in_flight, timeouts, catchups;
    atomic_uint_fast64_t queued; /* publishes queued to the engine's loop, not sent yet */
    atomic_uint_fast64_t local_subs, read_subs; /* subscriptions served by the node, by a read */
    atomic_bool cmd_up, ps_up;
    atomic_size_t nchans_seen;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static rchan_t *rchan(hsc_chan_t *c)
{
    return (rchan_t *)((char *)c - offsetof(rchan_t, pub));
}

static void sha1_hex(const char *s, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static uint64_t to_u64(const char *s, size_t len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

static uint64_t reply_u64(const redisReply *x)
{
    if (x == NULL)
        return 0;
    if (x->type == REDIS_REPLY_INTEGER)
        return x->integer > 0 ? (uint64_t)x->integer : 0;
    if (x->type == REDIS_REPLY_STRING || x->type == REDIS_REPLY_STATUS)
        return to_u64(x->str, x->len);
    return 0;
}

/* ---- connections ----------------------------------------------------------------------------- */

static void conn_fail(conn_t *c, const char *why);
static void on_ready(conn_t *c);
static void pubsub_reply(rengine_t *r, redisReply *x);
static void pubsub_lost(rengine_t *r);

/* Wakes the hubs that fan_out() queued events for. */
static void flush_hubs(rengine_t *r)
{
    if (r->wake_mask == 0)
        return;
    for (unsigned i = 0; i < r->base.nhubs; i++)
        if (i >= 64 || (r->wake_mask & (1ull << i)))
            r->base.hubs[i].sink->flush(r->base.hubs[i].ctx);
    r->wake_mask = 0;
}

static void on_write(uv_write_t *w, int status)
{
    (void)status; /* a failed write shows as a read error or a deadline */
    free(w->data);
    free(w);
}

/* Sends one command (argv with lengths); `cb` gets the reply, or NULL when it failed. */
static int conn_send(conn_t *c, int argc, const char **argv, const size_t *lens, reply_cb cb,
                     void *arg)
{
    if (c->state == CONN_DOWN || c->state == CONN_CONNECTING)
        return HSC_ECLOSED;
    if (c->qlen == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 64;
        pending_t *q = malloc(cap * sizeof *q);
        if (q == NULL)
            return HSC_ENOMEM;
        for (size_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qhead = 0;
        c->qcap = cap;
    }
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    uv_write_t *w = len > 0 ? malloc(sizeof *w) : NULL;
    if (w == NULL) {
        free(cmd);
        return HSC_ENOMEM;
    }
    w->data = cmd;
    uv_buf_t b = uv_buf_init(cmd, (unsigned)len);
    if (uv_write(w, &c->u.s, &b, 1, on_write) != 0) {
        free(cmd);
        free(w);
        return HSC_ECLOSED;
    }
    if (!c->pubsub || cb != NULL) {
        c->q[(c->qhead + c->qlen) % c->qcap] = (pending_t){cb, arg, now_ms()};
        c->qlen++;
        atomic_fetch_add(&c->r->in_flight, 1);
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    static _Thread_local char buf[65536];
    *b = uv_buf_init(buf, sizeof buf);
}

static void conn_pop(conn_t *c, redisReply *x)
{
    pending_t p = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    atomic_fetch_sub(&c->r->in_flight, 1);
    if (p.cb != NULL)
        p.cb(c->r, p.arg, x);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (n < 0) {
        conn_fail(c, n == UV_EOF ? "Redis closed the connection" : uv_strerror((int)n));
        return;
    }
    if (n == 0)
        return;
    if (redisReaderFeed(c->reader, b->base, (size_t)n) != REDIS_OK) {
        conn_fail(c, "unreadable reply");
        return;
    }
    uint64_t gen = c->gen;
    for (;;) {
        void *out = NULL;
        if (redisReaderGetReply(c->reader, &out) != REDIS_OK) {
            conn_fail(c, "malformed reply");
            return;
        }
        if (out == NULL)
            break;
        redisReply *x = out;
        if (c->pubsub && x->type == REDIS_REPLY_ARRAY && x->elements >= 1 &&
            x->element[0]->type == REDIS_REPLY_STRING &&
            (strcmp(x->element[0]->str, "message") == 0 ||
             strcmp(x->element[0]->str, "subscribe") == 0 ||
             strcmp(x->element[0]->str, "unsubscribe") == 0)) {
            pubsub_reply(c->r, x);
        } else if (c->qlen > 0 && (!c->pubsub || c->state == CONN_HANDSHAKE)) {
            conn_pop(c, x);
        } else if (c->pubsub) {
            c->ping_sent = 0; /* ["pong", ""], or +PONG before any SUBSCRIBE */
        }
        freeReplyObject(x);
        if (c->gen != gen || c->state == CONN_DOWN)
            return; /* a callback failed the connection */
    }
    flush_hubs(c->r);
}

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    c->open = false;
}

/* Closes the connection, fails what waited on it and schedules the reconnect. */
static void conn_fail(conn_t *c, const char *why)
{
    if (c->state == CONN_DOWN)
        return;
    HSC_LOG(c->r->stopped ? HSC_LOG_INFO : HSC_LOG_WARN, "redis %s connection: %s", c->name, why);
    c->state = CONN_DOWN;
    c->gen++;
    atomic_store(c->pubsub ? &c->r->ps_up : &c->r->cmd_up, false);
    if (c->open && !uv_is_closing(&c->u.h))
        uv_close(&c->u.h, on_closed);
    if (c->reader != NULL) {
        redisReaderFree(c->reader);
        c->reader = NULL;
    }
    c->retry_at = now_ms() + c->backoff_ms;
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    c->ping_sent = 0;
    while (c->qlen > 0)
        conn_pop(c, NULL);
    if (c->pubsub)
        pubsub_lost(c->r);
}

static void handshake_done(rengine_t *r, void *arg, redisReply *x)
{
    conn_t *c = arg;
    (void)r;
    if (x == NULL)
        return;
    if (x->type == REDIS_REPLY_ERROR) {
        char msg[160];
        snprintf(msg, sizeof msg, "set-up refused: %.*s", (int)(x->len < 120 ? x->len : 120),
                 x->str);
        conn_fail(c, msg);
        return;
    }
    if (c->state != CONN_HANDSHAKE || c->qlen > 0)
        return; /* more set-up replies to come */
    c->state = CONN_READY;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->ping_at = now_ms() + PING_MS;
    HSC_LOG(HSC_LOG_NOTICE, "redis %s connection ready", c->name);
    on_ready(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    if (c->state != CONN_CONNECTING || req->handle != &c->u.s)
        return;
    if (status != 0) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    c->reader = redisReaderCreate();
    if (c->reader == NULL) {
        conn_fail(c, "out of memory");
        return;
    }
    c->state = CONN_HANDSHAKE;
    uv_read_start(&c->u.s, on_alloc, on_read);
    rengine_t *r = c->r;
    bool any = false;
    /* Set-up replies are plain replies on both connections (handshake_done() for each). */
    if (r->url.password[0] != '\0') {
        const char *argv[] = {"AUTH", r->url.password};
        size_t lens[] = {4, strlen(r->url.password)};
        any |= conn_send(c, 2, argv, lens, handshake_done, c) == 0;
    }
    if (r->url.db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%u", r->url.db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        any |= conn_send(c, 2, argv, lens, handshake_done, c) == 0;
    }
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    any |= conn_send(c, 1, argv, lens, handshake_done, c) == 0;
    if (!any)
        conn_fail(c, "out of memory");
}

static void conn_start(conn_t *c)
{
    if (c->open)
        return; /* the old handle is still closing: the next tick tries again */
    rengine_t *r = c->r;
    int rc;
    c->state = CONN_CONNECTING;
    c->since_ms = now_ms();
    c->gen++;
    c->connect_req.data = c;
    c->u.h.data = c;
    if (r->url.path[0] != '\0') {
        uv_pipe_init(&r->loop, &c->u.pipe, 0);
        c->u.h.data = c;
        c->open = true;
        uv_pipe_connect(&c->connect_req, &c->u.pipe, r->url.path, on_connect);
        return;
    }
    uv_tcp_init(&r->loop, &c->u.tcp);
    c->u.h.data = c;
    c->open = true;
    uv_tcp_nodelay(&c->u.tcp, 1);
    struct sockaddr_storage sa;
    if ((rc = uv_ip4_addr(r->url.host, (int)r->url.port, (struct sockaddr_in *)&sa)) != 0 &&
        (rc = uv_ip6_addr(r->url.host, (int)r->url.port, (struct sockaddr_in6 *)&sa)) != 0) {
        /* A name: resolved synchronously, off the hubs' loops (this is the engine's thread). */
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        char port[8];
        snprintf(port, sizeof port, "%u", r->url.port);
        if (getaddrinfo(r->url.host, port, &hints, &res) != 0 || res == NULL) {
            conn_fail(c, "cannot resolve the host");
            return;
        }
        memcpy(&sa, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
    }
    if ((rc = uv_tcp_connect(&c->connect_req, &c->u.tcp, (struct sockaddr *)&sa, on_connect)) != 0)
        conn_fail(c, uv_strerror(rc));
}

/* Every tick: deadlines, pings, reconnects. */
static void conn_tick(conn_t *c, uint64_t now)
{
    switch (c->state) {
    case CONN_DOWN:
        if (now >= c->retry_at && !c->open) {
            atomic_fetch_add(&c->r->reconnects, 1);
            conn_start(c);
        }
        break;
    case CONN_CONNECTING:
    case CONN_HANDSHAKE:
        if (now - c->since_ms > DEADLINE_MS) {
            atomic_fetch_add(&c->r->timeouts, 1);
            conn_fail(c, "connect timed out");
        }
        break;
    case CONN_READY:
        if ((c->qlen > 0 && now - c->q[c->qhead].sent_ms > DEADLINE_MS) ||
            (c->ping_sent != 0 && now - c->ping_sent > DEADLINE_MS)) {
            atomic_fetch_add(&c->r->timeouts, 1);
            conn_fail(c, "Redis did not answer within 1 s");
            break;
        }
        if (now >= c->ping_at) {
            c->ping_at = now + PING_MS;
            const char *argv[] = {"PING"};
            size_t lens[] = {4};
            if (c->pubsub) {
                if (c->ping_sent == 0)
                    c->ping_sent = now;
                conn_send(c, 1, argv, lens, NULL, NULL);
            } else if (c->qlen == 0) {
                conn_send(c, 1, argv, lens, NULL, NULL);
            }
        }
        break;
    }
}

/* ---- the channel table (the engine's loop) --------------------------------------------------- */

static void chan_unref(rchan_t *ch)
{
    if (atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1)
        return;
    hsc_history_dispose(&ch->ring);
    hsc_frame_unref(ch->pub.tag);
    free(ch->pub.slot);
    free(ch);
}

static rchan_t *table_find(rengine_t *r, const char *name, size_t len, uint64_t h)
{
    for (rchan_t *ch = r->table[h & (r->tcap - 1)]; ch != NULL; ch = ch->hnext)
        if (ch->hash == h && ch->name_len == len && memcmp(ch->name, name, len) == 0)
            return ch;
    return NULL;
}

static rchan_t *chan_get(rengine_t *r, const char *name, size_t len)
{
    uint64_t h = hsc_siphash(r->hash_key, name, len);
    rchan_t *ch = table_find(r, name, len, h);
    if (ch != NULL)
        return ch;
    if (r->nchans + 1 > r->tcap / 4 * 3) {
        size_t cap = r->tcap * 2;
        rchan_t **t = calloc(cap, sizeof *t);
        if (t == NULL)
            return NULL;
        for (size_t i = 0; i < r->tcap; i++) {
            for (rchan_t *c = r->table[i], *next; c != NULL; c = next) {
                next = c->hnext;
                c->hnext = t[c->hash & (cap - 1)];
                t[c->hash & (cap - 1)] = c;
            }
        }
        free(r->table);
        r->table = t;
        r->tcap = cap;
    }
    unsigned nhubs = r->base.nhubs;
    ch = calloc(1, sizeof *ch + len + 1);
    void *arrays = ch ? calloc(nhubs, sizeof(void *) + sizeof(unsigned)) : NULL;
    if (arrays == NULL) {
        free(ch);
        return NULL;
    }
    atomic_init(&ch->refs, 1);
    ch->hash = h;
    ch->pub.slot = arrays;
    ch->nsubs = (unsigned *)(ch->pub.slot + nhubs);
    hsc_history_init(&ch->ring, RING_EVENTS, SIZE_MAX, 0);
    ch->name_len = len;
    memcpy(ch->name, name, len);
    ch->hnext = r->table[h & (r->tcap - 1)];
    r->table[h & (r->tcap - 1)] = ch;
    r->nchans++;
    ch->idle_since = now_ms();
    return ch;
}

static void chan_remove(rengine_t *r, rchan_t *ch)
{
    rchan_t **pp = &r->table[ch->hash & (r->tcap - 1)];
    while (*pp != ch)
        pp = &(*pp)->hnext;
    *pp = ch->hnext;
    r->nchans--;
    chan_unref(ch);
}

/* Builds "hsc:{NAME}:SUFFIX" into buf (names are at most HSC_CHANNEL_MAX bytes). */
static size_t key(char *buf, size_t cap, const rchan_t *ch, const char *suffix)
{
    int n = snprintf(buf, cap, "hsc:{%.*s}:%s", (int)ch->name_len, ch->name, suffix);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

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
static void fan_out(rengine_t *r, rchan_t *ch, uint64_t seq, hsc_frame_t *f)
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
    for (unsigned i = 0; i < r->base.nhubs && !r->stopped; i++) {
        if (ch->nsubs[i] == 0)
            continue;
        hsc_engine_hub_t *hub = &r->base.hubs[i];
        atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
        if (!hub->sink->deliver(hub->ctx, &ch->pub, seq, f)) {
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
static hsc_frame_t *entry_frame(uint64_t epoch, const redisReply *e, uint64_t *seq, uint64_t *prev)
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
 * new one means Redis lost its data: the channels' chains start again.
 */
static void epoch_seen(rengine_t *r, uint64_t epoch)
{
    if (epoch <= r->epoch)
        return;
    if (r->epoch != 0) {
        HSC_LOG(HSC_LOG_WARN, "redis: a new epoch (%llu): Redis lost its data",
                (unsigned long long)epoch);
        for (size_t i = 0; i < r->tcap; i++) {
            for (rchan_t *ch = r->table[i]; ch != NULL; ch = ch->hnext) {
                ch->last = 0; /* the chain starts again: every event of the new epoch is after 0 */
                ch->known = true;
                ch->synced = false;
                hsc_history_dispose(&ch->ring); /* the old epoch's events */
                hsc_history_init(&ch->ring, RING_EVENTS, SIZE_MAX, 0);
                if (ch->total_subs > 0)
                    ch->gap = "epoch";
            }
        }
    }
    r->epoch = epoch;
}

/* ---- catch-up -------------------------------------------------------------------------------- */

static void process_notice(rengine_t *r, const char *chan, size_t chan_len, const char *payload,
                           size_t len);
static void sub_retry(rengine_t *r);

static int replay_cmp(const void *a, const void *b)
{
    uint64_t x = ((const hsc_replay_t *)a)->seq, y = ((const hsc_replay_t *)b)->seq;
    return x < y ? -1 : x > y;
}

/* The last catch-up read answered: deliver what was read in SEQ order, then the held notices. */
static void catchup_finish(rengine_t *r)
{
    if (r->ncu > 1)
        qsort(r->cu, r->ncu, sizeof *r->cu, replay_cmp);
    for (size_t i = 0; i < r->ncu; i++) {
        fan_out(r, rchan(r->cu[i].chan), r->cu[i].seq, r->cu[i].frame);
        hsc_frame_unref(r->cu[i].frame);
        chan_unref(rchan(r->cu[i].chan));
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
        sub_retry(r); /* subscriptions that waited for the catch-up */
}

static bool catchup_send(rengine_t *r, rchan_t *ch, bool eval);

static void catchup_done(rengine_t *r, void *arg, redisReply *x)
{
    rchan_t *ch = arg;
    if (x != NULL && x->type == REDIS_REPLY_ERROR && strncmp(x->str, "NOSCRIPT", 8) == 0 &&
        catchup_send(r, ch, true))
        return;
    /* The read script's answer for one channel: {epoch, seq, last, entries}. */
    if (x == NULL || x->type != REDIS_REPLY_ARRAY || x->elements != 4) {
        r->need_catchup = true;
        x = NULL;
    } else {
        epoch_seen(r, reply_u64(x->element[0]));
        x = x->element[3];
    }
    if (x != NULL && x->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < x->elements; i++) {
            uint64_t seq, prev;
            hsc_frame_t *f = entry_frame(r->epoch, x->element[i], &seq, &prev);
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
    ch->pins--;
    chan_unref(ch);
    if (--r->catching == 0)
        catchup_finish(r);
}

/* Reads `ch`'s stream after what this node has: notices are held until every read answered. */
/* The read script for one channel after ch->last: the entries with the epoch they belong to. */
static bool catchup_send(rengine_t *r, rchan_t *ch, bool eval)
{
    char ks[HSC_CHANNEL_MAX + 16], kl[HSC_CHANNEL_MAX + 16], after[24];
    size_t sl = key(ks, sizeof ks, ch, "s"), ll = key(kl, sizeof kl, ch, "last");
    snprintf(after, sizeof after, "%llu", (unsigned long long)ch->last);
    const char *argv[] = {eval ? "EVAL" : "EVALSHA",
                          eval ? READ_LUA : r->read_sha,
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
    return conn_send(&r->cmd, 9, argv, lens, catchup_done, ch) == 0;
}

static void catchup(rengine_t *r, rchan_t *ch)
{
    if (r->cmd.state != CONN_READY) {
        r->need_catchup = true; /* once the command connection is back */
        return;
    }
    atomic_fetch_add(&ch->refs, 1);
    ch->pins++;
    r->catching++;
    atomic_fetch_add(&r->catchups, 1);
    if (!catchup_send(r, ch, false)) {
        r->need_catchup = true;
        catchup_done(r, ch, NULL);
    }
}

/* ---- pub/sub --------------------------------------------------------------------------------- */

static void sub_retry(rengine_t *r);

/* Parses "EPOCH SEQ PREV TYPE\nDATA" and fans it out, or catches up first when it shows a hole. */
static void process_notice(rengine_t *r, const char *chan, size_t chan_len, const char *payload,
                           size_t len)
{
    /* "hsc:{NAME}:live" */
    if (chan_len < 11 || memcmp(chan, "hsc:{", 5) != 0)
        return;
    uint64_t h = hsc_siphash(r->hash_key, chan + 5, chan_len - 11);
    rchan_t *ch = table_find(r, chan + 5, chan_len - 11, h);
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
    epoch_seen(r, epoch);
    if (ch->known && seq <= ch->last)
        return;
    if (ch->known && prev > ch->last) {
        catchup(r, ch); /* reads this event too: the held notice is then a duplicate */
        return;
    }
    hsc_frame_t *f = event_frame(epoch, &nt);
    if (f == NULL) {
        HSC_LOG(HSC_LOG_ERROR, "channel %s: an event from Redis is invalid or out of memory",
                ch->name);
        return;
    }
    fan_out(r, ch, seq, f);
    hsc_frame_unref(f);
}

static void pubsub_reply(rengine_t *r, redisReply *x)
{
    const char *kind = x->element[0]->str;
    if (strcmp(kind, "message") == 0) {
        if (x->elements != 3 || x->element[1]->type != REDIS_REPLY_STRING ||
            x->element[2]->type != REDIS_REPLY_STRING)
            return;
        const redisReply *c = x->element[1], *m = x->element[2];
        if (r->catching > 0) {
            if (r->nheld >= MAX_QUEUED) {
                conn_fail(&r->ps, "too many notices held during a catch-up");
                return;
            }
            held_t *h = malloc(sizeof *h + c->len + m->len);
            if (h == NULL) {
                conn_fail(&r->ps, "out of memory holding notices");
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
        rchan_t *ch = table_find(r, c->str + 5, c->len - 11,
                                 hsc_siphash(r->hash_key, c->str + 5, c->len - 11));
        if (ch != NULL && ch->sub_state == 1) {
            ch->sub_state = 2;
            sub_retry(r);
        }
    }
}

/* Asks Redis for the channel's notices (its first local subscriber is on its way). */
static void pubsub_subscribe(rengine_t *r, rchan_t *ch)
{
    if (ch->sub_state != 0 || r->ps.state != CONN_READY)
        return;
    char k[HSC_CHANNEL_MAX + 16];
    size_t kl = key(k, sizeof k, ch, "live");
    const char *argv[] = {"SUBSCRIBE", k};
    size_t lens[] = {9, kl};
    if (conn_send(&r->ps, 2, argv, lens, NULL, NULL) == 0)
        ch->sub_state = 1;
}

static void sub_fail_waiting(rengine_t *r);

/* The pub/sub connection is gone: every channel must be subscribed again and caught up. */
static void pubsub_lost(rengine_t *r)
{
    r->need_catchup = true;
    for (size_t i = 0; i < r->tcap; i++) {
        for (rchan_t *ch = r->table[i]; ch != NULL; ch = ch->hnext) {
            ch->sub_state = 0;
            if (ch->total_subs == 0)
                ch->synced = false; /* not caught up (no subscriber): its ring has a hole */
        }
    }
    sub_fail_waiting(r);
}

/* ---- publish --------------------------------------------------------------------------------- */

static void replay_drop(hsc_replay_t *v, size_t n);

static void op_free(op_t *op)
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
static void complete(rengine_t *r, op_t *op)
{
    if (r->stopped) {
        if (op->kind == OP_SUBSCRIBE)
            replay_drop(op->s->replay, op->s->nreplay);
        op_free(op);
        return;
    }
    r->base.hubs[op->hub].sink->call(r->base.hubs[op->hub].ctx, &op->call);
}

static void publish_complete(hsc_engine_call_t *call)
{
    op_t *op = (op_t *)((char *)call - offsetof(op_t, call));
    hsc_publish_t *p = op->p;
    op_free(op);
    p->cb(p);
}

/* Completes the publish on its hub's loop with rc. */
static void publish_answer(rengine_t *r, op_t *op, int rc)
{
    op->p->rc = rc;
    op->call.fn = publish_complete;
    complete(r, op);
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
    epoch_seen(r, epoch);
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
    rchan_t tmp_hdr; /* key() reads only the name */
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
        conn_send(&r->cmd, 14, argv, lens, publish_done, op) != 0)
        publish_answer(r, op, HSC_ECLOSED);
}

/* ---- subscribe ------------------------------------------------------------------------------- */

static void subscribe_complete(hsc_engine_call_t *call)
{
    op_t *op = (op_t *)((char *)call - offsetof(op_t, call));
    hsc_subscribe_t *s = op->s;
    op_free(op);
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
    complete(r, op);
}

static void subscribe_read(rengine_t *r, op_t *op, bool eval);
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

static void replay_drop(hsc_replay_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hsc_frame_unref(v[i].frame);
    free(v);
}

/* The read answered: registers with the cut and the replay, or reads again. */
static void subscribe_done(rengine_t *r, void *arg, redisReply *x)
{
    op_t *op = arg;
    hsc_subscribe_t *s = op->s;
    if (x != NULL && x->type == REDIS_REPLY_ERROR && strncmp(x->str, "NOSCRIPT", 8) == 0 &&
        op->tries++ < 3) {
        subscribe_read(r, op, true);
        return;
    }
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
    epoch_seen(r, epoch);
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
            hsc_frame_t *f = entry_frame(s->epoch, es->element[j], &seq, &prev);
            if (f == NULL)
                continue;
            if (op->last != NULL && j == 0 && prev > after) {
                hole = true;
                if (s->gap == HSC_GAP_NONE)
                    s->gap = HSC_GAP_EXPIRED;
            }
            if (!replay_push(&v, &n, &cap, (hsc_replay_t){seq, f, &ch->pub})) {
                hsc_frame_unref(f);
                replay_drop(v, n);
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
                replay_drop(v, n);
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
        replay_drop(v, n);
        subscribe_read(r, op, false);
        return;
    }
    if (n > 1)
        qsort(v, n, sizeof *v, replay_cmp);
    if (op->last == NULL && n > s->recent) { /* the newest `recent` across channels */
        size_t skip = n - s->recent;
        for (size_t i = 0; i < skip; i++)
            hsc_frame_unref(v[i].frame);
        memmove(v, v + skip, (n - skip) * sizeof *v);
        n -= skip;
    }
    subscribe_register(r, op, cut, v, n);
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
                replay_drop(v, n);
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
    s->cut = cut;
    s->replay = v;
    s->nreplay = n;
    s->rc = 0;
    op->call.fn = subscribe_complete;
    complete(r, op);
}

static void subscribe_read(rengine_t *r, op_t *op, bool eval)
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
        subscribe_fail(r, op, HSC_ENOMEM);
        return;
    }
    char nkeys[16], count[24];
    snprintf(nkeys, sizeof nkeys, "%zu", 2 + 2 * op->n);
    size_t k = 0;
    argv[k++] = eval ? "EVAL" : "EVALSHA";
    argv[k++] = eval ? READ_LUA : r->read_sha;
    argv[k++] = nkeys;
    argv[k++] = "hsc:epoch";
    argv[k++] = "hsc:seq";
    for (size_t i = 0; i < op->n; i++) {
        char *a = keys + 2 * i * (HSC_CHANNEL_MAX + 16), *b = a + HSC_CHANNEL_MAX + 16;
        lens[k] = key(a, HSC_CHANNEL_MAX + 16, op->chans[i], "s");
        argv[k++] = a;
        lens[k] = key(b, HSC_CHANNEL_MAX + 16, op->chans[i], "last");
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
    int rc = conn_send(&r->cmd, (int)k, argv, lens, subscribe_done, op);
    free(argv);
    free(lens);
    free(keys);
    if (rc != 0)
        subscribe_fail(r, op, HSC_ECLOSED);
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
                replay_drop(v, n);
                subscribe_fail(r, op, HSC_ENOMEM);
                return true;
            }
        }
    }
    if (n > 1)
        qsort(v, n, sizeof *v, replay_cmp);
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
        pubsub_subscribe(r, op->chans[i]);
        ready &= op->chans[i]->sub_state == 2;
    }
    if (!ready)
        return false;
    if (!subscribe_local(r, op))
        subscribe_read(r, op, false);
    return true;
}

static void sub_retry(rengine_t *r)
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

static void sub_fail_waiting(rengine_t *r)
{
    op_t *list = r->sub_wait;
    r->sub_wait = NULL;
    while (list != NULL) {
        op_t *op = list;
        list = op->next;
        subscribe_fail(r, op, HSC_ECLOSED);
    }
}

static void subscribe_start(rengine_t *r, op_t *op)
{
    for (size_t i = 0; i < op->n; i++) {
        const char *name = op->data + i * op->len;
        rchan_t *ch = chan_get(r, name, strlen(name));
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
    op_free(op);
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
            subscribe_start(r, op);
            break;
        default:
            unsubscribe_run(op);
        }
    }
    flush_hubs(r);
    if (stopping) {
        r->stopped = true;
        uv_close((uv_handle_t *)&r->wake, NULL);
        uv_close((uv_handle_t *)&r->tick, NULL);
        conn_fail(&r->cmd, "shutting down");
        conn_fail(&r->ps, "shutting down");
    }
}

/* Idle channels leave pub/sub and the table. */
static void sweep_idle(rengine_t *r, uint64_t now)
{
    for (size_t i = 0; i < r->tcap; i++) {
        for (rchan_t *ch = r->table[i], *next; ch != NULL; ch = next) {
            next = ch->hnext;
            if (ch->total_subs > 0 || ch->pins > 0 || ch->idle_since == 0 ||
                now - ch->idle_since < IDLE_UNSUB_MS)
                continue;
            if (ch->sub_state != 0 && r->ps.state == CONN_READY) {
                char k[HSC_CHANNEL_MAX + 16];
                size_t kl = key(k, sizeof k, ch, "live");
                const char *argv[] = {"UNSUBSCRIBE", k};
                size_t lens[] = {11, kl};
                conn_send(&r->ps, 2, argv, lens, NULL, NULL);
            }
            chan_remove(r, ch);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    rengine_t *r = t->data;
    uint64_t now = now_ms();
    conn_tick(&r->cmd, now);
    conn_tick(&r->ps, now);
    sweep_idle(r, now);
    /* After a reconnect (or a failed catch-up), every channel with subscribers reads what it
     * may have missed, once both connections are up and its SUBSCRIBE was confirmed. */
    if (r->need_catchup && r->catching == 0 && r->cmd.state == CONN_READY &&
        r->ps.state == CONN_READY) {
        bool all = true;
        for (size_t i = 0; i < r->tcap; i++)
            for (rchan_t *ch = r->table[i]; ch != NULL; ch = ch->hnext)
                if (ch->total_subs > 0 && ch->sub_state != 2)
                    all = false;
        if (all) {
            r->need_catchup = false;
            for (size_t i = 0; i < r->tcap; i++)
                for (rchan_t *ch = r->table[i]; ch != NULL; ch = ch->hnext)
                    if (ch->total_subs > 0)
                        catchup(r, ch); /* from its start when it never had an event */
        }
    }
    if (r->sub_wait != NULL && r->catching == 0 && !r->need_catchup)
        sub_retry(r);
    flush_hubs(r);
    atomic_store(&r->nchans_seen, r->nchans);
}

/* A connection became ready: the pub/sub one subscribes again and catches every channel up. */
static void on_ready(conn_t *c)
{
    rengine_t *r = c->r;
    atomic_store(c == &r->cmd ? &r->cmd_up : &r->ps_up, true);
    if (c == &r->ps) {
        for (size_t i = 0; i < r->tcap; i++)
            for (rchan_t *ch = r->table[i]; ch != NULL; ch = ch->hnext)
                if (ch->total_subs > 0 || ch->pins > 0)
                    pubsub_subscribe(r, ch);
    }
    if (r->ps.state == CONN_READY)
        sub_retry(r);
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
            op_free(op);
        p->rc = HSC_ENOMEM;
        p->cb(p);
        return;
    }
    if (!atomic_load(&r->cmd_up) ||
        atomic_load(&r->in_flight) + atomic_load(&r->queued) >= MAX_IN_FLIGHT) {
        op_free(op);
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
            op_free(op);
        s->rc = HSC_ENOMEM;
        s->cb(s);
        return;
    }
    if (!atomic_load(&r->cmd_up) || !atomic_load(&r->ps_up)) {
        op_free(op);
        s->rc = HSC_ECLOSED;
        s->cb(s);
        return;
    }
    /* The names are borrowed during this call only: keep a copy in the request's stead. */
    size_t sz = s->n * s->stride;
    char *names = malloc(sz ? sz : 1);
    if (names == NULL) {
        op_free(op);
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
    chan_unref(rchan(chan));
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
        chan_unref(rchan(r->cu[i].chan));
    }
    free(r->cu);
    for (size_t i = 0; i < r->tcap; i++) {
        for (rchan_t *ch = r->table[i], *next; ch != NULL; ch = next) {
            next = ch->hnext;
            chan_unref(ch);
        }
    }
    free(r->table);
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
    r->tcap = 64;
    r->table = calloc(r->tcap, sizeof *r->table);
    r->base.hubs = calloc(nhubs ? nhubs : 1, sizeof *r->base.hubs);
    if (r->table == NULL || r->base.hubs == NULL) {
        free(r->table);
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
    sha1_hex(READ_LUA, r->read_sha);
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
    conn_tick(&r->cmd, now_ms());
    conn_tick(&r->ps, now_ms());
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    if (uv_thread_create(&r->thread, engine_thread, r) != 0) {
        HSC_LOG(HSC_LOG_ERROR, "redis engine: cannot start its thread");
        uv_close((uv_handle_t *)&r->wake, NULL);
        uv_close((uv_handle_t *)&r->tick, NULL);
        conn_fail(&r->cmd, "no thread");
        conn_fail(&r->ps, "no thread");
        uv_run(&r->loop, UV_RUN_DEFAULT);
        uv_loop_close(&r->loop);
        free(r->table);
        free(r->base.hubs);
        uv_mutex_destroy(&r->mu);
        free(r);
        return HSC_ENOMEM;
    }
    *out = &r->base;
    return 0;
}
