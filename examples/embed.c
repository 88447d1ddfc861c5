/*
 * Embedding hsc: a C program that links libhsc and answers /v1/stream with its own responder,
 * producing pieces asynchronously on the server's loop (here: one word of the request text every
 * 100 ms, reversed, as a stand-in for a model emitting tokens).
 *
 *     build/embed --listen 127.0.0.1:8000 &
 *     curl -N 'http://127.0.0.1:8000/v1/stream?q=streams+of+words'
 *
 * The same responder answers the OpenAI-compatible front (POST /v1/chat/completions and
 * /v1/completions, docs/openai.md) and honours its max_tokens; a real model wrapper would read the
 * whole request with hsc_answer_request_json() to apply its own chat template.
 *
 * `build/embed --help` says so; an unknown flag or a bad address exits 2, as hscd does.
 */
#include <hsc/responder.h>
#include <hsc/server.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct words_s {
    uv_timer_t timer;
    hsc_answer_t *answer; /* NULL once the answer ended or the client left */
    const char *next;     /* the rest of the request text */
    bool limited;         /* the client set max_tokens ... */
    uint64_t left;        /* ... and wants this many more pieces */
} words_t;

static void words_closed(uv_handle_t *h)
{
    free(h->data);
}

static void words_stop(words_t *w)
{
    w->answer = NULL;
    uv_close((uv_handle_t *)&w->timer, words_closed);
}

static void words_tick(uv_timer_t *t)
{
    words_t *w = t->data;
    hsc_answer_t *a = w->answer;
    if (!hsc_answer_writable(a)) {
        uv_timer_stop(&w->timer); /* the client is slow: wait for resume() */
        return;
    }
    while (*w->next == ' ')
        w->next++;
    if (*w->next == '\0' || (w->limited && w->left == 0)) {
        words_stop(w);
        hsc_answer_end(a); /* complete: the last chunk, or `event: done` */
        return;
    }
    size_t len = strcspn(w->next, " ");
    char piece[256];
    size_t n = len < sizeof piece - 2 ? len : sizeof piece - 2;
    for (size_t i = 0; i < n; i++)
        piece[i] = w->next[n - 1 - i]; /* bytes reversed: ASCII only in this toy */
    piece[n] = '\n';
    w->next += len;
    w->left--;
    hsc_answer_write(a, piece, n + 1);
}

static int words_start(hsc_answer_t *a)
{
    words_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return HSC_ENOMEM;
    w->answer = a;
    w->next = hsc_answer_text(a, NULL);
    w->left = hsc_answer_max_tokens(a);
    w->limited = w->left > 0;
    w->timer.data = w;
    uv_timer_init(hsc_answer_loop(a), &w->timer);
    hsc_answer_set_data(a, w);
    uv_timer_start(&w->timer, words_tick, 0, 100);
    return 0;
}

static void words_resume(hsc_answer_t *a)
{
    words_t *w = hsc_answer_data(a);
    uv_timer_start(&w->timer, words_tick, 0, 100);
}

static void words_cancel(hsc_answer_t *a)
{
    words_stop(hsc_answer_data(a)); /* the client left: never touch `a` again */
}

static const hsc_responder_t words = {"words", words_start, words_resume, words_cancel, NULL};

static void usage(FILE *out, const char *listen)
{
    fprintf(out,
            "Usage: embed [--listen ADDRESS]\n"
            "\n"
            "Serves /v1/stream with a responder written in C on hsc's library: each word of\n"
            "the request text, reversed, every 100 ms. Ctrl-C stops it.\n"
            "\n"
            "  --listen ADDRESS   HOST:PORT or [V6]:PORT to listen on  (default %s)\n"
            "  -h, --help         show this help\n",
            listen);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "embed: %s '%s'\nTry 'embed --help'.\n", what, arg);
    return 2;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    hsc_server_config_t cfg;
    hsc_server_config_init(&cfg);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout, cfg.listen);
            return 0;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            cfg.listen = argv[++i];
        } else if (strcmp(argv[i], "--listen") == 0) {
            return usage_error("a value is missing after", argv[i]);
        } else {
            return usage_error(argv[i][0] == '-' ? "unknown option" : "unexpected argument",
                               argv[i]);
        }
    }
    cfg.responder = &words;
    hsc_server_t *srv;
    int rc = hsc_server_new(&cfg, &srv);
    if (rc == HSC_EINVAL)
        return usage_error("--listen: not an address (HOST:PORT or [V6]:PORT):", cfg.listen);
    if (rc != 0) {
        fprintf(stderr, "embed: cannot listen on %s: %s\n", cfg.listen, hsc_strerror(rc));
        return 1;
    }
    rc = hsc_server_run(srv); /* until SIGINT/SIGTERM */
    hsc_server_free(srv);
    return rc == 0 ? 0 : 1;
}
