/**
 * The hsc client: one HTTP request whose response is consumed as it arrives, either as pieces of
 * text (a streamed answer) or as Server-Sent Events, with the reconnection policy of an
 * EventSource (Last-Event-ID, the server's retry:, backoff with jitter while the server is down).
 * HTTP goes through libcurl; events through the codec's spec-exact parser (codec.h).
 *
 * A client is used from one thread. hsc_client_stop() may be called from a signal handler.
 */
#ifndef HSC_CLIENT_H
#define HSC_CLIENT_H

#include "codec.h"
#include "hsc.h"

#ifdef __cplusplus
extern "C" {
#endif

/** What hsc_client_run() ended with. */
typedef enum hsc_client_result_e {
    HSC_CLIENT_OK = 0,   /* the response was complete (or the server said stop: 204) */
    HSC_CLIENT_STOPPED,  /* hsc_client_stop() or a callback's non-zero return */
    HSC_CLIENT_TIMEOUT,  /* the configured timeout passed */
    HSC_CLIENT_CUT,      /* the response ended before it was complete */
    HSC_CLIENT_CONNECT,  /* the server could not be reached */
    HSC_CLIENT_HTTP,     /* the server answered with an error status (hsc_client_error() says) */
    HSC_CLIENT_PROTOCOL, /* not an event stream, or a line or event over its bound */
    HSC_CLIENT_NOMEM
} hsc_client_result_t;

typedef struct hsc_client_config_s {
    const char *url;
    const char *method; /* NULL: POST when there is a body, else GET */
    const void *body;
    size_t body_len;
    const char *content_type; /* of the body; NULL for text/plain; charset=utf-8 */
    /* Sent as "Authorization: Bearer TOKEN" (docs/security.md); NULL: none. Must pass
     * hsc_client_token_valid(). Never shown in a notice or an error. */
    const char *token;
    /* More request headers, each "Name: value", the array ended by a NULL; NULL: none. Each must
     * pass hsc_client_header_valid(). One named like a header the client sends itself (Accept,
     * Cache-Control, Content-Type, Last-Event-ID, User-Agent, Authorization when `token` is set)
     * replaces it; "Name:" with an empty value removes it, as with curl -H. */
    const char *const *headers;
    int sse;       /* the response is an event stream: on_event per event */
    int reconnect; /* sse: reconnect after every disconnect, like EventSource */
    const char *last_event_id;
    uint64_t retry_ms;           /* reconnection delay until the server sends retry: (2000) */
    uint64_t max_backoff_ms;     /* ceiling of the backoff while the server is down (30000) */
    uint64_t timeout_ms;         /* the whole run, reconnections included; 0 = none */
    uint64_t connect_timeout_ms; /* one connection attempt (10000) */
    size_t max_line;             /* sse: the longest line accepted (1 MiB) */
    size_t max_event;            /* sse: the largest event accepted (16 MiB) */
    /* Callbacks: return 0 to go on, non-zero to stop (the run ends with HSC_CLIENT_STOPPED). */
    int (*on_piece)(void *user, const char *p, size_t n);  /* !sse: body text, never cut inside a
                                                              character, bad bytes as U+FFFD */
    int (*on_event)(void *user, const hsc_sse_msg_t *msg); /* sse */
    int (*on_raw)(void *user, const char *p, size_t n);    /* sse: the bytes as received */
    void (*on_notice)(void *user, const char *msg); /* "connected to ...", "reconnecting in ..." */
    void *user;
} hsc_client_config_t;

typedef struct hsc_client_s hsc_client_t;

/** Fills `cfg` with the defaults above. */
HSC_EXPORT void hsc_client_config_init(hsc_client_config_t *cfg);

/**
 * Creates a client. Borrows `cfg`: the struct is copied, but its strings, the `headers` array and
 * the body must outlive the client. Returns 0, HSC_EINVAL (a token or a header that does not pass
 * its check below, a last_event_id with CR, LF or invalid UTF-8) or HSC_ENOMEM.
 */
HSC_EXPORT int hsc_client_new(const hsc_client_config_t *cfg, hsc_client_t **out);

/**
 * Returns 1 when `token` can be sent as a bearer token: 1 to 4096 printable ASCII characters
 * without spaces, what hscd accepts. Borrows `token`.
 */
HSC_EXPORT int hsc_client_token_valid(const char *token);

/**
 * Returns 1 when `line` is a request header the client can send: a name (an RFC 9110 token:
 * letters, digits and !#$%&'*+-.^_`|~), a colon, then a value without CR, LF or another control
 * character but tab. Borrows `line`.
 */
HSC_EXPORT int hsc_client_header_valid(const char *line);

/**
 * Copies `text` into `out` (capacity `cap` >= 1; cut to fit, always NUL-terminated) with the
 * value of every access_token query parameter replaced by "***". The key is compared after
 * percent-decoding and whatever its case (access_%74oken is access_token, as hscd reads it).
 * The client's notices and hsc_client_error() pass through it; do the same before showing a URL
 * that may carry a token. Returns `out`.
 */
HSC_EXPORT char *hsc_client_redact(char *out, size_t cap, const char *text);

/** Replaces the request body (borrowed) for the next run; the connection is reused. */
HSC_EXPORT void hsc_client_set_body(hsc_client_t *c, const void *body, size_t len);

/** Runs the request (and reconnections) to its end. Returns an hsc_client_result_t. */
HSC_EXPORT int hsc_client_run(hsc_client_t *c);

/** Stops a run from any thread or a signal handler: hsc_client_run() returns promptly. */
HSC_EXPORT void hsc_client_stop(hsc_client_t *c);

/** The last response's HTTP status (0 when none arrived). */
HSC_EXPORT int hsc_client_status(const hsc_client_t *c);

/**
 * A one-line description of the last failure ("" when none): the server's reason ("HTTP 403:
 * ..."), or what went wrong on the way, in hsc's words rather than curl's ("cannot connect to
 * HOST:PORT: connection refused", "the server closed the stream before it ended").
 */
HSC_EXPORT const char *hsc_client_error(const hsc_client_t *c);

/** The body of the last non-streamed response (publish answers), NUL-terminated, at most 64 KiB. */
HSC_EXPORT const char *hsc_client_body(const hsc_client_t *c);

/** The last event id seen (sse), "" when none. */
HSC_EXPORT const char *hsc_client_last_event_id(const hsc_client_t *c);

HSC_EXPORT void hsc_client_free(hsc_client_t *c);

/* ---- tokens for hscd (docs/security.md) ------------------------------------------------------ */

/** What a token minted by hsc_token_mint() allows; zeroed, it allows nothing. */
typedef struct hsc_token_claims_s {
    /* hsc_pub and hsc_sub: channel patterns, each array ended by a NULL; NULL: no claim. */
    const char *const *publish;
    const char *const *subscribe;
    int stream;          /* non-zero: hsc_stream, may ask the responder */
    const char *subject; /* sub, UTF-8: who it is for (the admin API's presence); NULL: none */
    uint64_t expires;    /* exp, in seconds since the epoch; 0: no claim, the token never expires */
} hsc_token_claims_t;

/**
 * Returns 1 when `pattern` is a channel pattern as hscd reads it: a channel name ("news"), the
 * start of one followed by '*' ("user.42.*"), or "*" (every channel). Borrows `pattern`.
 */
HSC_EXPORT int hsc_token_pattern_valid(const char *pattern);

/**
 * Mints a JWT (HS256) that an hscd holding the same key (--jwt-key-file, --jwt-key-env) accepts
 * for exactly what `claims` allow. Borrows `claims` and `key` (`key_len` bytes, 32 to 4096, the
 * lengths hscd takes). On success *out is the token, NUL-terminated: free it with free().
 * Returns 0, HSC_EINVAL (a key of another length, a pattern hsc_token_pattern_valid() refuses, a
 * subject that is not UTF-8, an `expires` over INT64_MAX) or HSC_ENOMEM.
 */
HSC_EXPORT int hsc_token_mint(const hsc_token_claims_t *claims, const void *key, size_t key_len,
                              char **out);

#ifdef __cplusplus
}
#endif
#endif
