/*
 * hsc: the command-line client, and what its commands share. main() sets up signals (SIGINT and
 * SIGTERM stop the running client, g_client, and set g_interrupted; SIGPIPE is ignored) and hands
 * the command line to one command: `send` (send.c) asks a responder and prints the answer as it
 * streams in, `listen` (listen.c) prints a channel's events and keeps going across disconnects,
 * `publish` (publish.c) posts events, `token` (token.c) mints a token for hscd, `channels`, `info`
 * and `disconnect` (admin.c) use hscd's admin API. The rest of this
 * file is what those commands share, declared in cli.h: the server options (--url or $HSC_URL,
 * --token or $HSC_TOKEN, -H), usage errors that never echo a secret, the refusal of an option
 * written after the text, and the mapping of a client result to an exit status.
 * Exit statuses are documented in docs/cli.md (and in `hsc --help`).
 */
#include "cli.h"
#include "hsc/client.h"

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hsc_client_t *g_client;
volatile sig_atomic_t g_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
    if (g_client != NULL)
        hsc_client_stop(g_client);
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

const char *base_url(const char *flag)
{
    if (flag != NULL)
        return flag;
    const char *env = getenv("HSC_URL");
    return env != NULL && env[0] != '\0' ? env : "http://127.0.0.1:8000";
}

void append_encoded(char *out, size_t cap, const char *s)
{
    size_t o = strlen(out);
    for (; *s != '\0' && o + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-_.~", ch) != NULL)
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
    }
    out[o] = '\0';
}

void build_url(char *out, size_t cap, const char *base, const char *path)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(out, cap, "%.*s%s", (int)bl, base, path);
}

int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    char msg[1024], shown[1024];
    snprintf(msg, sizeof msg, fmt, arg);
    fprintf(stderr, "hsc%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "",
            hsc_client_redact(shown, sizeof shown, msg));
    fprintf(stderr, "Try 'hsc %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

int bad_option(const char *cmd, const char *arg)
{
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
    return usage_error(cmd, "unknown option or missing value: '%s'", name);
}

/* ---- the server and the credentials: options every command takes ---------------------------- */

#define TOKEN_RULE "1 to 4096 printable ASCII characters, no spaces"

int next_option(const char *cmd, int argc, char **argv, const char *shortopts,
                const struct option *opts, server_opts_t *so)
{
    if (!so->parsing) {
        so->parsing = true;
        opterr = 0;
        optind = 1;
    }
    for (;;) {
        int o = getopt_long(argc, argv, shortopts, opts, NULL);
        if (o == -1)
            return -1;
        int taken = server_option(cmd, o, so);
        if (taken < 0)
            return o;
        if (taken > 0)
            return OPT_REFUSED;
    }
}

int server_option(const char *cmd, int o, server_opts_t *so)
{
    switch (o) {
    case 'u':
        so->url = optarg;
        return 0;
    case 'T':
        if (!hsc_client_token_valid(optarg))
            return usage_error(cmd, "--token: not a valid token (%s)", TOKEN_RULE);
        so->token = optarg;
        return 0;
    case 'H': {
        if (so->nheaders == MAX_HEADERS)
            return usage_error(cmd, "-H: at most %s headers", "64");
        if (hsc_client_header_valid(optarg)) {
            so->headers[so->nheaders++] = optarg;
            return 0;
        }
        /* Name the header when its name is fine and its value is not; the value is not shown:
         * it may be a credential. */
        char name[128];
        size_t n = strcspn(optarg, ":");
        if (optarg[n] == ':' && n + 2 <= sizeof name) {
            snprintf(name, sizeof name, "%.*s:", (int)n, optarg);
            if (hsc_client_header_valid(name))
                return usage_error(cmd, "-H %s the value holds CR, LF or another control character",
                                   name);
        }
        return usage_error(cmd, "-H: %s",
                           "not a header 'Name: value' (a name of letters, digits and "
                           "!#$%&'*+-.^_`|~, a colon, a value without control characters)");
    }
    default:
        return -1;
    }
}

int server_apply(const char *cmd, server_opts_t *so, bool to_base, hsc_client_config_t *cfg)
{
    const char *token = so->token;
    const char *env = getenv("HSC_TOKEN");
    if (token == NULL && to_base && env != NULL && env[0] != '\0') {
        if (!hsc_client_token_valid(env))
            return usage_error(cmd, "$HSC_TOKEN: not a valid token (%s)", TOKEN_RULE);
        token = env;
    }
    cfg->token = token;
    cfg->headers = so->nheaders > 0 ? so->headers : NULL;
    return 0;
}

int parse_seconds(const char *s, uint64_t *ms)
{
    uint64_t v;
    if (hsc_parse_duration(s, &v) != 0)
        return -1;
    *ms = v;
    return 0;
}

int start_failed(const char *cmd, int rc)
{
    fprintf(stderr, "hsc %s: cannot start: %s\n", cmd, hsc_strerror(rc));
    return EXIT_FAILED;
}

int report(const char *cmd, int result)
{
    hsc_client_t *c = g_client;
    switch (result) {
    case HSC_CLIENT_OK:
        return EXIT_OK;
    case HSC_CLIENT_STOPPED:
        return g_interrupted ? EXIT_INTERRUPTED : EXIT_OK;
    case HSC_CLIENT_TIMEOUT:
        return EXIT_OK;
    case HSC_CLIENT_CUT: /* "the server closed the stream before it ended" */
        fprintf(stderr, "hsc %s: %s\n", cmd, hsc_client_error(c));
        return EXIT_FAILED;
    case HSC_CLIENT_CONNECT: /* "cannot connect to HOST:PORT: connection refused" */
        fprintf(stderr, "hsc %s: %s\n", cmd, hsc_client_error(c));
        return EXIT_CONNECT;
    case HSC_CLIENT_HTTP:
        fprintf(stderr, "hsc %s: %s\n", cmd, hsc_client_error(c));
        return EXIT_REFUSED;
    case HSC_CLIENT_PROTOCOL:
        fprintf(stderr, "hsc %s: %s\n", cmd, hsc_client_error(c));
        return EXIT_PROTOCOL;
    default: /* HSC_CLIENT_NOMEM */
        fprintf(stderr, "hsc %s: %s\n", cmd, hsc_strerror(HSC_ENOMEM));
        return EXIT_FAILED;
    }
}

char *join_args(int argc, char **argv, int from)
{
    size_t cap = 1;
    for (int i = from; i < argc; i++)
        cap += strlen(argv[i]) + 1;
    char *text = malloc(cap);
    if (text == NULL)
        return NULL;
    size_t n = 0;
    for (int i = from; i < argc; i++) {
        if (i > from)
            text[n++] = ' ';
        size_t l = strlen(argv[i]);
        memcpy(text + n, argv[i], l);
        n += l;
    }
    text[n] = '\0';
    return text;
}

int check_words(const char *cmd, const char *what, int argc, char **argv, const struct option *opts,
                const char *shorts)
{
    if (optind > 1 && strcmp(argv[optind - 1], "--") == 0)
        return 0;
    for (int i = optind; i < argc; i++) {
        const char *w = argv[i];
        bool named = w[0] == '-' && w[1] != '\0' && w[1] != '-' && w[2] == '\0' &&
                     strchr(shorts, w[1]) != NULL;
        for (const struct option *o = opts; !named && o->name != NULL; o++) {
            size_t n = strlen(o->name);
            named = strncmp(w, "--", 2) == 0 && strncmp(w + 2, o->name, n) == 0 &&
                    (w[2 + n] == '\0' || w[2 + n] == '=');
        }
        if (named) {
            char name[64], fmt[200];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(w, "="), w);
            snprintf(fmt, sizeof fmt,
                     "'%%s' after the %s: options go before the %s (after '--', words that "
                     "start with '-' are taken as they are)",
                     what, what);
            return usage_error(cmd, fmt, name);
        }
    }
    return 0;
}

bool type_is(const hsc_sse_msg_t *m, const char *t)
{
    size_t n = strlen(t);
    return m->type_len == n && memcmp(m->type, t, n) == 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fputs("Usage: hsc COMMAND [OPTIONS] [ARGS]\n"
          "\n"
          "The hsc client: streams answers and events over plain HTTP.\n"
          "\n"
          "Commands\n"
          "  send TEXT            ask the responder; print the answer as it streams in\n"
          "  listen -c CHANNEL    print a channel's events as they arrive, across\n"
          "                       reconnections (also: listen URL, listen -)\n"
          "  publish -c CHANNEL TEXT\n"
          "                       publish an event (TEXT '-': each line of stdin)\n"
          "  token --key-file FILE --subscribe PATTERN ...\n"
          "                       mint a token for an hscd holding the same key\n"
          "  channels             list the server's channels (admin API: --admin-token)\n"
          "  info CHANNEL         one channel: history, last publish, who is subscribed\n"
          "  disconnect CHANNEL   end a channel's subscriptions (they come back, resume)\n"
          "\n"
          "Every command that talks to a server takes --url URL (default $HSC_URL, else\n"
          "http://127.0.0.1:8000), --token TOKEN (default $HSC_TOKEN) and -H 'NAME: VALUE';\n"
          "every command takes --help. Exit statuses are listed in each command's --help\n"
          "and in docs/cli.md.\n"
          "\n"
          "  -h, --help           show this help\n"
          "  --version            show the version\n",
          out);
}

int main(int argc, char **argv)
{
    catch_signals();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("hsc %s\n", HSC_VERSION_STRING);
        return EXIT_OK;
    }
    if (strcmp(cmd, "send") == 0)
        return cmd_send(argc - 1, argv + 1);
    if (strcmp(cmd, "listen") == 0)
        return cmd_listen(argc - 1, argv + 1);
    if (strcmp(cmd, "publish") == 0)
        return cmd_publish(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (strcmp(cmd, "channels") == 0)
        return cmd_channels(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "disconnect") == 0)
        return cmd_disconnect(argc - 1, argv + 1);
    return usage_error(NULL,
                       "unknown command '%s' (send, listen, publish, token, channels, info or "
                       "disconnect)",
                       cmd);
}
