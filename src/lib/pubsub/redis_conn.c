/*
 * The Redis engine's two connections (redis.c has the engine, redis_int.h what its files share).
 * hiredis only formats commands and parses replies; the sockets, deadlines, pings and reconnects
 * are ours, here.
 *
 * Trouble is bounded: every command has a deadline (1 s); both connections are pinged every
 * second; a connection that fails or misses a deadline is closed, its commands fail, and it is
 * reconnected with backoff (100 ms doubling to 2 s). While the command connection is down,
 * publishes and new subscriptions fail at once (the HTTP side answers 503 with Retry-After);
 * subscribers stay connected and are caught up after the pub/sub connection returns.
 */
#include "pubsub/redis_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- connections ----------------------------------------------------------------------------- */

/* Wakes the hubs that hsc_redis_fan_out() queued events for. */
void hsc_redis_flush_hubs(rengine_t *r)
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
int hsc_redis_conn_send(conn_t *c, int argc, const char **argv, const size_t *lens, reply_cb cb,
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
        hsc_redis_conn_fail(c, n == UV_EOF ? "Redis closed the connection" : uv_strerror((int)n));
        return;
    }
    if (n == 0)
        return;
    if (redisReaderFeed(c->reader, b->base, (size_t)n) != REDIS_OK) {
        hsc_redis_conn_fail(c, "unreadable reply");
        return;
    }
    uint64_t gen = c->gen;
    for (;;) {
        void *out = NULL;
        if (redisReaderGetReply(c->reader, &out) != REDIS_OK) {
            hsc_redis_conn_fail(c, "malformed reply");
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
            hsc_redis_pubsub_reply(c->r, x);
        } else if (c->qlen > 0 && (!c->pubsub || c->state == CONN_HANDSHAKE)) {
            conn_pop(c, x);
        } else if (c->pubsub) {
            c->ping_sent = 0; /* ["pong", ""], or +PONG before any SUBSCRIBE */
        }
        freeReplyObject(x);
        if (c->gen != gen || c->state == CONN_DOWN)
            return; /* a callback failed the connection */
    }
    hsc_redis_flush_hubs(c->r);
}

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    c->open = false;
}

/* Closes the connection, fails what waited on it and schedules the reconnect. */
void hsc_redis_conn_fail(conn_t *c, const char *why)
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
        hsc_redis_pubsub_lost(c->r);
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
        hsc_redis_conn_fail(c, msg);
        return;
    }
    if (c->state != CONN_HANDSHAKE || c->qlen > 0)
        return; /* more set-up replies to come */
    c->state = CONN_READY;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->ping_at = now_ms() + PING_MS;
    HSC_LOG(HSC_LOG_NOTICE, "redis %s connection ready", c->name);
    hsc_redis_on_ready(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    if (c->state != CONN_CONNECTING || req->handle != &c->u.s)
        return;
    if (status != 0) {
        hsc_redis_conn_fail(c, uv_strerror(status));
        return;
    }
    c->reader = redisReaderCreate();
    if (c->reader == NULL) {
        hsc_redis_conn_fail(c, "out of memory");
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
        any |= hsc_redis_conn_send(c, 2, argv, lens, handshake_done, c) == 0;
    }
    if (r->url.db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%u", r->url.db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        any |= hsc_redis_conn_send(c, 2, argv, lens, handshake_done, c) == 0;
    }
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    any |= hsc_redis_conn_send(c, 1, argv, lens, handshake_done, c) == 0;
    if (!any)
        hsc_redis_conn_fail(c, "out of memory");
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
            hsc_redis_conn_fail(c, "cannot resolve the host");
            return;
        }
        memcpy(&sa, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
    }
    if ((rc = uv_tcp_connect(&c->connect_req, &c->u.tcp, (struct sockaddr *)&sa, on_connect)) != 0)
        hsc_redis_conn_fail(c, uv_strerror(rc));
}

/*
 * The command connection's ping reads the sequence: every node's floor (the SEQ a new epoch
 * starts above, PUBLISH_LUA) follows every node's publishes within a second, so that after Redis
 * lost its data ids go on increasing as plain SEQs too, except for what was published in the
 * last second before (a new epoch is announced and delivered anyway: redis_feed.c).
 */
static void ping_seq(rengine_t *r, void *arg, redisReply *x)
{
    (void)arg;
    uint64_t seq = reply_u64(x);
    if (seq > r->highest)
        r->highest = seq;
}

/* Every tick: deadlines, pings, reconnects. */
void hsc_redis_conn_tick(conn_t *c, uint64_t now)
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
            hsc_redis_conn_fail(c, "connect timed out");
        }
        break;
    case CONN_READY:
        if ((c->qlen > 0 && now - c->q[c->qhead].sent_ms > DEADLINE_MS) ||
            (c->ping_sent != 0 && now - c->ping_sent > DEADLINE_MS)) {
            atomic_fetch_add(&c->r->timeouts, 1);
            hsc_redis_conn_fail(c, "Redis did not answer within 1 s");
            break;
        }
        if (now >= c->ping_at) {
            c->ping_at = now + PING_MS;
            const char *argv[] = {"PING"};
            size_t lens[] = {4};
            if (c->pubsub) {
                if (c->ping_sent == 0)
                    c->ping_sent = now;
                hsc_redis_conn_send(c, 1, argv, lens, NULL, NULL);
            } else if (c->qlen == 0) {
                const char *get[] = {"GET", "hsc:seq"};
                size_t glens[] = {3, 7};
                hsc_redis_conn_send(c, 2, get, glens, ping_seq, NULL);
            }
        }
        break;
    }
}
