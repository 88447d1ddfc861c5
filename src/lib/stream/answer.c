/*
 * Answers: the /v1/stream endpoint (and the legacy GET /<text> form) between a client and a
 * responder. An answer takes the request text, chooses the wire form from the Accept header, sends
 * the headers at once, and then turns each piece the responder produces into a chunk of
 * text/plain or one SSE event.
 *
 * How a client tells a complete answer from a failed one (docs/api.md):
 * - text/plain, chunked: complete answers end with the last chunk; failed ones are cut without it
 *   (HTTP/1.0: a reset instead of an orderly close).
 * - text/event-stream: complete answers end with an `event: done` (data: JSON with piece and byte
 *   counts); failed ones with an `event: error` whose data is the reason.
 *
 * Lifetime: an answer is created here and freed by hsc_answer_end(), hsc_answer_fail() or, when
 * the client goes away first, by on_close after the responder's cancel().
 *
 * Each loop has a stream context (hsc_stream_ctx_t, embedded in the server's worker): the
 * responder and its view of the loop, whose state the responder keeps through its loop hooks
 * (loop_start, loop_drain, loop_free; include/hsc/responder.h). The handlers get that context,
 * never the server.
 */
#include "stream/stream.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- counters ----------------------------------------------------------------------------------
 */

const char *hsc_stream_kind(const hsc_responder_t *r)
{
    if (r == &hsc_demo_responder)
        return "demo";
    if (r == &hsc_exec_responder)
        return "exec";
    if (r == &hsc_pool_responder)
        return "pool";
    return "callback";
}

/* The answer is over, completed or failed: its duration. */
static void observe_end(hsc_answer_t *a)
{
    if (a->started_ns != 0)
        hsc_timing_observe(&a->ctx->st.duration, uv_hrtime() - a->started_ns);
}

static void answer_closed(uv_handle_t *h)
{
    hsc_answer_t *a = h->data;
    hsc_openai_free(a->oai);
    free(a->text);
    free(a);
}

/* The keep-alive timer is the answer's only handle: the answer is freed in its close callback. */
static void answer_free(hsc_answer_t *a)
{
    uv_close((uv_handle_t *)&a->keepalive, answer_closed);
}

/* The keep-alive comment channels send too (HSC_SSE_KEEPALIVE). */
static void write_comment(hsc_answer_t *a)
{
    hsc_res_write(a->res, HSC_SSE_KEEPALIVE, HSC_SSE_KEEPALIVE_LEN);
}

/* SSE: while the responder is silent (a model's prefill, a queue wait), a comment line every
 * --keepalive keeps proxies and clients from timing the stream out. */
static void on_keepalive(uv_timer_t *t)
{
    hsc_answer_t *a = t->data;
    if (a->pieces == a->pieces_at_last_tick && hsc_res_writable(a->res))
        write_comment(a);
    a->pieces_at_last_tick = a->pieces;
}

const char *hsc_answer_text(const hsc_answer_t *a, size_t *len)
{
    if (len != NULL)
        *len = a->text_len;
    return a->text;
}

uv_loop_t *hsc_answer_loop(const hsc_answer_t *a)
{
    return a->loop;
}

uint64_t hsc_answer_id(const hsc_answer_t *a)
{
    return a->req->id;
}

const char *hsc_answer_request_json(const hsc_answer_t *a, size_t *len)
{
    if (a->oai == NULL) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    return hsc_openai_request_json(a->oai, len);
}

uint64_t hsc_answer_max_tokens(const hsc_answer_t *a)
{
    return a->max_tokens;
}

bool hsc_answer_is_sse(const hsc_answer_t *a)
{
    return a->sse;
}

void *hsc_answer_data(const hsc_answer_t *a)
{
    return a->state;
}

void hsc_answer_set_data(hsc_answer_t *a, void *data)
{
    a->state = data;
}

void *hsc_answer_responder_data(const hsc_answer_t *a)
{
    return a->cfg->responder_data;
}

void *hsc_answer_loop_data(const hsc_answer_t *a)
{
    return a->ctx->rl.data;
}

static void on_close(hsc_res_t *res, void *user)
{
    (void)res;
    hsc_answer_t *a = user;
    HSC_LOG(HSC_LOG_INFO, "req %llu: cancelled after %u piece(s)", (unsigned long long)a->req->id,
            a->pieces);
    HSC_STAT_ADD(a->ctx->st.cancelled, 1);
    if (a->responder->cancel != NULL)
        a->responder->cancel(a);
    answer_free(a);
}

static void on_drain(hsc_res_t *res, void *user)
{
    (void)res;
    hsc_answer_t *a = user;
    if (a->responder->resume != NULL)
        a->responder->resume(a);
}

/* Encodes one SSE event and writes it as body bytes. */
static int write_event(hsc_answer_t *a, const char *type, const void *data, size_t len)
{
    hsc_sse_event_t ev = {type, NULL, data, len, -1};
    char stack[4096];
    ssize_t n = hsc_sse_encode(stack, sizeof stack, &ev);
    if (n < 0)
        return (int)n;
    if ((size_t)n <= sizeof stack)
        return hsc_res_write(a->res, stack, (size_t)n);
    char *heap = malloc((size_t)n);
    if (heap == NULL)
        return HSC_ENOMEM;
    hsc_sse_encode(heap, (size_t)n, &ev);
    int rc = hsc_res_write(a->res, heap, (size_t)n);
    free(heap);
    return rc;
}

/* One piece as a chunk or an SSE event; counts only what reaches the client. */
static int emit(hsc_answer_t *a, const void *p, size_t n)
{
    if (a->pieces == 0 && a->started_ns != 0)
        hsc_timing_observe(&a->ctx->st.first_piece, uv_hrtime() - a->started_ns);
    a->pieces++;
    a->bytes += n;
    if (a->oai != NULL)
        return hsc_openai_emit(a, p, n);
    if (a->sse)
        return write_event(a, NULL, p, n);
    return hsc_res_write(a->res, p, n);
}

/*
 * An SSE event must not end inside a UTF-8 character (a client would show two U+FFFD), so the
 * start of a character cut at the end of a piece is held back and joined to the next piece;
 * whatever is still held at the end goes out as it is. Plain text is passed through: the client
 * decodes the byte stream itself.
 */
static int write_sse(hsc_answer_t *a, const void *p, size_t n)
{
    const char *data = p;
    char *joined = NULL;
    if (a->carry_len > 0) {
        joined = malloc(a->carry_len + n);
        if (joined == NULL)
            return HSC_ENOMEM;
        memcpy(joined, a->carry, a->carry_len);
        memcpy(joined + a->carry_len, p, n);
        data = joined;
        n += a->carry_len;
    }
    size_t ok = hsc_utf8_complete_prefix(data, n);
    a->carry_len = n - ok;
    memcpy(a->carry, data + ok, a->carry_len);
    int rc = ok > 0 ? emit(a, data, ok) : 0;
    free(joined);
    return rc;
}

/* A piece that cannot be sent whole ends the answer: the connection closes (a client never
 * takes a stream with a hole for a complete one) and cancel() follows, whatever the error. */
int hsc_answer_write(hsc_answer_t *a, const void *p, size_t n)
{
    if (a->finished)
        return HSC_ECLOSED; /* the front has ended it: cancel() follows */
    if (n == 0)
        return 0;
    int rc = a->sse ? write_sse(a, p, n) : emit(a, p, n);
    if (rc != 0 && !a->finished)
        hsc_res_close(a->res);
    return rc;
}

/* An answer of the OpenAI front is over, completed or ended early (a stop sequence, max_tokens):
 * its last chunks and [DONE], or its one JSON answer, and then it is freed. */
static void complete(hsc_answer_t *a)
{
    uv_timer_stop(&a->keepalive);
    hsc_openai_complete(a);
    HSC_STAT_ADD(a->ctx->st.completed, 1);
    observe_end(a);
    answer_free(a);
}

/* The front's early end, on the loop turn after it: the responder is cancelled (it had no chance to
 * end by itself in between), then the answer completes. */
static void on_finish_early(uv_timer_t *t)
{
    hsc_answer_t *a = t->data;
    HSC_LOG(HSC_LOG_INFO,
            "req %llu: ended by the front after %u piece(s), cancelling the responder",
            (unsigned long long)a->req->id, a->pieces);
    if (a->responder->cancel != NULL)
        a->responder->cancel(a);
    complete(a);
}

void hsc_answer_finish_early(hsc_answer_t *a)
{
    a->finished = true;
    uv_timer_start(&a->keepalive, on_finish_early, 0, 0);
}

bool hsc_answer_writable(hsc_answer_t *a)
{
    return hsc_res_writable(a->res);
}

void hsc_answer_end(hsc_answer_t *a)
{
    if (a->finished) { /* the responder ended before its cancel: no need for it */
        complete(a);
        return;
    }
    if (a->oai != NULL) {
        if (a->carry_len > 0)
            emit(a, a->carry, a->carry_len);
        if (!a->finished)
            HSC_LOG(HSC_LOG_INFO, "req %llu: complete, %u piece(s), %llu bytes",
                    (unsigned long long)a->req->id, a->pieces, (unsigned long long)a->bytes);
        complete(a);
        return;
    }
    HSC_LOG(HSC_LOG_INFO, "req %llu: complete, %u piece(s), %llu bytes",
            (unsigned long long)a->req->id, a->pieces, (unsigned long long)a->bytes);
    if (a->carry_len > 0)
        emit(a, a->carry, a->carry_len); /* a character cut for good: the client shows U+FFFD */
    if (a->sse) {
        json_t *j = json_pack("{s:i,s:I}", "pieces", (int)a->pieces, "bytes", (json_int_t)a->bytes);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        write_event(a, "done", s ? s : "{}", s ? strlen(s) : 2);
        free(s);
        json_decref(j);
    }
    hsc_res_end(a->res);
    HSC_STAT_ADD(a->ctx->st.completed, 1);
    observe_end(a);
    answer_free(a);
}

void hsc_answer_fail(hsc_answer_t *a, const char *reason)
{
    if (a->finished) { /* the front had ended it already: what failed after does not count */
        complete(a);
        return;
    }
    HSC_LOG(HSC_LOG_WARN, "req %llu: failed after %u piece(s): %s", (unsigned long long)a->req->id,
            a->pieces, reason);
    if (a->oai != NULL) {
        uv_timer_stop(&a->keepalive);
        hsc_openai_fail(a, reason);
    } else if (a->sse) {
        write_event(a, "error", reason, strlen(reason));
        hsc_res_end(a->res);
    } else {
        hsc_res_abort(a->res);
    }
    HSC_STAT_ADD(a->ctx->st.failed, 1);
    observe_end(a);
    answer_free(a);
}

static void start_answer(hsc_stream_ctx_t *ctx, hsc_req_t *req, hsc_res_t *res, const char *text,
                         size_t len)
{
    hsc_answer_begin(ctx, req, res, text, len, NULL);
}

void hsc_answer_begin(hsc_stream_ctx_t *ctx, hsc_req_t *req, hsc_res_t *res, const char *text,
                      size_t len, struct hsc_oai_answer_s *oai)
{
    hsc_answer_t *a = NULL;
    char *copy = NULL;
    if (ctx->start_rc != 0) {
        hsc_res_error(res, 503, "Retry-After: 1\r\n",
                      "the responder is not available on this thread; retry later", false);
    } else if (len == 0) {
        hsc_res_error(res, 400, NULL, "the request text is empty", false);
    } else if (!hsc_utf8_valid(text, len)) {
        hsc_res_error(res, 400, NULL, "the request text is not valid UTF-8", false);
    } else if ((a = calloc(1, sizeof *a)) == NULL || (copy = malloc(len + 1)) == NULL) {
        hsc_res_error(res, 503, "Retry-After: 1\r\n", "out of memory", false);
    }
    if (copy == NULL) {
        free(a);
        hsc_openai_free(oai);
        return;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    a->text = copy;
    a->text_len = len;
    a->req = req;
    a->res = res;
    a->ctx = ctx;
    a->loop = ctx->rl.loop;
    a->cfg = ctx->rl.cfg;
    a->sse = hsc_req_accepts(req, "text/event-stream");
    a->responder = ctx->responder;
    uv_timer_init(a->loop, &a->keepalive);
    a->keepalive.data = a;
    if (oai != NULL) /* from here the answer holds it */
        hsc_openai_attach(a, oai);
    if (a->responder->admit != NULL && a->responder->admit(a) != 0) {
        /* OpenAI clients back off and retry on 429; /v1/stream has always said 503 */
        hsc_res_error(res, a->oai ? 429 : 503, "Retry-After: 1\r\n",
                      "all responders are busy and the queue is full; retry later", false);
        answer_free(a);
        return;
    }

    char extra[160];
    snprintf(extra, sizeof extra,
             "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nX-Request-Id: %llu\r\n",
             (unsigned long long)req->id);
    const char *type = a->sse ? "text/event-stream; charset=utf-8" : "text/plain; charset=utf-8";
    bool later = a->oai != NULL && !a->sse; /* one JSON answer: its status is known at the end */
    if (!later && (hsc_res_start(res, 200, type, extra, HSC_STREAMING) != 0 || req->head_only)) {
        hsc_res_end(res);
        answer_free(a);
        return;
    }
    res->on_close = on_close;
    res->on_drain = on_drain;
    res->user = a;
    if (a->sse && a->cfg->keepalive_ms > 0) {
        write_comment(a); /* at once: proxies flush the headers, clients see the stream live */
        uv_timer_start(&a->keepalive, on_keepalive, a->cfg->keepalive_ms, a->cfg->keepalive_ms);
    }
    HSC_STAT_ADD(ctx->st.started, 1);
    a->started_ns = uv_hrtime();
    int rc = a->responder->start(a);
    if (rc != 0) {
        char reason[128];
        snprintf(reason, sizeof reason, "the %s responder could not start: %s", a->responder->name,
                 hsc_strerror(rc));
        hsc_answer_fail(a, reason);
    }
}

void hsc_stream_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    hsc_stream_ctx_t *s = ctx;
    if (hsc_auth_require(s->rl.cfg, req, res, HSC_AUTH_STREAM, NULL, 0, 0) != 0)
        return;
    if (req->method == HSC_M_POST) {
        start_answer(s, req, res, req->body.data ? req->body.data : "", req->body.len);
        return;
    }
    char *q = malloc(req->query_len + 1);
    if (q == NULL) {
        hsc_res_error(res, 503, "Retry-After: 1\r\n", "out of memory", false);
        return;
    }
    ssize_t n = req->query ? hsc_query_get(req->query, req->query_len, "q", q, req->query_len + 1)
                           : HSC_ENOTFOUND;
    if (n == HSC_ENOTFOUND)
        hsc_res_error(res, 400, NULL,
                      "missing the request text: use GET /v1/stream?q=TEXT or POST it as the body",
                      false);
    else if (n < 0)
        hsc_res_error(res, 400, NULL, "bad percent-encoding in the query string", false);
    else
        start_answer(s, req, res, q, (size_t)n);
    free(q);
}

void hsc_legacy_handle(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    hsc_stream_ctx_t *s = ctx;
    if (hsc_auth_require(s->rl.cfg, req, res, HSC_AUTH_STREAM, NULL, 0, 0) != 0)
        return;
    if (req->path_len < 1 || req->path[0] != '/') {
        hsc_res_error(res, 400, NULL, "the request target must start with '/'", false);
        return;
    }
    char *text = malloc(req->path_len);
    if (text == NULL) {
        hsc_res_error(res, 503, "Retry-After: 1\r\n", "out of memory", false);
        return;
    }
    ssize_t n = hsc_url_decode(text, req->path + 1, req->path_len - 1, 0);
    if (n < 0)
        hsc_res_error(res, 400, NULL, "bad percent-encoding in the path", false);
    else
        start_answer(s, req, res, text, (size_t)n);
    free(text);
}

/* ---- the stream context of one loop ---------------------------------------------------------- */

const hsc_responder_t *hsc_stream_responder(const hsc_server_config_t *cfg)
{
    if (cfg->responder != NULL)
        return cfg->responder;
    if (cfg->exec != NULL)
        return cfg->pool > 0 ? &hsc_pool_responder : &hsc_exec_responder;
    return &hsc_demo_responder;
}

unsigned hsc_stream_max_loops(const hsc_responder_t *r, const hsc_server_config_t *cfg)
{
    /* Each pool process belongs to one loop: never more loops than processes. */
    return r == &hsc_pool_responder ? cfg->pool : UINT_MAX;
}

void hsc_stream_init(hsc_stream_ctx_t *s, const hsc_responder_t *r, uv_loop_t *loop,
                     const hsc_server_config_t *cfg, unsigned index, unsigned nloops)
{
    memset(s, 0, sizeof *s);
    s->responder = r;
    s->rl.loop = loop;
    s->rl.cfg = cfg;
    s->rl.index = index;
    s->rl.nloops = nloops;
}

void hsc_stream_start(hsc_stream_ctx_t *s)
{
    s->started = true;
    if (s->responder->loop_start == NULL)
        return;
    s->start_rc = s->responder->loop_start(&s->rl);
    if (s->start_rc != 0)
        HSC_LOG(HSC_LOG_ERROR, "worker %u: the %s responder cannot start on this thread: %s",
                s->rl.index, s->responder->name, hsc_strerror(s->start_rc));
}

void hsc_stream_drain(hsc_stream_ctx_t *s)
{
    if (s->started && s->start_rc == 0 && s->responder->loop_drain != NULL)
        s->responder->loop_drain(&s->rl);
}

void hsc_stream_dispose(hsc_stream_ctx_t *s)
{
    if (s->started && s->start_rc == 0 && s->responder->loop_free != NULL)
        s->responder->loop_free(&s->rl);
    s->started = false;
    s->rl.data = NULL;
}
