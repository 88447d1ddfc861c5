/*
 * The admin API (docs/api.md, "Admin API"): what operators and back-ends ask of the channels,
 * behind its own token (--admin-token; without one the API is off and answers 404). Its context
 * is the loop's hub, like /v1/events.
 *
 *   GET  /v1/admin/channels[?limit=N&after=NAME]  a page of channels in name order
 *   GET  /v1/admin/channel?channel=NAME[&limit=N] one channel, with presence
 *   POST /v1/admin/disconnect?channel=NAME        ends the channel's subscriptions
 *
 * A listing is one engine call (channels(), engine.h "Listings"): keyset paging by name, so a
 * page costs memory for `limit` channels whatever their number. One channel's record comes the
 * same way, with a reference to its handle; presence and disconnect then need every hub, since
 * each loop's hub alone knows its subscribers: a fan-out sends one call to each hub (the engine
 * sink's call(), which runs a function on that hub's loop), each hub answers with a call back to
 * the request's hub, and the last answer there writes the response. Nothing is shared between
 * threads but the fan-out's reference count: each hub writes its own part, read on the request's
 * loop after the call back (the hub's inbox mutex orders them).
 *
 * Lifetimes: a fan-out holds one reference for the request (dropped when it answers, or when the
 * client goes away), one for the engine's pending completion, one per hub call. During shutdown
 * a hub whose loop has ended runs its queued calls at dispose (hsc_hub_dispose()): a call then
 * only drops its reference, since nobody is left to answer. The last reference gives the
 * channel's handle back to the engine and frees the rest.
 */
#include "pubsub/pubsub.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE_DEFAULT 100
#define PAGE_MAX     1000

static void fail(hsc_res_t *res, int status, const char *reason)
{
    hsc_res_error(res, status, status == 503 ? "Retry-After: 1\r\n" : NULL, reason, false);
}

/* Answers 200 with `j` (taken) as one line of JSON. */
static void send_json(hsc_res_t *res, json_t *j)
{
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (body == NULL) {
        fail(res, 503, "out of memory");
        return;
    }
    size_t bl = strlen(body);
    body[bl] = '\n'; /* over the NUL: the length is known */
    hsc_res_send(res, 200, "application/json", "Cache-Control: no-store\r\n", body, bl + 1);
    free(body);
}

/*
 * Reads a channel name parameter into `out` (HSC_CHANNEL_MAX + 1 bytes). Returns its length,
 * 0 when absent and `optional`, or -1 after answering 400.
 */
static ssize_t channel_param(hsc_req_t *req, hsc_res_t *res, const char *key, bool optional,
                             char *out)
{
    char tmp[3 * HSC_CHANNEL_MAX + 1];
    ssize_t n = hsc_query_get(req->query, req->query_len, key, tmp, sizeof tmp);
    char why[160];
    if (n == HSC_ENOTFOUND && optional)
        return 0;
    if (n == HSC_ENOTFOUND)
        snprintf(why, sizeof why, "missing %s parameter: ?%s=NAME", key, key);
    else if (n == HSC_EINVAL)
        snprintf(why, sizeof why, "bad percent-encoding in %s", key);
    else if (n == 0)
        snprintf(why, sizeof why, "empty %s name", key);
    else if (n == HSC_ETOOBIG || n > HSC_CHANNEL_MAX)
        snprintf(why, sizeof why, "%s name too long (at most 128 bytes)", key);
    else if (!hsc_channel_name_valid(tmp, (size_t)n))
        snprintf(why, sizeof why, "bad %s name: use 1-128 of A-Z a-z 0-9 - _ . : @ /", key);
    else {
        memcpy(out, tmp, (size_t)n + 1);
        return n;
    }
    fail(res, 400, why);
    return -1;
}

/* limit=N, 1 to PAGE_MAX (PAGE_DEFAULT when absent). Returns it, or 0 after answering 400. */
static size_t limit_param(hsc_req_t *req, hsc_res_t *res)
{
    char v[24];
    ssize_t n = hsc_query_get(req->query, req->query_len, "limit", v, sizeof v);
    if (n == HSC_ENOTFOUND)
        return PAGE_DEFAULT;
    unsigned long k = 0;
    if (n > 0 && n <= 4 && strspn(v, "0123456789") == (size_t)n)
        k = strtoul(v, NULL, 10);
    if (k < 1 || k > PAGE_MAX) {
        fail(res, 400, "bad limit: use limit=N, N from 1 to 1000");
        return 0;
    }
    return (size_t)k;
}

/* "2026-12-07T12:00:00.123Z", or JSON null for 0. */
static json_t *json_time(uint64_t ms)
{
    if (ms == 0)
        return json_null();
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char buf[40], out[48];
    if (gmtime_r(&s, &tm) == NULL || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return json_null();
    snprintf(out, sizeof out, "%s.%03uZ", buf, (unsigned)(ms % 1000));
    return json_string(out);
}

static json_t *json_id(uint64_t epoch, uint64_t seq)
{
    char id[HSC_EVENT_ID_MAX];
    if (seq == 0)
        return json_null();
    hsc_event_id_format(id, epoch, seq);
    return json_string(id);
}

/* ---- GET /v1/admin/channels ------------------------------------------------------------------ */

typedef struct list_op_s {
    hsc_channels_t q;
    hsc_res_t *res; /* NULL once the client went away */
    json_t *channels;
    bool nomem;
    char after[HSC_CHANNEL_MAX + 1];
    char last[HSC_CHANNEL_MAX + 1]; /* the last name reported: the next page's cursor */
} list_op_t;

static void list_on_close(hsc_res_t *res, void *user)
{
    (void)res;
    ((list_op_t *)user)->res = NULL;
}

/* Under the engine's lock: copies the record. */
static void list_each(hsc_channels_t *q, const hsc_chan_info_t *in)
{
    list_op_t *op = q->user;
    json_t *c =
        json_pack("{s:s%,s:I,s:I,s:I}", "channel", in->name, in->name_len, "subscribers",
                  (json_int_t)in->subscribers, "history_events", (json_int_t)in->history_events,
                  "history_bytes", (json_int_t)in->history_bytes);
    if (c == NULL || json_array_append_new(op->channels, c) != 0)
        op->nomem = true;
    memcpy(op->last, in->name, in->name_len);
    op->last[in->name_len] = '\0';
}

static void list_done(hsc_channels_t *q)
{
    list_op_t *op = q->user;
    hsc_res_t *res = op->res;
    if (res != NULL) {
        res->on_close = NULL;
        res->user = NULL;
        if (q->rc != 0 || op->nomem) {
            fail(res, 503, "out of memory");
        } else {
            json_t *j =
                json_pack("{s:O,s:I,s:o}", "channels", op->channels, "total", (json_int_t)q->total,
                          "next", q->more && q->found > 0 ? json_string(op->last) : json_null());
            send_json(res, j);
        }
    }
    json_decref(op->channels);
    free(op);
}

void hsc_admin_channels_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    hsc_hub_t *hub = ctx;
    if (hsc_auth_admin(hub->cfg, req, res) != 0)
        return;
    if (!hsc_engine_can_list(hub->engine)) {
        fail(res, 501, "this channel engine cannot list channels");
        return;
    }
    list_op_t *op = calloc(1, sizeof *op);
    if (op == NULL || (op->channels = json_array()) == NULL) {
        free(op);
        fail(res, 503, "out of memory");
        return;
    }
    ssize_t al;
    size_t limit;
    if ((al = channel_param(req, res, "after", true, op->after)) < 0 ||
        (limit = limit_param(req, res)) == 0) {
        json_decref(op->channels);
        free(op);
        return;
    }
    op->res = res;
    res->user = op;
    res->on_close = list_on_close;
    op->q = (hsc_channels_t){.name = al > 0 ? op->after : NULL,
                             .name_len = (size_t)al,
                             .limit = limit,
                             .hub = hub->index,
                             .each = list_each,
                             .cb = list_done,
                             .user = op};
    hsc_engine_channels(hub->engine, &op->q);
}

/* ---- one channel: info and presence, disconnect ---------------------------------------------- */

typedef struct fan_s fan_t;

/* One hub's share of a fan-out: its call there, its call back, what it found. */
typedef struct part_s {
    hsc_engine_call_t go, back;
    fan_t *fan;
    unsigned index;
    size_t count;     /* disconnect: subscriptions ended; presence: anonymous ones */
    json_t *subjects; /* presence: {sub: subscriptions} on this hub; NULL when none */
    bool nomem;
} part_t;

struct fan_s {
    hsc_channels_t q;
    hsc_hub_t *origin; /* the request's hub */
    hsc_res_t *res;    /* NULL once answered or gone */
    atomic_uint refs;
    bool disconnect;
    bool found;
    size_t limit; /* presence: subjects listed */
    hsc_chan_info_t info;
    char name[HSC_CHANNEL_MAX + 1];
    unsigned nparts, arrived;
    part_t part[];
};

static hsc_engine_hub_t *hub_entry(const fan_t *f, unsigned i)
{
    return &f->origin->engine->hubs[i];
}

static void fan_unref(fan_t *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (f->info.chan != NULL)
        hsc_engine_release(f->origin->engine, f->info.chan);
    for (unsigned i = 0; i < f->nparts; i++)
        json_decref(f->part[i].subjects);
    free(f);
}

/* The request is answered (or gone): the request's reference goes. */
static void fan_answered(fan_t *f)
{
    if (f->res != NULL) {
        f->res->on_close = NULL;
        f->res->user = NULL;
        f->res = NULL;
    }
    fan_unref(f);
}

static void fan_on_close(hsc_res_t *res, void *user)
{
    (void)res;
    fan_t *f = user;
    f->res = NULL;
    fan_unref(f);
}

static int subject_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* {"anonymous":N,"identified":N,"distinct":N,"subjects":[{"sub":S,"subscriptions":N}...],...} */
static json_t *presence_json(fan_t *f)
{
    json_t *all = json_object();
    size_t anonymous = 0, identified = 0;
    bool nomem = all == NULL;
    for (unsigned i = 0; i < f->nparts; i++) {
        part_t *p = &f->part[i];
        const char *k;
        json_t *v;
        anonymous += p->count;
        nomem |= p->nomem;
        json_object_foreach(p->subjects, k, v)
        {
            json_int_t n = json_integer_value(v);
            json_t *have = all ? json_object_get(all, k) : NULL;
            identified += (size_t)n;
            if (have != NULL)
                json_integer_set(have, json_integer_value(have) + n);
            else if (all != NULL && json_object_set_new(all, k, json_integer(n)) != 0)
                nomem = true;
        }
    }
    size_t distinct = all ? json_object_size(all) : 0;
    const char **keys = distinct ? malloc(distinct * sizeof *keys) : NULL;
    json_t *list = json_array();
    if (nomem || list == NULL || (distinct > 0 && keys == NULL)) {
        free(keys);
        json_decref(list);
        json_decref(all);
        return NULL;
    }
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(all, k, v) keys[n++] = k;
    if (n > 1)
        qsort(keys, n, sizeof *keys, subject_cmp);
    for (size_t i = 0; i < n && i < f->limit; i++)
        json_array_append_new(list, json_pack("{s:s,s:O}", "sub", keys[i], "subscriptions",
                                              json_object_get(all, keys[i])));
    json_t *j = json_pack("{s:I,s:I,s:I,s:o,s:b}", "anonymous", (json_int_t)anonymous, "identified",
                          (json_int_t)identified, "distinct", (json_int_t)distinct, "subjects",
                          list, "more", distinct > f->limit);
    free(keys);
    json_decref(all);
    return j;
}

/* On the request's loop, once every hub has answered. */
static void fan_answer(fan_t *f)
{
    hsc_res_t *res = f->res;
    json_t *j;
    if (f->disconnect) {
        size_t n = 0;
        for (unsigned i = 0; i < f->nparts; i++)
            n += f->part[i].count;
        j = json_pack("{s:s,s:I}", "channel", f->name, "disconnected", (json_int_t)n);
        HSC_LOG(HSC_LOG_NOTICE, "admin: disconnected %zu subscription(s) of channel %s", n,
                f->name);
    } else {
        const hsc_chan_info_t *in = &f->info;
        json_t *presence = presence_json(f);
        j = presence == NULL ? NULL
                             : json_pack("{s:s,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "channel", f->name,
                                         "subscribers", (json_int_t)in->subscribers,
                                         "history_events", (json_int_t)in->history_events,
                                         "history_bytes", (json_int_t)in->history_bytes, "first_id",
                                         json_id(f->q.epoch, in->first_seq), "last_id",
                                         json_id(f->q.epoch, in->last_seq), "last_publish",
                                         json_time(in->last_publish_ms), "presence", presence);
    }
    fan_answered(f);
    send_json(res, j);
}

/* On the request's loop (or at its hub's dispose): one hub has answered. */
static void part_back(hsc_engine_call_t *c)
{
    part_t *p = (part_t *)((char *)c - offsetof(part_t, back));
    fan_t *f = p->fan;
    if (++f->arrived == f->nparts && f->res != NULL)
        fan_answer(f);
    fan_unref(f);
}

static void count_subject(void *user, const char *subject)
{
    part_t *p = user;
    if (subject == NULL) {
        p->count++;
        return;
    }
    if (p->subjects == NULL && (p->subjects = json_object()) == NULL) {
        p->nomem = true;
        return;
    }
    json_t *v = json_object_get(p->subjects, subject);
    if (v != NULL)
        json_integer_set(v, json_integer_value(v) + 1);
    else if (json_object_set_new(p->subjects, subject, json_integer(1)) != 0)
        p->nomem = true;
}

/* On hub p->index's loop: its part of the work, then the call back to the request's hub. */
static void part_go(hsc_engine_call_t *c)
{
    part_t *p = (part_t *)((char *)c - offsetof(part_t, go));
    fan_t *f = p->fan;
    hsc_engine_hub_t *h = hub_entry(f, p->index);
    hsc_hub_t *hub = h->ctx;
    if (!hub->ready) { /* shutdown: this loop has ended, and perhaps the request's too */
        fan_unref(f);
        return;
    }
    if (f->disconnect)
        p->count = hsc_hub_disconnect(hub, f->info.chan);
    else
        hsc_hub_each_subscriber(hub, f->info.chan, count_subject, p);
    hsc_engine_hub_t *back = hub_entry(f, f->origin->index);
    back->sink->call(back->ctx, &p->back);
}

/* Under the engine's lock: the channel's record, and a reference to its handle. */
static void one_each(hsc_channels_t *q, const hsc_chan_info_t *in)
{
    fan_t *f = q->user;
    f->info = *in;
    f->info.name = f->name;
    f->found = true;
}

static void one_done(hsc_channels_t *q)
{
    fan_t *f = q->user;
    if (f->res == NULL) {
        /* the client went away meanwhile */
    } else if (q->rc != 0) {
        fail(f->res, 503, "out of memory");
        fan_answered(f);
    } else if (!f->found) {
        char why[HSC_CHANNEL_MAX + 64];
        snprintf(why, sizeof why, "no such channel: %s (no subscribers, no history)", f->name);
        fail(f->res, 404, why);
        fan_answered(f);
    } else {
        unsigned n = f->nparts;
        atomic_fetch_add_explicit(&f->refs, n, memory_order_relaxed);
        for (unsigned i = 0; i < n; i++) {
            part_t *p = &f->part[i];
            p->fan = f;
            p->index = i;
            p->go.fn = part_go;
            p->back.fn = part_back;
            hsc_engine_hub_t *h = hub_entry(f, i);
            h->sink->call(h->ctx, &p->go);
        }
    }
    fan_unref(f); /* the engine's */
}

static void one_channel(hsc_hub_t *hub, hsc_req_t *req, hsc_res_t *res, bool disconnect)
{
    if (hsc_auth_admin(hub->cfg, req, res) != 0)
        return;
    if (!hsc_engine_can_list(hub->engine)) {
        fail(res, 501, "this channel engine cannot report channels");
        return;
    }
    unsigned n = hub->engine->nhubs;
    fan_t *f = calloc(1, sizeof *f + n * sizeof(part_t));
    if (f == NULL) {
        fail(res, 503, "out of memory");
        return;
    }
    ssize_t nl = channel_param(req, res, "channel", false, f->name);
    size_t limit = nl > 0 && !disconnect ? limit_param(req, res) : PAGE_DEFAULT;
    if (nl < 0 || limit == 0) {
        free(f);
        return;
    }
    if (hub->draining) {
        free(f);
        fail(res, 503, "shutting down");
        return;
    }
    f->origin = hub;
    f->res = res;
    f->disconnect = disconnect;
    f->limit = limit;
    f->nparts = n;
    atomic_init(&f->refs, 2); /* the request's and the engine's */
    res->user = f;
    res->on_close = fan_on_close;
    f->q = (hsc_channels_t){.name = f->name,
                            .name_len = (size_t)nl,
                            .one = true,
                            .limit = 1,
                            .hub = hub->index,
                            .each = one_each,
                            .cb = one_done,
                            .user = f};
    hsc_engine_channels(hub->engine, &f->q);
}

void hsc_admin_channel_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    one_channel(ctx, req, res, false);
}

void hsc_admin_disconnect_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    one_channel(ctx, req, res, true);
}
