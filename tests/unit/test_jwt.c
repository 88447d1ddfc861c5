/*
 * Unit tests for src/lib/policy/jwt.c: base64url decoding, HS256 verification (the RFC 7515
 * appendix A.1 example as a known vector, then tokens signed here with OpenSSL's HMAC), refusals
 * (other algorithms, bad signatures, malformed tokens, time claims), and channel patterns.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "policy/jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

static const char KEY[] = "0123456789abcdef0123456789abcdef";

static size_t b64url(char *out, const void *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
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
    out[o] = '\0';
    return o;
}

/* Signs header.payload (JSON texts) with `key`; returns the token in `out`. */
static const char *sign(char *out, const char *header, const char *payload, const char *key)
{
    size_t n = b64url(out, header, strlen(header));
    out[n++] = '.';
    n += b64url(out + n, payload, strlen(payload));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned ml = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)out, n, mac, &ml);
    out[n++] = '.';
    b64url(out + n, mac, ml);
    return out;
}

static int verify(const char *tok, int64_t now, json_t **claims, const char **why)
{
    return hsc_jwt_verify(KEY, strlen(KEY), tok, strlen(tok), now, claims, why);
}

static void expect_refused(const char *tok, int64_t now, const char *reason)
{
    json_t *claims = (json_t *)1;
    const char *why = NULL;
    assert_int_equal(verify(tok, now, &claims, &why), -1);
    assert_null(claims);
    assert_non_null(why);
    if (reason != NULL)
        assert_string_equal(why, reason);
}

static void test_b64url_decode(void **state)
{
    (void)state;
    unsigned char out[16];
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "", 0), 0);
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "Zg", 2), 1);
    assert_memory_equal(out, "f", 1);
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "Zm8", 3), 2);
    assert_memory_equal(out, "fo", 2);
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "Zm9v", 4), 3);
    assert_memory_equal(out, "foo", 3);
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "-w", 2), 1);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "__8", 3), 2);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(out[1], 0xff);
}

static void test_b64url_refuses(void **state)
{
    (void)state;
    unsigned char out[16];
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "Z", 1), -1);     /* 1 mod 4 */
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "Zh", 2), -1);    /* unused bits set */
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "Zm9v+", 5), -1); /* standard alphabet */
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "Zm9v/w", 6), -1);
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "Zg==", 4), -1); /* padding */
    assert_int_equal(hsc_b64url_decode(out, sizeof out, "Zm\0v", 4), -1);
    assert_int_equal(hsc_b64url_decode(out, 2, "Zm9v", 4), -1); /* too small a buffer */
    assert_int_equal(hsc_b64url_decode(out, 3, "Zm9v", 4), 3);
}

/* RFC 7515, appendix A.1: an HS256 JWS whose payload has exp 1300819380. */
static void test_rfc7515_vector(void **state)
{
    (void)state;
    static const char k64[] =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    static const char tok[] =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0"
        "cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    unsigned char key[64];
    ssize_t kl = hsc_b64url_decode(key, sizeof key, k64, strlen(k64));
    assert_int_equal(kl, 64);
    json_t *claims = NULL;
    const char *why = NULL;
    assert_int_equal(hsc_jwt_verify(key, (size_t)kl, tok, strlen(tok), 1300819379, &claims, &why),
                     0);
    assert_null(why);
    assert_string_equal(json_string_value(json_object_get(claims, "iss")), "joe");
    json_decref(claims);
    assert_int_equal(hsc_jwt_verify(key, (size_t)kl, tok, strlen(tok), 1300819380, &claims, &why),
                     -1);
    assert_string_equal(why, "token expired");
    key[0] ^= 1;
    assert_int_equal(hsc_jwt_verify(key, (size_t)kl, tok, strlen(tok), 0, &claims, &why), -1);
    assert_string_equal(why, "bad token signature");
}

static void test_valid_token_and_claims(void **state)
{
    (void)state;
    char tok[1024];
    sign(tok, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
         "{\"hsc_pub\":[\"news\"],\"hsc_sub\":[\"*\"],\"hsc_stream\":true,\"exp\":2000,\"nbf\":"
         "1000}",
         KEY);
    json_t *claims = NULL;
    const char *why = NULL;
    assert_int_equal(verify(tok, 1000, &claims, &why), 0);
    assert_true(hsc_jwt_covers(claims, HSC_JWT_PUBLISH, "news", 4));
    assert_false(hsc_jwt_covers(claims, HSC_JWT_PUBLISH, "news2", 5));
    assert_true(hsc_jwt_covers(claims, HSC_JWT_SUBSCRIBE, "anything", 8));
    assert_true(json_is_true(json_object_get(claims, HSC_JWT_STREAM)));
    json_decref(claims);
    assert_int_equal(verify(tok, 1999, &claims, &why), 0);
    json_decref(claims);
    expect_refused(tok, 2000, "token expired");
    expect_refused(tok, 999, "token not valid yet (nbf)");
}

static void test_other_algorithms_are_refused(void **state)
{
    (void)state;
    char tok[1024];
    const char *algs[] = {"{\"alg\":\"none\"}",
                          "{\"alg\":\"HS512\"}",
                          "{\"alg\":\"RS256\"}",
                          "{\"alg\":\"hs256\"}",
                          "{}",
                          "{\"alg\":256}"};
    for (size_t i = 0; i < sizeof algs / sizeof *algs; i++)
        expect_refused(sign(tok, algs[i], "{}", KEY), 0, "token algorithm must be HS256");
    /* alg none with an empty signature, the classic forgery */
    char none[256];
    size_t n = b64url(none, "{\"alg\":\"none\"}", 14);
    strcpy(none + n, ".e30.");
    expect_refused(none, 0, "token algorithm must be HS256");
    expect_refused(sign(tok, "{\"alg\":\"HS256\",\"crit\":[\"x\"]}", "{}", KEY), 0,
                   "token header has crit extensions");
}

static void test_bad_signatures(void **state)
{
    (void)state;
    char tok[1024];
    expect_refused(sign(tok, "{\"alg\":\"HS256\"}", "{}", "another key, also 32 bytes long!"), 0,
                   "bad token signature");
    sign(tok, "{\"alg\":\"HS256\"}", "{}", KEY);
    size_t n = strlen(tok);
    char copy[1024];
    strcpy(copy, tok);
    copy[n - 2] = copy[n - 2] == 'A' ? 'B' : 'A'; /* one signature character changed */
    expect_refused(copy, 0, NULL);
    strcpy(copy, tok);
    copy[n - 4] = '\0'; /* a shortened signature */
    expect_refused(copy, 0, NULL);
    /* the payload changed, the signature kept */
    char other[1024];
    sign(other, "{\"alg\":\"HS256\"}", "{\"hsc_pub\":[\"*\"]}", KEY);
    char *sig = strrchr(tok, '.');
    char *osig = strrchr(other, '.');
    strcpy(osig, sig);
    expect_refused(other, 0, "bad token signature");
}

static void test_malformed_tokens(void **state)
{
    (void)state;
    char tok[1024];
    expect_refused("", 0, "malformed token");
    expect_refused("abc", 0, "malformed token");
    expect_refused("a.b", 0, "malformed token");
    sign(tok, "{\"alg\":\"HS256\"}", "{}", KEY);
    char four[1100];
    snprintf(four, sizeof four, "%s.x", tok);
    expect_refused(four, 0, "malformed token");
    expect_refused(sign(tok, "{\"alg\":\"HS256\"}", "[1,2]", KEY), 0, "malformed token");
    expect_refused(sign(tok, "{\"alg\":\"HS256\"}", "not json", KEY), 0, "malformed token");
    expect_refused(sign(tok, "{\"alg\":\"HS256\"}", "{\"a\":1,\"a\":2}", KEY), 0, NULL);
    expect_refused(sign(tok, "{\"alg\":\"HS256\"}", "{\"exp\":\"2000\"}", KEY), 0,
                   "exp and nbf must be numbers");
    expect_refused(sign(tok, "{\"alg\":\"HS256\"}", "{\"nbf\":null}", KEY), 0,
                   "exp and nbf must be numbers");
    char *big = malloc(HSC_JWT_MAX + 2);
    assert_non_null(big);
    memset(big, 'A', HSC_JWT_MAX + 1);
    big[HSC_JWT_MAX + 1] = '\0';
    expect_refused(big, 0, "malformed token");
    free(big);
}

static void test_patterns(void **state)
{
    (void)state;
    json_t *c = json_loads("{\"hsc_pub\":[\"news\",\"chat.*\",7,\"\"],\"hsc_sub\":\"*\","
                           "\"p\":[\"*\"]}",
                           0, NULL);
    assert_non_null(c);
    assert_true(hsc_jwt_covers(c, "hsc_pub", "news", 4));
    assert_false(hsc_jwt_covers(c, "hsc_pub", "new", 3));
    assert_false(hsc_jwt_covers(c, "hsc_pub", "newsroom", 8));
    assert_true(hsc_jwt_covers(c, "hsc_pub", "chat.", 5));
    assert_true(hsc_jwt_covers(c, "hsc_pub", "chat.room/1", 11));
    assert_false(hsc_jwt_covers(c, "hsc_pub", "chat", 4));
    assert_false(hsc_jwt_covers(c, "hsc_sub", "news", 4)); /* not an array: nothing */
    assert_false(hsc_jwt_covers(c, "missing", "news", 4));
    assert_true(hsc_jwt_covers(c, "p", "x", 1));
    json_decref(c);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_decode),
        cmocka_unit_test(test_b64url_refuses),
        cmocka_unit_test(test_rfc7515_vector),
        cmocka_unit_test(test_valid_token_and_claims),
        cmocka_unit_test(test_other_algorithms_are_refused),
        cmocka_unit_test(test_bad_signatures),
        cmocka_unit_test(test_malformed_tokens),
        cmocka_unit_test(test_patterns),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
