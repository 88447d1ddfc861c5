/*
 * Unit tests for src/lib/http/tls.c, a connection's TLS engine, on a real loop
 * (tests/unit/http_harness.h) with the server's real context (src/lib/server/tlsctx.c, from a
 * certificate made here in memory and written to a temporary directory). The peer is an OpenSSL
 * client on its end of the socketpair: a handshake and a request (ALPN h2, counted); a
 * large response through the queue, whole and in order past a small socket buffer; shared frames
 * sent as slices are queued by reference (no copy) and released once written; a response that
 * ends the connection ends it with close_notify; garbage and plain HTTP fail the handshake,
 * counted by reason, plain HTTP with a 400.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http_harness.h"
#include "server/server.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static char dir[64], cert_path[96], key_path[96];

/* A self-signed EC P-256 certificate for "localhost", written as PEM files in `dir`. */
static void make_cert_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/hsc-test-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    FILE *f = fopen(cert_path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_path, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void remove_cert_files(void)
{
    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
}

/* The server side: the transport, a connection made TLS with the real context, and the peer. */
typedef struct tls_fixture_s {
    harness_t *h;
    SSL_CTX *sctx, *cctx;
    SSL *client;
    hsc_conn_t *conn;
    char *got; /* plaintext the client read */
    size_t got_len, got_cap;
    bool got_close_notify;
} fx_t;

static void fx_init(fx_t *f, const hsc_route_t *routes, size_t n, int bufsize)
{
    memset(f, 0, sizeof *f);
    f->h = harness_new(routes, n);
    hsc_server_config_t cfg;
    hsc_server_config_init(&cfg);
    cfg.tls_cert = cert_path;
    cfg.tls_key = key_path;
    int64_t not_after;
    assert_int_equal(hsc_tls_ctx_new(&cfg, &f->sctx, &not_after), 0);
    assert_true(not_after > 0);
    f->conn = harness_connect(f->h, bufsize);
    assert_int_equal(hsc_tls_attach(f->conn, f->sctx), 0); /* before any byte is read */
    f->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(f->cctx, SSL_VERIFY_NONE, NULL);
    f->client = SSL_new(f->cctx);
    SSL_set_fd(f->client, f->h->peer);
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    SSL_set_alpn_protos(f->client, alpn, sizeof alpn - 1);
}

static void fx_handshake(fx_t *f)
{
    uint64_t end = uv_hrtime() + 10000000000u;
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(f->client);
        if (r == 1)
            return;
        int e = SSL_get_error(f->client, r);
        assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        assert_true(uv_hrtime() < end);
        harness_step(f->h, false);
    }
}

static void fx_send(fx_t *f, const char *s)
{
    assert_int_equal(SSL_write(f->client, s, (int)strlen(s)), (int)strlen(s));
}

/* The client reads what it can (plaintext into f->got); notes a close_notify. */
static void fx_read(fx_t *f)
{
    for (;;) {
        if (f->got_cap - f->got_len < 65536) {
            f->got_cap = f->got_cap ? f->got_cap * 2 : 1 << 20;
            f->got = realloc(f->got, f->got_cap);
            assert_non_null(f->got);
        }
        ERR_clear_error();
        int r = SSL_read(f->client, f->got + f->got_len, (int)(f->got_cap - f->got_len - 1));
        if (r > 0) {
            f->got_len += (size_t)r;
            f->got[f->got_len] = '\0';
            continue;
        }
        int e = SSL_get_error(f->client, r);
        if (e == SSL_ERROR_ZERO_RETURN)
            f->got_close_notify = true;
        return;
    }
}

#define FX_UNTIL(f, cond)                                                                          \
    do {                                                                                           \
        uint64_t fx_end_ = uv_hrtime() + 10000000000u;                                             \
        while (!(cond)) {                                                                          \
            if (uv_hrtime() > fx_end_)                                                             \
                fail_msg("timed out waiting for: %s", #cond);                                      \
            harness_step((f)->h, false);                                                           \
            fx_read(f);                                                                            \
        }                                                                                          \
    } while (0)

static void fx_free(fx_t *f)
{
    SSL_free(f->client);
    SSL_CTX_free(f->cctx);
    harness_free(f->h); /* every connection closed, the loop closes with nothing open */
    SSL_CTX_free(f->sctx);
    free(f->got);
}

static uint64_t stat_of(fx_t *f, int st)
{
    return atomic_load(&f->h->http.st_tls[st]);
}

/* ---- a handshake and a request --------------------------------------------------------------- */

static const char *alpn_seen;

static void hello_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx;
    alpn_seen = hsc_conn_alpn(req->conn);
    hsc_res_send(res, 200, "text/plain", NULL, "hello\n", 6);
}

static const hsc_route_t hello_routes[] = {{"/hello", HSC_M_GET, hello_handler, 0}};

static void test_handshake_request_and_alpn(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, hello_routes, 1, 0);
    fx_handshake(&f);
    assert_string_equal(SSL_get_version(f.client), "TLSv1.3");
    fx_send(&f, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    FX_UNTIL(&f, strstr(f.got != NULL ? f.got : "", "hello\n") != NULL);
    assert_non_null(strstr(f.got, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(alpn_seen);
    assert_string_equal(alpn_seen, "h2"); /* offered and on (the transport sniffs HTTP/1.1) */
    assert_int_equal(stat_of(&f, HSC_TLS_ST_HANDSHAKES), 1);
    assert_int_equal(stat_of(&f, HSC_TLS_ST_RESUMED), 0);
    fx_free(&f);
}

/* ---- a large response through the queue --------------------------------------------------------
 */

#define BIG (512u << 10)

static unsigned char pattern(size_t i)
{
    return (unsigned char)('a' + (i * 7u + i / 1021u) % 26u);
}

static void big_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx, (void)req;
    char *body = malloc(BIG);
    assert_non_null(body);
    for (size_t i = 0; i < BIG; i++)
        body[i] = (char)pattern(i);
    assert_int_equal(hsc_res_send(res, 200, "text/plain", NULL, body, BIG), 0);
    free(body);
}

static const hsc_route_t big_routes[] = {{"/big", HSC_M_GET, big_handler, 0}};

static void test_large_response_whole_and_in_order(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, big_routes, 1, 16384); /* the socket takes it in many parts */
    fx_handshake(&f);
    fx_send(&f, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    FX_UNTIL(&f, f.got_len > 0 && strstr(f.got, "\r\n\r\n") != NULL &&
                     f.got_len - (size_t)(strstr(f.got, "\r\n\r\n") + 4 - f.got) >= BIG);
    const char *body = strstr(f.got, "\r\n\r\n") + 4;
    assert_int_equal(f.got_len - (size_t)(body - f.got), BIG);
    for (size_t i = 0; i < BIG; i++)
        if ((unsigned char)body[i] != pattern(i))
            fail_msg("byte %zu differs", i);
    FX_UNTIL(&f, f.conn->q_count == 0);
    assert_int_equal(f.conn->queued, 0);
    fx_free(&f);
}

/* ---- shared frames as slices -------------------------------------------------------------------
 */

static hsc_frame_t *shared;
static unsigned refs_after_send;

static void slices_handler(void *ctx, hsc_req_t *req, hsc_res_t *res)
{
    (void)ctx, (void)req;
    shared = hsc_frame_try_new(4000);
    assert_non_null(shared);
    memset(shared->data, 'z', 4000);
    hsc_outq_item_t it[4];
    for (int i = 0; i < 4; i++)
        it[i] = (hsc_outq_item_t){shared, (size_t)i * 1000, (size_t)i * 1000 + 1000};
    /* HTTP/1.0 streaming: close-delimited, so the slices are the body's bytes as they are. */
    assert_int_equal(hsc_res_start(res, 200, "text/plain", NULL, HSC_STREAMING), 0);
    assert_int_equal(hsc_res_send_slices(res, it, 4), 4);
    refs_after_send = atomic_load(&shared->refs);
    assert_int_equal(hsc_res_end(res), 0);
}

static const hsc_route_t slices_routes[] = {{"/s", HSC_M_GET, slices_handler, 0}};

static void test_slices_queued_by_reference(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, slices_routes, 1, 0);
    fx_handshake(&f);
    fx_send(&f, "GET /s HTTP/1.0\r\n\r\n");
    FX_UNTIL(&f, shared != NULL && atomic_load(&shared->refs) == 1 && f.got_close_notify);
    assert_int_equal(refs_after_send, 5); /* ours and one per queued slice: nothing copied */
    const char *body = strstr(f.got, "\r\n\r\n");
    assert_non_null(body);
    assert_int_equal(f.got_len - (size_t)(body + 4 - f.got), 4000);
    hsc_frame_unref(shared);
    shared = NULL;
    fx_free(&f);
}

/* ---- close_notify ------------------------------------------------------------------------------
 */

static void test_last_response_ends_with_close_notify(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, hello_routes, 1, 0);
    fx_handshake(&f);
    fx_send(&f, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    FX_UNTIL(&f, f.got_close_notify);
    assert_non_null(strstr(f.got, "hello\n"));
    fx_free(&f);
}

/* ---- failed handshakes
 * --------------------------------------------------------------------------- */

static void test_garbage_and_plain_http_fail_the_handshake(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f, hello_routes, 1, 0);
    harness_send(f.h, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    HARNESS_UNTIL(f.h, true, f.h->eof || f.h->reset);
    assert_non_null(strstr(f.h->in, "HTTP/1.1 400 Bad Request\r\n"));
    assert_int_equal(stat_of(&f, HSC_TLS_ST_FAIL_HTTP), 1);
    fx_free(&f);

    fx_init(&f, hello_routes, 1, 0);
    char junk[300];
    memset(junk, 0x17, sizeof junk); /* an application-data record before any handshake */
    junk[299] = '\0';
    harness_send(f.h, junk);
    HARNESS_UNTIL(f.h, true, f.h->eof || f.h->reset);
    assert_int_equal(stat_of(&f, HSC_TLS_ST_FAIL_OTHER), 1);
    assert_int_equal(stat_of(&f, HSC_TLS_ST_HANDSHAKES), 0);
    fx_free(&f);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_request_and_alpn),
        cmocka_unit_test(test_large_response_whole_and_in_order),
        cmocka_unit_test(test_slices_queued_by_reference),
        cmocka_unit_test(test_last_response_ends_with_close_notify),
        cmocka_unit_test(test_garbage_and_plain_http_fail_the_handshake),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    make_cert_files();
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    remove_cert_files();
    return rc;
}
