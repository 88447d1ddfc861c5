/*
 * hsc send: asks the server's responder (POST /v1/stream) with the words of the command line, or
 * with all of stdin (at most 64 MiB) when there are none, and prints the answer as it streams in:
 * each piece as it arrives, or with --sse the data of each "message" event, where a "done" event
 * ends the answer and an "error" event fails it. Anything short of a complete answer (cut, refused,
 * past --timeout, without its "done") is a failure whose reason goes to stderr.
 * main.c dispatches here (cmd_send()); the exit statuses are in docs/cli.md and `hsc send --help`.
 */
#include "cli.h"
#include "hsc/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads all of stdin (bounded). Returns NULL when it is over `max`, out of memory, or
 * interrupted by Ctrl-C (g_interrupted says which). */
static char *read_stdin(size_t max, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n == cap) {
            if (cap >= max) {
                free(buf);
                return NULL;
            }
            char *b = realloc(buf, cap * 2);
            if (b == NULL) {
                free(buf);
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
        ssize_t r = read(0, buf + n, cap - n);
        if (r < 0 && errno == EINTR && !g_interrupted)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    if (g_interrupted) { /* the EINTR, or an end of input that came with the signal */
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

typedef struct send_state_s {
    bool done, failed;
    char reason[512];
} send_state_t;

static int send_piece(void *user, const char *p, size_t n)
{
    (void)user;
    fwrite(p, 1, n, stdout);
    fflush(stdout);
    return 0;
}

static int send_event(void *user, const hsc_sse_msg_t *m)
{
    send_state_t *st = user;
    if (type_is(m, "done")) {
        st->done = true;
        return 0;
    }
    if (type_is(m, "error")) {
        st->failed = true;
        snprintf(st->reason, sizeof st->reason, "%s", m->data);
        return 0;
    }
    if (type_is(m, "message")) {
        fwrite(m->data, 1, m->data_len, stdout);
        fflush(stdout);
    }
    return 0;
}

static void send_usage(FILE *out)
{
    fputs("Usage: hsc send [OPTIONS] [TEXT...]\n"
          "\n"
          "Asks the server's responder (POST /v1/stream) and prints the answer piece by piece\n"
          "as it arrives. Without TEXT, the text is read from stdin.\n"
          "\n"
          "  --sse              ask for the Server-Sent Events form of the answer\n"
          "  --timeout DUR      give up after DUR (e.g. 30s)        (default: none)\n"
          "  --url URL          the server                (default $HSC_URL or\n"
          "                     http://127.0.0.1:8000)\n"
          "  --token TOKEN      send Authorization: Bearer TOKEN (default $HSC_TOKEN)\n"
          "  -H, --header 'NAME: VALUE'\n"
          "                     send this request header too; repeatable\n"
          "  -h, --help         show this help\n"
          "\n"
          "Exit status: 0 complete answer, 1 failed or cut short, 2 usage, 3 server\n"
          "unreachable, 4 refused (HTTP error), 130 interrupted.\n",
          out);
}

int cmd_send(int argc, char **argv)
{
    static const struct option opts[] = {{"sse", no_argument, NULL, 's'},
                                         {"timeout", required_argument, NULL, 't'},
                                         SERVER_OPTIONS,
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool sse = false;
    server_opts_t so = {0};
    uint64_t timeout = 0;
    int o;
    while ((o = next_option("send", argc, argv, "+hH:", opts, &so)) >= 0) {
        switch (o) {
        case 's':
            sse = true;
            break;
        case 't':
            if (parse_seconds(optarg, &timeout) != 0)
                return usage_error("send", "--timeout: invalid duration '%s'", optarg);
            break;
        case 'h':
            send_usage(stdout);
            return EXIT_OK;
        default:
            return bad_option("send", argv[optind - 1]);
        }
    }
    if (o == OPT_REFUSED)
        return EXIT_USAGE;
    char *text = NULL;
    size_t len = 0;
    if (check_words("send", "text", argc, argv, opts, "hH") != 0)
        return EXIT_USAGE;
    if (optind < argc) {
        text = join_args(argc, argv, optind);
        if (text == NULL)
            return start_failed("send", HSC_ENOMEM);
        len = strlen(text);
    } else {
        text = read_stdin(64u << 20, &len);
        if (text == NULL && g_interrupted)
            return EXIT_INTERRUPTED;
        if (text == NULL)
            return usage_error("send", "%s", "cannot read the text from stdin (over 64 MiB?)");
    }
    if (len == 0) {
        free(text);
        return usage_error("send", "%s", "the text is empty");
    }
    char url[2048];
    build_url(url, sizeof url, base_url(so.url), "/v1/stream");
    send_state_t st = {0};
    hsc_client_config_t cfg;
    hsc_client_config_init(&cfg);
    if (server_apply("send", &so, true, &cfg) != 0) {
        free(text);
        return EXIT_USAGE;
    }
    cfg.url = url;
    cfg.body = text;
    cfg.body_len = len;
    cfg.sse = sse;
    cfg.timeout_ms = timeout;
    cfg.on_piece = send_piece;
    cfg.on_event = send_event;
    cfg.user = &st;
    int rc = hsc_client_new(&cfg, &g_client);
    if (rc != 0) {
        free(text);
        return start_failed("send", rc);
    }
    int result = hsc_client_run(g_client);
    int status = EXIT_OK;
    if (result == HSC_CLIENT_TIMEOUT) {
        fprintf(stderr, "hsc send: no complete answer within --timeout\n");
        status = EXIT_FAILED;
    } else if (result != HSC_CLIENT_OK) {
        status = report("send", result);
    } else if (sse && st.failed) {
        char shown[600];
        fprintf(stderr, "hsc send: the answer failed: %s\n",
                hsc_client_redact(shown, sizeof shown, st.reason));
        status = EXIT_FAILED;
    } else if (sse && !st.done) {
        fprintf(stderr, "hsc send: the answer ended without its 'done' event\n");
        status = EXIT_FAILED;
    }
    if (!sse && status == EXIT_OK)
        fflush(stdout);
    hsc_client_free(g_client);
    g_client = NULL;
    free(text);
    return status;
}
