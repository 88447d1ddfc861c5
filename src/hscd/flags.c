/*
 * hscd's flags: the table (`flags[]` below), the one function that sets a flag by name
 * (hscd_flags_apply) and the argv parser on top of it. help.c renders the table twice: `--help`
 * and the Markdown section of docs/hscd.md (`--help-markdown`).
 *
 * Adding a flag is adding an entry: its spelling, kind, range, help text and default, then either
 * FIELD(member) of hsc_server_config_t or a handler. Nothing else lists flags; getopt_long()'s
 * options are built from the table at each parse, and tests/integration/test_flags.py fails
 * until docs/hscd.md is regenerated (scripts/gen-flag-docs.sh).
 *
 * Invariants: every spelling (name, alias) is unique; a field entry's storage is 4 or 8 bytes
 * and its max fits (tests/unit/test_flags.c checks both, and that each default shown parses to
 * what hsc_server_config_init() sets). A value is checked completely before anything is stored,
 * so a refused flag leaves the configuration as it was.
 *
 * The Python template's spellings (--server_ip, --server_port, --max_gen_len) are aliases:
 * accepted everywhere, listed under the template's heading in --help.
 */
#include "flags.h"

#include "hsc/codec.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- the table ---------------------------------------------------------------------------- */

#define FIELD(member)                                                                              \
    .offset = offsetof(hsc_server_config_t, member),                                               \
    .size = sizeof(((hsc_server_config_t *)0)->member)

#define FOUR_G (1ull << 32)

static int set_server_ip(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                         const char *value, uint64_t n);
static int set_server_port(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value, uint64_t n);
static int add_cors_origin(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value, uint64_t n);
static int read_jwt_key(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n);
static int set_log_level(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                         const char *value, uint64_t n);
static int set_data_dir(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n);
static int set_fsync(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                     uint64_t n);
static int set_redis(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                     uint64_t n);
static int show_help(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                     uint64_t n);
static int show_version(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n);
static int show_markdown(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                         const char *value, uint64_t n);
static int set_log_format(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                          const char *value, uint64_t n);
static int set_config(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                      uint64_t n);
static int set_check(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                     uint64_t n);

/*
 * The table, in --help order within each group. Laid out by hand, one flag per paragraph:
 * spelling and kind, help text, default and destination, range and fix.
 */
/* clang-format off */
static const hscd_flag_t flags[] = {
    /* Listening */
    {.name = "listen", .arg = HSCD_ARG_STRING, .metavar = "HOST:PORT", .group = HSCD_GROUP_LISTEN,
     .help = "address to listen on; [::1]:PORT for IPv6, port 0 picks a free port",
     .default_shown = "127.0.0.1:8000", FIELD(listen),
     .fix = "HOST:PORT, e.g. 127.0.0.1:8000 or [::1]:8000"},
    {.name = "threads", .arg = HSCD_ARG_UNSIGNED, .metavar = "N", .group = HSCD_GROUP_LISTEN,
     .help = "worker threads, one event loop each",
     .default_shown = "cores", FIELD(threads),
     .min = 1, .max = 256, .fix = "a number of threads from 1 to 256"},

    /* Responders */
    {.name = "exec", .arg = HSCD_ARG_STRING, .metavar = "'CMD ARGS'", .group = HSCD_GROUP_RESPONDERS,
     .help = "run CMD (with /bin/sh -c) for each request: the text on stdin, the answer from "
             "stdout (docs/responders.md)",
     FIELD(exec),
     .min = 1, .fix = "a command, e.g. 'python3 responder.py'"},
    {.name = "pool", .arg = HSCD_ARG_UNSIGNED, .metavar = "N", .group = HSCD_GROUP_RESPONDERS,
     .help = "run --exec as N long-lived workers that speak the framed protocol of "
             "docs/responder-protocol.md; without it, one process per request",
     .default_shown = "off", FIELD(pool),
     .min = 1, .max = 4096, .fix = "a number of workers from 1 to 4096"},
    {.name = "max-processes", .arg = HSCD_ARG_UNSIGNED, .metavar = "N", .group = HSCD_GROUP_RESPONDERS,
     .help = "--exec processes running at once",
     .default_shown = "64", FIELD(max_processes),
     .min = 1, .max = 100000, .fix = "a number of processes from 1 to 100000"},
    {.name = "queue", .arg = HSCD_ARG_UNSIGNED, .metavar = "N", .group = HSCD_GROUP_RESPONDERS,
     .help = "requests waiting for a responder; past it 503",
     .default_shown = "256", FIELD(queue),
     .max = 10000000, .fix = "a number of requests, 0 for no queue"},
    {.name = "responder-timeout", .arg = HSCD_ARG_DURATION, .metavar = "DUR",
     .group = HSCD_GROUP_RESPONDERS,
     .help = "an answer taking longer fails; 0 = none",
     .default_shown = "10m", FIELD(responder_timeout_ms),
     .fix = "a duration such as 500ms or 15s"},
    {.name = "kill-grace", .arg = HSCD_ARG_DURATION, .metavar = "DUR", .group = HSCD_GROUP_RESPONDERS,
     .help = "SIGTERM, then SIGKILL after this",
     .default_shown = "500ms", FIELD(kill_grace_ms),
     .fix = "a duration such as 500ms or 15s"},
    {.name = "keepalive", .arg = HSCD_ARG_DURATION, .metavar = "DUR", .group = HSCD_GROUP_RESPONDERS,
     .help = "SSE answers and channels: a comment line while the stream is silent; 0 = never",
     .default_shown = "15s", FIELD(keepalive_ms),
     .fix = "a duration such as 500ms or 15s"},
    {.name = "model", .arg = HSCD_ARG_STRING, .metavar = "NAMES", .group = HSCD_GROUP_RESPONDERS,
     .help = "the OpenAI-compatible front's model names, comma-separated (the first is the default; "
             "others get 404); without it, hsc-KIND is listed and any name is accepted "
             "(docs/openai.md)",
     .default_shown = "none", FIELD(model),
     .min = 1, .max = 4096, .fix = "model names such as 'llama-3-8b,llama-3-70b'"},
    {.name = "max-gen-len", .aliases = {"max_gen_len"}, .arg = HSCD_ARG_UNSIGNED,
     .metavar = "N", .group = HSCD_GROUP_RESPONDERS,
     .help = "demo: pieces per answer",
     .default_shown = "10", FIELD(max_gen_len),
     .max = 1000000, .fix = "a number of pieces from 0 to 1000000"},
    {.name = "interval", .arg = HSCD_ARG_DURATION, .metavar = "DURATION", .group = HSCD_GROUP_RESPONDERS,
     .help = "demo: time between pieces, e.g. 250ms",
     .default_shown = "200ms", FIELD(interval_ms),
     .fix = "a duration such as 250ms or 1s"},

    /* Channels */
    {.name = "history", .arg = HSCD_ARG_UNSIGNED, .metavar = "N", .group = HSCD_GROUP_CHANNELS,
     .help = "events kept per channel for resuming; 0 = none",
     .default_shown = "100", FIELD(history),
     .max = 1000000, .fix = "a number of events from 0 to 1000000"},
    {.name = "history-bytes", .arg = HSCD_ARG_SIZE, .metavar = "SIZE", .group = HSCD_GROUP_CHANNELS,
     .help = "encoded bytes kept per channel",
     .default_shown = "256k", FIELD(history_bytes),
     .max = FOUR_G, .fix = "a size up to 4g, e.g. 256k"},
    {.name = "history-total-bytes", .arg = HSCD_ARG_SIZE, .metavar = "SIZE",
     .group = HSCD_GROUP_CHANNELS,
     .help = "encoded bytes kept by all channels together; past it the least recently used "
             "channels without subscribers lose their history first (docs/security.md)",
     .default_shown = "256m", FIELD(history_total_bytes),
     .min = 64 * 1024, .max = 1ull << 40, .fix = "a size from 64k to 1024g, e.g. 256m"},
    {.name = "history-age", .arg = HSCD_ARG_DURATION, .metavar = "DUR", .group = HSCD_GROUP_CHANNELS,
     .help = "events older than this leave history",
     .default_shown = "1h", FIELD(history_age_ms),
     .min = 1, .fix = "a duration such as 10m or 1h"},
    {.name = "max-event-bytes", .arg = HSCD_ARG_SIZE, .metavar = "SIZE", .group = HSCD_GROUP_CHANNELS,
     .help = "one event's data; past it 413",
     .default_shown = "64k", FIELD(max_event_bytes),
     .max = 1ull << 30, .fix = "a size up to 1g, e.g. 64k"},
    {.name = "max-channels", .arg = HSCD_ARG_UNSIGNED, .metavar = "N", .group = HSCD_GROUP_CHANNELS,
     .help = "channels existing at once; past it the least recently used channel without "
             "subscribers goes, 503 when all have subscribers",
     .default_shown = "10000", FIELD(max_channels),
     .min = 1, .max = 100000000, .fix = "a positive number of channels"},
    {.name = "redis", .arg = HSCD_ARG_STRING, .metavar = "URL", .group = HSCD_GROUP_CHANNELS,
     .help = "cluster mode: ids, history and fan-out through Redis, shared by every node "
             "given the same URL: redis://[:PASSWORD@]HOST:PORT[/DB] or unix:///PATH "
             "(docs/cluster.md)",
     .handler = set_redis,
     .fix = "a URL such as redis://127.0.0.1:6379 or unix:///run/redis/redis.sock"},
    {.name = "redis-password-env", .arg = HSCD_ARG_STRING, .metavar = "VAR",
     .group = HSCD_GROUP_CHANNELS,
     .help = "Redis's password, read from environment variable VAR (not visible in ps)",
     .handler = set_redis,
     .fix = "the name of an environment variable"},
    {.name = "channel-create-rate", .arg = HSCD_ARG_UNSIGNED, .metavar = "N",
     .group = HSCD_GROUP_CHANNELS,
     .help = "new channels one client (JWT subject, else address) may create per second; past "
             "it 429; 0 = no limit",
     .default_shown = "100", FIELD(channel_create_rate),
     .max = 1000000, .fix = "a number of channels per second, 0 for no limit"},
    {.name = "channel-create-burst", .arg = HSCD_ARG_UNSIGNED, .metavar = "N",
     .group = HSCD_GROUP_CHANNELS,
     .help = "new channels one client may create at once, before the rate applies",
     .default_shown = "1000", FIELD(channel_create_burst),
     .min = 1, .max = 100000000, .fix = "a positive number of channels"},
    {.name = "max-subscription-channels", .arg = HSCD_ARG_UNSIGNED, .metavar = "N",
     .group = HSCD_GROUP_CHANNELS,
     .help = "channels in one subscription; past it 400",
     .default_shown = "16", FIELD(max_subscription_channels),
     .min = 1, .max = 1024, .fix = "a number of channels from 1 to 1024"},
    {.name = "retry", .arg = HSCD_ARG_DURATION, .metavar = "DUR", .group = HSCD_GROUP_CHANNELS,
     .help = "reconnection delay told to subscribers, plus up to 50% random jitter",
     .default_shown = "2s", FIELD(retry_ms),
     .max = 86400000, .fix = "a duration such as 2s"},
    {.name = "cors-origin", .arg = HSCD_ARG_STRING, .metavar = "ORIGINS", .group = HSCD_GROUP_CHANNELS,
     .help = "comma-separated origins (or *) whose pages may subscribe, publish and ask; "
             "repeatable",
     .default_shown = "none", .handler = add_cors_origin,
     .min = 1, .fix = "origins such as https://app.example, or *"},
    {.name = "cors-credentials", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_CHANNELS,
     .help = "let the exact --cors-origin origins (not *) send cookies, e.g. the hsc_token cookie",
     FIELD(cors_credentials)},

    /* Durability */
    {.name = "data-dir", .arg = HSCD_ARG_STRING, .metavar = "DIR", .group = HSCD_GROUP_DURABILITY,
     .help = "keep channels' events in a journal in DIR (created if missing, relative to the "
             "working directory), so a restart keeps history and ids; none = memory only",
     .default_shown = HSCD_DATA_DIR_DEFAULT, .handler = set_data_dir,
     .min = 1, .max = 4000, .fix = "a directory, or none"},
    {.name = "fsync", .arg = HSCD_ARG_STRING, .metavar = "WHEN", .group = HSCD_GROUP_DURABILITY,
     .help = "always: a publish is answered and delivered once on disk; batch: synced every "
             "--fsync-interval (a machine crash loses at most that); off: the kernel decides",
     .default_shown = "batch", .handler = set_fsync,
     .fix = "always, batch or off"},
    {.name = "fsync-interval", .arg = HSCD_ARG_DURATION, .metavar = "DUR",
     .group = HSCD_GROUP_DURABILITY,
     .help = "--fsync batch: the longest a written event waits to be synced",
     .default_shown = "50ms", FIELD(fsync_interval_ms),
     .min = 1, .max = 60000, .fix = "a duration from 1ms to 60s, e.g. 50ms"},
    {.name = "journal-segment-size", .arg = HSCD_ARG_SIZE, .metavar = "SIZE",
     .group = HSCD_GROUP_DURABILITY,
     .help = "a journal file's size before the next begins; compaction works in these steps",
     .default_shown = "64m", FIELD(journal_segment_bytes),
     .min = 4096, .max = 1ull << 30, .fix = "a size from 4k to 1g, e.g. 64m"},

    /* Authorization */
    {.name = "publish-token", .arg = HSCD_ARG_TOKEN, .metavar = "TOKEN", .group = HSCD_GROUP_AUTH,
     .help = "publishing needs Authorization: Bearer TOKEN",
     .env = "HSC_PUBLISH_TOKEN", FIELD(publish_token),
     .fix = "1-4096 printable characters, no spaces"},
    {.name = "subscribe-token", .arg = HSCD_ARG_TOKEN, .metavar = "TOKEN", .group = HSCD_GROUP_AUTH,
     .help = "the same for subscribing",
     .env = "HSC_SUBSCRIBE_TOKEN", FIELD(subscribe_token),
     .fix = "1-4096 printable characters, no spaces"},
    {.name = "stream-token", .arg = HSCD_ARG_TOKEN, .metavar = "TOKEN", .group = HSCD_GROUP_AUTH,
     .help = "the same for /v1/stream",
     .env = "HSC_STREAM_TOKEN", FIELD(stream_token),
     .fix = "1-4096 printable characters, no spaces"},
    {.name = "admin-token", .arg = HSCD_ARG_TOKEN, .metavar = "TOKEN", .group = HSCD_GROUP_AUTH,
     .help = "turns on the admin API (/v1/admin/...: channels, presence, disconnect), which "
             "needs Authorization: Bearer TOKEN; without it the API answers 404",
     .env = "HSC_ADMIN_TOKEN", FIELD(admin_token),
     .fix = "1-4096 printable characters, no spaces"},
    {.name = "jwt-key-file", .arg = HSCD_ARG_STRING, .metavar = "PATH", .group = HSCD_GROUP_AUTH,
     .help = "HS256 key for JWTs, read from a file; with a key every action needs a token "
             "whose claims allow it",
     .default_shown = "none", .handler = read_jwt_key,
     .fix = "a file holding the key"},
    {.name = "jwt-key-env", .arg = HSCD_ARG_STRING, .metavar = "VAR", .group = HSCD_GROUP_AUTH,
     .help = "the same, read from environment variable VAR",
     .default_shown = "none", .handler = read_jwt_key,
     .fix = "the name of an environment variable"},

    /* Limits */
    {.name = "max-connections", .arg = HSCD_ARG_UNSIGNED, .metavar = "N", .group = HSCD_GROUP_LIMITS,
     .help = "open connections; past it 503",
     .default_shown = "10000", FIELD(max_connections),
     .min = 1, .max = 10000000, .fix = "a positive number"},
    {.name = "max-header-bytes", .arg = HSCD_ARG_SIZE, .metavar = "SIZE", .group = HSCD_GROUP_LIMITS,
     .help = "request line + headers; past it 431",
     .default_shown = "16k", FIELD(max_header_bytes),
     .min = 256, .max = 65535, .fix = "a size from 256 to 65535, e.g. 16k"},
    {.name = "max-body-bytes", .arg = HSCD_ARG_SIZE, .metavar = "SIZE", .group = HSCD_GROUP_LIMITS,
     .help = "request body; past it 413",
     .default_shown = "1m", FIELD(max_body_bytes),
     .max = FOUR_G, .fix = "a size up to 4g, e.g. 1m"},
    {.name = "max-queue-bytes", .arg = HSCD_ARG_SIZE, .metavar = "SIZE", .group = HSCD_GROUP_LIMITS,
     .help = "unsent bytes per connection before it is dropped as too slow",
     .default_shown = "1m", FIELD(max_queue_bytes),
     .min = 4096, .max = FOUR_G, .fix = "a size from 4k to 4g, e.g. 1m"},
    {.name = "header-timeout", .arg = HSCD_ARG_DURATION, .metavar = "DUR", .group = HSCD_GROUP_LIMITS,
     .help = "time to send a request's head",
     .default_shown = "10s", FIELD(header_timeout_ms),
     .min = 1, .fix = "a duration such as 500ms or 10s"},
    {.name = "idle-timeout", .arg = HSCD_ARG_DURATION, .metavar = "DUR", .group = HSCD_GROUP_LIMITS,
     .help = "keep-alive wait, body stall",
     .default_shown = "60s", FIELD(idle_timeout_ms),
     .min = 1, .fix = "a duration such as 500ms or 10s"},
    {.name = "drain-timeout", .arg = HSCD_ARG_DURATION, .metavar = "DUR", .group = HSCD_GROUP_LIMITS,
     .help = "on SIGINT/SIGTERM, time streams may still run",
     .default_shown = "5s", FIELD(drain_timeout_ms),
     .fix = "a duration such as 500ms or 10s"},

    /* Compatibility */
    {.name = "legacy-get", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_COMPAT,
     .help = "serve GET /<percent-encoded text> as an answer",
     FIELD(legacy_get)},
    {.name = "server-ip", .aliases = {"server_ip"}, .arg = HSCD_ARG_STRING, .metavar = "HOST",
     .group = HSCD_GROUP_COMPAT,
     .help = "the host part of --listen",
     .handler = set_server_ip,
     .fix = "an IP address or localhost"},
    {.name = "server-port", .aliases = {"server_port"}, .arg = HSCD_ARG_UNSIGNED,
     .metavar = "PORT", .group = HSCD_GROUP_COMPAT,
     .help = "the port part of --listen",
     .handler = set_server_port,
     .max = 65535, .fix = "a port number from 0 to 65535"},

    /* Other */
    {.name = "config", .arg = HSCD_ARG_STRING, .metavar = "FILE", .group = HSCD_GROUP_OTHER,
     .help = "read settings from FILE, one 'NAME VALUE' per line (docs/operations.md); "
             "flags and the environment override it; SIGHUP reads it again",
     .default_shown = "none", .handler = set_config, .cli_only = 1,
     .min = 1, .max = 4095, .fix = "the path of a configuration file"},
    {.name = "check", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "check the configuration (file, environment, flags), say what is wrong, and exit",
     .handler = set_check, .cli_only = 1},
    {.name = "log-level", .arg = HSCD_ARG_LOG_LEVEL, .metavar = "LEVEL", .group = HSCD_GROUP_OTHER,
     .help = "error, warn, notice, info or debug",
     .default_shown = "notice", .handler = set_log_level,
     .fix = "one of error, warn, notice, info, debug"},
    {.name = "log-format", .arg = HSCD_ARG_STRING, .metavar = "FORMAT", .group = HSCD_GROUP_OTHER,
     .help = "text, or json: one object per line with time, level and message",
     .default_shown = "text", .handler = set_log_format,
     .min = 1, .max = 16, .fix = "text or json"},
    {.name = "access-log", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "log one line per response: request id, peer, method, path, status, bytes, "
             "duration",
     FIELD(access_log)},
    {.name = "help", .short_name = 'h', .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "show this help",
     .handler = show_help, .cli_only = 1},
    {.name = "version", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "show the version",
     .handler = show_version, .cli_only = 1},
    {.name = "help-markdown", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "print the flags as docs/hscd.md's Markdown section",
     .handler = show_markdown, .hidden = 1, .cli_only = 1},
};
/* clang-format on */

#define N_FLAGS     (sizeof flags / sizeof flags[0])
#define MAX_ALIASES (sizeof flags[0].aliases / sizeof flags[0].aliases[0] - 1)
_Static_assert(N_FLAGS <= HSCD_FLAGS_MAX, "raise HSCD_FLAGS_MAX");

static FILE *err_file;

void hscd_flags_set_err(FILE *f)
{
    err_file = f;
}

FILE *hscd_flags_err(void)
{
    return err_file != NULL ? err_file : stderr;
}

const hscd_flag_t *hscd_flags_table(size_t *count)
{
    *count = N_FLAGS;
    return flags;
}

const hscd_flag_t *hscd_flags_find(const char *name)
{
    for (size_t i = 0; i < N_FLAGS; i++) {
        if (strcmp(flags[i].name, name) == 0)
            return &flags[i];
        for (size_t a = 0; flags[i].aliases[a] != NULL; a++)
            if (strcmp(flags[i].aliases[a], name) == 0)
                return &flags[i];
    }
    return NULL;
}

/* ---- setting a flag ----------------------------------------------------------------------- */

void hscd_flags_init(hscd_flags_t *fl)
{
    memset(fl, 0, sizeof *fl);
    hsc_server_config_init(&fl->cfg);
    fl->cfg.data_dir = HSCD_DATA_DIR_DEFAULT; /* hscd is durable by default; the library not */
    fl->log_level = HSC_LOG_NOTICE;
}

void hscd_flags_dispose(hscd_flags_t *fl)
{
    for (size_t i = 0; i < HSCD_FLAGS_MAX; i++)
        free(fl->copies[i]);
    memset(fl, 0, sizeof *fl);
}

/* A string the configuration keeps: aborts when out of memory (a few bytes at start-up). */
static char *copy_or_abort(const char *s)
{
    char *c = strdup(s);
    if (c == NULL)
        abort();
    return c;
}

static int bad_value(const char *flag, const char *value, const char *fix)
{
    if (flag[0] == '$') /* from the environment: perhaps a secret, so not repeated */
        fprintf(hscd_flags_err(), "hscd: %s: invalid value (%s)\n", flag, fix);
    else
        fprintf(hscd_flags_err(), "hscd: %s: invalid value '%s' (%s)\n", flag, value, fix);
    return HSC_EINVAL;
}

/* A decimal number, digits only (no sign, no spaces), as the flags always took it. */
static int parse_number(const char *s, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

/* A static token: printable ASCII without spaces, as it travels in a header. */
static bool token_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 4096)
        return false;
    for (size_t i = 0; i < n; i++)
        if (t[i] <= 0x20 || t[i] >= 0x7f)
            return false;
    return true;
}

/* Checks `value` against the entry's kind and range; *n gets the number (1 for a switch). */
static bool value_ok(const hscd_flag_t *f, const char *value, uint64_t *n)
{
    uint64_t max = f->max != 0 ? f->max : UINT64_MAX;
    hsc_log_level_t level;
    *n = 0;
    switch (f->arg) {
    case HSCD_ARG_NONE:
        *n = 1;
        return true;
    case HSCD_ARG_STRING: {
        size_t len = strlen(value);
        return len >= f->min && len <= max;
    }
    case HSCD_ARG_TOKEN:
        return token_ok(value);
    case HSCD_ARG_UNSIGNED:
        if (parse_number(value, n) != 0)
            return false;
        break;
    case HSCD_ARG_SIZE:
        if (hsc_parse_size(value, n) != 0)
            return false;
        break;
    case HSCD_ARG_DURATION:
        if (hsc_parse_duration(value, n) != 0)
            return false;
        break;
    case HSCD_ARG_LOG_LEVEL:
        if (hsc_log_level_parse(value, &level) != 0)
            return false;
        *n = (uint64_t)level;
        return true;
    }
    return *n >= f->min && *n <= max;
}

/* The field's typed setter: numbers by the field's width, strings copied. */
static void store_field(hscd_flags_t *fl, const hscd_flag_t *f, const char *value, uint64_t n)
{
    char *field = (char *)&fl->cfg + f->offset;
    if (f->arg == HSCD_ARG_STRING || f->arg == HSCD_ARG_TOKEN) {
        size_t i = (size_t)(f - flags);
        free(fl->copies[i]);
        fl->copies[i] = copy_or_abort(value);
        const char *s = fl->copies[i];
        memcpy(field, &s, sizeof s);
    } else if (f->size == sizeof(uint32_t)) {
        uint32_t v = (uint32_t)n;
        memcpy(field, &v, sizeof v);
    } else if (f->size == sizeof(uint64_t)) {
        memcpy(field, &n, sizeof n);
    } else {
        abort(); /* a table entry the unit test refuses */
    }
}

/* Applies one entry; `flag` names it in messages ("--server_port", "$HSC_STREAM_TOKEN"). */
static int apply_entry(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value)
{
    uint64_t n;
    if (!value_ok(f, value, &n))
        return bad_value(flag, value, f->fix);
    if (f->handler != NULL)
        return f->handler(fl, f, flag, value, n);
    store_field(fl, f, value, n);
    return 0;
}

int hscd_flags_apply(hscd_flags_t *fl, const char *name, const char *value)
{
    char flag[80];
    snprintf(flag, sizeof flag, "--%s", name);
    return hscd_flags_apply_as(fl, name, value, flag);
}

void hscd_flags_clear_switch(hscd_flags_t *fl, const hscd_flag_t *f)
{
    if (f->arg == HSCD_ARG_NONE && f->handler == NULL)
        store_field(fl, f, NULL, 0);
}

int hscd_flags_apply_as(hscd_flags_t *fl, const char *name, const char *value, const char *flag)
{
    const hscd_flag_t *f = hscd_flags_find(name);
    if (f == NULL) {
        fprintf(hscd_flags_err(), "hscd: unknown option '%s'\nTry 'hscd --help'.\n", flag);
        return HSC_EINVAL;
    }
    if (f->arg == HSCD_ARG_NONE && value != NULL) {
        fprintf(hscd_flags_err(), "hscd: %s takes no value\nTry 'hscd --help'.\n", flag);
        return HSC_EINVAL;
    }
    if (f->arg != HSCD_ARG_NONE && value == NULL) {
        fprintf(hscd_flags_err(), "hscd: %s needs a value\nTry 'hscd --help'.\n", flag);
        return HSC_EINVAL;
    }
    return apply_entry(fl, f, flag, value);
}

int hscd_flags_apply_env(hscd_flags_t *fl)
{
    for (size_t i = 0; i < N_FLAGS; i++) {
        if (flags[i].env == NULL)
            continue;
        const char *v = getenv(flags[i].env);
        if (v == NULL || v[0] == '\0')
            continue;
        char flag[80];
        snprintf(flag, sizeof flag, "$%s", flags[i].env);
        int rc = apply_entry(fl, &flags[i], flag, v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- the handlers ------------------------------------------------------------------------- */

static int set_server_ip(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                         const char *value, uint64_t n)
{
    (void)f, (void)n;
    snprintf(fl->ip, sizeof fl->ip, "%s", value);
    snprintf(fl->ip_flag, sizeof fl->ip_flag, "%s", flag);
    return 0;
}

static int set_server_port(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value, uint64_t n)
{
    (void)f, (void)flag, (void)value;
    snprintf(fl->port, sizeof fl->port, "%u", (unsigned)n);
    return 0;
}

/* The log level is the process's, not the server's: main() applies it (hsc_log_set_level). */
static int set_log_level(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                         const char *value, uint64_t n)
{
    (void)f, (void)flag, (void)value;
    fl->log_level = (hsc_log_level_t)n;
    return 0;
}

/* --data-dir DIR, or none for memory only. */
static int set_data_dir(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n)
{
    (void)flag, (void)n;
    if (strcmp(value, "none") == 0) {
        fl->cfg.data_dir = NULL;
        return 0;
    }
    size_t i = (size_t)(f - flags);
    free(fl->copies[i]);
    fl->copies[i] = copy_or_abort(value);
    fl->cfg.data_dir = fl->copies[i];
    return 0;
}

static int set_fsync(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                     uint64_t n)
{
    (void)n;
    if (strcmp(value, "always") == 0)
        fl->cfg.fsync_mode = HSC_FSYNC_ALWAYS;
    else if (strcmp(value, "batch") == 0)
        fl->cfg.fsync_mode = HSC_FSYNC_BATCH;
    else if (strcmp(value, "off") == 0)
        fl->cfg.fsync_mode = HSC_FSYNC_OFF;
    else
        return bad_value(flag, value, f->fix);
    return 0;
}

/* The log format is the process's too: main() applies it (hsc_log_set_format). */
static int set_log_format(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                          const char *value, uint64_t n)
{
    (void)n;
    hsc_log_format_t format;
    if (hsc_log_format_parse(value, &format) != 0)
        return bad_value(flag, value, f->fix);
    fl->log_format = format;
    return 0;
}

/*
 * --redis is checked here, so that a bad URL is refused with its reason before anything starts
 * (never echoed: it may hold a password); --redis-password-env names a variable that must be set.
 */
static int set_redis(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                     uint64_t n)
{
    (void)n;
    if (strcmp(f->name, "redis") == 0) {
        const char *why = "";
        if (hsc_redis_url_check(value, &why) != 0) {
            fprintf(stderr, "hscd: %s: %s (use %s)\n", flag, why, f->fix);
            return HSC_EINVAL;
        }
        size_t i = (size_t)(f - flags);
        free(fl->copies[i]);
        fl->copies[i] = copy_or_abort(value);
        fl->cfg.redis = fl->copies[i];
        return 0;
    }
    const char *pw = *value ? getenv(value) : NULL;
    if (pw == NULL || *pw == '\0') {
        fprintf(stderr, "hscd: %s: the environment variable '%s' is not set or empty\n", flag,
                value);
        return HSC_EINVAL;
    }
    size_t i = (size_t)(f - flags);
    free(fl->copies[i]);
    fl->copies[i] = copy_or_abort(value);
    fl->cfg.redis_password_env = fl->copies[i];
    return 0;
}

/* Each --cors-origin adds to the list; at most 4 KiB in all. */
static int add_cors_origin(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value, uint64_t n)
{
    (void)n;
    if (strpbrk(value, "\r\n") != NULL)
        return bad_value(flag, value, f->fix);
    if (fl->cors_source != fl->source) { /* the command line's list replaces the file's */
        fl->cors[0] = '\0';
        fl->cors_source = fl->source;
    }
    size_t used = strlen(fl->cors);
    if (used + (used > 0) + strlen(value) >= sizeof fl->cors)
        return bad_value(flag, value, "at most 4 KiB of origins in all");
    if (used > 0)
        fl->cors[used++] = ',';
    memcpy(fl->cors + used, value, strlen(value) + 1);
    fl->cfg.cors_origin = fl->cors;
    return 0;
}

/*
 * Reads the JWT key from a file (--jwt-key-file) or an environment variable (--jwt-key-env),
 * never from a flag's value, which any user sees in ps. A file's final line end is dropped. At
 * least 32 bytes (RFC 7518: a key as long as the hash), at most 4 KiB.
 */
static int read_jwt_key(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *where,
                        uint64_t n_unused)
{
    (void)n_unused;
    bool from_file = strcmp(f->name, "jwt-key-file") == 0;
    char *key = fl->jwt_key;
    size_t n = 0;
    if (from_file) {
        FILE *fp = fopen(where, "rb");
        if (fp == NULL) {
            fprintf(hscd_flags_err(), "hscd: %s: cannot read '%s': %s\n", flag, where,
                    strerror(errno));
            return HSC_EINVAL;
        }
        n = fread(key, 1, sizeof fl->jwt_key, fp);
        fclose(fp);
        while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r'))
            n--;
    } else {
        const char *v = getenv(where);
        if (v == NULL) {
            fprintf(hscd_flags_err(), "hscd: %s: environment variable '%s' is not set\n", flag,
                    where);
            return HSC_EINVAL;
        }
        n = strlen(v);
        memcpy(key, v, n < sizeof fl->jwt_key ? n : sizeof fl->jwt_key);
        if (strlen(where) >= sizeof fl->jwt_key_env) {
            fprintf(hscd_flags_err(), "hscd: %s: the variable's name is too long\n", flag);
            return HSC_EINVAL;
        }
    }
    if (n < 32 || n >= sizeof fl->jwt_key) {
        fprintf(hscd_flags_err(), "hscd: %s: the key must be 32 to 4096 bytes (it is %s%zu)\n",
                flag, n >= sizeof fl->jwt_key ? "over " : "", n);
        return HSC_EINVAL;
    }
    fl->cfg.jwt_key = key;
    fl->cfg.jwt_key_len = n;
    /* Responders must not see the variable (docs/responders.md); a key from a file is kept from
     * them too, by its value. */
    if (!from_file)
        memcpy(fl->jwt_key_env, where, strlen(where) + 1);
    fl->cfg.jwt_key_env = from_file ? NULL : fl->jwt_key_env;
    return 0;
}

static int show_help(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                     uint64_t n)
{
    (void)fl, (void)f, (void)flag, (void)value, (void)n;
    hscd_flags_print_help(stdout);
    return HSCD_FLAGS_DONE;
}

static int show_version(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n)
{
    (void)fl, (void)f, (void)flag, (void)value, (void)n;
    printf("hscd %s\n", HSC_VERSION_STRING);
    return HSCD_FLAGS_DONE;
}

static int show_markdown(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                         const char *value, uint64_t n)
{
    (void)fl, (void)f, (void)flag, (void)value, (void)n;
    hscd_flags_print_markdown(stdout);
    return HSCD_FLAGS_DONE;
}

static int set_config(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                      uint64_t n)
{
    (void)f, (void)flag, (void)n;
    snprintf(fl->config, sizeof fl->config, "%s", value);
    return 0;
}

static int set_check(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                     uint64_t n)
{
    (void)f, (void)flag, (void)value, (void)n;
    fl->check = 1;
    return 0;
}

/* ---- argv --------------------------------------------------------------------------------- */

/*
 * getopt_long() said '?': name the option the user typed and what was wrong with it. `opt` is
 * optopt: 256 + the entry's index for a known long option, a letter for a short one, 0 for an
 * unknown long option.
 */
static int option_error(char **argv, int opt)
{
    const char *typed = argv[optind - 1];
    if (opt >= 256 && (size_t)(opt - 256) < N_FLAGS) {
        const hscd_flag_t *f = &flags[opt - 256];
        /* the spelling typed when it is a whole one, else the entry's name (an abbreviation) */
        const char *name = f->name;
        size_t len = strcspn(typed + 2, "=");
        for (size_t a = 0; f->aliases[a] != NULL; a++)
            if (strncmp(typed + 2, f->aliases[a], len) == 0 && f->aliases[a][len] == '\0')
                name = f->aliases[a];
        fprintf(hscd_flags_err(), "hscd: --%s %s\n", name,
                f->arg == HSCD_ARG_NONE ? "takes no value" : "needs a value");
    } else if (opt > 0 && opt < 256) {
        fprintf(hscd_flags_err(), "hscd: unknown option '-%c'\n", opt);
    } else {
        fprintf(hscd_flags_err(), "hscd: unknown option '%s'\n", typed);
    }
    fprintf(hscd_flags_err(), "Try 'hscd --help'.\n");
    return HSC_EINVAL;
}

int hscd_flags_parse_argv(hscd_flags_t *fl, int argc, char **argv)
{
    /* Every spelling of entry i returns 256 + i, so abbreviations resolve as they always did. */
    struct option opts[N_FLAGS * (1 + MAX_ALIASES) + 1];
    char shorts[N_FLAGS + 1];
    size_t o = 0, s = 0;
    for (size_t i = 0; i < N_FLAGS; i++) {
        int has_arg = flags[i].arg == HSCD_ARG_NONE ? no_argument : required_argument;
        opts[o++] = (struct option){flags[i].name, has_arg, NULL, 256 + (int)i};
        for (size_t a = 0; flags[i].aliases[a] != NULL; a++)
            opts[o++] = (struct option){flags[i].aliases[a], has_arg, NULL, 256 + (int)i};
        if (flags[i].short_name != 0) /* switches only */
            shorts[s++] = flags[i].short_name;
    }
    opts[o] = (struct option){NULL, 0, NULL, 0};
    shorts[s] = '\0';

    opterr = 0;
    optind = 0; /* glibc and musl: start afresh, so that a second parse works too */
    int opt, longindex = -1;
    while ((opt = getopt_long(argc, argv, shorts, opts, &longindex)) != -1) {
        const char *name = NULL;
        if (opt == '?')
            return option_error(argv, optopt);
        if (opt >= 256) {
            name = opts[longindex].name;
        } else {
            for (size_t i = 0; i < N_FLAGS && name == NULL; i++)
                if (flags[i].short_name == opt)
                    name = flags[i].name;
        }
        int rc = hscd_flags_apply(fl, name, optarg);
        if (rc != 0)
            return rc;
    }
    if (optind < argc) {
        fprintf(hscd_flags_err(), "hscd: unexpected argument '%s'\nTry 'hscd --help'.\n",
                argv[optind]);
        return HSC_EINVAL;
    }
    return 0;
}

int hscd_flags_load(hscd_flags_t *fl, int argc, char **argv)
{
    /* A first pass finds --config (and stops at --help or a bad flag), so that the file can be
     * read before the command line that overrides it. */
    hscd_flags_t first;
    hscd_flags_init(&first);
    int rc = hscd_flags_parse_argv(&first, argc, argv);
    snprintf(fl->config, sizeof fl->config, "%s", first.config);
    hscd_flags_dispose(&first);
    if (rc != 0)
        return rc;
    fl->source = 1;
    if (fl->config[0] != '\0' && (rc = hscd_flags_load_file(fl, fl->config)) != 0)
        return rc;
    fl->source = 2;
    if ((rc = hscd_flags_apply_env(fl)) != 0)
        return rc;
    fl->source = 3;
    if ((rc = hscd_flags_parse_argv(fl, argc, argv)) != 0)
        return rc;
    return hscd_flags_finish(fl);
}

/* ---- after all flags ---------------------------------------------------------------------- */

/* Whether a --cors-origin list names an origin other than "*". */
static bool has_exact_origin(const char *list)
{
    for (const char *p = list; p != NULL && *p != '\0';) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t k = n;
        while (k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'))
            k--;
        if (k > 0 && !(k == 1 && *p == '*'))
            return true;
        p += n;
    }
    return false;
}

int hscd_flags_finish(hscd_flags_t *fl)
{
    hsc_server_config_t *cfg = &fl->cfg;
    if (cfg->pool > 0 && cfg->exec == NULL) {
        fprintf(hscd_flags_err(), "hscd: --pool needs --exec 'CMD' (the worker program)\n");
        return HSC_EINVAL;
    }
    if (cfg->cors_credentials && !has_exact_origin(cfg->cors_origin)) {
        fprintf(hscd_flags_err(),
                "hscd: --cors-credentials needs --cors-origin with exact origins such as "
                "https://app.example (credentials are never allowed to *)\n");
        return HSC_EINVAL;
    }
    if (fl->ip[0] != '\0' || fl->port[0] != '\0') {
        /* The template's --server_ip / --server_port override the matching half of --listen. */
        const char *l = cfg->listen;
        const char *colon = strrchr(l, ':');
        char lhost[128];
        snprintf(lhost, sizeof lhost, "%.*s", colon ? (int)(colon - l) : 0, l);
        const char *h = fl->ip[0] ? fl->ip : lhost;
        const char *p = fl->port[0] ? fl->port : (colon ? colon + 1 : "8000");
        bool v6 = strchr(h, ':') != NULL && h[0] != '[';
        snprintf(fl->listen, sizeof fl->listen, v6 ? "[%s]:%s" : "%s:%s", h, p);
        cfg->listen = fl->listen;
    }
    return 0;
}

void hscd_flags_explain_bad_address(const hscd_flags_t *fl)
{
    if (fl->ip[0] != '\0') {
        const hscd_flag_t *f = hscd_flags_find("server-ip");
        bad_value(fl->ip_flag, fl->ip, f->fix);
        return;
    }
    fprintf(hscd_flags_err(),
            "hscd: --listen: invalid address '%s' (use HOST:PORT with an IP address or "
            "localhost, e.g. 127.0.0.1:8000 or [::1]:8000)\n",
            fl->cfg.listen);
}
