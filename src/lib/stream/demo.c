/*
 * The built-in demo responder, the template's FakeResponser made useful: --max-gen-len pieces,
 * one every --interval (the first at once), each echoing the request text with a counter and
 * multi-byte UTF-8 around it, as a language model would emit tokens. It honours backpressure: when
 * the client's queue is above its high mark the timer stops until the answer's resume callback.
 *
 * Each piece is a line, newline included, so that the plain form (the template's GET included)
 * reads as lines; the SSE form keeps the newline in each event's data (an empty last "data:"
 * line), so that the events' data joined is the plain body (docs/api.md). An answer of the OpenAI
 * front has at most its max_tokens pieces.
 */
#include "stream/stream.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct demo_s {
    uv_timer_t timer;
    hsc_answer_t *a; /* NULL once the answer has ended or been cancelled */
    unsigned next, total;
    bool waiting;
} demo_t;

static void demo_closed(uv_handle_t *h)
{
    free(h->data);
}

static void demo_stop(demo_t *d)
{
    d->a = NULL;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, demo_closed);
}

/* Writes the next piece; returns false when the demo is over (ended, failed or cancelled). */
static bool demo_piece(demo_t *d)
{
    hsc_answer_t *a = d->a;
    d->next++;
    size_t cap = a->text_len + 64;
    char stack[1024];
    char *piece = cap <= sizeof stack ? stack : malloc(cap);
    if (piece == NULL) {
        demo_stop(d);
        hsc_answer_fail(a, "out of memory");
        return false;
    }
    int n = snprintf(piece, cap, "[%u/%u] «%s» → 回声 ✓\n", d->next, d->total, a->text);
    int rc = hsc_answer_write(a, piece, (size_t)n);
    if (piece != stack)
        free(piece);
    if (rc != 0)
        return false; /* the connection is closing: cancel() follows */
    if (d->next == d->total) {
        demo_stop(d);
        hsc_answer_end(a);
        return false;
    }
    return true;
}

static void demo_tick(uv_timer_t *t)
{
    demo_t *d = t->data;
    /*
     * --interval 0: every piece exists at once, so they leave together: the connection is corked
     * while they are written (each still its own chunk or event) and sent in one writev(). Only
     * as many as the client's queue takes; the rest when it drains (demo_resume).
     */
    bool burst = d->a->cfg->interval_ms == 0;
    hsc_res_t *res = d->a->res; /* the answer may end in the loop; the response stays this turn */
    if (burst)
        hsc_res_cork(res);
    do {
        if (!hsc_answer_writable(d->a)) {
            uv_timer_stop(&d->timer);
            d->waiting = true;
            break;
        }
    } while (demo_piece(d) && burst);
    if (burst)
        hsc_res_uncork(res);
}

static int demo_start(hsc_answer_t *a)
{
    demo_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return HSC_ENOMEM;
    d->a = a;
    d->total = a->cfg->max_gen_len;
    if (a->max_tokens > 0 && a->max_tokens < d->total) /* the OpenAI front's max_tokens */
        d->total = (unsigned)a->max_tokens;
    a->state = d;
    uv_timer_init(a->loop, &d->timer);
    d->timer.data = d;
    if (d->total == 0) {
        demo_stop(d);
        hsc_answer_end(a);
        return 0;
    }
    uv_timer_start(&d->timer, demo_tick, 0, a->cfg->interval_ms);
    return 0;
}

static void demo_resume(hsc_answer_t *a)
{
    demo_t *d = a->state;
    if (d->waiting) {
        d->waiting = false;
        uv_timer_start(&d->timer, demo_tick, 0, a->cfg->interval_ms);
    }
}

static void demo_cancel(hsc_answer_t *a)
{
    demo_stop(a->state);
}

const hsc_responder_t hsc_demo_responder = {"demo", demo_start, demo_resume, demo_cancel, NULL};
