/*
 * Fuzz target for src/lib/policy/jwt.c: base64url and HS256 token verification.
 *
 * Properties checked (abort() on a violation):
 *  - the input as a token: hsc_jwt_verify() returns 0 or -1, with claims set exactly on 0 and a
 *    reason exactly on -1; an unsigned input never verifies (the fuzzer cannot forge a MAC);
 *  - base64url: whatever decodes re-encodes to the same text (one spelling per byte string), and
 *    the input's bytes encoded decode back to themselves;
 *  - a token signed here with the right key from two pieces of the input (header and payload
 *    JSON texts, split where byte 0 says) verifies exactly when a reference says it should: the
 *    header is a JSON object whose alg is "HS256" and has no crit, the payload is a JSON object
 *    without duplicate keys, exp and nbf absent or numbers with nbf <= now < exp;
 *  - hsc_jwt_covers() on the verified claims agrees with a reference pattern match for a name
 *    taken from the input.
 */
#include "policy/jwt.h"

#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_jwt: check failed: %s (line %d)\n", #cond, __LINE__);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char KEY[] = "fuzzing key, thirty-two bytes ok";
#define NOW 1000000

static size_t b64url(char *out, const unsigned char *p, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        if (i + 1 < len)
            out[o++] = abc[v >> 6 & 63];
        if (i + 2 < len)
            out[o++] = abc[v & 63];
    }
    return o;
}

static json_t *object_of(const unsigned char *p, size_t len)
{
    json_t *j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* 1 absent, 0 valid number, -1 present and not a finite number. */
static int time_of(const json_t *o, const char *name, double *v)
{
    const json_t *x = json_object_get(o, name);
    if (x == NULL)
        return 1;
    if (!json_is_number(x) || !isfinite(json_number_value(x)))
        return -1;
    *v = json_number_value(x);
    return 0;
}

static bool reference_accepts(const unsigned char *h, size_t hl, const unsigned char *p, size_t pl)
{
    json_t *hdr = object_of(h, hl);
    if (hdr == NULL)
        return false;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    bool ok = alg != NULL && strcmp(alg, "HS256") == 0 && json_object_get(hdr, "crit") == NULL;
    json_decref(hdr);
    if (!ok)
        return false;
    json_t *pay = object_of(p, pl);
    if (pay == NULL)
        return false;
    double exp = 0, nbf = 0;
    int e = time_of(pay, "exp", &exp), n = time_of(pay, "nbf", &nbf);
    ok = e >= 0 && n >= 0 && (e == 1 || (double)NOW < exp) && (n == 1 || (double)NOW >= nbf);
    json_decref(pay);
    return ok;
}

static bool reference_covers(const json_t *claims, const char *name, size_t len)
{
    const json_t *list = json_object_get(claims, "hsc_pub");
    if (!json_is_array(list))
        return false;
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *v = json_array_get(list, i);
        if (!json_is_string(v))
            continue;
        const char *s = json_string_value(v);
        size_t sl = json_string_length(v);
        bool prefix = sl > 0 && s[sl - 1] == '*';
        size_t want = prefix ? sl - 1 : sl;
        if ((prefix ? len >= want : len == want) && memcmp(s, name, want) == 0)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > HSC_JWT_MAX)
        return 0;
    /* The raw input as a token. */
    char *tok = malloc(size + 1);
    CHECK(tok != NULL);
    memcpy(tok, data, size);
    tok[size] = '\0';
    json_t *claims = (json_t *)1;
    const char *why = NULL;
    int rc = hsc_jwt_verify(KEY, strlen(KEY), tok, size, NOW, &claims, &why);
    CHECK(rc == -1 && claims == NULL && why != NULL);

    /* base64url, both ways. */
    unsigned char *dec = malloc(size + 1);
    char *enc = malloc(size / 3 * 4 + 8);
    CHECK(dec != NULL && enc != NULL);
    ssize_t dl = hsc_b64url_decode(dec, size, tok, size);
    if (dl >= 0) {
        size_t el = b64url(enc, dec, (size_t)dl);
        CHECK(el == size && memcmp(enc, tok, size) == 0);
    }
    free(enc);
    enc = malloc(size / 3 * 4 + 8);
    CHECK(enc != NULL);
    size_t el = b64url(enc, data, size);
    CHECK(hsc_b64url_decode(dec, size, enc, el) == (ssize_t)size);
    CHECK(size == 0 || memcmp(dec, data, size) == 0);
    free(enc);
    free(dec);
    free(tok);

    /* A properly signed token from two pieces of the input. */
    if (size < 1)
        return 0;
    size_t split = data[0] % size;
    const unsigned char *h = data + 1, *p = data + 1 + split;
    size_t hl = split, pl = size - 1 - split;
    char *signed_tok = malloc((hl + pl) / 3 * 4 + 64 + 48);
    CHECK(signed_tok != NULL);
    size_t n = b64url(signed_tok, h, hl);
    signed_tok[n++] = '.';
    n += b64url(signed_tok + n, p, pl);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned ml = 0;
    CHECK(HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (const unsigned char *)signed_tok, n, mac,
               &ml) != NULL);
    signed_tok[n++] = '.';
    n += b64url(signed_tok + n, mac, ml);
    if (n <= HSC_JWT_MAX) {
        claims = NULL;
        why = NULL;
        rc = hsc_jwt_verify(KEY, strlen(KEY), signed_tok, n, NOW, &claims, &why);
        bool want = reference_accepts(h, hl, p, pl);
        CHECK((rc == 0) == want);
        CHECK(rc == 0 ? claims != NULL && why == NULL : claims == NULL && why != NULL);
        if (rc == 0) {
            size_t nl = hl < 20 ? hl : 20;
            CHECK(hsc_jwt_covers(claims, "hsc_pub", (const char *)h, nl) ==
                  reference_covers(claims, (const char *)h, nl));
            json_decref(claims);
        }
    }
    free(signed_tok);
    return 0;
}
