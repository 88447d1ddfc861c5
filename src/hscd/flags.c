/*
 * hscd's flags: the table (`flags[]` below) and the look-ups on it. The rest of the flags live
 * apart: flags_apply.c sets a flag by name (hscd_flags_apply: checking a value, storing it, the
 * handlers of the entries that are not one field), flags_load.c reads the environment and the
 * command line and runs the checks that involve several flags; help.c renders the table twice:
 * `--help` and the Markdown section of docs/hscd.md (`--help-markdown`).
 *
 * Adding a flag is adding an entry: its spelling, kind, range, help text and default, then either
 * FIELD(member) of hsc_server_config_t or a handler (flags_apply.c, declared in flags_int.h).
 * Nothing else lists flags; getopt_long()'s options are built from the table at each parse, and
 * tests/integration/test_flags.py fails until docs/hscd.md is regenerated
 * (scripts/gen-flag-docs.sh).
 *
 * Invariants: every spelling (name, alias) is unique; a field entry's storage is 4 or 8 bytes
 * and its max fits (tests/unit/test_flags.c checks both, and that each default shown parses to
 * what hsc_server_config_init() sets).
 *
 * The Python template's spellings (--server_ip, --server_port, --max_gen_len) are aliases:
 * accepted everywhere, listed under the template's heading in --help.
 */
#include "flags_int.h"

#include <stddef.h>
#include <string.h>

/* ---- the table ---------------------------------------------------------------------------- */

#define FIELD(member)                                                                              \
    .offset = offsetof(hsc_server_config_t, member),                                               \
    .size = sizeof(((hsc_server_config_t *)0)->member)

#define FOUR_G (1ull << 32)

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
    {.name = "listen-tls", .arg = HSCD_ARG_STRING, .metavar = "HOST:PORT", .group = HSCD_GROUP_LISTEN,
     .help = "an address that speaks TLS (with --tls-cert) while the one of --listen stays "
             "cleartext; without it, TLS is spoken on --listen",
     .default_shown = "none", FIELD(listen_tls),
     .min = 1, .fix = "HOST:PORT, e.g. 0.0.0.0:443 or [::]:443"},
    {.name = "tls-cert", .arg = HSCD_ARG_STRING, .metavar = "FILE", .group = HSCD_GROUP_LISTEN,
     .help = "PEM certificate, followed by its chain, for TLS 1.2 and 1.3 (docs/tls.md); read "
             "again on SIGHUP",
     .default_shown = "none", FIELD(tls_cert),
     .min = 1, .fix = "the path of a PEM certificate file"},
    {.name = "tls-key", .arg = HSCD_ARG_STRING, .metavar = "FILE", .group = HSCD_GROUP_LISTEN,
     .help = "PEM private key of --tls-cert (unencrypted); read again on SIGHUP",
     .default_shown = "none", FIELD(tls_key),
     .min = 1, .fix = "the path of a PEM private key file"},
    {.name = "threads", .arg = HSCD_ARG_UNSIGNED, .metavar = "N", .group = HSCD_GROUP_LISTEN,
     .help = "worker threads, one event loop each",
     .default_shown = "cores", FIELD(threads),
     .min = 1, .max = 256, .fix = "a number of threads from 1 to 256"},
    {.name = "no-http2", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_LISTEN,
     .help = "speak HTTP/1.1 only: a connection opening with the HTTP/2 preface gets 505 "
             "(docs/http2.md)",
     .handler = hscd_flag_no_http2},
    {.name = "h2-max-streams", .arg = HSCD_ARG_UNSIGNED, .metavar = "N", .group = HSCD_GROUP_LISTEN,
     .help = "HTTP/2 streams one connection may have open at once; past it a new stream is "
             "refused",
     .default_shown = "100", FIELD(h2_max_streams),
     .min = 1, .max = 100000, .fix = "a number of streams from 1 to 100000"},

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
     .handler = hscd_flag_set_redis,
     .fix = "a URL such as redis://127.0.0.1:6379 or unix:///run/redis/redis.sock"},
    {.name = "redis-password-env", .arg = HSCD_ARG_STRING, .metavar = "VAR",
     .group = HSCD_GROUP_CHANNELS,
     .help = "Redis's password, read from environment variable VAR (not visible in ps)",
     .handler = hscd_flag_set_redis,
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
     .default_shown = "none", .handler = hscd_flag_add_cors_origin,
     .min = 1, .fix = "origins such as https://app.example, or *"},
    {.name = "cors-credentials", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_CHANNELS,
     .help = "let the exact --cors-origin origins (not *) send cookies, e.g. the hsc_token cookie",
     FIELD(cors_credentials)},

    /* Durability */
    {.name = "data-dir", .arg = HSCD_ARG_STRING, .metavar = "DIR", .group = HSCD_GROUP_DURABILITY,
     .help = "keep channels' events in a journal in DIR (created if missing, relative to the "
             "working directory), so a restart keeps history and ids; none = memory only",
     .default_shown = HSCD_DATA_DIR_DEFAULT, .handler = hscd_flag_set_data_dir,
     .min = 1, .max = 4000, .fix = "a directory, or none"},
    {.name = "fsync", .arg = HSCD_ARG_STRING, .metavar = "WHEN", .group = HSCD_GROUP_DURABILITY,
     .help = "always: a publish is answered and delivered once on disk; batch: synced every "
             "--fsync-interval (a machine crash loses at most that); off: the kernel decides",
     .default_shown = "batch", .handler = hscd_flag_set_fsync,
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
     .default_shown = "none", .handler = hscd_flag_read_jwt_key,
     .fix = "a file holding the key"},
    {.name = "jwt-key-env", .arg = HSCD_ARG_STRING, .metavar = "VAR", .group = HSCD_GROUP_AUTH,
     .help = "the same, read from environment variable VAR",
     .default_shown = "none", .handler = hscd_flag_read_jwt_key,
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
     .handler = hscd_flag_set_server_ip,
     .fix = "an IP address or localhost"},
    {.name = "server-port", .aliases = {"server_port"}, .arg = HSCD_ARG_UNSIGNED,
     .metavar = "PORT", .group = HSCD_GROUP_COMPAT,
     .help = "the port part of --listen",
     .handler = hscd_flag_set_server_port,
     .max = 65535, .fix = "a port number from 0 to 65535"},

    /* Other */
    {.name = "config", .arg = HSCD_ARG_STRING, .metavar = "FILE", .group = HSCD_GROUP_OTHER,
     .help = "read settings from FILE, one 'NAME VALUE' per line (docs/operations.md); "
             "flags and the environment override it; SIGHUP reads it again",
     .default_shown = "none", .handler = hscd_flag_set_config, .cli_only = 1,
     .min = 1, .max = 4095, .fix = "the path of a configuration file"},
    {.name = "check", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "check the configuration (file, environment, flags), say what is wrong, and exit",
     .handler = hscd_flag_set_check, .cli_only = 1},
    {.name = "log-level", .arg = HSCD_ARG_LOG_LEVEL, .metavar = "LEVEL", .group = HSCD_GROUP_OTHER,
     .help = "error, warn, notice, info or debug",
     .default_shown = "notice", .handler = hscd_flag_set_log_level,
     .fix = "one of error, warn, notice, info, debug"},
    {.name = "log-format", .arg = HSCD_ARG_STRING, .metavar = "FORMAT", .group = HSCD_GROUP_OTHER,
     .help = "text, or json: one object per line with time, level and message",
     .default_shown = "text", .handler = hscd_flag_set_log_format,
     .min = 1, .max = 16, .fix = "text or json"},
    {.name = "access-log", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "log one line per response: request id, peer, method, path, status, bytes, "
             "duration",
     FIELD(access_log)},
    {.name = "help", .short_name = 'h', .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "show this help",
     .handler = hscd_flag_show_help, .cli_only = 1},
    {.name = "version", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "show the version",
     .handler = hscd_flag_show_version, .cli_only = 1},
    {.name = "help-markdown", .arg = HSCD_ARG_NONE, .group = HSCD_GROUP_OTHER,
     .help = "print the flags as docs/hscd.md's Markdown section",
     .handler = hscd_flag_show_markdown, .hidden = 1, .cli_only = 1},
};
/* clang-format on */

#define N_FLAGS (sizeof flags / sizeof flags[0])
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

size_t hscd_flags_index(const hscd_flag_t *f)
{
    return (size_t)(f - flags);
}
