/*
 * hscd: the hsc server daemon. Parses flags into an hsc_server_config_t, runs the server, maps
 * the result to an exit status: 0 after a clean shutdown, 1 when the server cannot start (address
 * in use...), 2 for a bad command line (the message names the flag).
 *
 * The Python template's flag spellings (--server_ip, --server_port, --max_gen_len) are accepted
 * as aliases so that its users switch by changing one command.
 */
#include "hsc/codec.h"
#include "hsc/server.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_LISTEN = 256,
    OPT_SERVER_IP,
    OPT_SERVER_PORT,
    OPT_THREADS,
    OPT_MAX_GEN_LEN,
    OPT_INTERVAL,
    OPT_LEGACY_GET,
    OPT_MAX_CONNECTIONS,
    OPT_MAX_HEADER_BYTES,
    OPT_MAX_BODY_BYTES,
    OPT_MAX_QUEUE_BYTES,
    OPT_HEADER_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_DRAIN_TIMEOUT,
    OPT_LOG_LEVEL,
    OPT_EXEC,
    OPT_POOL,
    OPT_MAX_PROCESSES,
    OPT_QUEUE,
    OPT_RESPONDER_TIMEOUT,
    OPT_KILL_GRACE,
    OPT_KEEPALIVE,
    OPT_HISTORY,
    OPT_HISTORY_BYTES,
    OPT_HISTORY_AGE,
    OPT_MAX_EVENT_BYTES,
    OPT_MAX_CHANNELS,
    OPT_MAX_SUB_CHANNELS,
    OPT_RETRY,
    OPT_CORS_ORIGIN,
    OPT_PUBLISH_TOKEN,
    OPT_SUBSCRIBE_TOKEN,
    OPT_STREAM_TOKEN,
    OPT_JWT_KEY_FILE,
    OPT_JWT_KEY_ENV,
    OPT_VERSION
};

static const struct option options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"server_ip", required_argument, NULL, OPT_SERVER_IP},
    {"server-ip", required_argument, NULL, OPT_SERVER_IP},
    {"server_port", required_argument, NULL, OPT_SERVER_PORT},
    {"server-port", required_argument, NULL, OPT_SERVER_PORT},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-gen-len", required_argument, NULL, OPT_MAX_GEN_LEN},
    {"max_gen_len", required_argument, NULL, OPT_MAX_GEN_LEN},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"legacy-get", no_argument, NULL, OPT_LEGACY_GET},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"max-header-bytes", required_argument, NULL, OPT_MAX_HEADER_BYTES},
    {"max-body-bytes", required_argument, NULL, OPT_MAX_BODY_BYTES},
    {"max-queue-bytes", required_argument, NULL, OPT_MAX_QUEUE_BYTES},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"exec", required_argument, NULL, OPT_EXEC},
    {"pool", required_argument, NULL, OPT_POOL},
    {"max-processes", required_argument, NULL, OPT_MAX_PROCESSES},
    {"queue", required_argument, NULL, OPT_QUEUE},
    {"responder-timeout", required_argument, NULL, OPT_RESPONDER_TIMEOUT},
    {"kill-grace", required_argument, NULL, OPT_KILL_GRACE},
    {"keepalive", required_argument, NULL, OPT_KEEPALIVE},
    {"history", required_argument, NULL, OPT_HISTORY},
    {"history-bytes", required_argument, NULL, OPT_HISTORY_BYTES},
    {"history-age", required_argument, NULL, OPT_HISTORY_AGE},
    {"max-event-bytes", required_argument, NULL, OPT_MAX_EVENT_BYTES},
    {"max-channels", required_argument, NULL, OPT_MAX_CHANNELS},
    {"max-subscription-channels", required_argument, NULL, OPT_MAX_SUB_CHANNELS},
    {"retry", required_argument, NULL, OPT_RETRY},
    {"cors-origin", required_argument, NULL, OPT_CORS_ORIGIN},
    {"publish-token", required_argument, NULL, OPT_PUBLISH_TOKEN},
    {"subscribe-token", required_argument, NULL, OPT_SUBSCRIBE_TOKEN},
    {"stream-token", required_argument, NULL, OPT_STREAM_TOKEN},
    {"jwt-key-file", required_argument, NULL, OPT_JWT_KEY_FILE},
    {"jwt-key-env", required_argument, NULL, OPT_JWT_KEY_ENV},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fputs("Usage: hscd [OPTIONS]\n"
          "\n"
          "hsc's server: streams answers piece by piece over plain HTTP (chunked or\n"
          "Server-Sent Events) and serves the demo page at /.\n"
          "\n"
          "Listening\n"
          "  --listen HOST:PORT       address to listen on; [::1]:PORT for IPv6, port 0\n"
          "                           picks a free port          (default 127.0.0.1:8000)\n"
          "  --threads N              worker threads, one event loop each (default: cores)\n"
          "\n"
          "Responders (default: the built-in demo)\n"
          "  --exec 'CMD ARGS'        run CMD (with /bin/sh -c) for each request: the text\n"
          "                           on stdin, the answer from stdout (docs/responders.md)\n"
          "  --pool N                 run --exec as N long-lived workers that speak the\n"
          "                           framed protocol of docs/responder-protocol.md\n"
          "                           (default 0: one process per request)\n"
          "  --max-processes N        --exec processes running at once     (default 64)\n"
          "  --queue N                requests waiting for a responder; past it 503\n"
          "                                                             (default 256)\n"
          "  --responder-timeout DUR  an answer taking longer fails; 0 = none (default 10m)\n"
          "  --kill-grace DUR         SIGTERM, then SIGKILL after this   (default 500ms)\n"
          "  --keepalive DUR          SSE answers and channels: a comment line while the\n"
          "                           stream is silent; 0 = never        (default 15s)\n"
          "  --max-gen-len N          demo: pieces per answer                (default 10)\n"
          "  --interval DURATION      demo: time between pieces, e.g. 250ms (default 200ms)\n"
          "\n"
          "Channels (/v1/events, docs/api.md)\n"
          "  --history N              events kept per channel for resuming; 0 = none\n"
          "                                                             (default 100)\n"
          "  --history-bytes SIZE     encoded bytes kept per channel   (default 256k)\n"
          "  --history-age DUR        events older than this leave history (default 1h)\n"
          "  --max-event-bytes SIZE   one event's data; past it 413      (default 64k)\n"
          "  --max-channels N         channels existing at once; past it 503\n"
          "                                                           (default 10000)\n"
          "  --max-subscription-channels N\n"
          "                           channels in one subscription; past it 400\n"
          "                                                              (default 16)\n"
          "  --retry DUR              reconnection delay told to subscribers, plus up\n"
          "                           to 50% random jitter               (default 2s)\n"
          "  --cors-origin ORIGINS    comma-separated origins (or *) whose pages may\n"
          "                           subscribe, publish and ask; repeatable (default none)\n"
          "\n"
          "Authorization (docs/security.md; none by default: everyone may do everything)\n"
          "  --publish-token TOKEN    publishing needs Authorization: Bearer TOKEN\n"
          "                           (default $HSC_PUBLISH_TOKEN)\n"
          "  --subscribe-token TOKEN  the same for subscribing (default $HSC_SUBSCRIBE_TOKEN)\n"
          "  --stream-token TOKEN     the same for /v1/stream (default $HSC_STREAM_TOKEN)\n"
          "  --jwt-key-file PATH      HS256 key for JWTs, read from a file; with a key\n"
          "                           every action needs a token whose claims allow it\n"
          "  --jwt-key-env VAR        the same, read from environment variable VAR\n"
          "\n"
          "Limits\n"
          "  --max-connections N      open connections; past it 503   (default 10000)\n"
          "  --max-header-bytes SIZE  request line + headers; past it 431 (default 16k)\n"
          "  --max-body-bytes SIZE    request body; past it 413          (default 1m)\n"
          "  --max-queue-bytes SIZE   unsent bytes per connection before it is\n"
          "                           dropped as too slow                (default 1m)\n"
          "  --header-timeout DUR     time to send a request's head      (default 10s)\n"
          "  --idle-timeout DUR       keep-alive wait, body stall        (default 60s)\n"
          "  --drain-timeout DUR      on SIGINT/SIGTERM, time streams may still run\n"
          "                                                              (default 5s)\n"
          "\n"
          "Compatibility with the Python HTTP-Stream-Communicator template\n"
          "  --legacy-get             serve GET /<percent-encoded text> as an answer\n"
          "  --server_ip HOST         alias: the host part of --listen\n"
          "  --server_port PORT       alias: the port part of --listen\n"
          "  --max_gen_len N          alias of --max-gen-len\n"
          "\n"
          "Other\n"
          "  --log-level LEVEL        error, warn, notice, info or debug (default notice)\n"
          "  -h, --help               show this help\n"
          "  --version                show the version\n"
          "\n"
          "Sizes take k, m or g (1024-based); durations ms, s, m or h (bare numbers are\n"
          "seconds). See docs/api.md for the HTTP API.\n",
          out);
}

static int bad_value(const char *flag, const char *value, const char *hint)
{
    fprintf(stderr, "hscd: --%s: invalid value '%s' (%s)\n", flag, value, hint);
    return 2;
}

/* getopt_long() said '?': name the option the user typed and what was wrong with it. */
static int option_error(char **argv, int opt)
{
    const char *typed = argv[optind - 1];
    const struct option *o = NULL;
    for (const struct option *p = options; p->name; p++)
        if (opt != 0 && p->val == opt && o == NULL)
            o = p;
    if (o != NULL && o->has_arg == no_argument && strchr(typed, '=') != NULL)
        fprintf(stderr, "hscd: --%s takes no value\n", o->name);
    else if (o != NULL && o->val >= 256)
        fprintf(stderr, "hscd: --%s needs a value\n", o->name);
    else if (opt > 0 && opt < 256)
        fprintf(stderr, "hscd: unknown option '-%c'\n", opt);
    else
        fprintf(stderr, "hscd: unknown option '%s'\n", typed);
    fprintf(stderr, "Try 'hscd --help'.\n");
    return 2;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
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

/*
 * Reads the JWT key from a file or an environment variable (never from a flag's value, which
 * any user sees in ps). A file's final line end is dropped. At least 32 bytes (RFC 7518: a key
 * as long as the hash), at most 4 KiB.
 */
static int load_key(bool from_file, const char *where, hsc_server_config_t *cfg)
{
    static char key[4097];
    size_t n = 0;
    if (from_file) {
        FILE *f = fopen(where, "rb");
        if (f == NULL) {
            fprintf(stderr, "hscd: --jwt-key-file: cannot read '%s': %s\n", where, strerror(errno));
            return -1;
        }
        n = fread(key, 1, sizeof key, f);
        fclose(f);
        while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r'))
            n--;
    } else {
        const char *v = getenv(where);
        if (v == NULL) {
            fprintf(stderr, "hscd: --jwt-key-env: environment variable '%s' is not set\n", where);
            return -1;
        }
        n = strlen(v);
        memcpy(key, v, n < sizeof key ? n : sizeof key);
    }
    if (n < 32 || n >= sizeof key) {
        fprintf(stderr, "hscd: --jwt-key-%s: the key must be 32 to 4096 bytes (it is %s%zu)\n",
                from_file ? "file" : "env", n >= sizeof key ? "over " : "", n);
        return -1;
    }
    cfg->jwt_key = key;
    cfg->jwt_key_len = n;
    return 0;
}

/* A token from the environment; an unusable one is an error (status 2), not silently open. */
static int env_token(const char *name, const char **out)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return 0;
    if (!token_ok(v)) {
        fprintf(stderr, "hscd: $%s: a token is 1-4096 printable characters, no spaces\n", name);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    hsc_server_config_t cfg;
    hsc_server_config_init(&cfg);
    char host[128] = "", port[16] = "";
    char listen[160];
    static char cors[4096];
    if (env_token("HSC_PUBLISH_TOKEN", &cfg.publish_token) != 0 ||
        env_token("HSC_SUBSCRIBE_TOKEN", &cfg.subscribe_token) != 0 ||
        env_token("HSC_STREAM_TOKEN", &cfg.stream_token) != 0)
        return 2;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        const char *name = "";
        for (const struct option *o = options; o->name; o++)
            if (o->val == opt) {
                name = o->name;
                break;
            }
        uint64_t v;
        switch (opt) {
        case 'h':
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf("hscd %s\n", HSC_VERSION_STRING);
            return 0;
        case OPT_LISTEN:
            cfg.listen = optarg;
            break;
        case OPT_SERVER_IP:
            snprintf(host, sizeof host, "%s", optarg);
            break;
        case OPT_SERVER_PORT: {
            unsigned pn;
            if (parse_uint(optarg, 0, 65535, &pn) != 0)
                return bad_value(name, optarg, "a port number from 0 to 65535");
            snprintf(port, sizeof port, "%u", pn);
            break;
        }
        case OPT_THREADS:
            if (parse_uint(optarg, 1, 256, &cfg.threads) != 0)
                return bad_value(name, optarg, "a number of threads from 1 to 256");
            break;
        case OPT_MAX_GEN_LEN:
            if (parse_uint(optarg, 0, 1000000, &cfg.max_gen_len) != 0)
                return bad_value(name, optarg, "a number of pieces from 0 to 1000000");
            break;
        case OPT_INTERVAL:
            if (hsc_parse_duration(optarg, &cfg.interval_ms) != 0)
                return bad_value(name, optarg, "a duration such as 250ms or 1s");
            break;
        case OPT_LEGACY_GET:
            cfg.legacy_get = 1;
            break;
        case OPT_MAX_CONNECTIONS:
            if (parse_uint(optarg, 1, 10000000, &cfg.max_connections) != 0)
                return bad_value(name, optarg, "a positive number");
            break;
        case OPT_MAX_HEADER_BYTES:
            if (hsc_parse_size(optarg, &v) != 0 || v < 256 || v > 65535)
                return bad_value(name, optarg, "a size from 256 to 65535, e.g. 16k");
            cfg.max_header_bytes = (size_t)v;
            break;
        case OPT_MAX_BODY_BYTES:
            if (hsc_parse_size(optarg, &v) != 0 || v > (1ull << 32))
                return bad_value(name, optarg, "a size up to 4g, e.g. 1m");
            cfg.max_body_bytes = (size_t)v;
            break;
        case OPT_MAX_QUEUE_BYTES:
            if (hsc_parse_size(optarg, &v) != 0 || v < 4096 || v > (1ull << 32))
                return bad_value(name, optarg, "a size from 4k to 4g, e.g. 1m");
            cfg.max_queue_bytes = (size_t)v;
            break;
        case OPT_HEADER_TIMEOUT:
        case OPT_IDLE_TIMEOUT:
        case OPT_DRAIN_TIMEOUT: {
            uint64_t *dst = opt == OPT_HEADER_TIMEOUT ? &cfg.header_timeout_ms
                            : opt == OPT_IDLE_TIMEOUT ? &cfg.idle_timeout_ms
                                                      : &cfg.drain_timeout_ms;
            if (hsc_parse_duration(optarg, dst) != 0 || (opt != OPT_DRAIN_TIMEOUT && *dst == 0))
                return bad_value(name, optarg, "a duration such as 500ms or 10s");
            break;
        }
        case OPT_EXEC:
            if (optarg[0] == '\0')
                return bad_value(name, optarg, "a command, e.g. 'python3 responder.py'");
            cfg.exec = optarg;
            break;
        case OPT_POOL:
            if (parse_uint(optarg, 1, 4096, &cfg.pool) != 0)
                return bad_value(name, optarg, "a number of workers from 1 to 4096");
            break;
        case OPT_MAX_PROCESSES:
            if (parse_uint(optarg, 1, 100000, &cfg.max_processes) != 0)
                return bad_value(name, optarg, "a number of processes from 1 to 100000");
            break;
        case OPT_QUEUE:
            if (parse_uint(optarg, 0, 10000000, &cfg.queue) != 0)
                return bad_value(name, optarg, "a number of requests, 0 for no queue");
            break;
        case OPT_RESPONDER_TIMEOUT:
        case OPT_KILL_GRACE:
        case OPT_KEEPALIVE: {
            uint64_t *dst = opt == OPT_RESPONDER_TIMEOUT ? &cfg.responder_timeout_ms
                            : opt == OPT_KILL_GRACE      ? &cfg.kill_grace_ms
                                                         : &cfg.keepalive_ms;
            if (hsc_parse_duration(optarg, dst) != 0)
                return bad_value(name, optarg, "a duration such as 500ms or 15s");
            break;
        }
        case OPT_HISTORY: {
            unsigned n;
            if (parse_uint(optarg, 0, 1000000, &n) != 0)
                return bad_value(name, optarg, "a number of events from 0 to 1000000");
            cfg.history = n;
            break;
        }
        case OPT_HISTORY_BYTES:
            if (hsc_parse_size(optarg, &v) != 0 || v > (1ull << 32))
                return bad_value(name, optarg, "a size up to 4g, e.g. 256k");
            cfg.history_bytes = (size_t)v;
            break;
        case OPT_HISTORY_AGE:
            if (hsc_parse_duration(optarg, &cfg.history_age_ms) != 0 || cfg.history_age_ms == 0)
                return bad_value(name, optarg, "a duration such as 10m or 1h");
            break;
        case OPT_MAX_EVENT_BYTES:
            if (hsc_parse_size(optarg, &v) != 0 || v > (1ull << 30))
                return bad_value(name, optarg, "a size up to 1g, e.g. 64k");
            cfg.max_event_bytes = (size_t)v;
            break;
        case OPT_MAX_CHANNELS:
            if (parse_uint(optarg, 1, 100000000, &cfg.max_channels) != 0)
                return bad_value(name, optarg, "a positive number of channels");
            break;
        case OPT_MAX_SUB_CHANNELS:
            if (parse_uint(optarg, 1, 1024, &cfg.max_subscription_channels) != 0)
                return bad_value(name, optarg, "a number of channels from 1 to 1024");
            break;
        case OPT_RETRY:
            if (hsc_parse_duration(optarg, &cfg.retry_ms) != 0 || cfg.retry_ms > 86400000)
                return bad_value(name, optarg, "a duration such as 2s");
            break;
        case OPT_CORS_ORIGIN:
            if (optarg[0] == '\0' || strpbrk(optarg, "\r\n") != NULL)
                return bad_value(name, optarg, "origins such as https://app.example, or *");
            if (cors[0] != '\0')
                strncat(cors, ",", sizeof cors - strlen(cors) - 1);
            if (strlen(cors) + strlen(optarg) >= sizeof cors)
                return bad_value(name, optarg, "at most 4 KiB of origins in all");
            strcat(cors, optarg);
            cfg.cors_origin = cors;
            break;
        case OPT_PUBLISH_TOKEN:
        case OPT_SUBSCRIBE_TOKEN:
        case OPT_STREAM_TOKEN:
            if (!token_ok(optarg))
                return bad_value(name, optarg, "1-4096 printable characters, no spaces");
            *(opt == OPT_PUBLISH_TOKEN     ? &cfg.publish_token
              : opt == OPT_SUBSCRIBE_TOKEN ? &cfg.subscribe_token
                                           : &cfg.stream_token) = optarg;
            break;
        case OPT_JWT_KEY_FILE:
        case OPT_JWT_KEY_ENV:
            if (load_key(opt == OPT_JWT_KEY_FILE, optarg, &cfg) != 0)
                return 2;
            break;
        case OPT_LOG_LEVEL: {
            hsc_log_level_t level;
            if (hsc_log_level_parse(optarg, &level) != 0)
                return bad_value(name, optarg, "one of error, warn, notice, info, debug");
            hsc_log_set_level(level);
            break;
        }
        case '?':
        default:
            return option_error(argv, optopt);
        }
    }
    if (cfg.pool > 0 && cfg.exec == NULL) {
        fprintf(stderr, "hscd: --pool needs --exec 'CMD' (the worker program)\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "hscd: unexpected argument '%s'\nTry 'hscd --help'.\n", argv[optind]);
        return 2;
    }
    if (host[0] != '\0' || port[0] != '\0') {
        /* The template's --server_ip / --server_port override the matching half of --listen. */
        const char *l = cfg.listen;
        const char *colon = strrchr(l, ':');
        char lhost[128];
        snprintf(lhost, sizeof lhost, "%.*s", colon ? (int)(colon - l) : 0, l);
        const char *h = host[0] ? host : lhost;
        const char *p = port[0] ? port : (colon ? colon + 1 : "8000");
        bool v6 = strchr(h, ':') != NULL && h[0] != '[';
        snprintf(listen, sizeof listen, v6 ? "[%s]:%s" : "%s:%s", h, p);
        cfg.listen = listen;
    }

    hsc_server_t *srv;
    int rc = hsc_server_new(&cfg, &srv);
    if (rc == HSC_EINVAL && host[0] != '\0') {
        fprintf(stderr, "hscd: --server_ip: invalid value '%s' (an IP address or localhost)\n",
                host);
        return 2;
    }
    if (rc == HSC_EINVAL) {
        fprintf(stderr,
                "hscd: --listen: invalid address '%s' (use HOST:PORT with an IP address or "
                "localhost, e.g. 127.0.0.1:8000 or [::1]:8000)\n",
                cfg.listen);
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, "hscd: cannot listen on %s: %s\n", cfg.listen, hsc_strerror(rc));
        return 1;
    }
    rc = hsc_server_run(srv);
    hsc_server_free(srv);
    return rc == 0 ? 0 : 1;
}
