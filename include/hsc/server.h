/**
 * The hsc server: libuv loops on worker threads, each accepting on its own SO_REUSEPORT socket,
 * llhttp parsing, a router, and the streaming response writer every feature shares.
 *
 * Typical use (this is what hscd's main() does):
 *
 *     hsc_server_config_t cfg;
 *     hsc_server_config_init(&cfg);
 *     cfg.listen = "127.0.0.1:8000";
 *     hsc_server_t *srv;
 *     int rc = hsc_server_new(&cfg, &srv);          // binds the sockets; errors show here
 *     if (rc == 0) rc = hsc_server_run(srv);        // blocks until SIGINT/SIGTERM, then drains
 *     hsc_server_free(srv);
 */
#ifndef HSC_SERVER_H
#define HSC_SERVER_H

#include "hsc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hsc_log_level_e {
    HSC_LOG_ERROR = 0,
    HSC_LOG_WARN,
    HSC_LOG_NOTICE,
    HSC_LOG_INFO,
    HSC_LOG_DEBUG
} hsc_log_level_t;

typedef enum hsc_log_format_e {
    HSC_LOG_FORMAT_TEXT = 0, /* "2026-11-22T05:31:00.123Z notice: message" */
    HSC_LOG_FORMAT_JSON      /* {"time":"...","level":"notice","message":"..."} */
} hsc_log_format_t;

typedef struct hsc_server_config_s {
    const char *listen;         /* "HOST:PORT" or "[V6]:PORT"; port 0 picks a free port */
    unsigned threads;           /* worker threads (loops); 0 = number of cores */
    unsigned max_connections;   /* open connections across all threads; past it 503 */
    size_t max_header_bytes;    /* request line plus headers; past it 431 (at most 65535) */
    size_t max_body_bytes;      /* request body; past it 413 */
    size_t max_queue_bytes;     /* per-connection output queue ceiling; past it the conn closes */
    uint64_t header_timeout_ms; /* to receive a request's head, from its first byte or accept */
    uint64_t idle_timeout_ms;   /* keep-alive wait between requests; body read stalls */
    uint64_t drain_timeout_ms;  /* on shutdown, how long streams may still run */
    int http2;                  /* serve HTTP/2 to clients that open with its preface (h2c
                                   with prior knowledge; h2 after TLS ALPN); default 1 */
    unsigned h2_max_streams;    /* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; past it a new stream
                                   is refused (RST_STREAM REFUSED_STREAM); default 100 */
    unsigned max_gen_len;       /* demo responder: pieces per answer */
    uint64_t interval_ms;       /* demo responder: time between pieces */
    int legacy_get;             /* serve GET /<percent-encoded text> as an answer */
    const char *exec;           /* responder command (run with /bin/sh -c), one process per
                                   request; NULL for the demo responder */
    unsigned pool;              /* --exec as N long-lived workers (framed protocol); 0 = off */
    unsigned max_processes;     /* --exec: processes running at once; past it requests queue */
    unsigned queue;             /* requests waiting for a responder; past it 503 */
    uint64_t responder_timeout_ms; /* an answer taking longer fails; 0 = no limit */
    uint64_t kill_grace_ms;        /* SIGTERM, then SIGKILL after this long */
    uint64_t keepalive_ms;         /* SSE answers: a comment line while the responder is silent */
    const char *model; /* OpenAI front: model names, comma-separated (the first is the default);
                          NULL: "hsc-KIND" is listed and any name is accepted */
    const struct hsc_responder_s *responder; /* a C responder: overrides exec and demo */
    void *responder_data;                    /* given to it through hsc_answer_responder_data() */
    int handle_signals;                      /* run(): stop on SIGINT/SIGTERM, catch SIGHUP */
    /* Channels (/v1/events). */
    size_t history;             /* events kept per channel for resuming; 0 = none */
    size_t history_bytes;       /* encoded bytes kept per channel */
    size_t history_total_bytes; /* all channels' history together; past it the least
                                   recently used idle channels' history goes first */
    uint64_t history_age_ms;    /* events older than this leave history */
    size_t max_event_bytes;     /* one event's data; past it 413 */
    unsigned max_channels;      /* channels that may exist at once; past it the least recently used
                                   idle channel goes, 503 when every channel has subscribers */
    unsigned channel_create_rate;  /* channels one client may create per second; 0 = no limit */
    unsigned channel_create_burst; /* ... at once, after a pause (the bucket's size) */
    unsigned max_subscription_channels; /* channels in one subscription; past it 400 */
    uint64_t retry_ms;                  /* the "retry:" sent to subscribers (plus jitter) */
    const char *redis;              /* cluster mode: the Redis URL (docs/cluster.md); NULL: off */
    const char *redis_password_env; /* the environment variable holding Redis's password */
    const char *cors_origin; /* comma-separated origins allowed cross-origin, "*" for any; NULL */
    int cors_credentials;    /* the exact cors_origin origins may send cookies (not "*") */
    /* Authorization (docs/security.md); all NULL / 0: everyone may do everything. */
    const char *publish_token;   /* static bearer token for publishing; NULL = none */
    const char *subscribe_token; /* ... for subscribing */
    const char *stream_token;    /* ... for /v1/stream */
    const char *admin_token;     /* the admin API (/v1/admin/...); NULL = the API is off */
    const void *jwt_key;         /* HS256 key; with it, every action needs a token */
    size_t jwt_key_len;
    const char *jwt_key_env; /* the environment variable the key was read from, or NULL:
                                responder processes never see it (docs/responders.md) */
    int access_log;          /* one log line per response (hsc_log_set_format() shapes it) */
    /* Listening sockets to use instead of binding `listen` (systemd socket activation, a hand-over
     * from an older process: docs/operations.md). The server takes ownership of them. One socket
     * is shared by every worker; several give one worker each (so `threads` is their number). */
    const int *listen_fds;
    unsigned n_listen_fds;
    /* Durability (docs/internals/journal.md). */
    const char *data_dir;         /* the journal's directory; NULL or "none": memory only */
    int fsync_mode;               /* HSC_FSYNC_BATCH, HSC_FSYNC_ALWAYS or HSC_FSYNC_OFF */
    uint64_t fsync_interval_ms;   /* batch: the longest a written record stays unsynced */
    size_t journal_segment_bytes; /* a segment file's size before the next one begins */
    uint64_t data_dir_wait_ms;    /* how long to wait for another hscd to let go of data_dir (a
                                     hand-over: docs/operations.md); 0: fail at once */
    /* TLS (docs/tls.md). With tls_cert and tls_key and no listen_tls, `listen` speaks TLS; with
     * listen_tls too, that second address speaks TLS and `listen` stays cleartext. Both files are
     * read again by hsc_server_reload(): new connections get the new certificate. */
    const char *tls_cert;   /* PEM: the certificate, then its chain; NULL: no TLS */
    const char *tls_key;    /* PEM: the certificate's private key */
    const char *listen_tls; /* "HOST:PORT" of a TLS-only listener, or NULL */
    /* Listening sockets for listen_tls, like listen_fds (a hand-over, systemd sockets named
     * "tls"): used instead of binding listen_tls, whose address they replace; without
     * listen_tls they are closed. The server owns them. */
    const int *listen_tls_fds;
    unsigned n_listen_tls_fds;
} hsc_server_config_t;

/* When the journal syncs to disk (hsc_server_config_t.fsync_mode, --fsync). */
enum {
    HSC_FSYNC_BATCH = 0, /* every fsync_interval_ms: a crash of the machine loses at most that */
    HSC_FSYNC_ALWAYS,    /* before a publish is answered or delivered */
    HSC_FSYNC_OFF        /* never: the kernel writes back when it will */
};

typedef struct hsc_server_s hsc_server_t;

/** Checks a Redis URL for `redis` (docs/cluster.md): 0, or HSC_EINVAL with *why (static). */
HSC_EXPORT int hsc_redis_url_check(const char *url, const char **why);

/** Parses "error", "warn", "notice", "info" or "debug". Returns 0 or HSC_EINVAL. */
HSC_EXPORT int hsc_log_level_parse(const char *s, hsc_log_level_t *out);
/**
 * Sets which of libhsc's log lines (on stderr) are written: `level` and the more severe ones;
 * HSC_LOG_NOTICE at first. Process-wide, as stderr is: the library never changes it by itself,
 * a program does (hscd from --log-level). Safe from any thread.
 */
HSC_EXPORT void hsc_log_set_level(hsc_log_level_t level);

/** Parses "text" or "json". Returns 0 or HSC_EINVAL. */
HSC_EXPORT int hsc_log_format_parse(const char *s, hsc_log_format_t *out);
/** Sets the log lines' shape: text (at first) or one JSON object per line. Process-wide. */
HSC_EXPORT void hsc_log_set_format(hsc_log_format_t format);

/**
 * Writes one line to libhsc's log (stderr) if `level` is enabled: the server's own format, one
 * write per line. For programs that embed the server (hscd's reload messages).
 */
HSC_EXPORT void hsc_log_printf(hsc_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Fills `cfg` with the defaults that `hscd --help` shows. */
HSC_EXPORT void hsc_server_config_init(hsc_server_config_t *cfg);

/**
 * Creates a server and binds its listening sockets (so "address in use" is reported here).
 * Borrows `cfg` (copied; `cfg->listen` is copied too). On success `*out` must be freed with
 * hsc_server_free(). Returns 0, HSC_EINVAL for a bad listen address, or a libuv error.
 */
HSC_EXPORT int hsc_server_new(const hsc_server_config_t *cfg, hsc_server_t **out);

/**
 * Reads cfg->tls_cert and cfg->tls_key as hsc_server_new() would, without starting anything
 * (hscd --check). Returns 0 (also when no certificate is set), or HSC_ETLS after logging one
 * line that says which file is unusable and why.
 */
HSC_EXPORT int hsc_server_check_tls(const hsc_server_config_t *cfg);

/** The port actually bound (useful with port 0). */
HSC_EXPORT int hsc_server_port(const hsc_server_t *srv);

/**
 * Runs the worker threads and blocks until the server is stopped (hsc_server_stop(), or
 * SIGINT/SIGTERM when cfg.handle_signals): it then stops accepting, lets streams in progress
 * finish for up to cfg.drain_timeout_ms, closes the rest, and returns 0. With cfg.handle_signals
 * it also catches SIGHUP until it returns: it calls hsc_server_on_sighup()'s function, or logs
 * and ignores it when there is none.
 */
HSC_EXPORT int hsc_server_run(hsc_server_t *srv);

/**
 * Replaces the settings a running server can change without dropping a connection: the tokens,
 * the JWT key, the CORS origins, the limits and timeouts, the history bounds (docs/operations.md
 * lists them). The others (the listen address, threads, the responder...) keep their running
 * values, and each one that differs is logged as needing a restart. Borrows `cfg` (copied).
 * Each worker takes the new settings up between two callbacks of its loop: a request sees one
 * configuration or the other, never a mix. Safe from any thread while the server runs. Returns
 * 0, or HSC_EINVAL (a bad CORS list), HSC_ENOMEM, or HSC_ESTATE once it is stopping, with the
 * running configuration unchanged.
 */
HSC_EXPORT int hsc_server_reload(hsc_server_t *srv, const hsc_server_config_t *cfg);

typedef void (*hsc_server_hup_fn)(hsc_server_t *srv, void *data);

/**
 * With cfg.handle_signals, SIGHUP calls `fn` (on the thread running hsc_server_run()) instead of
 * being logged and ignored: hscd reads its configuration again there and calls
 * hsc_server_reload(). Call before hsc_server_run().
 */
HSC_EXPORT void hsc_server_on_sighup(hsc_server_t *srv, hsc_server_hup_fn fn, void *data);

/**
 * With cfg.handle_signals, SIGUSR2 calls `fn` (on the thread running hsc_server_run()); without
 * one it is logged and ignored. hscd hands its listening sockets to a new process there. Call
 * before hsc_server_run().
 */
HSC_EXPORT void hsc_server_on_sigusr2(hsc_server_t *srv, hsc_server_hup_fn fn, void *data);

/**
 * The listening sockets, for a hand-over to a new process: fills `fds` with up to `cap` of them
 * and returns their number. Valid until the server drains; the server keeps them open.
 */
HSC_EXPORT unsigned hsc_server_listen_fds(const hsc_server_t *srv, int *fds, unsigned cap);

/** The --listen-tls sockets, like hsc_server_listen_fds(): none without listen_tls. */
HSC_EXPORT unsigned hsc_server_listen_tls_fds(const hsc_server_t *srv, int *fds, unsigned cap);

/** Asks a running server to drain and stop. Safe from any thread; returns at once. */
HSC_EXPORT void hsc_server_stop(hsc_server_t *srv);

/** Frees a server that is not running. NULL is allowed. */
HSC_EXPORT void hsc_server_free(hsc_server_t *srv);

#ifdef __cplusplus
}
#endif
#endif
