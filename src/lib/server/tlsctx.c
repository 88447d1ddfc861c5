/*
 * The server's TLS context (an OpenSSL SSL_CTX): made from cfg.tls_cert and cfg.tls_key each
 * time a configuration snapshot is (config.c), so at start and at every reload. A snapshot owns
 * its context; a connection takes its own reference (SSL_new), so a reload changes the
 * certificate for new connections while the open ones keep theirs until they close.
 *
 * What is offered, and why (docs/tls.md): TLS 1.2 and 1.3 only. For 1.2 only ECDHE key exchange
 * (forward secrecy) with AEAD ciphers (AES-GCM, ChaCha20-Poly1305); for 1.3 OpenSSL's default
 * suites, all AEAD. The client's preference order wins: every suite offered is strong, and a
 * client without AES instructions knows to prefer ChaCha20. No renegotiation, no compression.
 * Sessions resume by ticket (keys made per context) or from the server-side cache.
 *
 * ALPN: "h2" when the client offers it and HTTP/2 is on (--no-http2 turns it off), else
 * "http/1.1"; a client that offers neither still connects, without ALPN.
 */
#include "server/server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    bool h2 = arg != NULL; /* cfg.http2 */
    const unsigned char *h11 = NULL;
    for (unsigned i = 0; i < inlen;) {
        unsigned len = in[i];
        const unsigned char *p = in + i + 1;
        if (len == 0 || i + 1 + len > inlen)
            break;
        if (h2 && len == 2 && memcmp(p, "h2", 2) == 0) {
            *out = p;
            *outlen = (unsigned char)len;
            return SSL_TLSEXT_ERR_OK;
        }
        if (len == 8 && memcmp(p, "http/1.1", 8) == 0)
            h11 = p;
        i += 1 + len;
    }
    if (h11 == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    *out = h11;
    *outlen = 8;
    return SSL_TLSEXT_ERR_OK;
}

/* An encrypted key would make OpenSSL ask on the terminal: refuse it instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

/* OpenSSL's latest reason, or `fallback`. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : fallback;
}

/* Whether `path` can be opened; logs why not. */
static bool readable(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        HSC_LOG(HSC_LOG_ERROR, "--%s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

int hsc_tls_ctx_new(const hsc_server_config_t *cfg, struct ssl_ctx_st **out, int64_t *not_after)
{
    *out = NULL;
    if (cfg->tls_cert == NULL || cfg->tls_key == NULL) {
        HSC_LOG(HSC_LOG_ERROR, "--tls-cert and --tls-key go together");
        return HSC_ETLS;
    }
    if (!readable("tls-cert", cfg->tls_cert) || !readable("tls-key", cfg->tls_key))
        return HSC_ETLS;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return HSC_ENOMEM;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle subscribers hold no record buffers */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 20000);
    SSL_CTX_set_timeout(ctx, 3600);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"hscd", 4);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, cfg->http2 ? (void *)ctx : NULL);
    int rc = HSC_ETLS, key = 0;
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1)
        HSC_LOG(HSC_LOG_ERROR, "TLS: cannot set the cipher list: %s", ssl_reason("unknown"));
    else if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
        HSC_LOG(HSC_LOG_ERROR, "--tls-cert %s: not a PEM certificate (chain): %s", cfg->tls_cert,
                ssl_reason("no certificate found"));
    /* A key that does not match the certificate fails here already, for that reason. */
    else if ((key = SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM)) != 1 &&
             ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH)
        HSC_LOG(HSC_LOG_ERROR, "--tls-key %s: not an unencrypted PEM private key: %s", cfg->tls_key,
                ssl_reason("no key found"));
    else if (key != 1 || SSL_CTX_check_private_key(ctx) != 1)
        HSC_LOG(HSC_LOG_ERROR, "--tls-key %s does not match the certificate of --tls-cert %s",
                cfg->tls_key, cfg->tls_cert);
    else
        rc = 0;
    ERR_clear_error();
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *not_after = 0;
    struct tm tm;
    const X509 *x = SSL_CTX_get0_certificate(ctx);
    if (x != NULL && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        *not_after = (int64_t)timegm(&tm);
    if (*not_after != 0 && *not_after < (int64_t)time(NULL))
        HSC_LOG(HSC_LOG_WARN, "--tls-cert %s has expired: clients will refuse it", cfg->tls_cert);
    *out = ctx;
    return 0;
}

int hsc_server_check_tls(const hsc_server_config_t *cfg)
{
    if (cfg->tls_cert == NULL && cfg->tls_key == NULL)
        return 0;
    SSL_CTX *ctx;
    int64_t not_after;
    int rc = hsc_tls_ctx_new(cfg, &ctx, &not_after);
    if (rc == 0)
        SSL_CTX_free(ctx);
    return rc;
}

void hsc_tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}
