/*
 * Minting hscd's JWTs (include/hsc/client.h, docs/security.md): HS256 tokens whose claims say
 * which channels their holder may publish to and subscribe to, and whether it may ask the
 * responder. This is the other half of hscd's verifier (src/lib/policy/jwt.c), written apart
 * from it: the client does not link the server, and a token made here is checked there by code
 * that shares nothing with this file but the specification.
 *
 * A token is base64url(header) "." base64url(payload) "." base64url(HMAC-SHA256(key, the first
 * two parts)), base64url without padding (RFC 7515). The header is always
 * {"alg":"HS256","typ":"JWT"}; the payload holds only the claims asked for, in a fixed order
 * (sub, hsc_pub, hsc_sub, hsc_stream, exp), so equal claims give equal tokens.
 *
 * Patterns are checked here as hscd reads them: a channel name, a prefix of one followed by
 * '*', or '*'. A pattern hscd would never match is refused rather than minted into a token that
 * silently allows nothing.
 */
#include "hsc/client.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

int hsc_token_pattern_valid(const char *pattern)
{
    size_t n = strlen(pattern);
    if (n == 1 && pattern[0] == '*')
        return 1;
    if (n > 1 && pattern[n - 1] == '*')
        n--; /* a prefix: it must be the start of a channel name */
    return hsc_channel_name_valid(pattern, n);
}

/* base64url without padding: out needs 4 * ceil(n / 3) + 1 bytes. Returns the length written. */
static size_t b64url(char *out, const unsigned char *in, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = abc[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

/* Adds claim `name`, an array of the patterns in `list` (when there is one). */
static int add_patterns(json_t *payload, const char *name, const char *const *list)
{
    if (list == NULL)
        return 0;
    json_t *a = json_array();
    if (a == NULL || json_object_set_new(payload, name, a) != 0)
        return HSC_ENOMEM;
    for (; *list != NULL; list++) {
        if (!hsc_token_pattern_valid(*list))
            return HSC_EINVAL;
        if (json_array_append_new(a, json_string(*list)) != 0)
            return HSC_ENOMEM;
    }
    return 0;
}

/* The payload's claims, or an error. */
static int build_payload(const hsc_token_claims_t *claims, json_t **out)
{
    json_t *p = json_object();
    if (p == NULL)
        return HSC_ENOMEM;
    int rc = 0;
    if (claims->subject != NULL) {
        json_t *s = json_string(claims->subject); /* NULL for invalid UTF-8, too */
        if (s == NULL)
            rc = hsc_utf8_valid(claims->subject, strlen(claims->subject)) ? HSC_ENOMEM : HSC_EINVAL;
        else if (json_object_set_new(p, "sub", s) != 0)
            rc = HSC_ENOMEM;
    }
    if (rc == 0)
        rc = add_patterns(p, "hsc_pub", claims->publish);
    if (rc == 0)
        rc = add_patterns(p, "hsc_sub", claims->subscribe);
    if (rc == 0 && claims->stream && json_object_set_new(p, "hsc_stream", json_true()) != 0)
        rc = HSC_ENOMEM;
    if (rc == 0 && claims->expires != 0 &&
        json_object_set_new(p, "exp", json_integer((json_int_t)claims->expires)) != 0)
        rc = HSC_ENOMEM;
    if (rc != 0) {
        json_decref(p);
        return rc;
    }
    *out = p;
    return 0;
}

int hsc_token_mint(const hsc_token_claims_t *claims, const void *key, size_t key_len, char **out)
{
    *out = NULL;
    if (key_len < 32 || key_len > 4096 || claims->expires > (uint64_t)INT64_MAX)
        return HSC_EINVAL;
    json_t *payload = NULL;
    int rc = build_payload(claims, &payload);
    if (rc != 0)
        return rc;
    char *body = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(payload);
    if (body == NULL)
        return HSC_ENOMEM;
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t blen = strlen(body);
    /* header, '.', payload, '.', signature (32 bytes), each base64url, and the NUL */
    size_t cap = 4 * ((sizeof header + 2) / 3) + 1 + 4 * ((blen + 2) / 3) + 1 + 44 + 1;
    char *tok = malloc(cap);
    if (tok == NULL) {
        free(body);
        return HSC_ENOMEM;
    }
    size_t n = b64url(tok, (const unsigned char *)header, sizeof header - 1);
    tok[n++] = '.';
    n += b64url(tok + n, (const unsigned char *)body, blen);
    free(body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)tok, n, mac, &mac_len) ==
        NULL) {
        free(tok);
        return HSC_ENOMEM;
    }
    tok[n++] = '.';
    b64url(tok + n, mac, mac_len);
    OPENSSL_cleanse(mac, sizeof mac);
    *out = tok;
    return 0;
}
