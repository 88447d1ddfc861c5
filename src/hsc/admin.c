/*
 * hsc channels, hsc info, hsc disconnect: the admin API of hscd (docs/api.md, "Admin API"), which
 * needs the server's --admin-token: --token, else $HSC_ADMIN_TOKEN, else $HSC_TOKEN.
 *
 * `channels` walks every page of GET /v1/admin/channels (pages of PAGE channels, each one
 * request, following `next`) and prints a table, or one JSON object per channel with --json.
 * `info` prints GET /v1/admin/channel?channel=NAME as lines (--json: as the server sent it).
 * `disconnect` posts /v1/admin/disconnect?channel=NAME and says how many subscriptions ended.
 * main.c dispatches here; the exit statuses are in docs/cli.md and each command's --help.
 */
#include "cli.h"
#include "hsc/client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Channels per page: a page of 128-byte names stays well inside the client's 64 KiB body. */
#define PAGE "200"

static const char *const admin_help_common =
    "  --json               print JSON instead\n"
    "  --url URL            the server                (default $HSC_URL or\n"
    "                       http://127.0.0.1:8000)\n"
    "  --token TOKEN        the server's --admin-token (default $HSC_ADMIN_TOKEN,\n"
    "                       else $HSC_TOKEN)\n"
    "  -H, --header 'NAME: VALUE'\n"
    "                       send this request header too; repeatable\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 done, 2 usage, 3 server unreachable, 4 refused (the server's\n"
    "reason is printed: the admin API is off, a bad token, no such channel...).\n";

static void admin_usage(const char *cmd, FILE *out)
{
    if (strcmp(cmd, "channels") == 0)
        fputs("Usage: hsc channels [OPTIONS]\n"
              "\n"
              "Lists the server's channels in name order, with their subscriptions and what\n"
              "their history holds (events, bytes).\n"
              "\n",
              out);
    else if (strcmp(cmd, "info") == 0)
        fputs("Usage: hsc info [OPTIONS] CHANNEL\n"
              "\n"
              "Shows one channel: subscriptions, history (events, bytes, first and last id),\n"
              "the last publish, and who is subscribed (the sub claim of their JWT).\n"
              "\n",
              out);
    else
        fputs("Usage: hsc disconnect [OPTIONS] CHANNEL\n"
              "\n"
              "Ends every subscription to CHANNEL, as a server shutdown would: each client\n"
              "is told to come back after the server's --retry and resumes exactly.\n"
              "\n",
              out);
    fputs(admin_help_common, out);
}

/*
 * One request of the admin API: GET (or POST with `post`) of `url`. On success *out is the
 * answer's JSON (the caller json_decref()s it). Returns an exit status.
 */
static int admin_call(const char *cmd, server_opts_t *so, const char *url, bool post, json_t **out)
{
    *out = NULL;
    const char *env = getenv("HSC_ADMIN_TOKEN");
    if (so->token == NULL && env != NULL && env[0] != '\0') {
        if (!hsc_client_token_valid(env))
            return usage_error(cmd, "$HSC_ADMIN_TOKEN: not a valid token (%s)",
                               "1 to 4096 printable ASCII characters, no spaces");
        so->token = env;
    }
    hsc_client_config_t cfg;
    hsc_client_config_init(&cfg);
    if (server_apply(cmd, so, true, &cfg) != 0)
        return EXIT_USAGE;
    cfg.url = url;
    if (post) {
        cfg.method = "POST";
        cfg.body = "";
    }
    int rc = hsc_client_new(&cfg, &g_client);
    if (rc != 0)
        return start_failed(cmd, rc);
    int result = hsc_client_run(g_client);
    int status = report(cmd, result);
    if (status == EXIT_OK && result == HSC_CLIENT_OK) {
        *out = json_loads(hsc_client_body(g_client), 0, NULL);
        if (!json_is_object(*out)) {
            fprintf(stderr, "hsc %s: the server's answer is not the admin API's JSON\n", cmd);
            json_decref(*out);
            *out = NULL;
            status = EXIT_PROTOCOL;
        }
    } else if (status == EXIT_OK) {
        status = EXIT_INTERRUPTED; /* stopped by Ctrl-C without an answer */
    }
    hsc_client_free(g_client);
    g_client = NULL;
    return status;
}

/* Parses the options every admin command takes; *json for --json. Returns 0, or an exit status
 * (-1 after --help: exit 0). */
static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                     SERVER_OPTIONS,
                                     {"help", no_argument, NULL, 'h'},
                                     {NULL, 0, NULL, 0}};

static int admin_options(const char *cmd, int argc, char **argv, server_opts_t *so, bool *json)
{
    int o;
    while ((o = next_option(cmd, argc, argv, "+hH:", opts, so)) >= 0) {
        switch (o) {
        case 'j':
            *json = true;
            break;
        case 'h':
            admin_usage(cmd, stdout);
            return -1;
        default:
            return bad_option(cmd, argv[optind - 1]);
        }
    }
    return o == OPT_REFUSED ? EXIT_USAGE : 0;
}

static long long num(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static const char *str(const json_t *o, const char *key, const char *none)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : none;
}

/* Prints `j` as one line of JSON (--json). */
static void print_json_line(const json_t *j)
{
    char *line = json_dumps(j, JSON_COMPACT);
    if (line != NULL)
        printf("%s\n", line);
    free(line);
}

int cmd_channels(int argc, char **argv)
{
    server_opts_t so = {0};
    bool as_json = false;
    int st = admin_options("channels", argc, argv, &so, &as_json);
    if (st != 0)
        return st < 0 ? EXIT_OK : st;
    if (optind < argc)
        return usage_error("channels", "unexpected argument '%s'", argv[optind]);
    json_t *all = json_array();
    char after[3 * HSC_CHANNEL_MAX + 1] = "";
    for (;;) {
        char url[4096];
        build_url(url, sizeof url, base_url(so.url), "/v1/admin/channels?limit=" PAGE);
        if (after[0] != '\0') {
            strncat(url, "&after=", sizeof url - strlen(url) - 1);
            append_encoded(url, sizeof url, after);
        }
        json_t *page;
        if ((st = admin_call("channels", &so, url, false, &page)) != EXIT_OK) {
            json_decref(all);
            return st;
        }
        json_array_extend(all, json_object_get(page, "channels"));
        const char *next = json_string_value(json_object_get(page, "next"));
        bool more = next != NULL && strlen(next) <= HSC_CHANNEL_MAX;
        if (more && strcmp(next, after) <= 0) { /* names only grow: a server that says otherwise
                                                   would keep hsc asking forever */
            fprintf(stderr, "hsc channels: the server's pages do not advance (next: %s)\n", next);
            json_decref(page);
            json_decref(all);
            return EXIT_PROTOCOL;
        }
        if (more)
            strcpy(after, next);
        json_decref(page);
        if (!more)
            break;
    }
    size_t i, width = 7;
    json_t *c;
    json_array_foreach(all, i, c)
    {
        size_t w = strlen(str(c, "channel", ""));
        width = w > width ? w : width;
    }
    if (!as_json)
        printf("%-*s  %11s  %14s  %13s\n", (int)width, "CHANNEL", "SUBSCRIBERS", "HISTORY_EVENTS",
               "HISTORY_BYTES");
    json_array_foreach(all, i, c)
    {
        if (as_json) {
            print_json_line(c);
        } else {
            printf("%-*s  %11lld  %14lld  %13lld\n", (int)width, str(c, "channel", ""),
                   num(c, "subscribers"), num(c, "history_events"), num(c, "history_bytes"));
        }
    }
    json_decref(all);
    return EXIT_OK;
}

/* The URL of an admin route on one channel: PATH?channel=NAME. */
static int channel_url(const char *cmd, int argc, char **argv, const server_opts_t *so,
                       const char *path, char *url, size_t cap)
{
    if (optind >= argc)
        return usage_error(cmd, "%s", "which channel? give CHANNEL");
    if (check_words(cmd, "channel", argc, argv, opts, "hH") != 0)
        return EXIT_USAGE;
    if (optind + 1 < argc)
        return usage_error(cmd, "unexpected argument '%s' (one channel at a time)",
                           argv[optind + 1]);
    build_url(url, cap, base_url(so->url), path);
    append_encoded(url, cap, argv[optind]);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    server_opts_t so = {0};
    bool as_json = false;
    int st = admin_options("info", argc, argv, &so, &as_json);
    if (st != 0)
        return st < 0 ? EXIT_OK : st;
    char url[4096];
    if (channel_url("info", argc, argv, &so, "/v1/admin/channel?channel=", url, sizeof url) != 0)
        return EXIT_USAGE;
    json_t *j;
    if ((st = admin_call("info", &so, url, false, &j)) != EXIT_OK)
        return st;
    if (as_json) {
        print_json_line(j);
        json_decref(j);
        return EXIT_OK;
    }
    json_t *p = json_object_get(j, "presence");
    printf("channel       %s\n", str(j, "channel", ""));
    printf("subscribers   %lld\n", num(j, "subscribers"));
    printf("history       %lld events, %lld bytes\n", num(j, "history_events"),
           num(j, "history_bytes"));
    printf("first id      %s\n", str(j, "first_id", "-"));
    printf("last id       %s\n", str(j, "last_id", "-"));
    printf("last publish  %s\n", str(j, "last_publish", "-"));
    printf("presence      %lld anonymous, %lld identified (%lld distinct)\n", num(p, "anonymous"),
           num(p, "identified"), num(p, "distinct"));
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(p, "subjects"), i, s)
        printf("  %s  %lld\n", str(s, "sub", ""), num(s, "subscriptions"));
    if (json_is_true(json_object_get(p, "more")))
        printf("  ...\n");
    json_decref(j);
    return EXIT_OK;
}

int cmd_disconnect(int argc, char **argv)
{
    server_opts_t so = {0};
    bool as_json = false;
    int st = admin_options("disconnect", argc, argv, &so, &as_json);
    if (st != 0)
        return st < 0 ? EXIT_OK : st;
    char url[4096];
    if (channel_url("disconnect", argc, argv, &so, "/v1/admin/disconnect?channel=", url,
                    sizeof url) != 0)
        return EXIT_USAGE;
    json_t *j;
    if ((st = admin_call("disconnect", &so, url, true, &j)) != EXIT_OK)
        return st;
    if (as_json) {
        print_json_line(j);
    } else {
        printf("disconnected %lld subscription(s) of %s\n", num(j, "disconnected"),
               str(j, "channel", ""));
    }
    json_decref(j);
    return EXIT_OK;
}
