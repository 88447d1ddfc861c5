/*
 * pubsub/redis.h: the Redis engine (redis.c, docs/cluster.md) and what it is made of that tests
 * reach alone: the URL parser (redis_url.c).
 */
#ifndef HSC_PUBSUB_REDIS_H
#define HSC_PUBSUB_REDIS_H

#include "pubsub/engine.h"

#define HSC_REDIS_HOST_MAX     256
#define HSC_REDIS_PATH_MAX     108 /* sun_path */
#define HSC_REDIS_PASSWORD_MAX 512

/** Where Redis is: a TCP host and port, or a Unix socket's path; the password and the database. */
typedef struct hsc_redis_url_s {
    char host[HSC_REDIS_HOST_MAX]; /* "" with a Unix socket; an IPv6 address without brackets */
    unsigned port;
    char path[HSC_REDIS_PATH_MAX];         /* "" with TCP */
    char password[HSC_REDIS_PASSWORD_MAX]; /* "" for none */
    unsigned db;
} hsc_redis_url_t;

/**
 * Parses "redis://[:PASSWORD@]HOST[:PORT][/DB]" (port 6379 and db 0 by default; an IPv6 host in
 * brackets) or "unix:///PATH[?db=N]". Returns 0, or HSC_EINVAL with *why saying what is wrong.
 */
int hsc_redis_url_parse(const char *url, hsc_redis_url_t *out, const char **why);

/**
 * An event as Redis carries it: a live notice's payload, or a stream entry. `type` (type_len
 * bytes, 0: none) and `data` point into the parsed bytes; the epoch is the notice's only.
 */
typedef struct hsc_redis_notice_s {
    uint64_t epoch, seq, prev; /* prev: the channel's event before this one, 0 for none */
    const char *type;
    size_t type_len;
    const char *data;
    size_t len;
} hsc_redis_notice_t;

/** Parses a live notice "EPOCH SEQ PREV TYPE\nDATA". Returns 0 or HSC_EINVAL. */
int hsc_redis_notice_parse(const char *payload, size_t len, hsc_redis_notice_t *out);

struct redisReply;
/** Parses a stream entry [SEQ-0, [t, TYPE, d, DATA, p, PREV]] (epoch 0). 0 or HSC_EINVAL. */
int hsc_redis_entry_parse(const struct redisReply *e, hsc_redis_notice_t *out);

/**
 * The Redis engine: ids, history and fan-out across nodes (docs/cluster.md). Runs its own thread
 * and loop with two connections to `cfg->redis`; the password from cfg->redis_password_env when
 * set. Returns 0, HSC_EINVAL (a bad URL, logged) or HSC_ENOMEM; free with hsc_engine_free().
 */
int hsc_redis_engine_new(const hsc_server_config_t *cfg, unsigned nhubs, hsc_engine_t **out);

/** The engine's state for /metrics and /healthz (`why` NULL when healthy). */
typedef struct hsc_redis_status_s {
    bool cmd_up, pubsub_up;
    uint64_t reconnects, in_flight, timeouts, catchups;
    uint64_t local_subs, read_subs; /* subscriptions served from the node's rings, from a read */
    uint64_t shared_subs;           /* ... from a read another subscription made */
    const char *why;
} hsc_redis_status_t;

/** Fills `out` when `e` is a Redis engine and returns true; false for any other engine. */
bool hsc_redis_status(hsc_engine_t *e, hsc_redis_status_t *out);

#endif
