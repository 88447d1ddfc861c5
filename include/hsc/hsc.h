/**
 * hsc — HTTP Stream Communicator. Common definitions: version, export macro, error codes.
 *
 * Errors are returned, never stored: functions return 0 (or a length) on success and a negative
 * code on failure. Codes from libuv (negated errno values such as UV_EADDRINUSE) pass through
 * unchanged; hsc's own codes live in a range libuv never uses. hsc_strerror() names both.
 */
#ifndef HSC_HSC_H
#define HSC_HSC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HSC_EXPORT __attribute__((visibility("default")))
#else
#define HSC_EXPORT
#endif

#define HSC_VERSION_STRING "0.1.0"

enum {
    HSC_ENOMEM = -30001,    /* out of memory */
    HSC_ETOOBIG = -30002,   /* a bounded buffer or limit would be exceeded */
    HSC_EINVAL = -30003,    /* invalid argument or malformed input */
    HSC_ECLOSED = -30004,   /* the connection or response is already closed */
    HSC_EFULL = -30005,     /* an output queue is over its ceiling */
    HSC_ENOTFOUND = -30006, /* no such route, file or key */
    HSC_EMETHOD = -30007,   /* the route exists but not for this method */
    HSC_ESTATE = -30009,    /* call not allowed in the current state */
    HSC_ELIMIT = -30010,    /* refused by a rate limit: try again later */
    HSC_ETLS = -30011       /* a TLS certificate or key that cannot be used (the log says why) */
};

/** Returns a static, human-readable description of an hsc or libuv error code. */
HSC_EXPORT const char *hsc_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
