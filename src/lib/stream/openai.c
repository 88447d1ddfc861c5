/*
 * The OpenAI-compatible front (docs/openai.md): POST /v1/chat/completions, POST /v1/completions
 * and GET /v1/models in front of whatever responder hscd runs.
 *
 * A request is parsed and rendered to a text by oai.c; from there it is an answer like any other
 * (answer.c): the same admission and queue, cancellation, keep-alive comments, backpressure and
 * counters. What differs is the framing, and that is here: answer.c hands each piece (whole UTF-8
 * characters) to hsc_openai_emit(), which runs the stop-sequence matcher and the max_tokens count
 * and then either writes one `data: {chunk}` event or, for `stream: false`, keeps the text for the
 * one JSON answer written at the end.
 *
 * A chunk is encoded once, in one buffer (the stack's unless the piece is large): the part of the
 * JSON that never changes for an answer is rendered at its start (`prefix`), the piece is escaped
 * after it, and a constant tail closes it. One hsc_res_write() per piece, as on /v1/stream.
 *
 * Ends: the responder's end gives a last chunk with finish_reason ("length" once max_tokens
 * pieces were sent, else "stop"), the usage chunk when asked, then `data: [DONE]`. A stop
 * sequence or max_tokens reached ends the answer from here (hsc_answer_finish_early(): the
 * responder is cancelled). A responder failure ends the stream with `data: {"error": ...}` and no
 * [DONE], which the SDKs raise as an error; without streaming it is a 500 JSON error.
 */
#include "stream/oai.h"
#include "stream/stream.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The longest text kept for a `stream: false` answer; past it the answer ends, "length". */
#define OAI_TEXT_MAX (8u * 1024 * 1024)
/* {"id":..,"created":..,"model":"ESCAPED" */
#define OAI_HEAD_MAX (HSC_OAI_ESCAPED_MAX(HSC_OAI_MODEL_MAX) + 128)

struct hsc_oai_answer_s {
    hsc_oai_req_t req;
    hsc_oai_stop_t stop;
    const char *finish;      /* set once the end is decided: "stop" or "length" */
    uint64_t tokens;         /* pieces taken from the responder */
    char head[OAI_HEAD_MAX]; /* {"id":..,"created":..,"model":.. (no "object": it varies) */
    size_t head_len;
    char prefix[OAI_HEAD_MAX + 128]; /* "data: " head ... "content":" */
    size_t prefix_len;
    char first_prefix[OAI_HEAD_MAX + 160]; /* the same with the role: a chat's first chunk */
    size_t first_len;
    bool sent_first;
    hsc_buf_t text; /* stream: false */
};

static const char chat_tail[] = "\"},\"finish_reason\":null}]}\n\n";
static const char cmpl_tail[] = "\",\"logprobs\":null,\"finish_reason\":null}]}\n\n";

/* ---- models ---------------------------------------------------------------------------------- */

/* The default model name: "hsc-" and the responder's kind. */
static void default_model(const hsc_stream_ctx_t *s, char *out, size_t cap)
{
    snprintf(out, cap, "hsc-%s", hsc_stream_kind(s->responder));
}

/* Whether `name` is one of --model's comma-separated names; the first is copied to `first`. */
static bool model_listed(const char *list, const char *name, char *first, size_t cap)
{
    bool found = false;
    size_t nlen = strlen(name);
    first[0] = '\0';
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (first[0] == '\0' && len > 0 && len < cap)
            memcpy(first, p, len), first[len] = '\0';
        if (len == nlen && nlen > 0 && memcmp(p, name, len) == 0)
            found = true;
        p += len + (end ? 1 : 0);
    }
    return found;
}

void hsc_openai_models_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    hsc_stream_ctx_t *s = ctx;
    res->json_errors = true;
    if (hsc_auth_require(s->rl.cfg, req, res, HSC_AUTH_STREAM, NULL, 0, 0) != 0)
        return;
    char def[64];
    default_model(s, def, sizeof def);
    const char *list = s->rl.cfg->model ? s->rl.cfg->model : def;
    json_t *data = json_array();
    for (const char *p = list; data != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0)
            json_array_append_new(data, json_pack("{s:s%,s:s,s:i,s:s}", "id", p, len, "object",
                                                  "model", "created", 0, "owned_by", "hsc"));
        p += len + (end ? 1 : 0);
    }
    json_t *j = data ? json_pack("{s:s,s:o}", "object", "list", "data", data) : NULL;
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (body == NULL)
        hsc_res_error(res, 503, "Retry-After: 1\r\n", "out of memory", false);
    else
        hsc_res_send(res, 200, "application/json", "Cache-Control: no-store\r\n", body,
                     strlen(body));
    free(body);
}

/* ---- the request ----------------------------------------------------------------------------- */

/* The fixed parts of every chunk, rendered once per answer. */
/* Appends `n` bytes at `*o` (the callers' buffers are sized for the longest case). */
static void put(char *buf, size_t *o, const char *s, size_t n)
{
    memcpy(buf + *o, s, n);
    *o += n;
}

#define PUT(buf, o, lit) put(buf, o, lit, sizeof lit - 1)

static void render_parts(struct hsc_oai_answer_s *o, const char *model, uint64_t id)
{
    bool chat = o->req.kind == HSC_OAI_CHAT;
    char num[96];
    long long created = (long long)time(NULL);
    /* "object" is left for last so that the stream and the single answer share the rest. Built
     * with copies: it is done for every answer, and snprintf is slow at it. */
    size_t n = 0;
    PUT(o->head, &n, "{\"id\":\"");
    if (chat)
        PUT(o->head, &n, "chatcmpl-");
    else
        PUT(o->head, &n, "cmpl-");
    put(o->head, &n, num,
        (size_t)snprintf(num, sizeof num, "%llx%llx\",\"created\":%lld",
                         (unsigned long long)created, (unsigned long long)id, created));
    PUT(o->head, &n, ",\"model\":\"");
    n += hsc_oai_escape(o->head + n, model, strlen(model));
    PUT(o->head, &n, "\"");
    o->head[n] = '\0';
    o->head_len = n;

    size_t p = 0;
    PUT(o->prefix, &p, "data: ");
    put(o->prefix, &p, o->head, o->head_len);
    if (chat)
        PUT(o->prefix, &p, ",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,");
    else
        PUT(o->prefix, &p, ",\"object\":\"text_completion\",\"choices\":[{\"index\":0,");
    size_t common = p;
    memcpy(o->first_prefix, o->prefix, common);
    if (chat)
        PUT(o->prefix, &p, "\"delta\":{\"content\":\"");
    else
        PUT(o->prefix, &p, "\"text\":\"");
    o->prefix_len = p;
    if (chat)
        PUT(o->first_prefix, &common, "\"delta\":{\"role\":\"assistant\",\"content\":\"");
    else
        PUT(o->first_prefix, &common, "\"text\":\"");
    o->first_len = common;
}

static void bad_request(hsc_res_t *res, const char *why, const char *param, const char *code)
{
    hsc_res_json_error(res, 400, NULL, why, "invalid_request_error", param, code);
}

static void handle(hsc_stream_ctx_t *s, hsc_req_t *req, hsc_res_t *res, hsc_oai_kind_t kind)
{
    const hsc_server_config_t *cfg = s->rl.cfg;
    res->json_errors = true;
    if (hsc_auth_require(cfg, req, res, HSC_AUTH_STREAM, NULL, 0, 0) != 0)
        return;
    /* Not calloc: most of it is text buffers written below; the rest is set here or by parse. */
    struct hsc_oai_answer_s *o = malloc(sizeof *o);
    if (o == NULL) {
        hsc_res_error(res, 503, "Retry-After: 1\r\n", "out of memory", false);
        return;
    }
    const char *why, *param;
    int rc = hsc_oai_req_parse(&o->req, kind, req->body.data ? req->body.data : "", req->body.len,
                               &why, &param);
    if (rc != 0) {
        if (rc == HSC_EINVAL)
            bad_request(res, why, param, NULL);
        else
            hsc_res_error(res, 503, "Retry-After: 1\r\n", "out of memory", false);
        free(o);
        return;
    }
    char def[HSC_OAI_MODEL_MAX + 1];
    const char *model = o->req.model;
    if (cfg->model != NULL) {
        bool listed = model_listed(cfg->model, o->req.model, def, sizeof def);
        if (o->req.model[0] == '\0') {
            model = def;
        } else if (!listed) {
            char msg[HSC_OAI_MODEL_MAX + 64];
            snprintf(msg, sizeof msg, "the model '%s' does not exist here (GET /v1/models)",
                     o->req.model);
            hsc_res_json_error(res, 404, NULL, msg, "invalid_request_error", "model",
                               "model_not_found");
            hsc_oai_req_dispose(&o->req);
            free(o);
            return;
        }
    } else if (model[0] == '\0') {
        default_model(s, def, sizeof def);
        model = def;
    }
    o->finish = NULL;
    o->tokens = 0;
    o->sent_first = false;
    render_parts(o, model, req->id);
    hsc_oai_stop_init(&o->stop, &o->req);
    hsc_buf_init(&o->text, OAI_TEXT_MAX);
    hsc_answer_begin(s, req, res, o->req.prompt, o->req.prompt_len, o);
}

void hsc_openai_chat_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    handle(ctx, req, res, HSC_OAI_CHAT);
}

void hsc_openai_completions_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    handle(ctx, req, res, HSC_OAI_COMPLETIONS);
}

void hsc_openai_attach(hsc_answer_t *a, struct hsc_oai_answer_s *o)
{
    a->oai = o;
    a->sse = o->req.stream;
    a->api = o->req.kind == HSC_OAI_CHAT ? "chat" : "completions";
    a->max_tokens = o->req.max_tokens;
}

const char *hsc_openai_request_json(struct hsc_oai_answer_s *o, size_t *len)
{
    return hsc_oai_req_json(&o->req, len);
}

void hsc_openai_free(struct hsc_oai_answer_s *o)
{
    if (o == NULL)
        return;
    hsc_oai_req_dispose(&o->req);
    hsc_buf_dispose(&o->text);
    free(o);
}

/* ---- pieces ---------------------------------------------------------------------------------- */

/* One content chunk (stream) or more of the kept text. */
static int send_text(hsc_answer_t *a, const char *p, size_t n)
{
    struct hsc_oai_answer_s *o = a->oai;
    if (n == 0)
        return 0;
    if (!a->sse) {
        int rc = hsc_buf_append(&o->text, p, n);
        if (rc == HSC_ETOOBIG) {
            o->finish = "length";
            hsc_answer_finish_early(a);
            return HSC_ECLOSED;
        }
        return rc;
    }
    bool chat = o->req.kind == HSC_OAI_CHAT;
    const char *pre = o->sent_first ? o->prefix : o->first_prefix;
    size_t pre_len = o->sent_first ? o->prefix_len : o->first_len;
    const char *tail = chat ? chat_tail : cmpl_tail;
    size_t tail_len = chat ? sizeof chat_tail - 1 : sizeof cmpl_tail - 1;
    size_t need = pre_len + HSC_OAI_ESCAPED_MAX(n) + tail_len;
    char stack[8192];
    char *buf = need <= sizeof stack ? stack : malloc(need);
    if (buf == NULL)
        return HSC_ENOMEM;
    memcpy(buf, pre, pre_len);
    size_t len = pre_len + hsc_oai_escape(buf + pre_len, p, n);
    memcpy(buf + len, tail, tail_len);
    len += tail_len;
    o->sent_first = true;
    int rc = hsc_res_write(a->res, buf, len);
    if (buf != stack)
        free(buf);
    return rc;
}

int hsc_openai_emit(hsc_answer_t *a, const char *p, size_t n)
{
    struct hsc_oai_answer_s *o = a->oai;
    if (o->req.max_tokens > 0 && o->tokens >= o->req.max_tokens) {
        o->finish = "length"; /* the responder did not stop at max_tokens: hscd does */
        hsc_answer_finish_early(a);
        return HSC_ECLOSED;
    }
    o->tokens++;
    if (o->req.nstops == 0)
        return send_text(a, p, n);
    char stack[4096];
    size_t cap = HSC_OAI_STOP_MAX + n;
    char *scratch = cap <= sizeof stack ? stack : malloc(cap);
    if (scratch == NULL)
        return HSC_ENOMEM;
    const char *out;
    size_t out_len;
    bool stopped = hsc_oai_stop_feed(&o->stop, p, n, scratch, &out, &out_len);
    int rc = send_text(a, out, out_len);
    if (scratch != stack)
        free(scratch);
    if (stopped && rc == 0 && !a->finished) {
        o->finish = "stop";
        hsc_answer_finish_early(a);
        return HSC_ECLOSED;
    }
    return rc;
}

/* ---- ends ------------------------------------------------------------------------------------ */

static int usage_json(const struct hsc_oai_answer_s *o, char *out, size_t cap)
{
    uint64_t prompt = hsc_oai_count_words(o->req.prompt, o->req.prompt_len);
    return snprintf(out, cap,
                    "\"usage\":{\"prompt_tokens\":%llu,\"completion_tokens\":%llu,"
                    "\"total_tokens\":%llu}",
                    (unsigned long long)prompt, (unsigned long long)o->tokens,
                    (unsigned long long)(prompt + o->tokens));
}

static void request_id_header(const hsc_answer_t *a, char *out, size_t cap)
{
    snprintf(out, cap, "Cache-Control: no-store\r\nX-Request-Id: %llu\r\n",
             (unsigned long long)a->req->id);
}

/* stream: false: the whole answer as one JSON object. */
static void send_whole(hsc_answer_t *a, const char *finish)
{
    struct hsc_oai_answer_s *o = a->oai;
    bool chat = o->req.kind == HSC_OAI_CHAT;
    char usage[160];
    usage_json(o, usage, sizeof usage);
    size_t cap = o->head_len + HSC_OAI_ESCAPED_MAX(o->text.len) + sizeof usage + 256;
    char *body = malloc(cap);
    char extra[96];
    request_id_header(a, extra, sizeof extra);
    if (body == NULL) {
        hsc_res_error(a->res, 503, "Retry-After: 1\r\n", "out of memory", false);
        return;
    }
    size_t n = (size_t)snprintf(body, cap, "%s,\"object\":\"%s\",\"choices\":[{\"index\":0,%s",
                                o->head, chat ? "chat.completion" : "text_completion",
                                chat ? "\"message\":{\"role\":\"assistant\",\"content\":\""
                                     : "\"text\":\"");
    n += hsc_oai_escape(body + n, o->text.data ? o->text.data : "", o->text.len);
    n +=
        (size_t)snprintf(body + n, cap - n, "\"%s,\"logprobs\":null,\"finish_reason\":\"%s\"}],%s}",
                         chat ? "}" : "", finish, usage);
    hsc_res_send(a->res, 200, "application/json", extra, body, n);
    free(body);
}

void hsc_openai_complete(hsc_answer_t *a)
{
    struct hsc_oai_answer_s *o = a->oai;
    size_t held_len;
    const char *held = hsc_oai_stop_flush(&o->stop, &held_len);
    if (held_len > 0)
        send_text(a, held, held_len); /* never a stop sequence after all */
    const char *finish = o->finish;
    if (finish == NULL)
        finish = o->req.max_tokens > 0 && o->tokens >= o->req.max_tokens ? "length" : "stop";
    if (!a->sse) {
        send_whole(a, finish);
        return;
    }
    /* The last chunk, the usage when asked, [DONE]: one write. */
    /* Sized for both chunks with the longest head (a 256-byte model name escaped six times). */
    char buf[2 * sizeof o->head + 512];
    const char *obj = o->req.kind == HSC_OAI_CHAT ? "chat.completion.chunk" : "text_completion";
    size_t n = (size_t)snprintf(
        buf, sizeof buf,
        "data: %s,\"object\":\"%s\",\"choices\":[{\"index\":0,%s\"finish_reason\":\"%s\"}]}\n\n",
        o->head, obj,
        o->req.kind == HSC_OAI_CHAT ? "\"delta\":{}," : "\"text\":\"\",\"logprobs\":null,", finish);
    if (o->req.include_usage) {
        char usage[160];
        usage_json(o, usage, sizeof usage);
        n += (size_t)snprintf(buf + n, sizeof buf - n,
                              "data: %s,\"object\":\"%s\",\"choices\":[],%s}\n\n", o->head, obj,
                              usage);
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n, "data: [DONE]\n\n");
    hsc_res_write(a->res, buf, n);
    hsc_res_end(a->res);
}

void hsc_openai_fail(hsc_answer_t *a, const char *why)
{
    /* A pool worker's error frame may hold any bytes: JSON needs text. */
    char reason[3 * 256 + 1];
    size_t wl = strlen(why);
    reason[hsc_utf8_repair(reason, why, wl < 256 ? wl : 256)] = '\0';
    if (!a->sse) {
        hsc_res_json_error(a->res, 500, NULL, reason, "server_error", NULL, "responder_failed");
        return;
    }
    json_t *j = json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", reason, "type",
                          "server_error", "param", "code", "responder_failed");
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    static const char fallback[] =
        "{\"error\":{\"message\":\"the responder failed\",\"type\":"
        "\"server_error\",\"param\":null,\"code\":\"responder_failed\"}}";
    const char *body = s ? s : fallback;
    size_t len = strlen(body);
    char *ev = malloc(len + 8);
    if (ev != NULL) {
        memcpy(ev, "data: ", 6);
        memcpy(ev + 6, body, len);
        memcpy(ev + 6 + len, "\n\n", 2);
        hsc_res_write(a->res, ev, len + 8);
    }
    free(ev);
    free(s);
    hsc_res_end(a->res); /* no [DONE]: the client knows it failed */
}
