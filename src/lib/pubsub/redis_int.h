/*
 * pubsub/redis_int.h: what the Redis engine's files share: redis.c (the engine), redis_conn.c
 * (connections), redis_feed.c (fan-out, catch-up, pub/sub) and redis_sub.c (subscriptions). Private
 * to them; the channel table and the operations belong to the engine's loop.
 */
#ifndef HSC_PUBSUB_REDIS_INT_H
#define HSC_PUBSUB_REDIS_INT_H

#include "pubsub/redis.h"
#include "pubsub/chantable.h"
#include "pubsub/pubsub.h" /* the rings of recent deliveries (history.c) */

#include <hiredis/hiredis.h>

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
    atomic_uint refs;    /* the table's, and one per delivery on its way */
    hsc_chanent_t hent;  /* its chain in the table, and its name's hash */
    unsigned *nsubs;     /* per hub (the engine's loop) */
    unsigned total_subs; /* registered subscriptions (the engine's loop) */
    unsigned pins;       /* operations working on it */
    int sub_state;       /* pub/sub: 0 not subscribed, 1 asked, 2 subscribed */
    uint64_t last;       /* the newest SEQ fanned out here (or known to be covered) */
    bool known;          /* `last` is set: holes can be told from it */
    uint64_t idle_since; /* no subscribers and no pins since then; 0: in use */
    bool synced;         /* every event after `from` reached the ring (see subscribe_local()) */
    uint64_t from;
    const char *gap;      /* a hole its live subscribers must be told of ("expired") before
                             its next event; NULL: none (a new epoch's is told at once) */
    hsc_history_t ring;   /* recent deliveries */
    struct op_s *reading; /* a subscription's read of this channel alone, on its way; NULL */
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
    uint64_t after;      /* what the read asked for */
    bool waiting;        /* on the list of subscriptions waiting for SUBSCRIBE */
    struct op_s *joined; /* subscriptions answered by this one's read (chained by `next`) */
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
    hsc_chantable_t chans;
    unsigned char hash_key[HSC_SIPHASH_KEY];
    op_t *sub_wait;   /* subscriptions waiting for their channels' SUBSCRIBE */
    uint64_t epoch;   /* Redis's, as last seen */
    uint64_t highest; /* the highest SEQ this node fanned out or was given (the floor) */
    uint64_t fanned;  /* the highest SEQ of this epoch this node fanned out (cuts are never
                         below it) */
    /* The numbers hubs see (deliveries, replays, cuts) are `pos_base` + SEQ: at a new epoch
     * `pos_base` becomes `handed`, so a later epoch's numbers are above every earlier one's even
     * where its SEQs start lower (hsc_redis_pos()). */
    uint64_t pos_base;
    uint64_t handed; /* the highest number handed to a hub */
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
    atomic_uint_fast64_t shared_subs;           /* ... by another subscription's read */
    atomic_bool cmd_up, ps_up;
    atomic_size_t nchans_seen;
};

static inline uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static inline rchan_t *rchan(hsc_chan_t *c)
{
    return (rchan_t *)((char *)c - offsetof(rchan_t, pub));
}

/* The channel of a table entry; NULL for NULL. */
static inline rchan_t *rent(hsc_chanent_t *e)
{
    return e != NULL ? (rchan_t *)((char *)e - offsetof(rchan_t, hent)) : NULL;
}

static inline uint64_t to_u64(const char *s, size_t len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

static inline uint64_t reply_u64(const redisReply *x)
{
    if (x == NULL)
        return 0;
    if (x->type == REDIS_REPLY_INTEGER)
        return x->integer > 0 ? (uint64_t)x->integer : 0;
    if (x->type == REDIS_REPLY_STRING || x->type == REDIS_REPLY_STATUS)
        return to_u64(x->str, x->len);
    return 0;
}

/*
 * The number a hub sees for `seq` of the current epoch: hubs skip deliveries at or below a
 * subscription's cut comparing numbers alone (hub.c), so (EPOCH, SEQ) pairs must map to numbers in
 * the same order. Only events and cuts of r->epoch are ever handed out.
 */
static inline uint64_t hsc_redis_pos(rengine_t *r, uint64_t seq)
{
    uint64_t p = r->pos_base + seq;
    if (p > r->handed)
        r->handed = p;
    return p;
}

/* The read script (redis.c): the stream after an id or the newest N, plus the sequence. */
extern const char hsc_redis_read_lua[];

/* redis.c */
void hsc_redis_chan_unref(rchan_t *ch);
rchan_t *hsc_redis_table_find(rengine_t *r, const char *name, size_t len, uint64_t h);
rchan_t *hsc_redis_chan_get(rengine_t *r, const char *name, size_t len);
size_t hsc_redis_key(char *buf, size_t cap, const rchan_t *ch, const char *suffix);
void hsc_redis_op_free(op_t *op);
void hsc_redis_complete(rengine_t *r, op_t *op);
void hsc_redis_on_ready(conn_t *c);
/* redis_conn.c */
void hsc_redis_flush_hubs(rengine_t *r);
int hsc_redis_conn_send(conn_t *c, int argc, const char **argv, const size_t *lens, reply_cb cb,
                        void *arg);
void hsc_redis_conn_fail(conn_t *c, const char *why);
void hsc_redis_conn_tick(conn_t *c, uint64_t now);
/* redis_feed.c */
void hsc_redis_fan_out(rengine_t *r, rchan_t *ch, uint64_t seq, hsc_frame_t *f);
hsc_frame_t *hsc_redis_entry_frame(uint64_t epoch, const redisReply *e, uint64_t *seq,
                                   uint64_t *prev);
void hsc_redis_epoch_seen(rengine_t *r, uint64_t epoch);
int hsc_redis_replay_cmp(const void *a, const void *b);
void hsc_redis_catchup(rengine_t *r, rchan_t *ch);
void hsc_redis_pubsub_reply(rengine_t *r, redisReply *x);
void hsc_redis_pubsub_subscribe(rengine_t *r, rchan_t *ch);
void hsc_redis_pubsub_lost(rengine_t *r);
/* redis_sub.c */
void hsc_redis_replay_drop(hsc_replay_t *v, size_t n);
void hsc_redis_sub_retry(rengine_t *r);
void hsc_redis_sub_fail_waiting(rengine_t *r);
void hsc_redis_subscribe_start(rengine_t *r, op_t *op);

#endif
