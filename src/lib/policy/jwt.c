/*
 * HS256 JSON Web Tokens: base64url decoding, signature verification with OpenSSL's HMAC and
 * CRYPTO_memcmp(), the header and time claims, channel patterns (jwt.h, docs/security.md).
 */
#include "policy/jwt.h"

#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

ssize_t hsc_b64url_decode(unsigned char *out, size_t cap, const char *in, size_t len)
{
    if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* the unused low bits of the last character must be zero: one spelling */
        return -1;
    return (ssize_t)o;
}

/* Decodes one base64url segment that must be a JSON object. */
static json_t *segment_json(const char *p, size_t len)
{
    unsigned char buf[HSC_JWT_MAX];
    ssize_t n = hsc_b64url_decode(buf, sizeof buf, p, len);
    if (n < 0)
        return NULL;
    json_t *j = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A time claim: absent is fine; present, it must be a finite number. */
static int time_claim(const json_t *claims, const char *name, double *out)
{
    const json_t *v = json_object_get(claims, name);
    if (v == NULL)
        return 0;
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return -1;
    *out = json_number_value(v);
    return 1;
}

int hsc_jwt_verify(const void *key, size_t key_len, const char *token, size_t len, int64_t now_s,
                   json_t **claims, const char **why)
{
    *claims = NULL;
    *why = "malformed token";
    if (len == 0 || len > HSC_JWT_MAX)
        return -1;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return -1;
    size_t signed_len = (size_t)(dot2 - token);

    json_t *header = segment_json(token, (size_t)(dot1 - token));
    if (header == NULL)
        return -1;
    const char *alg = json_string_value(json_object_get(header, "alg"));
    bool hs256 = alg != NULL && strcmp(alg, "HS256") == 0;
    bool crit = json_object_get(header, "crit") != NULL; /* extensions we cannot honour */
    json_decref(header);
    if (crit) {
        *why = "token header has crit extensions";
        return -1;
    }
    if (!hs256) {
        *why = "token algorithm must be HS256";
        return -1;
    }

    unsigned char sig[64], mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    ssize_t sig_len = hsc_b64url_decode(sig, sizeof sig, dot2 + 1, len - signed_len - 1);
    if (sig_len < 0)
        return -1;
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)token, signed_len, mac,
             &mac_len) == NULL) {
        *why = "cannot verify the token";
        return -1;
    }
    if ((size_t)sig_len != mac_len || CRYPTO_memcmp(sig, mac, mac_len) != 0) {
        *why = "bad token signature";
        return -1;
    }

    json_t *payload = segment_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (payload == NULL)
        return -1;
    double exp = 0, nbf = 0;
    int has_exp = time_claim(payload, "exp", &exp), has_nbf = time_claim(payload, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0) {
        json_decref(payload);
        *why = "exp and nbf must be numbers";
        return -1;
    }
    if (has_exp && (double)now_s >= exp) {
        json_decref(payload);
        *why = "token expired";
        return -1;
    }
    if (has_nbf && (double)now_s < nbf) {
        json_decref(payload);
        *why = "token not valid yet (nbf)";
        return -1;
    }
    *claims = payload;
    *why = NULL;
    return 0;
}

bool hsc_jwt_covers(const json_t *claims, const char *claim, const char *name, size_t len)
{
    const json_t *list = json_object_get(claims, claim);
    size_t i;
    const json_t *v;
    if (!json_is_array(list))
        return false;
    json_array_foreach(list, i, v)
    {
        const char *pat = json_string_value(v);
        if (pat == NULL)
            continue;
        size_t pl = json_string_length(v);
        if (pl > 0 && pat[pl - 1] == '*') {
            if (len >= pl - 1 && memcmp(name, pat, pl - 1) == 0)
                return true;
        } else if (pl == len && memcmp(name, pat, len) == 0) {
            return true;
        }
    }
    return false;
}
