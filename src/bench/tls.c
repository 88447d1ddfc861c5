/*
 * TLS for hsc-bench's subscribers (an https:// --sub-url): an OpenSSL client per connection with
 * memory BIOs on the worker's libuv loop, the mirror of the server's src/lib/http/tls.c. The
 * benchmark measures the server, so the client trusts any certificate (no verification) and
 * offers http/1.1 by ALPN, or h2 only for HTTP/2 subscribers (--h2, h2.c). Ciphertext leaves in
 * writes of their own (each takes everything OpenSSL has produced, so libuv's in-order writes keep
 * the records in order); plaintext goes to the caller's callback.
 */
#include "bench.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdlib.h>
#include <string.h>

struct bench_tls_s {
    SSL *ssl;
    BIO *in, *out;
    const char *request; /* sent once the handshake is done; borrowed */
    size_t request_len;
    bool done;
};

typedef struct tls_write_s {
    uv_write_t req;
    char data[];
} tls_write_t;

static SSL_CTX *client_ctx;

int bench_tls_init(bool h2)
{
    if (client_ctx != NULL)
        return 0; /* one context for every https:// --sub-url (one mode per run) */
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (client_ctx == NULL)
        return -1;
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_min_proto_version(client_ctx, TLS1_2_VERSION);
    static const unsigned char http11[] = "\x08http/1.1", h2alpn[] = "\x02h2";
    if (h2)
        SSL_CTX_set_alpn_protos(client_ctx, h2alpn, sizeof h2alpn - 1);
    else
        SSL_CTX_set_alpn_protos(client_ctx, http11, sizeof http11 - 1);
    return 0;
}

bench_tls_t *bench_tls_new(const char *request, size_t len)
{
    bench_tls_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(client_ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    BIO_set_mem_eof_return(t->in, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_connect_state(t->ssl);
    t->request = request;
    t->request_len = len;
    return t;
}

void bench_tls_free(bench_tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

static void on_tls_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows as a failed read */
    free(req);
}

/* Writes what OpenSSL produced; -1 when the write cannot be started. */
static int tls_flush(bench_tls_t *t, uv_stream_t *s)
{
    size_t n = BIO_ctrl_pending(t->out);
    if (n == 0)
        return 0;
    tls_write_t *w = malloc(sizeof *w + n);
    if (w == NULL)
        return -1;
    int got = BIO_read(t->out, w->data, (int)n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)(got > 0 ? got : 0));
    if (uv_write(&w->req, s, &b, 1, on_tls_written) != 0) {
        free(w);
        return -1;
    }
    return 0;
}

/* Drives the handshake; once done, sends the request. 0, or -1 on failure. */
static int tls_step(bench_tls_t *t, uv_stream_t *s)
{
    if (!t->done) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (tls_flush(t, s) != 0 || e != SSL_ERROR_WANT_READ)
                return -1;
            return 0;
        }
        t->done = true;
        if (t->request_len > 0 &&
            SSL_write(t->ssl, t->request, (int)t->request_len) != (int)t->request_len)
            return -1;
    }
    return tls_flush(t, s);
}

int bench_tls_start(bench_tls_t *t, uv_stream_t *s)
{
    return tls_step(t, s);
}

int bench_tls_input(bench_tls_t *t, uv_stream_t *s, const char *data, size_t len, char *buf,
                    size_t cap, int (*plain)(void *arg, const char *p, size_t n), void *arg)
{
    BIO_write(t->in, data, (int)len);
    if (tls_step(t, s) != 0)
        return -1;
    if (!t->done)
        return 0;
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(t->ssl, buf, (int)cap);
        if (r > 0) {
            if (plain(arg, buf, (size_t)r) != 0)
                return -1;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (tls_flush(t, s) != 0)
            return -1;
        return e == SSL_ERROR_WANT_READ ? 0 : -1;
    }
}

bool bench_tls_ready(const bench_tls_t *t)
{
    return t->done;
}

bool bench_tls_alpn_is(const bench_tls_t *t, const char *proto)
{
    const unsigned char *p = NULL;
    unsigned n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    return n == strlen(proto) && memcmp(p, proto, n) == 0;
}

int bench_tls_write(bench_tls_t *t, uv_stream_t *s, const char *p, size_t n)
{
    if (!t->done || n == 0)
        return n == 0 ? 0 : -1;
    ERR_clear_error();
    if (SSL_write(t->ssl, p, (int)n) != (int)n) /* memory BIOs: never a partial write */
        return -1;
    return tls_flush(t, s);
}
