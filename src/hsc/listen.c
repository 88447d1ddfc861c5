/*
 * hsc listen: prints events as they arrive, from the channels named with -c (GET /v1/events on
 * --url's server), from any Server-Sent Events URL, or from an event stream on stdin ('-'), as
 * each event's data, as one JSON object per event, or as the stream itself. The client reconnects
 * by itself, resuming with Last-Event-ID. An hsc.gap event (a resume that could not be exact,
 * docs/api.md) is told on stderr unless -q, left out of the data format and not counted by
 * --count. Stopping is not a failure: --count, --timeout, Ctrl-C and the end of stdin all exit
 * 0. Lines are bounded by --max-line, events by MAX_EVENT. main.c dispatches here (cmd_listen());
 * the exit statuses are in docs/cli.md and `hsc listen --help`.
 */
#include "cli.h"
#include "hsc/client.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int cmd_listen(int argc, char **argv)
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
    while ((o = next_option("listen", argc, argv, "+c:qhH:", opts, &so)) >= 0) {
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
    if (o == OPT_REFUSED)
        return EXIT_USAGE;
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
