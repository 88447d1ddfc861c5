/*
 * hsc: the command-line client. `send` asks a responder and prints the answer as it streams in,
 * `listen` prints a channel's events and keeps going across disconnects, `publish` posts events;
 * `token` (src/hsc/token.c) mints a token for hscd.
 * Exit statuses are documented in docs/cli.md (and in `hsc --help`).
 */
#include "cli.h"
#include "hsc/client.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static hsc_client_t *g_client;
static volatile sig_atomic_t g_interrupted;

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

static const char *base_url(const char *flag)
{
    if (flag != NULL)
        return flag;
    const char *env = getenv("HSC_URL");
    return env != NULL && env[0] != '\0' ? env : "http://127.0.0.1:8000";
}

/* Percent-encodes a query value (RFC 3986 unreserved characters pass). */
static void append_encoded(char *out, size_t cap, const char *s)
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

static void build_url(char *out, size_t cap, const char *base, const char *path)
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

#define MAX_HEADERS 64

typedef struct server_opts_s {
    const char *url;                      /* --url, or NULL */
    const char *token;                    /* --token, or NULL */
    const char *headers[MAX_HEADERS + 1]; /* -H, NULL-terminated */
    unsigned nheaders;
} server_opts_t;

/* The long options of server_opts_t, for each command's table. */
/* clang-format off */
#define SERVER_OPTIONS                                                                             \
    {"url", required_argument, NULL, 'u'},                                                         \
    {"token", required_argument, NULL, 'T'},                                                       \
    {"header", required_argument, NULL, 'H'}
/* clang-format on */

#define TOKEN_RULE "1 to 4096 printable ASCII characters, no spaces"

/* Takes option `o` when it is one of SERVER_OPTIONS: returns 0, or EXIT_USAGE after saying what
 * is wrong (never echoing a token or a header's value), or -1 when `o` is not one of them. */
static int server_option(const char *cmd, int o, server_opts_t *so)
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

/* Puts the token and headers into `cfg`. $HSC_TOKEN, when --token is not given, goes only to the
 * server of --url or $HSC_URL (`to_base`), whose credential it is, never to a URL given to
 * `listen`. Returns 0, or EXIT_USAGE for a bad $HSC_TOKEN. */
static int server_apply(const char *cmd, server_opts_t *so, bool to_base, hsc_client_config_t *cfg)
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

static int parse_seconds(const char *s, uint64_t *ms)
{
    uint64_t v;
    if (hsc_parse_duration(s, &v) != 0)
        return -1;
    *ms = v;
    return 0;
}

/* Setting up (hsc_client_new(), a parser) failed with the hsc code `rc`: says why on stderr. */
static int start_failed(const char *cmd, int rc)
{
    fprintf(stderr, "hsc %s: cannot start: %s\n", cmd, hsc_strerror(rc));
    return EXIT_FAILED;
}

/* Maps a client result to an exit status, saying why on stderr after "hsc CMD: " (CMD may name
 * more: "publish: line 3"). */
static int report(const char *cmd, int result)
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

/* The words argv[from..argc), joined with single spaces, as a shell user expects from
 * `hsc send hello world`. Returns NULL when out of memory; free with free(). */
static char *join_args(int argc, char **argv, int from)
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

/*
 * Refuses an option written after the text (`hsc publish -c news hello --token T`) or the URL
 * (`what`): getopt stops at the first word of the text, so the option would be sent as words of
 * it, a token included, to everyone on the channel. A word that is one of `opts` ("--token",
 * "--token=...") or one of the short options in `shorts` ("-H") is an error; after an explicit "--"
 * the words are sent as they are. Returns 0, or EXIT_USAGE after naming the option (never its
 * value).
 */
static int check_words(const char *cmd, const char *what, int argc, char **argv,
                       const struct option *opts, const char *shorts)
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

/* ---- send ------------------------------------------------------------------------------------ */

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

/* The event's type is `t`, byte for byte: a type may hold a NUL, which strcmp() would stop at. */
static bool type_is(const hsc_sse_msg_t *m, const char *t)
{
    size_t n = strlen(t);
    return m->type_len == n && memcmp(m->type, t, n) == 0;
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

static int cmd_send(int argc, char **argv)
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
    opterr = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "+hH:", opts, NULL)) != -1) {
        int taken = server_option("send", o, &so);
        if (taken > 0)
            return taken;
        if (taken == 0)
            continue;
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

/* ---- listen ---------------------------------------------------------------------------------- */

typedef enum { FMT_DATA, FMT_JSON, FMT_RAW } format_t;

/* --max-line's range, and the largest event listen accepts (the client's default). */
#define MAX_LINE_MIN 64
#define MAX_EVENT    (16u << 20)

typedef struct listen_state_s {
    format_t format;
    bool quiet;
    uint64_t count, seen;
    const char *only;                  /* the one channel of -c: every event's */
    char channel[HSC_CHANNEL_MAX + 1]; /* else the one of the last hsc.channel tag, or "" */
} listen_state_t;

/*
 * Prints an event as --format asks. hscd's channel tags (tag=channel, docs/api.md "Which
 * channel") are not events: each says which channel the events after it are on, for the json
 * format's "channel" key, and is neither printed (but by raw) nor counted.
 */
static int listen_event(void *user, const hsc_sse_msg_t *m)
{
    listen_state_t *st = user;
    if (type_is(m, "hsc.channel")) {
        bool ok = hsc_channel_name_valid(m->data, m->data_len);
        memcpy(st->channel, m->data, ok ? m->data_len : 0);
        st->channel[ok ? m->data_len : 0] = '\0';
        return 0;
    }
    bool gap = type_is(m, "hsc.gap");
    if (gap && !st->quiet)
        fprintf(stderr, "hsc listen: history notice: %s\n", m->data);
    if (st->format == FMT_JSON) {
        /* Type and data byte-exact: a NUL in either is written as \u0000. The channel: null
         * when unknown, and for hscd's notices, which are about no one channel. */
        const char *ch = gap ? NULL : st->only ? st->only : st->channel[0] ? st->channel : NULL;
        json_t *j =
            json_pack("{s:s%,s:s%,s:s,s:o}", "type", m->type, m->type_len, "data", m->data,
                      m->data_len, "id", m->id, "channel", ch ? json_string(ch) : json_null());
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (s != NULL) {
            fputs(s, stdout);
            fputc('\n', stdout);
            free(s);
        }
    } else if (st->format == FMT_DATA && !gap) {
        fwrite(m->data, 1, m->data_len, stdout);
        fputc('\n', stdout);
    }
    fflush(stdout);
    if (gap)
        return 0;
    st->seen++;
    return st->count != 0 && st->seen >= st->count ? 1 : 0;
}

static int listen_raw(void *user, const char *p, size_t n)
{
    listen_state_t *st = user;
    if (st->format == FMT_RAW) {
        fwrite(p, 1, n, stdout);
        fflush(stdout);
    }
    return 0;
}

static void listen_notice(void *user, const char *msg)
{
    listen_state_t *st = user;
    if (!st->quiet)
        fprintf(stderr, "hsc listen: %s\n", msg);
}

static void listen_usage(FILE *out)
{
    fputs("Usage: hsc listen [OPTIONS] -c CHANNEL [-c CHANNEL...]\n"
          "       hsc listen [OPTIONS] URL\n"
          "       hsc listen [OPTIONS] -\n"
          "\n"
          "Prints the events of channels (or of any Server-Sent Events URL, or of an event\n"
          "stream read from stdin with '-') as they arrive. Reconnects by itself after a\n"
          "disconnect, resuming with Last-Event-ID, waiting as the server's retry: asks and\n"
          "backing off with jitter while the server is down.\n"
          "\n"
          "  -c, --channel NAME     a channel to subscribe to; repeatable\n"
          "  --format FORMAT        data: each event's data, then a newline (default)\n"
          "                         json: one {\"type\",\"data\",\"id\",\"channel\"} object\n"
          "                         per line (channel null when unknown)\n"
          "                         raw:  the event stream as received\n"
          "  --count N              stop after N events\n"
          "  --timeout DUR          stop after DUR (e.g. 10s, 5m)\n"
          "  --last-event-id ID     start after this event id ('earliest': with every\n"
          "                         event the channels still hold)\n"
          "  --history N            -c: start with the N newest events the channels hold\n"
          "  --max-line SIZE        the longest line accepted, 64 to 16m (default 1m)\n"
          "  -q, --quiet            no connection messages on stderr\n"
          "  --url URL              the server                (default $HSC_URL or\n"
          "                         http://127.0.0.1:8000)\n"
          "  --token TOKEN          send Authorization: Bearer TOKEN (default\n"
          "                         $HSC_TOKEN, sent only to the --url server)\n"
          "  -H, --header 'NAME: VALUE'\n"
          "                         send this request header too; repeatable\n"
          "  -h, --help             show this help\n"
          "\n"
          "Exit status: 0 stopped by --count, --timeout, Ctrl-C or the end of stdin;\n"
          "2 usage; 4 refused (e.g. a bad channel name); 5 not an event stream or a line\n"
          "over --max-line.\n",
          out);
}

static int listen_stdin(listen_state_t *st, size_t max_line, const char *last_id)
{
    hsc_sse_parser_t *p = hsc_sse_parser_new(max_line, MAX_EVENT, listen_event, NULL, NULL, st);
    if (p == NULL)
        return start_failed("listen", HSC_ENOMEM);
    int rc = last_id != NULL ? hsc_sse_parser_set_last_id(p, last_id) : 0;
    if (rc != 0) {
        hsc_sse_parser_free(p);
        return start_failed("listen", rc);
    }
    char buf[65536];
    int status = EXIT_OK;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            if (g_interrupted)
                break;
            continue;
        }
        if (n <= 0)
            break;
        listen_raw(st, buf, (size_t)n);
        rc = hsc_sse_parser_feed(p, buf, (size_t)n);
        if (rc == HSC_ETOOBIG) {
            fprintf(stderr, "hsc listen: a line or an event is longer than --max-line (%zu)\n",
                    max_line);
            status = EXIT_PROTOCOL;
            break;
        }
        if (rc < 0) { /* HSC_ENOMEM: an hsc code, where listen_event() stops with 1 */
            fprintf(stderr, "hsc listen: %s\n", hsc_strerror(rc));
            status = EXIT_FAILED;
            break;
        }
        if (rc != 0)
            break; /* --count reached */
    }
    hsc_sse_parser_end(p);
    hsc_sse_parser_free(p);
    return status;
}

static int cmd_listen(int argc, char **argv)
{
    static const struct option opts[] = {{"channel", required_argument, NULL, 'c'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"last-event-id", required_argument, NULL, 'l'},
                                         {"history", required_argument, NULL, 'y'},
                                         {"max-line", required_argument, NULL, 'm'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         SERVER_OPTIONS,
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    listen_state_t st = {.format = FMT_DATA};
    server_opts_t so = {0};
    const char *last_id = NULL;
    uint64_t timeout = 0, max_line = 1u << 20;
    char query[4096] = "";
    const char *history = NULL, *first = NULL;
    unsigned nchannels = 0;
    int o;
    opterr = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "+c:qhH:", opts, NULL)) != -1) {
        int taken = server_option("listen", o, &so);
        if (taken > 0)
            return taken;
        if (taken == 0)
            continue;
        switch (o) {
        case 'c':
            if (optarg[0] == '\0')
                return usage_error("listen", "%s", "-c: the channel name is empty");
            strncat(query,
                    nchannels++ ? "&channel=" : "?channel=", sizeof query - strlen(query) - 1);
            append_encoded(query, sizeof query, optarg);
            first = first ? first : optarg;
            break;
        case 'y':
            if (optarg[0] == '\0' || strspn(optarg, "0123456789") != strlen(optarg) ||
                strlen(optarg) > 19)
                return usage_error("listen", "--history: '%s' is not a number of events", optarg);
            history = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "data") == 0)
                st.format = FMT_DATA;
            else if (strcmp(optarg, "json") == 0)
                st.format = FMT_JSON;
            else if (strcmp(optarg, "raw") == 0)
                st.format = FMT_RAW;
            else
                return usage_error("listen", "--format: '%s' is not data, json or raw", optarg);
            break;
        case 'n': {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || v == 0)
                return usage_error("listen", "--count: '%s' is not a positive number", optarg);
            st.count = v;
            break;
        }
        case 't':
            if (parse_seconds(optarg, &timeout) != 0 || timeout == 0)
                return usage_error("listen", "--timeout: invalid duration '%s'", optarg);
            break;
        case 'l':
            if (strpbrk(optarg, "\r\n") != NULL || !hsc_utf8_valid(optarg, strlen(optarg)))
                return usage_error("listen", "--last-event-id: '%s' is not a valid event id",
                                   optarg);
            last_id = optarg;
            break;
        case 'm':
            /* Up to the largest event: a longer line could never be delivered anyway. */
            if (hsc_parse_size(optarg, &max_line) != 0 || max_line < MAX_LINE_MIN ||
                max_line > MAX_EVENT)
                return usage_error("listen",
                                   "--max-line: '%s' is not a size from 64 bytes to 16m "
                                   "(e.g. 4k, 1m)",
                                   optarg);
            break;
        case 'q':
            st.quiet = true;
            break;
        case 'h':
            listen_usage(stdout);
            return EXIT_OK;
        default:
            return bad_option("listen", argv[optind - 1]);
        }
    }
    if (check_words("listen", "URL", argc, argv, opts, "cqhH") != 0)
        return EXIT_USAGE;
    const char *target = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc)
        return usage_error("listen", "unexpected argument '%s'", argv[optind + 1]);
    if (target != NULL && nchannels > 0)
        return usage_error("listen", "%s", "give either -c CHANNEL or a URL, not both");
    if (target == NULL && nchannels == 0)
        return usage_error("listen", "%s", "nothing to listen to: give -c CHANNEL, a URL or -");
    if (target != NULL && history != NULL)
        return usage_error("listen", "%s", "--history goes with -c CHANNEL, not with a URL");
    /* One channel: every event is on it. Several: hscd tags them (docs/api.md). */
    if (nchannels == 1)
        st.only = first;
    else if (nchannels > 1)
        strncat(query, "&tag=channel", sizeof query - strlen(query) - 1);
    if (history != NULL) {
        strncat(query, "&history=", sizeof query - strlen(query) - 1);
        strncat(query, history, sizeof query - strlen(query) - 1);
    }
    if (target != NULL && strcmp(target, "-") == 0)
        return listen_stdin(&st, (size_t)max_line, last_id);
    if (target != NULL && strstr(target, "://") == NULL)
        return usage_error("listen", "not a URL (http://...): %s", target);

    char url[4096 + 1024];
    if (target != NULL)
        snprintf(url, sizeof url, "%s", target);
    else
        build_url(url, sizeof url, base_url(so.url), "/v1/events"),
            strncat(url, query, sizeof url - strlen(url) - 1);
    hsc_client_config_t cfg;
    hsc_client_config_init(&cfg);
    if (server_apply("listen", &so, target == NULL, &cfg) != 0)
        return EXIT_USAGE;
    cfg.url = url;
    cfg.sse = 1;
    cfg.reconnect = 1;
    cfg.last_event_id = last_id;
    cfg.timeout_ms = timeout;
    cfg.max_line = (size_t)max_line;
    cfg.max_event = MAX_EVENT;
    cfg.on_event = listen_event;
    cfg.on_raw = listen_raw;
    cfg.on_notice = listen_notice;
    cfg.user = &st;
    int rc = hsc_client_new(&cfg, &g_client);
    if (rc != 0)
        return start_failed("listen", rc);
    int result = hsc_client_run(g_client);
    int status = result == HSC_CLIENT_STOPPED && g_interrupted ? EXIT_OK : report("listen", result);
    hsc_client_free(g_client);
    g_client = NULL;
    return status;
}

/* ---- publish --------------------------------------------------------------------------------- */

static void publish_usage(FILE *out)
{
    fputs("Usage: hsc publish [OPTIONS] -c CHANNEL TEXT...\n"
          "       hsc publish [OPTIONS] -c CHANNEL -\n"
          "\n"
          "Publishes TEXT as one event to CHANNEL (several words are joined with spaces,\n"
          "as send joins them); with '-', publishes each line of stdin as its own event\n"
          "as it is read (tail -f log | hsc publish -c logs -).\n"
          "\n"
          "  -c, --channel NAME   the channel\n"
          "  --event TYPE         the event type (default: none, i.e. \"message\")\n"
          "  -v, --verbose        print each published event's id\n"
          "  --url URL            the server                (default $HSC_URL or\n"
          "                       http://127.0.0.1:8000)\n"
          "  --token TOKEN        send Authorization: Bearer TOKEN (default $HSC_TOKEN)\n"
          "  -H, --header 'NAME: VALUE'\n"
          "                       send this request header too; repeatable\n"
          "  -h, --help           show this help\n"
          "\n"
          "Exit status: 0 all published, 2 usage, 3 server unreachable, 4 refused (the\n"
          "server's reason is printed; with '-', the other lines are still published).\n",
          out);
}

/* Publishes one event; prints the id with -v. `line` is the line of stdin it came from (0 for
 * TEXT), named in a failure's message. Returns an exit status. */
static int publish_one(const char *text, size_t len, bool verbose, unsigned long line)
{
    hsc_client_set_body(g_client, text, len);
    int result = hsc_client_run(g_client);
    if (result != HSC_CLIENT_OK) {
        char where[64] = "publish";
        if (line > 0)
            snprintf(where, sizeof where, "publish: line %lu", line);
        return report(where, result);
    }
    if (verbose) {
        json_t *j = json_loads(hsc_client_body(g_client), 0, NULL);
        const char *id = json_string_value(json_object_get(j, "id"));
        printf("%s\n", id ? id : hsc_client_body(g_client));
        fflush(stdout);
        json_decref(j);
    }
    return EXIT_OK;
}

static int cmd_publish(int argc, char **argv)
{
    static const struct option opts[] = {
        {"channel", required_argument, NULL, 'c'}, {"event", required_argument, NULL, 'e'},
        {"verbose", no_argument, NULL, 'v'},       SERVER_OPTIONS,
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *channel = NULL, *type = NULL;
    server_opts_t so = {0};
    bool verbose = false;
    int o;
    opterr = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "+c:vhH:", opts, NULL)) != -1) {
        int taken = server_option("publish", o, &so);
        if (taken > 0)
            return taken;
        if (taken == 0)
            continue;
        switch (o) {
        case 'c':
            if (channel != NULL)
                return usage_error("publish", "%s", "-c: publish to one channel at a time");
            channel = optarg;
            break;
        case 'e':
            type = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            publish_usage(stdout);
            return EXIT_OK;
        default:
            return bad_option("publish", argv[optind - 1]);
        }
    }
    if (channel == NULL || channel[0] == '\0')
        return usage_error("publish", "%s", "which channel? give -c CHANNEL");
    if (optind >= argc)
        return usage_error("publish", "%s", "nothing to publish: give TEXT, or - for stdin");
    if (check_words("publish", "text", argc, argv, opts, "cvhH") != 0)
        return EXIT_USAGE;
    bool from_stdin = strcmp(argv[optind], "-") == 0;
    if (from_stdin && optind + 1 < argc)
        return usage_error("publish", "unexpected argument '%s' after '-' (stdin)",
                           argv[optind + 1]);
    char url[4096];
    build_url(url, sizeof url, base_url(so.url), "/v1/events?channel=");
    append_encoded(url, sizeof url, channel);
    if (type != NULL) {
        strncat(url, "&event=", sizeof url - strlen(url) - 1);
        append_encoded(url, sizeof url, type);
    }
    hsc_client_config_t cfg;
    hsc_client_config_init(&cfg);
    if (server_apply("publish", &so, true, &cfg) != 0)
        return EXIT_USAGE;
    cfg.url = url;
    cfg.method = "POST";
    cfg.body = "";
    int rc = hsc_client_new(&cfg, &g_client);
    if (rc != 0)
        return start_failed("publish", rc);
    int status = EXIT_OK;
    if (!from_stdin) {
        char *text = join_args(argc, argv, optind);
        status = text != NULL ? publish_one(text, strlen(text), verbose, 0)
                              : start_failed("publish", HSC_ENOMEM);
        free(text);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        unsigned long lineno = 0;
        while (!g_interrupted && (n = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
            int st = publish_one(line, (size_t)n, verbose, lineno);
            if (st == EXIT_CONNECT || st == EXIT_INTERRUPTED) {
                status = st;
                break;
            }
            if (st != EXIT_OK)
                status = st; /* a refused line: say so, go on with the next */
        }
        free(line);
        if (g_interrupted) /* getline() failed with EINTR, or a line was cut short */
            status = EXIT_INTERRUPTED;
    }
    hsc_client_free(g_client);
    g_client = NULL;
    return status;
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
    return usage_error(NULL, "unknown command '%s' (send, listen, publish or token)", cmd);
}
