/*
 * hsc publish: posts events to one channel (POST /v1/events?channel=NAME, with --event its
 * type): the words of the command line as one event, or with '-' each line of stdin as its own
 * event as soon as it is read, so that `tail -f log | hsc publish -c logs -` follows the log. One
 * client serves every event, its connection reused. With '-', a refused line is reported with its
 * number and the next lines are still published; an unreachable server or Ctrl-C stops.
 * main.c dispatches here (cmd_publish()); the exit statuses are in docs/cli.md and
 * `hsc publish --help`.
 */
#include "cli.h"
#include "hsc/client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int cmd_publish(int argc, char **argv)
{
    static const struct option opts[] = {
        {"channel", required_argument, NULL, 'c'}, {"event", required_argument, NULL, 'e'},
        {"verbose", no_argument, NULL, 'v'},       SERVER_OPTIONS,
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *channel = NULL, *type = NULL;
    server_opts_t so = {0};
    bool verbose = false;
    int o;
    while ((o = next_option("publish", argc, argv, "+c:vhH:", opts, &so)) >= 0) {
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
    if (o == OPT_REFUSED)
        return EXIT_USAGE;
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
