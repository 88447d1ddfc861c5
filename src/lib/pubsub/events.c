/*
 * /v1/events, the HTTP side of channels (docs/api.md): POST publishes, GET subscribes. Its
 * context is the loop's hub (pubsub.h), through which it reaches the engine.
 *
 * Both answers may come later than the handler: an engine completes a publish or a subscribe
 * before returning (the memory engine) or later on this loop (a journal, Redis). A publish waits
 * in a small request of its own; a client that goes away meanwhile only clears its response from
 * it (on_close), and the completion then frees it without answering. A subscription is the hub's
 * from the start (hsc_hub_subscribe()); this file starts its stream once the engine answered:
 * the headers, a retry: line with jitter and the epoch comment, the hsc.gap event when the resume
 * is not exact. Where a subscription starts is decided here: a last event id resumes after it
 * (the Last-Event-ID header, else lastEventId=); "earliest" in either place, or history=N
 * without an id, asks for recent events instead, with no hsc.gap (nothing was resumed).
 * Everything a client sends is checked here: channel names, history=, tag=, the event type, the
 * data's size and encoding, tokens (policy/). Who the client is (policy/, hsc_client_id_t) goes
 * with each request to the engine, which asks the server's per-client limit only when the
 * request would create channels: a refusal is 429 with Retry-After.
 */
#include "pubsub/pubsub.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(hsc_res_t *res, int status, const char *reason)
{
    hsc_res_error(res, status, status == 503 ? "Retry-After: 1\r\n" : NULL, reason, false);
}

/* The client's key for channel creation (hsc_create_check_t); 0 without a limit. */
static uint64_t client_key(const hsc_hub_t *hub, const hsc_client_id_t *who)
{
    return hub->create_limit != NULL ? hsc_ratelimit_key(hub->create_limit, who) : 0;
}

/*
 * The engine refused (p->rc, or a subscription's): 429 when the client creates channels too
 * fast, with Retry-After in whole seconds (at least 1); 503 when every channel has subscribers,
 * or the journal cannot take the event (with the reason: docs/api.md).
 */
static void fail_engine(hsc_hub_t *hub, hsc_res_t *res, int rc, uint64_t retry_ms)
{
    if (rc == HSC_ELIMIT) {
        HSC_STAT_ADD(hub->st_create_limited, 1);
        char extra[48];
        snprintf(extra, sizeof extra, "Retry-After: %llu\r\n",
                 (unsigned long long)(retry_ms + 999) / 1000 + (retry_ms == 0));
        hsc_res_error(res, 429, extra, "creating channels too fast (see --channel-create-rate)",
                      false);
        return;
    }
    char why[160];
    if (rc == HSC_EFULL)
        snprintf(why, sizeof why, "too many channels, all with subscribers (see --max-channels)");
    else if (rc == HSC_ENOMEM)
        snprintf(why, sizeof why, "out of memory");
    else if (rc == HSC_ETOOBIG) /* the journal's queue (--fsync always) */
        snprintf(why, sizeof why, "journal behind: too much waiting to be written");
    else if (rc == HSC_ESTATE)
        snprintf(why, sizeof why, "shutting down");
    else if (rc == HSC_ECLOSED) /* the Redis engine (docs/cluster.md) */
        snprintf(why, sizeof why, "the engine's store is unreachable (Redis): try again");
    else /* the journal could not write (docs/internals/journal.md) */
        snprintf(why, sizeof why, "journal: cannot write to --data-dir (%s)", hsc_strerror(rc));
    fail(res, 503, why);
}

typedef struct names_s {
    char (*v)[HSC_CHANNEL_MAX + 1];
    size_t n, max;
} names_t;

/*
 * Collects the distinct `channel` parameters. Returns 0 or an HTTP status with *reason set.
 * `max` is the most names to accept (more is 400).
 */
static int parse_channels(const hsc_req_t *req, names_t *out, const char **reason)
{
    size_t pos = 0;
    hsc_span_t k, v;
    char key[16];
    while (hsc_query_next(req->query, req->query_len, &pos, &k, &v)) {
        if (k.len >= sizeof key)
            continue;
        ssize_t kl = hsc_url_decode(key, k.p, k.len, 1);
        if (kl < 0 || (size_t)kl != 7 || memcmp(key, "channel", 7) != 0)
            continue;
        char name[HSC_CHANNEL_MAX + 1];
        if (v.len > 3 * HSC_CHANNEL_MAX) {
            *reason = "channel name too long (at most 128 bytes)";
            return 400;
        }
        char tmp[3 * HSC_CHANNEL_MAX];
        ssize_t n = hsc_url_decode(tmp, v.p, v.len, 1);
        if (n < 0) {
            *reason = "bad percent-encoding in channel";
            return 400;
        }
        if (n == 0) {
            *reason = "empty channel name";
            return 400;
        }
        if (!hsc_channel_name_valid(tmp, (size_t)n)) {
            *reason = (size_t)n > HSC_CHANNEL_MAX
                          ? "channel name too long (at most 128 bytes)"
                          : "bad channel name: use 1-128 of A-Z a-z 0-9 - _ . : @ /";
            return 400;
        }
        memcpy(name, tmp, (size_t)n);
        name[n] = '\0';
        bool dup = false;
        for (size_t i = 0; i < out->n && !dup; i++)
            dup = strcmp(out->v[i], name) == 0;
        if (dup)
            continue;
        if (out->n == out->max) {
            *reason = out->max == 1 ? "publish to one channel at a time"
                                    : "too many channels in one subscription "
                                      "(see --max-subscription-channels)";
            return 400;
        }
        memcpy(out->v[out->n++], name, (size_t)n + 1);
    }
    if (out->n == 0) {
        *reason = "missing channel parameter: ?channel=NAME";
        return 400;
    }
    return 0;
}

/* ---- publish --------------------------------------------------------------------------------- */

/* A publish on its way through the engine. */
typedef struct pub_op_s {
    hsc_publish_t p;
    hsc_hub_t *hub;
    hsc_res_t *res; /* NULL once the client went away */
    char name[HSC_CHANNEL_MAX + 1];
} pub_op_t;

static void pub_on_close(hsc_res_t *res, void *user)
{
    (void)res;
    pub_op_t *op = user;
    op->res = NULL;
}

static void published(hsc_publish_t *p)
{
    pub_op_t *op = p->user;
    hsc_res_t *res = op->res;
    if (res == NULL) { /* the client went away; the event is published all the same */
        free(op);
        return;
    }
    res->on_close = NULL;
    res->user = NULL;
    if (p->rc != 0) {
        fail_engine(op->hub, res, p->rc, p->create.retry_ms);
        free(op);
        return;
    }
    json_t *j = json_pack("{s:s,s:s,s:I}", "id", p->id, "channel", op->name, "subscribers",
                          (json_int_t)p->subscribers);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    free(op);
    if (body == NULL) {
        fail(res, 500, "out of memory");
        return;
    }
    size_t bl = strlen(body);
    body[bl] = '\n';
    hsc_res_send(res, 200, "application/json", "Cache-Control: no-store\r\n", body, bl + 1);
    free(body);
}

static void publish(hsc_hub_t *hub, hsc_req_t *req, hsc_res_t *res)
{
    const hsc_server_config_t *cfg = hub->cfg;
    char name[HSC_CHANNEL_MAX + 1];
    names_t names = {.v = &name, .max = 1};
    const char *reason = NULL;
    int status = parse_channels(req, &names, &reason);
    if (status != 0) {
        fail(res, status, reason);
        return;
    }
    hsc_client_id_t who;
    if (hsc_auth_require_who(cfg, req, res, HSC_AUTH_PUBLISH, name, sizeof name, 1, &who, NULL,
                             0) != 0)
        return;
    char type[HSC_EVENT_TYPE_MAX * 3 + 1];
    ssize_t tl = hsc_query_get(req->query, req->query_len, "event", type, sizeof type);
    if (tl == HSC_ETOOBIG || tl == HSC_EINVAL ||
        (tl >= 0 && !hsc_event_type_valid(type, (size_t)tl))) {
        fail(res, 400,
             "bad event type: use 1-64 of A-Z a-z 0-9 - _ . : (not starting with \"hsc.\")");
        return;
    }
    const char *data = req->body.data ? req->body.data : "";
    size_t len = req->body.len;
    if (len > cfg->max_event_bytes) {
        char why[128];
        snprintf(why, sizeof why, "event data is %zu bytes; the limit is %zu (--max-event-bytes)",
                 len, cfg->max_event_bytes);
        fail(res, 413, why);
        return;
    }
    if (!hsc_utf8_valid(data, len)) {
        fail(res, 400, "event data is not valid UTF-8");
        return;
    }
    pub_op_t *op = malloc(sizeof *op);
    if (op == NULL) {
        fail(res, 503, "out of memory");
        return;
    }
    size_t nl = strlen(name);
    memcpy(op->name, name, nl + 1);
    op->res = res;
    op->hub = hub;
    res->user = op;
    res->on_close = pub_on_close;
    op->p = (hsc_publish_t){.channel = op->name,
                            .channel_len = nl,
                            .type = tl > 0 ? type : NULL,
                            .data = data,
                            .len = len,
                            .hub = hub->index,
                            .create = {.limit = hub->create_limit, .client = client_key(hub, &who)},
                            .cb = published,
                            .user = op};
    hsc_engine_publish(hub->engine, &op->p);
}

/* ---- subscribe ------------------------------------------------------------------------------- */

/*
 * The client's last event id: the Last-Event-ID header, else lastEventId= (decoded into buf).
 * NULL when there is none, or when it is "earliest" (Mercure's word: everything history holds),
 * which sets *earliest.
 */
static const char *last_event_id(const hsc_req_t *req, char *buf, size_t cap, size_t *len,
                                 bool *earliest)
{
    const char *id = NULL;
    *earliest = false;
    const char *h = hsc_req_header(req, "Last-Event-ID");
    ssize_t n;
    if (h != NULL && h[0] != '\0') {
        id = h;
        *len = strlen(h);
    } else if ((n = hsc_query_get(req->query, req->query_len, "lastEventId", buf, cap)) > 0) {
        id = buf;
        *len = (size_t)n;
    } else if (n == HSC_ETOOBIG || n == HSC_EINVAL) {
        *len = 1;
        return "?"; /* unparseable: reported as an unknown id */
    }
    if (id != NULL && *len == 8 && memcmp(id, "earliest", 8) == 0) {
        *earliest = true;
        return NULL;
    }
    return id;
}

/*
 * history=N and tag=channel (docs/api.md, "Recent events" and "Which channel"). Returns 0, or
 * 400 with the reason in `why`. *recent is N (0 without the parameter).
 */
static int parse_options(const hsc_req_t *req, const hsc_server_config_t *cfg, size_t *recent,
                         bool *tag, char *why, size_t cap)
{
    char v[32];
    *recent = 0;
    *tag = false;
    ssize_t n = hsc_query_get(req->query, req->query_len, "history", v, sizeof v);
    if (n != HSC_ENOTFOUND) {
        bool ok = n > 0 && n <= 20 && strspn(v, "0123456789") == (size_t)n;
        unsigned long long k = ok ? strtoull(v, NULL, 10) : 0;
        if (!ok || k > cfg->history) {
            snprintf(why, cap, "bad history: use history=N, N from 0 to %zu (--history)",
                     cfg->history);
            return 400;
        }
        *recent = (size_t)k;
    }
    n = hsc_query_get(req->query, req->query_len, "tag", v, sizeof v);
    if (n != HSC_ENOTFOUND) {
        if (n != 7 || memcmp(v, "channel", 7) != 0) {
            snprintf(why, cap, "bad tag: the only one is tag=channel");
            return 400;
        }
        *tag = true;
    }
    return 0;
}

static void write_gap(hsc_res_t *res, hsc_gap_t gap, const char *last, size_t last_len,
                      const char *epoch, size_t n)
{
    static const char *reasons[] = {"", "epoch", "expired", "unknown"};
    char shown[65];
    size_t k = 0;
    for (; k < last_len && k < sizeof shown - 1; k++)
        shown[k] = last[k] >= 0x20 && last[k] < 0x7f ? last[k] : '?';
    shown[k] = '\0';
    json_t *j = json_pack("{s:s,s:s,s:s,s:I}", "reason", reasons[gap], "requested", shown, "epoch",
                          epoch, "replayed", (json_int_t)n);
    char *data = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    if (data == NULL)
        return;
    hsc_sse_event_t ev = {
        .type = "hsc.gap", .data = data, .data_len = strlen(data), .retry_ms = -1};
    char buf[512];
    ssize_t len = hsc_sse_encode(buf, sizeof buf, &ev);
    if (len > 0 && (size_t)len <= sizeof buf)
        hsc_res_write(res, buf, (size_t)len);
    free(data);
}

/* The engine answered (hsc_hub_start_fn): the stream starts, or the error is answered. */
static int sub_start(hsc_hub_t *hub, hsc_res_t *res, const hsc_subscribe_t *r)
{
    const hsc_server_config_t *cfg = hub->cfg;
    if (r->rc != 0) {
        fail_engine(hub, res, r->rc, r->create.retry_ms);
        return -1;
    }
    if (hub->draining) { /* shutting down while the engine answered */
        fail(res, 503, "shutting down");
        return -1;
    }
    char lbuf[128];
    size_t last_len = 0;
    bool earliest;
    const char *last = last_event_id(hsc_res_request(res), lbuf, sizeof lbuf, &last_len, &earliest);
    if (last != NULL && r->gap == HSC_GAP_NONE)
        HSC_STAT_ADD(hub->st_resumes, 1);
    else if (last != NULL)
        HSC_STAT_ADD(hub->st_missed, 1);
    if (hsc_res_start(res, 200, "text/event-stream; charset=utf-8",
                      "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n", HSC_STREAMING) != 0) {
        hsc_res_abort(res);
        return -1;
    }
    char epoch[HSC_EVENT_ID_MAX];
    hsc_event_id_format(epoch, r->epoch, 0);
    *strchr(epoch, '-') = '\0';
    char pre[96];
    uint64_t retry = cfg->retry_ms + hsc_hub_random(hub, cfg->retry_ms / 2 + 1);
    int n =
        snprintf(pre, sizeof pre, "retry: %llu\n: hsc %s\n\n", (unsigned long long)retry, epoch);
    hsc_res_write(res, pre, (size_t)n);
    if (r->gap != HSC_GAP_NONE)
        write_gap(res, r->gap, last, last_len, epoch, r->nreplay);
    return 0;
}

static void subscribe(hsc_hub_t *hub, hsc_req_t *req, hsc_res_t *res)
{
    const hsc_server_config_t *cfg = hub->cfg;
    size_t max = cfg->max_subscription_channels ? cfg->max_subscription_channels : 1;
    names_t names = {.v = calloc(max, sizeof *names.v), .max = max};
    if (names.v == NULL) {
        fail(res, 503, "out of memory");
        return;
    }
    const char *reason = NULL;
    char why[128], subject[HSC_SUBJECT_MAX + 1];
    hsc_hub_sub_t o = {.stride = sizeof names.v[0]};
    int status = parse_channels(req, &names, &reason);
    if (status == 0 && (status = parse_options(req, cfg, &o.recent, &o.tag, why, sizeof why)) != 0)
        reason = why;
    hsc_client_id_t who;
    if (status == 0 &&
        hsc_auth_require_who(cfg, req, res, HSC_AUTH_SUBSCRIBE, names.v[0], sizeof names.v[0],
                             names.n, &who, subject, sizeof subject) != 0) {
        free(names.v);
        return;
    }
    if (status == 0 && hub->draining) { /* shutting down: come back to the next instance */
        status = 503;
        reason = "shutting down";
    }
    if (status != 0) {
        free(names.v);
        fail(res, status, reason);
        return;
    }
    char lbuf[128];
    bool earliest;
    o.names = names.v[0];
    o.n = names.n;
    o.subject = subject[0] != '\0' ? subject : NULL;
    o.client = client_key(hub, &who);
    o.last = last_event_id(req, lbuf, sizeof lbuf, &o.last_len, &earliest);
    if (earliest)
        o.recent = HSC_REPLAY_ALL;
    int rc = hsc_hub_subscribe(hub, res, &o, sub_start);
    free(names.v);
    if (rc != 0)
        fail(res, 503, "out of memory");
}

void hsc_events_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    if (req->method == HSC_M_POST)
        publish(ctx, req, res);
    else
        subscribe(ctx, req, res);
}
