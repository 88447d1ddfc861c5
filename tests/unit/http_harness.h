/*
 * A real libuv loop around one hsc_http_t, for the unit tests of the http layer (test_outq.c,
 * test_res.c). The transport's owner is the harness: its on_request routes with
 * hsc_router_match() to the test's handlers (404 or 405 otherwise), its response_headers appends
 * `owner_headers`, its on_closed counts. A connection is adopted from one end of a Unix socketpair
 * (hsc_http_adopt()); the other end is the peer, played by the test: it writes requests, reads
 * what comes back between loop turns, and parses it with llhttp (HTTP_RESPONSE).
 *
 * Every test ends with harness_free(): the peer closes, every connection closes, the loop runs
 * until nothing is active, and uv_loop_close() must return 0 (no handle or request leaked).
 * Included after the cmocka headers.
 */
#ifndef HSC_TEST_HTTP_HARNESS_H
#define HSC_TEST_HTTP_HARNESS_H

#include "http/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct harness_s {
    uv_loop_t loop;
    hsc_server_config_t cfg; /* what the transport reads its limits from: set before connecting */
    hsc_http_owner_t owner;
    hsc_http_t http;
    atomic_uint nconns_all;
    atomic_uint_fast64_t next_req_id;
    const hsc_route_t *routes;
    size_t nroutes;
    const char *owner_headers; /* appended to every response's head by response_headers */
    unsigned requests;         /* on_request calls */
    unsigned closed;           /* on_closed calls */
    int peer;                  /* the client's end of the socketpair, -1 once closed */
    char *in;                  /* everything the peer has received */
    size_t in_len, in_cap;
    bool eof, reset; /* the peer read end of file, or ECONNRESET */
} harness_t;

static void harness_on_request(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    harness_t *h = ctx;
    h->requests++;
    const hsc_route_t *r;
    unsigned allowed = 0;
    int rc = hsc_router_match(h->routes, h->nroutes, req->path, req->path_len, req->method, &r,
                              &allowed);
    if (rc == 0)
        r->handler(h, req, res);
    else if (rc == HSC_EMETHOD)
        hsc_res_error(res, 405, NULL, "method not allowed", false);
    else
        hsc_res_error(res, 404, NULL, "not found", false);
}

static void harness_response_headers(void *ctx, const hsc_req_t *req, char *out, size_t cap)
{
    (void)req;
    harness_t *h = ctx;
    if (h->owner_headers != NULL) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s", h->owner_headers);
    }
}

static void harness_on_closed(void *ctx)
{
    harness_t *h = ctx;
    h->closed++;
}

/* A loop and a transport with roomy limits and timeouts far beyond any test's length. */
static inline harness_t *harness_new(const hsc_route_t *routes, size_t nroutes)
{
    signal(SIGPIPE, SIG_IGN); /* as hscd does: a closed peer is an error return, not a signal */
    harness_t *h = calloc(1, sizeof *h);
    assert_non_null(h);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    h->cfg.max_connections = 16;
    h->cfg.max_header_bytes = 8192;
    h->cfg.max_body_bytes = 65536;
    h->cfg.max_queue_bytes = 4u << 20;
    h->cfg.header_timeout_ms = 30000;
    h->cfg.idle_timeout_ms = 30000;
    h->owner.on_request = harness_on_request;
    h->owner.response_headers = harness_response_headers;
    h->owner.on_closed = harness_on_closed;
    h->routes = routes;
    h->nroutes = nroutes;
    h->peer = -1;
    hsc_http_init(&h->http, &h->loop, &h->cfg, &h->owner, h, &h->nconns_all, &h->next_req_id);
    return h;
}

/*
 * Adopts one end of a new socketpair as a connection; the other end becomes the peer. With
 * `bufsize` > 0 the server's send buffer and the peer's receive buffer are shrunk to it, so that
 * the socket takes a large write only in parts. Returns the connection.
 */
static inline hsc_conn_t *harness_connect(harness_t *h, int bufsize)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    if (bufsize > 0) {
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize), 0);
        assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize), 0);
    }
    assert_int_equal(fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK), 0);
    assert_int_equal(hsc_http_adopt(&h->http, sv[0]), 0);
    h->peer = sv[1];
    assert_non_null(h->http.conns);
    return h->http.conns;
}

/* The peer writes all of `s` (requests are small: the socket takes them at once). */
static inline void harness_send(harness_t *h, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = write(h->peer, s + off, len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
}

/* The peer reads whatever is there without blocking; returns how many bytes it got. */
static inline size_t harness_read(harness_t *h)
{
    size_t got = 0;
    while (h->peer >= 0 && !h->eof && !h->reset) {
        if (h->in_cap - h->in_len < 65536) {
            h->in_cap = h->in_cap ? h->in_cap * 2 : 262144;
            h->in = realloc(h->in, h->in_cap);
            assert_non_null(h->in);
        }
        ssize_t n = read(h->peer, h->in + h->in_len, h->in_cap - h->in_len - 1);
        if (n > 0) {
            h->in_len += (size_t)n;
            h->in[h->in_len] = '\0';
            got += (size_t)n;
        } else if (n == 0) {
            h->eof = true;
        } else if (errno == ECONNRESET) {
            h->reset = true;
        } else {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
    }
    return got;
}

/* The peer closes its end (the server sees end of file). */
static inline void harness_close_peer(harness_t *h)
{
    assert_true(h->peer >= 0);
    close(h->peer);
    h->peer = -1;
}

/* One turn of the loop, without blocking; the peer reads afterwards when `read`. */
static inline void harness_step(harness_t *h, bool read)
{
    uv_run(&h->loop, UV_RUN_NOWAIT);
    if (read)
        harness_read(h);
    struct timespec ts = {0, 200000}; /* 0.2 ms: no busy spinning while nothing moves */
    nanosleep(&ts, NULL);
}

/* Runs the loop (the peer reading when `read`) for about `ms` milliseconds. */
static inline void harness_spin(harness_t *h, bool read, uint64_t ms)
{
    uint64_t end = uv_hrtime() + ms * 1000000u;
    while (uv_hrtime() < end)
        harness_step(h, read);
}

/* Runs the loop (the peer reading when `read`) until `cond` holds; fails after 10 seconds. */
#define HARNESS_UNTIL(h, read, cond)                                                               \
    do {                                                                                           \
        uint64_t until_end_ = uv_hrtime() + 10000000000u;                                          \
        while (!(cond)) {                                                                          \
            if (uv_hrtime() > until_end_)                                                          \
                fail_msg("timed out waiting for: %s", #cond);                                      \
            harness_step((h), (read));                                                             \
        }                                                                                          \
    } while (0)

/*
 * Ends a test: the peer closes, every connection closes (their producers get on_close), and the
 * loop must end with nothing open: uv_loop_close() returns 0.
 */
static inline void harness_free(harness_t *h)
{
    if (h->peer >= 0)
        close(h->peer);
    h->peer = -1;
    hsc_http_close_all(&h->http);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    assert_int_equal(h->http.nconns, 0);
    assert_int_equal(atomic_load(&h->nconns_all), 0);
    assert_int_equal(uv_loop_close(&h->loop), 0);
    free(h->in);
    free(h);
}

/* ---- what the peer received, parsed ------------------------------------------------------- */

#define RESP_MAX     8
#define RESP_HEADERS 32

typedef struct resp_s {
    int status;
    unsigned major, minor;
    char name[RESP_HEADERS][64];
    char value[RESP_HEADERS][512];
    unsigned nhdr;
    char *body;
    size_t body_len;
    bool complete; /* on_message_complete: the whole message, as its framing says */
} resp_t;

typedef struct resps_s {
    resp_t r[RESP_MAX];
    unsigned n;
    unsigned head_mask; /* bit i: response i answers a HEAD request (it has no body) */
    int err;            /* llhttp's verdict on the bytes (and their end, if the peer saw it) */
    int last;           /* 1 after a header name piece, 2 after a value piece */
    llhttp_t parser;
    llhttp_settings_t settings;
} resps_t;

static void resp_append(char *dst, size_t cap, const char *at, size_t len)
{
    size_t l = strlen(dst);
    if (len > cap - 1 - l)
        len = cap - 1 - l;
    memcpy(dst + l, at, len);
    dst[l + len] = '\0';
}

static int resp_on_message_begin(llhttp_t *p)
{
    resps_t *rs = p->data;
    if (rs->n == RESP_MAX)
        return -1;
    rs->n++;
    rs->last = 0;
    return 0;
}

static int resp_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    resps_t *rs = p->data;
    resp_t *r = &rs->r[rs->n - 1];
    if (rs->last != 1) {
        if (r->nhdr == RESP_HEADERS)
            return -1;
        r->nhdr++;
        rs->last = 1;
    }
    resp_append(r->name[r->nhdr - 1], sizeof r->name[0], at, len);
    return 0;
}

static int resp_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    resps_t *rs = p->data;
    resp_t *r = &rs->r[rs->n - 1];
    rs->last = 2;
    resp_append(r->value[r->nhdr - 1], sizeof r->value[0], at, len);
    return 0;
}

static int resp_on_headers_complete(llhttp_t *p)
{
    resps_t *rs = p->data;
    resp_t *r = &rs->r[rs->n - 1];
    r->status = llhttp_get_status_code(p);
    r->major = llhttp_get_http_major(p);
    r->minor = llhttp_get_http_minor(p);
    return (rs->head_mask >> (rs->n - 1)) & 1u; /* 1: no body follows */
}

static int resp_on_body(llhttp_t *p, const char *at, size_t len)
{
    resps_t *rs = p->data;
    resp_t *r = &rs->r[rs->n - 1];
    r->body = realloc(r->body, r->body_len + len + 1);
    assert_non_null(r->body);
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int resp_on_message_complete(llhttp_t *p)
{
    resps_t *rs = p->data;
    rs->r[rs->n - 1].complete = true;
    return 0;
}

/*
 * Parses what the peer received as a sequence of responses (`head_mask`: which answer HEAD
 * requests). When the peer saw the end of the stream, llhttp_finish() judges it too: a
 * close-delimited body ends there, a chunked body without its last chunk is an error.
 */
static inline resps_t *harness_parse(const harness_t *h, unsigned head_mask)
{
    resps_t *rs = calloc(1, sizeof *rs);
    assert_non_null(rs);
    rs->head_mask = head_mask;
    llhttp_settings_init(&rs->settings);
    rs->settings.on_message_begin = resp_on_message_begin;
    rs->settings.on_header_field = resp_on_header_field;
    rs->settings.on_header_value = resp_on_header_value;
    rs->settings.on_headers_complete = resp_on_headers_complete;
    rs->settings.on_body = resp_on_body;
    rs->settings.on_message_complete = resp_on_message_complete;
    llhttp_init(&rs->parser, HTTP_RESPONSE, &rs->settings);
    rs->parser.data = rs;
    rs->err = llhttp_execute(&rs->parser, h->in_len ? h->in : "", h->in_len);
    if (rs->err == HPE_OK && (h->eof || h->reset))
        rs->err = llhttp_finish(&rs->parser);
    return rs;
}

static inline void resps_free(resps_t *rs)
{
    for (unsigned i = 0; i < RESP_MAX; i++)
        free(rs->r[i].body);
    free(rs);
}

/* How many complete responses the peer has received so far. */
static inline unsigned harness_complete(const harness_t *h, unsigned head_mask)
{
    resps_t *rs = harness_parse(h, head_mask);
    unsigned n = 0;
    for (unsigned i = 0; i < rs->n; i++)
        n += rs->r[i].complete;
    resps_free(rs);
    return n;
}

/* A response header's value by case-insensitive name, or NULL. */
static inline const char *resp_header(const resp_t *r, const char *name)
{
    for (unsigned i = 0; i < r->nhdr; i++)
        if (strcasecmp(r->name[i], name) == 0)
            return r->value[i];
    return NULL;
}

/* The bytes after the first response's head ("\r\n\r\n"), or NULL when the head is incomplete. */
static inline const char *harness_after_head(const harness_t *h, size_t *len)
{
    const char *e = h->in_len ? strstr(h->in, "\r\n\r\n") : NULL;
    if (e == NULL)
        return NULL;
    *len = h->in_len - (size_t)(e + 4 - h->in);
    return e + 4;
}

#endif
