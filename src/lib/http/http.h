/*
 * http: the HTTP/1.1 and HTTP/2 transport. Connections (llhttp, limits, timeouts, pipelining;
 * nghttp2 for a connection that opens with the HTTP/2 preface), the output queue, the response
 * writer every feature shares, and route matching. It knows no handler: a
 * connection's owner (the server) is told when a request is ready and when it closed.
 */
#ifndef HSC_HTTP_H
#define HSC_HTTP_H

#include "hsc/codec.h"
#include "core/core.h"

#include <llhttp.h>
#include <uv.h>

/* ---- router (router.c) ----------------------------------------------------------------------- */

enum {
    HSC_M_GET = 1u << 0,
    HSC_M_HEAD = 1u << 1,
    HSC_M_POST = 1u << 2,
    HSC_M_PUT = 1u << 3,
    HSC_M_DELETE = 1u << 4,
    HSC_M_OPTIONS = 1u << 5,
    HSC_M_PATCH = 1u << 6,
    HSC_M_OTHER = 1u << 7
};

typedef struct hsc_conn_s hsc_conn_t; /* opaque outside http/ (http/conn.h) */
typedef struct hsc_req_s hsc_req_t;
typedef struct hsc_res_s hsc_res_t;
/**
 * A route's handler. `ctx` is the handler's own context for the loop the request arrived on
 * (the server's route table picks it: a hub, a stream context...); it answers through `res`.
 */
typedef void (*hsc_handler_fn)(void *ctx, hsc_req_t *req, hsc_res_t *res);

typedef struct hsc_route_s {
    const char *path; /* matched exactly */
    unsigned methods;
    hsc_handler_fn handler;
    uintptr_t data; /* the table owner's: which context the handler gets */
} hsc_route_t;

unsigned hsc_method_bit(const char *name, size_t len);
/** Writes "GET, HEAD, POST" for a mask; returns the length. */
size_t hsc_methods_format(unsigned mask, char *out, size_t cap);
/**
 * Finds the first route for `path` and `method`. Returns 0 and sets *out; HSC_EMETHOD when only
 * other methods match (*allowed gets their union); HSC_ENOTFOUND when no path matches.
 */
int hsc_router_match(const hsc_route_t *routes, size_t n, const char *path, size_t len,
                     unsigned method, const hsc_route_t **out, unsigned *allowed);

/* ---- requests (request.c) -------------------------------------------------------------------- */

#define HSC_MAX_HEADERS 64

/* Offsets into a request head, which is at most HSC_HEAD_MAX bytes: 8 bytes a header, so that
 * an idle subscriber's connection stays small. */
#define HSC_HEAD_MAX 65535u
typedef struct hsc_header_ref_s {
    uint16_t name_off, name_len, value_off, value_len;
} hsc_header_ref_t;

struct hsc_req_s {
    hsc_conn_t *conn;
    uint64_t id;     /* unique in this process, for logs and responders */
    unsigned method; /* HSC_M_* bit */
    const char *method_name;
    uint8_t http_major, http_minor;
    bool head_only; /* HEAD: the writer sends headers and drops the body */
    /* Valid from the end of the head until the response ends; point into `head`. */
    const char *target; /* the raw request-target */
    size_t target_len;
    const char *path; /* raw (still percent-encoded) path */
    size_t path_len;
    const char *query; /* raw query without '?', or NULL */
    size_t query_len;
    hsc_buf_t body;
    /* Parsing state. */
    hsc_buf_t head; /* target and headers, each NUL-terminated; bounded by max_header_bytes */
    uint32_t target_off;
    hsc_header_ref_t hdr[HSC_MAX_HEADERS];
    unsigned nhdr;
    unsigned nhdr_done;   /* headers whose value is complete: a parse error can stop mid-header */
    int last_cb;          /* 0 none, 1 target, 2 header field, 3 header value */
    size_t trailer_bytes; /* trailer fields: counted against max_header_bytes, dropped */
    size_t trailer_name_len; /* the current trailer field name's length so far */
    int error_status;        /* a limit hit while parsing: 413, 431 ... */
    const char *error_reason;
};

/** Returns a header's value (NUL-terminated) by case-insensitive name, or NULL. */
const char *hsc_req_header(const hsc_req_t *req, const char *name);
/** Whether a comma-separated header (Accept) lists `token` as a media range or value. */
bool hsc_req_accepts(const hsc_req_t *req, const char *token);
/** The peer's address as text ("127.0.0.1:51234"); valid for the connection's life. */
const char *hsc_req_peer(const hsc_req_t *req);
/** The loop the request (and its connection) lives on. */
uv_loop_t *hsc_req_loop(const hsc_req_t *req);

/* ---- the response writer (res.c) ------------------------------------------------------------ */

/** A slice of a shared frame on its way to a socket. */
typedef struct hsc_outq_item_s {
    hsc_frame_t *frame;
    size_t off; /* next byte of the frame to write */
    size_t end; /* one past the last byte to write (a slice of a shared frame) */
} hsc_outq_item_t;

typedef void (*hsc_res_cb)(hsc_res_t *res, void *user);

typedef enum hsc_body_mode_e {
    HSC_BODY_LENGTH,  /* Content-Length known up front */
    HSC_BODY_CHUNKED, /* HTTP/1.1 streaming */
    HSC_BODY_CLOSE,   /* HTTP/1.0 streaming: the body ends when the connection closes */
    HSC_BODY_H2       /* HTTP/2: DATA frames carry the body as it is, END_STREAM ends it */
} hsc_body_mode_t;

#define HSC_STREAMING (-1)

struct hsc_res_s {
    hsc_conn_t *conn;
    struct hsc_h2_stream_s *h2; /* an HTTP/2 stream's response, or NULL (HTTP/1.x) */
    int status;
    bool started, ended;
    hsc_body_mode_t mode;
    uint64_t remaining; /* HSC_BODY_LENGTH: body bytes still expected */
    /* Callbacks of whoever produces the body (a responder, a subscriber). */
    hsc_res_cb on_close; /* the connection closed before hsc_res_end(): stop producing */
    hsc_res_cb on_drain; /* the queue fell below its low mark after hsc_res_writable() said no */
    void *user;
    bool want_drain;
    bool json_errors; /* hsc_res_error() answers {"error": {...}}, as OpenAI clients expect */
};

/**
 * Sends the status line and headers. `content_type` may be NULL; `extra` is NULL or complete
 * header lines ("Name: value\r\n..."). `content_length` is the body size, or HSC_STREAMING for a
 * body of unknown length (chunked on HTTP/1.1, close-delimited on HTTP/1.0). Returns 0 or
 * HSC_ECLOSED / HSC_EFULL when the connection is gone or going.
 */
int hsc_res_start(hsc_res_t *res, int status, const char *content_type, const char *extra,
                  int64_t content_length);
/** Writes body bytes, framed as the body mode requires. Borrows `p` (copied if it must wait). */
int hsc_res_write(hsc_res_t *res, const void *p, size_t n);
/** Ends a complete response: the last chunk, or the connection closes (HTTP/1.0 streaming). */
int hsc_res_end(hsc_res_t *res);
/**
 * Ends a response that failed midway, so the client can tell it from a complete one: a chunked
 * body is closed without its last chunk, a close-delimited one with a TCP reset. Bytes already
 * written are still delivered first (except with the reset). The connection closes.
 */
void hsc_res_abort(hsc_res_t *res);
/** A whole response with a body, e.g. a static file or JSON. */
int hsc_res_send(hsc_res_t *res, int status, const char *content_type, const char *extra,
                 const void *body, size_t len);
/**
 * An error response: status, a one-line plain-text reason ("reason\n"), and Connection: close
 * when `close` (or the request cannot be trusted to have been read whole).
 */
int hsc_res_error(hsc_res_t *res, int status, const char *extra, const char *reason, bool close);
/**
 * An error as OpenAI's API has them (docs/openai.md): application/json
 * {"error": {"message", "type", "param", "code"}}; `type` NULL: chosen from the status, `param`
 * and `code` NULL: null. hsc_res_error() sends this when the handler has set `json_errors`.
 */
int hsc_res_json_error(hsc_res_t *res, int status, const char *extra, const char *message,
                       const char *type, const char *param, const char *code);
/**
 * Whether the producer may write more: false when the output queue is above its high mark. After
 * a false, on_drain is called once the queue falls below the low mark.
 */
bool hsc_res_writable(hsc_res_t *res);
const char *hsc_status_reason(int status);
/** The request this response answers (valid until the response ends). */
hsc_req_t *hsc_res_request(hsc_res_t *res);
/**
 * Sends slices of shared frames (body bytes, already framed as the body mode requires) in order
 * with as few system calls as possible: one write for up to 64 of them when nothing is queued,
 * then references (no copy) for the rest while the queue stays under its high-water mark.
 * Returns how many slices were taken (written or queued), or HSC_ECLOSED / HSC_ENOMEM. When some
 * are left, the caller keeps them: on_drain is called once the queue falls below its low mark.
 */
int hsc_res_send_slices(hsc_res_t *res, const hsc_outq_item_t *it, unsigned n);
/**
 * Gives up on the client: the connection closes on the next loop turn (on_close is called
 * then), without a proper end of the body. For a subscriber that fell too far behind.
 */
void hsc_res_close(hsc_res_t *res);
/**
 * Cork: until hsc_res_uncork(), writes are queued and not sent, so that several small writes
 * produced in one turn of the loop (a burst of pieces) leave in one writev().
 */
void hsc_res_cork(hsc_res_t *res);
void hsc_res_uncork(hsc_res_t *res);

/* ---- the transport of one loop (conn.c) ---------------------------------------------------- */

/* Why an HTTP/2 connection was closed for abuse (hsc_h2_abuse_closed_total{reason}). */
enum {
    HSC_H2_ABUSE_RAPID_RESET,  /* RST_STREAM from the client faster than the bucket refills */
    HSC_H2_ABUSE_CONTINUATION, /* too many CONTINUATION frames, or bytes, in one header block */
    HSC_H2_ABUSE_PING,         /* PING flood */
    HSC_H2_ABUSE_SETTINGS,     /* SETTINGS flood */
    HSC_H2_ABUSE_HEADERS,      /* decoded header bytes far past --max-header-bytes (HPACK bomb) */
    HSC_H2_ABUSE_FLOOD,        /* nghttp2 saw a flood (unanswered ACKs, resets it limits itself) */
    HSC_H2_ABUSE_N
};
/** The label of an abuse reason: "rapid_reset"... */
const char *hsc_h2_abuse_name(int reason);

/**
 * What the transport calls back: the owner of a loop's connections (the server). All calls come
 * on the loop's thread.
 */
typedef struct hsc_http_owner_s {
    /** A complete request: route it and answer through `res` (now or later). */
    void (*on_request)(void *ctx, hsc_req_t *req, hsc_res_t *res);
    /**
     * Optional: header lines every response to `req` carries ("Name: value\r\n"...), appended
     * to `out` (NUL-terminated, `cap` bytes in all). CORS headers come this way.
     */
    void (*response_headers)(void *ctx, const hsc_req_t *req, char *out, size_t cap);
    /** A connection closed and left the loop's list (nconns is already one less). */
    void (*on_closed)(void *ctx);
} hsc_http_owner_t;

/* TLS counters of a loop (hsc_http_t.st_tls, tls.c), summed by /metrics. */
enum {
    HSC_TLS_ST_HANDSHAKES,   /* completed */
    HSC_TLS_ST_RESUMED,      /* ... of them by a session ticket or the session cache */
    HSC_TLS_ST_TIMEOUTS,     /* not completed within header_timeout of accept */
    HSC_TLS_ST_FAIL_VERSION, /* failures, by reason: no TLS 1.2 or 1.3 offered */
    HSC_TLS_ST_FAIL_CIPHER,  /* no shared cipher suite or group */
    HSC_TLS_ST_FAIL_HTTP,    /* plain HTTP sent to a TLS port */
    HSC_TLS_ST_FAIL_ALERT,   /* the client sent an alert (it refused our certificate...) */
    HSC_TLS_ST_FAIL_EOF,     /* the client closed during the handshake */
    HSC_TLS_ST_FAIL_OTHER,   /* anything else: garbage, a protocol error */
    HSC_TLS_ST_COUNT
};
/** The label of a failure counter (HSC_TLS_ST_FAIL_*) in /metrics. */
const char *hsc_tls_fail_reason(int st);

/** One loop's connections. Touched by that loop's thread only, except the counters. */
typedef struct hsc_http_s {
    uv_loop_t *loop;
    const hsc_server_config_t *cfg; /* limits and timeouts; borrowed for the transport's life */
    const hsc_http_owner_t *owner;
    void *ctx;                         /* the owner's, passed back in every callback */
    atomic_uint *nconns_all;           /* open connections of every loop: --max-connections */
    atomic_uint_fast64_t *next_req_id; /* request ids, unique in the process */
    hsc_conn_t *conns;                 /* this loop's open connections */
    size_t nconns;
    bool draining; /* no keep-alive: every connection closes after its current response */
    /* Counters: written by this loop's thread only, read by /metrics on any thread. */
    atomic_uint_fast64_t st_requests, st_bytes_out;
    atomic_uint_fast64_t st_tls[HSC_TLS_ST_COUNT];
    atomic_uint_fast64_t st_h2_conns, st_h2_streams, st_h2_resets, st_h2_goaway;
    atomic_uint_fast64_t st_h2_abuse[HSC_H2_ABUSE_N];
    char rbuf[65536]; /* read buffer: every read is parsed or copied before the next */
} hsc_http_t;

/** Prepares a loop's transport (no handle is created). Borrows everything it is given. */
void hsc_http_init(hsc_http_t *h, uv_loop_t *loop, const hsc_server_config_t *cfg,
                   const hsc_http_owner_t *owner, void *ctx, atomic_uint *nconns_all,
                   atomic_uint_fast64_t *next_req_id);
/** Accepts one connection from `listener` (a uv_tcp_t on the same loop). */
void hsc_http_accept(hsc_http_t *h, uv_stream_t *listener);
struct ssl_ctx_st;
/**
 * Accepts one connection from `listener` that speaks TLS with `ctx` (an OpenSSL SSL_CTX; the
 * connection takes its own reference, so a reload may drop the caller's at any time).
 */
void hsc_http_accept_tls(hsc_http_t *h, uv_stream_t *listener, struct ssl_ctx_st *ctx);
/**
 * Serves a connected stream socket as if it had been accepted (a Unix socketpair in tests and
 * in the request path's fuzz target). Takes ownership of `fd`. Returns 0 or an error.
 */
int hsc_http_adopt(hsc_http_t *h, uv_os_sock_t fd);
/**
 * Shutdown: idle connections close now, busy ones after their current response; an HTTP/2
 * connection gets a shutdown notice, then GOAWAY when its streams have ended.
 */
void hsc_http_drain(hsc_http_t *h);
/** Closes every connection now (the drain timeout): producers get their on_close. */
void hsc_http_close_all(hsc_http_t *h);

#endif
