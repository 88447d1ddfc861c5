/*
 * TLS for one connection: an OpenSSL SSL object between the socket and HTTP, on the
 * connection's own loop, with memory BIOs (no blocking, no extra thread).
 *
 *   socket ──ciphertext──► on_read (conn.c) ──► hsc_tls_input: BIO `in`, handshake, SSL_read
 *                                                  └─plaintext─► conn_feed, as cleartext bytes
 *   output queue (outq.c) ──slices──► hsc_tls_write: SSL_write from each frame ──► BIO `out`
 *                                                  └─ciphertext─► one uv_write on c->wreq
 *
 * Writing. The output queue keeps its meaning (docs/internals/output-queue.md): a TLS
 * connection never tries a direct write, so everything it sends waits on the queue as plaintext
 * (a copy for hsc_conn_send(), a reference to the shared frame for hsc_conn_send_slices()), and
 * `queued`, the watermarks, on_drain, --max-queue-bytes and the T_SEND watch count plaintext
 * exactly as for cleartext. conn_flush() hands up to 16 slices to hsc_tls_write(), which encrypts
 * them straight from their frames (no plaintext copy per subscriber) and writes the ciphertext,
 * owned by the engine until on_write (hsc_tls_written()). The slices stay on the queue, counted,
 * until that write completes. Nothing is encrypted before the handshake is done: a response
 * queued earlier (the 503 of --max-connections) leaves right after it (hsc_conn_flush()).
 *
 * Records OpenSSL writes by itself (the handshake, session tickets, alerts, close_notify, a
 * KeyUpdate answer) leave as "control" writes of their own, each taking everything in `out` at
 * the time: libuv writes a stream's requests in order, so the records reach the socket in the
 * order OpenSSL made them. What control writes hold unsent is bounded (HSC_TLS_CTL_MAX), and so
 * is the ciphertext waiting in `in` (HSC_TLS_IN_MAX).
 *
 * Limits. The handshake must end within --header-timeout of the accept (conn.c's T_HEADER, which
 * then keeps running for the first request's head). A failed handshake is logged at info with
 * OpenSSL's reason, counted by reason (http.h's HSC_TLS_ST_*), its alert sent, and the
 * connection closed after a linger; a client that sent plain HTTP gets a plain-text 400.
 */
#include "http/conn.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdlib.h>
#include <string.h>

#define HSC_TLS_IN_MAX  (256u << 10) /* ciphertext received, not yet decrypted */
#define HSC_TLS_CTL_MAX (256u << 10) /* records written by control writes, not yet sent */

struct hsc_tls_s {
    SSL *ssl;
    BIO *in, *out;     /* memory BIOs: ciphertext from the socket, ciphertext for it */
    char *wbuf;        /* the ciphertext of the queue's write in flight on c->wreq */
    size_t ctl_unsent; /* bytes of control writes not yet completed */
    bool got_bytes, done, failed, shut;
    char alpn[16]; /* the protocol ALPN chose, or "" */
};

typedef struct ctl_write_s {
    uv_write_t req;
    size_t len;
    char data[];
} ctl_write_t;

static const char *const fail_reasons[HSC_TLS_ST_COUNT] = {
    [HSC_TLS_ST_FAIL_VERSION] = "version", [HSC_TLS_ST_FAIL_CIPHER] = "cipher",
    [HSC_TLS_ST_FAIL_HTTP] = "http",       [HSC_TLS_ST_FAIL_ALERT] = "alert",
    [HSC_TLS_ST_FAIL_EOF] = "eof",         [HSC_TLS_ST_FAIL_OTHER] = "other",
};

const char *hsc_tls_fail_reason(int st)
{
    return st >= 0 && st < HSC_TLS_ST_COUNT && fail_reasons[st] != NULL ? fail_reasons[st] : "";
}

static const char HTTP_TO_TLS[] = "HTTP/1.1 400 Bad Request\r\n"
                                  "Content-Type: text/plain; charset=utf-8\r\n"
                                  "Content-Length: 57\r\n"
                                  "Connection: close\r\n\r\n"
                                  "plain HTTP sent to a TLS port: use https:// on this port\n";

int hsc_tls_attach(hsc_conn_t *c, struct ssl_ctx_st *ctx)
{
    struct hsc_tls_s *t = calloc(1, sizeof *t);
    if (t == NULL)
        return HSC_ENOMEM;
    t->ssl = SSL_new(ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        free(t);
        return HSC_ENOMEM;
    }
    BIO_set_mem_eof_return(t->in, -1); /* empty means "wait for more", not EOF */
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_accept_state(t->ssl);
    c->tls = t;
    return 0;
}

void hsc_tls_free(hsc_conn_t *c)
{
    struct hsc_tls_s *t = c->tls;
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* and both BIOs */
    free(t->wbuf);
    free(t);
    c->tls = NULL;
}

const char *hsc_conn_alpn(const hsc_conn_t *c)
{
    return c->tls != NULL && c->tls->alpn[0] != '\0' ? c->tls->alpn : NULL;
}

bool hsc_tls_ready(const hsc_conn_t *c)
{
    return c->tls->done && !c->tls->failed;
}

static void on_ctl_written(uv_write_t *req, int status)
{
    ctl_write_t *w = (ctl_write_t *)req;
    hsc_conn_t *c = (hsc_conn_t *)req->handle; /* callbacks run before the handle's close */
    c->tls->ctl_unsent -= w->len;
    free(w);
    if (status < 0 && !c->closing) {
        HSC_LOG(HSC_LOG_INFO, "conn %s: write: %s", c->peer, uv_strerror(status));
        hsc_conn_close(c);
    }
}

/* Writes whatever OpenSSL has put in `out` since the last write, as a control write. */
static void tls_kick(hsc_conn_t *c)
{
    struct hsc_tls_s *t = c->tls;
    size_t n = BIO_ctrl_pending(t->out);
    if (n == 0 || c->closing)
        return;
    ctl_write_t *w = malloc(sizeof *w + n);
    if (w == NULL) {
        hsc_conn_close_soon(c);
        return;
    }
    w->len = (size_t)BIO_read(t->out, w->data, (int)n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_ctl_written) != 0) {
        free(w);
        hsc_conn_close_soon(c);
        return;
    }
    t->ctl_unsent += w->len;
    if (t->ctl_unsent > HSC_TLS_CTL_MAX) {
        HSC_LOG(HSC_LOG_INFO, "conn %s: TLS records pile up unread, closing", c->peer);
        hsc_conn_close_soon(c);
    }
}

static void count(hsc_conn_t *c, int st)
{
    HSC_STAT_ADD(c->h->st_tls[st], 1);
}

/* Which counter a failed handshake goes to, from OpenSSL's reason. */
static int fail_kind(unsigned long err)
{
    int r = ERR_GET_REASON(err);
    if (err == 0)
        return HSC_TLS_ST_FAIL_OTHER;
    if (r == SSL_R_HTTP_REQUEST || r == SSL_R_HTTPS_PROXY_REQUEST)
        return HSC_TLS_ST_FAIL_HTTP;
    if (r == SSL_R_UNSUPPORTED_PROTOCOL || r == SSL_R_VERSION_TOO_LOW ||
        r == SSL_R_UNKNOWN_PROTOCOL)
        return HSC_TLS_ST_FAIL_VERSION;
    if (r == SSL_R_NO_SHARED_CIPHER || r == SSL_R_NO_SHARED_GROUPS ||
        r == SSL_R_NO_SUITABLE_KEY_SHARE || r == SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS)
        return HSC_TLS_ST_FAIL_CIPHER;
    if (r >= SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256)
        return HSC_TLS_ST_FAIL_ALERT;
    return HSC_TLS_ST_FAIL_OTHER;
}

/* The handshake failed: one info line, a counter, the alert (or a 400 for plain HTTP), and a
 * graceful close. */
static void tls_fail(hsc_conn_t *c)
{
    struct hsc_tls_s *t = c->tls;
    unsigned long err = ERR_peek_last_error();
    int kind = fail_kind(err);
    const char *why = err != 0 ? ERR_reason_error_string(err) : NULL;
    HSC_LOG(HSC_LOG_INFO, "conn %s: TLS handshake failed (%s): %s", c->peer,
            hsc_tls_fail_reason(kind), why != NULL ? why : "protocol error");
    ERR_clear_error();
    count(c, kind);
    t->failed = true;
    if (kind == HSC_TLS_ST_FAIL_HTTP) {
        (void)BIO_reset(t->out);
        BIO_write(t->out, HTTP_TO_TLS, (int)strlen(HTTP_TO_TLS));
    }
    tls_kick(c);
    c->keep_alive = false;
    c->state = CONN_CLOSING;
    hsc_conn_finish(c);
}

static void tls_handshake_done(hsc_conn_t *c)
{
    struct hsc_tls_s *t = c->tls;
    t->done = true;
    count(c, HSC_TLS_ST_HANDSHAKES);
    bool resumed = SSL_session_reused(t->ssl);
    if (resumed)
        count(c, HSC_TLS_ST_RESUMED);
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    if (len > 0 && len < sizeof t->alpn) {
        memcpy(t->alpn, p, len);
        t->alpn[len] = '\0';
    }
    HSC_LOG(HSC_LOG_DEBUG, "conn %s: %s %s%s, ALPN %s", c->peer, SSL_get_version(t->ssl),
            SSL_get_cipher_name(t->ssl), resumed ? ", resumed" : "",
            t->alpn[0] != '\0' ? t->alpn : "none");
}

void hsc_tls_input(hsc_conn_t *c, const char *data, size_t len,
                   void (*feed)(hsc_conn_t *c, const char *data, size_t len))
{
    struct hsc_tls_s *t = c->tls;
    if (t->failed)
        return;
    if (BIO_ctrl_pending(t->in) + len > HSC_TLS_IN_MAX) {
        HSC_LOG(HSC_LOG_INFO, "conn %s: too much TLS input waiting, closing", c->peer);
        hsc_conn_close(c);
        return;
    }
    t->got_bytes = true;
    BIO_write(t->in, data, (int)len);
    if (!t->done) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                tls_kick(c);
                return;
            }
            tls_fail(c);
            return;
        }
        tls_handshake_done(c);
        tls_kick(c);
        hsc_conn_flush(c); /* a response queued before the handshake (a 503) */
    }
    /* All of it, now: plaintext left inside OpenSSL would wait for a read that may never come.
     * conn_feed() holds what arrives during a response (bounded as for cleartext). */
    while (!c->closing && c->state != CONN_CLOSING) {
        ERR_clear_error();
        int r = SSL_read(t->ssl, c->h->rbuf, (int)sizeof c->h->rbuf);
        if (r > 0) {
            feed(c, c->h->rbuf, (size_t)r);
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        tls_kick(c);
        if (e == SSL_ERROR_WANT_READ)
            return;
        if (e != SSL_ERROR_ZERO_RETURN) { /* not the client's close_notify */
            unsigned long err = ERR_peek_last_error();
            HSC_LOG(HSC_LOG_INFO, "conn %s: TLS: %s", c->peer,
                    err != 0 ? ERR_reason_error_string(err) : "protocol error");
            ERR_clear_error();
        }
        t->failed = true; /* nothing more may be written on this session */
        hsc_conn_close(c);
        return;
    }
}

void hsc_tls_eof(hsc_conn_t *c)
{
    struct hsc_tls_s *t = c->tls;
    if (t->done || t->failed || !t->got_bytes)
        return; /* a client that connected and left without a byte is no failed handshake */
    HSC_LOG(HSC_LOG_INFO, "conn %s: TLS handshake failed (eof): the client closed the connection",
            c->peer);
    count(c, HSC_TLS_ST_FAIL_EOF);
}

void hsc_tls_timeout(hsc_conn_t *c)
{
    if (c->tls->done || c->tls->failed)
        return;
    HSC_LOG(HSC_LOG_INFO, "conn %s: TLS handshake not completed within --header-timeout, closing",
            c->peer);
    count(c, HSC_TLS_ST_TIMEOUTS);
}

int hsc_tls_write(hsc_conn_t *c, unsigned n, uv_write_cb cb)
{
    struct hsc_tls_s *t = c->tls;
    for (unsigned k = 0; k < n; k++) {
        const hsc_outq_item_t *it = &c->q[(c->q_head + k) % c->q_cap];
        if (it->end == it->off)
            continue;
        ERR_clear_error();
        if (SSL_write(t->ssl, it->frame->data + it->off, (int)(it->end - it->off)) <= 0) {
            ERR_clear_error();
            return HSC_ECLOSED;
        }
    }
    size_t len = BIO_ctrl_pending(t->out);
    t->wbuf = malloc(len > 0 ? len : 1);
    if (t->wbuf == NULL)
        return HSC_ENOMEM;
    len = len > 0 ? (size_t)BIO_read(t->out, t->wbuf, (int)len) : 0;
    uv_buf_t b = uv_buf_init(t->wbuf, (unsigned)len);
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, cb);
    if (rc != 0) {
        free(t->wbuf);
        t->wbuf = NULL;
    }
    return rc;
}

void hsc_tls_written(hsc_conn_t *c)
{
    free(c->tls->wbuf);
    c->tls->wbuf = NULL;
}

void hsc_tls_close_notify(hsc_conn_t *c)
{
    struct hsc_tls_s *t = c->tls;
    if (!t->done || t->failed || t->shut)
        return;
    t->shut = true;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    tls_kick(c);
}
