/*
 * The response writer every feature shares: status line and headers, then a body that is either
 * of known length, chunked (HTTP/1.1 streaming) or close-delimited (HTTP/1.0 streaming).
 *
 * A complete streamed answer ends with the last chunk ("0\r\n\r\n") or, on HTTP/1.0, with an
 * orderly close. hsc_res_abort() ends it in a way a client can tell apart: no last chunk (curl
 * reports a transfer closed with outstanding data; Python's http.client raises IncompleteRead),
 * or a TCP reset on HTTP/1.0. HEAD requests get the same headers and no body bytes.
 *
 * The writer owns no buffers: hsc_conn_send() writes at once or queues a copy, and tells the
 * producer about pressure through hsc_res_writable() / on_drain. Chunk framing is an iovec
 * [size line, data, CRLF], so data is copied only when the socket cannot take it at once.
 *
 * A response on an HTTP/2 stream (res->h2 set) has the same API and the same meaning; every
 * function here hands it to h2res.c, which frames it for nghttp2.
 */
#include "http/conn.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *hsc_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

const char *hsc_http_date(void)
{
    static _Thread_local time_t last;
    static _Thread_local char buf[40];
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return buf;
}

/* Formats the head into `out`; returns its length or 0 when it does not fit. */
static size_t format_head(hsc_res_t *res, char *out, size_t cap, int status,
                          const char *content_type, const char *extra, int64_t content_length,
                          hsc_body_mode_t mode)
{
    hsc_conn_t *c = res->conn;
    const hsc_req_t *req = &c->req;
    bool http11 = req->http_major > 1 || (req->http_major == 1 && req->http_minor >= 1);
    const char *conn_hdr = "";
    if (!c->keep_alive)
        conn_hdr = "Connection: close\r\n";
    else if (!http11)
        conn_hdr = "Connection: keep-alive\r\n";

    char length[48] = "";
    if (content_length >= 0)
        snprintf(length, sizeof length, "Content-Length: %lld\r\n", (long long)content_length);
    else if (mode == HSC_BODY_CHUNKED)
        snprintf(length, sizeof length, "Transfer-Encoding: chunked\r\n");

    if (status == 204 || status == 304)
        length[0] = '\0'; /* these never have a body, and say nothing of its length */
    char owner_hdrs[512] = "";
    if (c->h->owner->response_headers != NULL)
        c->h->owner->response_headers(c->h->ctx, req, owner_hdrs, sizeof owner_hdrs);

    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Server: hsc/" HSC_VERSION_STRING "\r\n"
                     "Date: %s\r\n"
                     "%s%s%s"
                     "%s%s%s%s\r\n",
                     status, hsc_status_reason(status), hsc_http_date(),
                     content_type ? "Content-Type: " : "", content_type ? content_type : "",
                     content_type ? "\r\n" : "", extra ? extra : "", owner_hdrs, length, conn_hdr);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/*
 * Formats the head into `out` and, only once it is formatted, marks the response started in its
 * body mode. Returns the head's length, HSC_ESTATE when a response is already under way, or
 * HSC_ETOOBIG when the head does not fit (nothing is started then).
 */
static ssize_t res_head(hsc_res_t *res, char *out, size_t cap, int status, const char *content_type,
                        const char *extra, int64_t content_length)
{
    hsc_conn_t *c = res->conn;
    if (res->started || res->ended)
        return HSC_ESTATE;
    const hsc_req_t *req = &c->req;
    bool http11 = req->http_major > 1 || (req->http_major == 1 && req->http_minor >= 1);
    hsc_body_mode_t mode = content_length >= 0 ? HSC_BODY_LENGTH
                           : http11            ? HSC_BODY_CHUNKED
                                               : HSC_BODY_CLOSE;
    if (mode == HSC_BODY_CLOSE)
        c->keep_alive = false; /* the body ends with the connection */
    size_t n = format_head(res, out, cap, status, content_type, extra, content_length, mode);
    if (n == 0)
        return HSC_ETOOBIG;
    res->status = status;
    res->started = true;
    res->mode = mode;
    res->remaining = mode == HSC_BODY_LENGTH && !req->head_only ? (uint64_t)content_length : 0;
    return (ssize_t)n;
}

int hsc_res_start(hsc_res_t *res, int status, const char *content_type, const char *extra,
                  int64_t content_length)
{
    if (res->h2 != NULL)
        return hsc_h2_res_start(res, status, content_type, extra, content_length);
    char head[2048];
    ssize_t n = res_head(res, head, sizeof head, status, content_type, extra, content_length);
    if (n < 0)
        return (int)n;
    uv_buf_t b = uv_buf_init(head, (unsigned)n);
    return hsc_conn_send(res->conn, &b, 1);
}

int hsc_res_write(hsc_res_t *res, const void *p, size_t n)
{
    if (res->h2 != NULL)
        return hsc_h2_res_write(res, p, n);
    if (!res->started || res->ended)
        return HSC_ESTATE;
    if (n == 0 || res->conn->req.head_only)
        return 0;
    switch (res->mode) {
    case HSC_BODY_LENGTH: {
        if (n > res->remaining)
            return HSC_EINVAL;
        res->remaining -= n;
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        return hsc_conn_send(res->conn, &b, 1);
    }
    case HSC_BODY_CHUNKED: {
        char head[HSC_CHUNK_HEADER_MAX];
        uv_buf_t b[3] = {
            uv_buf_init(head, (unsigned)hsc_chunked_header(head, n)),
            uv_buf_init((char *)p, (unsigned)n),
            uv_buf_init((char *)HSC_CHUNK_CRLF, 2),
        };
        return hsc_conn_send(res->conn, b, 3);
    }
    case HSC_BODY_CLOSE:
    default: {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        return hsc_conn_send(res->conn, &b, 1);
    }
    }
}

int hsc_res_end(hsc_res_t *res)
{
    if (res->h2 != NULL)
        return hsc_h2_res_end(res);
    if (!res->started)
        return HSC_ESTATE;
    if (res->ended)
        return HSC_ECLOSED;
    hsc_conn_t *c = res->conn;
    if (res->mode == HSC_BODY_LENGTH && res->remaining != 0) {
        hsc_res_abort(res); /* a short body would desynchronise the connection */
        return HSC_EINVAL;
    }
    res->ended = true;
    res->on_close = NULL;
    res->on_drain = NULL;
    int rc = 0;
    if (res->mode == HSC_BODY_CHUNKED && !c->req.head_only) {
        uv_buf_t b = uv_buf_init((char *)HSC_CHUNK_LAST, sizeof HSC_CHUNK_LAST - 1);
        rc = hsc_conn_send(c, &b, 1);
    }
    hsc_conn_response_done(c, false);
    return rc;
}

void hsc_res_abort(hsc_res_t *res)
{
    if (res->h2 != NULL) {
        hsc_h2_res_abort(res);
        return;
    }
    if (res->ended)
        return;
    hsc_conn_t *c = res->conn;
    if (!res->started) {
        hsc_res_error(res, 500, NULL, "the response failed before it started", true);
        return;
    }
    res->ended = true;
    res->on_close = NULL;
    res->on_drain = NULL;
    c->keep_alive = false;
    hsc_conn_response_done(c, res->mode == HSC_BODY_CLOSE);
}

int hsc_res_send(hsc_res_t *res, int status, const char *content_type, const char *extra,
                 const void *body, size_t len)
{
    if (res->h2 != NULL) {
        int rc = hsc_h2_res_start(res, status, content_type, extra, (int64_t)len);
        if (rc != 0)
            return rc;
        rc = hsc_h2_res_write(res, body, len);
        int end = hsc_h2_res_end(res);
        return rc != 0 ? rc : end;
    }
    char head[2048];
    ssize_t n = res_head(res, head, sizeof head, status, content_type, extra, (int64_t)len);
    if (n == HSC_ESTATE)
        return (int)n;
    if (n < 0) { /* no head fits: the connection cannot go on */
        res->ended = true;
        res->conn->keep_alive = false;
        hsc_conn_response_done(res->conn, false);
        return HSC_ETOOBIG;
    }
    uv_buf_t b[2] = {uv_buf_init(head, (unsigned)n), uv_buf_init((char *)body, (unsigned)len)};
    unsigned nb = res->conn->req.head_only || len == 0 ? 1 : 2;
    int rc = hsc_conn_send(res->conn, b, nb);
    res->remaining = 0;
    res->ended = true;
    res->on_close = NULL;
    res->on_drain = NULL;
    hsc_conn_response_done(res->conn, false);
    return rc;
}

static const char *json_error_type(int status)
{
    switch (status) {
    case 400:
    case 404:
    case 405:
    case 413:
    case 415:
        return status == 404 ? "not_found_error" : "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

int hsc_res_json_error(hsc_res_t *res, int status, const char *extra, const char *message,
                       const char *type, const char *param, const char *code)
{
    json_t *j = json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error", "message", message, "type",
                          type ? type : json_error_type(status), "param", param, "code", code);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    static const char fallback[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                   "\"server_error\",\"param\":null,\"code\":null}}";
    int rc = hsc_res_send(res, status, "application/json", extra, body ? body : fallback,
                          body ? strlen(body) : sizeof fallback - 1);
    free(body);
    return rc;
}

int hsc_res_error(hsc_res_t *res, int status, const char *extra, const char *reason, bool close)
{
    if (close)
        res->conn->keep_alive = false;
    if (res->json_errors)
        return hsc_res_json_error(res, status, extra, reason, NULL, NULL, NULL);
    char body[512];
    int n = snprintf(body, sizeof body, "%s\n", reason);
    if (n < 0 || (size_t)n >= sizeof body)
        n = (int)sizeof body - 1, body[n - 1] = '\n';
    return hsc_res_send(res, status, "text/plain; charset=utf-8", extra, body, (size_t)n);
}

bool hsc_res_writable(hsc_res_t *res)
{
    if (res->h2 != NULL)
        return hsc_h2_res_writable(res);
    hsc_conn_t *c = res->conn;
    if (c->queued <= hsc_conn_high_water(c))
        return true;
    res->want_drain = true;
    return false;
}

hsc_req_t *hsc_res_request(hsc_res_t *res)
{
    return res->h2 != NULL ? &res->h2->req : &res->conn->req;
}

int hsc_res_send_slices(hsc_res_t *res, const hsc_outq_item_t *it, unsigned n)
{
    if (!res->started || res->ended)
        return HSC_ESTATE;
    if (res->h2 != NULL)
        return hsc_h2_res_send_slices(res, it, n);
    int k = hsc_conn_send_slices(res->conn, it, n);
    if (k >= 0 && (unsigned)k < n)
        res->want_drain = true; /* the queue is full: on_drain tells when to send the rest */
    return k;
}

void hsc_res_close(hsc_res_t *res)
{
    if (res->h2 != NULL) {
        hsc_h2_res_close(res);
        return;
    }
    hsc_conn_close_soon(res->conn);
}

/* Corking means nothing on an HTTP/2 stream: its frames leave together on the next loop turn. */
void hsc_res_cork(hsc_res_t *res)
{
    if (res->h2 != NULL)
        return;
    hsc_conn_cork(res->conn);
}

void hsc_res_uncork(hsc_res_t *res)
{
    if (res->h2 != NULL)
        return;
    hsc_conn_uncork(res->conn);
}
