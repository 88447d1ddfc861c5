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
 * The Redis engine: ids, history and fan-out across nodes (docs/cluster.md). Runs its own thread
 * and loop with two connections to `cfg->redis`; the password from cfg->redis_password_env when
 * set. Returns 0, HSC_EINVAL (a bad URL, logged) or HSC_ENOMEM; free with hsc_engine_free().
 */
int hsc_redis_engine_new(const hsc_server_config_t *cfg, unsigned nhubs, hsc_engine_t **out);

/** The engine's state for /metrics and /healthz (`why` NULL when healthy). */
typedef struct hsc_redis_status_s {
    bool cmd_up, pubsub_up;
    uint64_t reconnects, in_flight, timeouts, catchups;
    const char *why;
} hsc_redis_status_t;

/** Fills `out` when `e` is a Redis engine and returns true; false for any other engine. */
bool hsc_redis_status(hsc_engine_t *e, hsc_redis_status_t *out);

#endif
