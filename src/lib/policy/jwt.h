/*
 * HS256 JSON Web Tokens (RFC 7519) as hscd accepts them (docs/security.md): verification with
 * OpenSSL's HMAC and a constant-time comparison, claims read with jansson, channel patterns.
 * No libuv, no sockets: unit-tested and fuzzed on its own.
 */
#ifndef HSC_JWT_H
#define HSC_JWT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** The longest token accepted, in bytes. */
#define HSC_JWT_MAX 8192

/* Claims hscd reads besides exp and nbf. */
#define HSC_JWT_PUBLISH   "hsc_pub"    /* array of channel patterns the token may publish to */
#define HSC_JWT_SUBSCRIBE "hsc_sub"    /* array of channel patterns it may subscribe to */
#define HSC_JWT_STREAM    "hsc_stream" /* true: it may ask the responder (/v1/stream) */

/**
 * Decodes unpadded base64url (RFC 4648 section 5) into `out` (capacity `cap`). Returns the
 * decoded length, or -1 for a character outside the alphabet, a length of 1 mod 4, non-zero
 * unused bits, or too small a buffer.
 */
ssize_t hsc_b64url_decode(unsigned char *out, size_t cap, const char *in, size_t len);

/**
 * Verifies `token` (HEADER.PAYLOAD.SIGNATURE) with the HS256 key: the header must say
 * {"alg":"HS256"} (any other alg, "none" included, is refused), the signature must match, the
 * payload must be a JSON object, and `now_s` must be before "exp" and not before "nbf" when they
 * are present (numbers; any other type is refused). Returns 0 and the payload in *claims (the
 * caller json_decref()s it), or -1 with a one-line reason in *why (a static string).
 */
int hsc_jwt_verify(const void *key, size_t key_len, const char *token, size_t len, int64_t now_s,
                   json_t **claims, const char **why);

/**
 * Whether the array `claims[claim]` lists a pattern covering the channel `name`: a pattern is an
 * exact name, "PREFIX*" (every name starting with PREFIX) or "*" (every name). A missing claim or
 * one that is not an array of strings covers nothing.
 */
bool hsc_jwt_covers(const json_t *claims, const char *claim, const char *name, size_t len);

#endif
