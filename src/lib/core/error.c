/*
 * hsc_strerror(): one table for hsc's own codes; libuv's codes pass through hsc's APIs unchanged
 * and are named here too. On Unix they are negated errno values (strerror() names them), except
 * for a few of libuv's own: end of file and the getaddrinfo() family. The function needs no
 * libuv, so the codec archive (and with it the client) has it.
 */
#include "hsc/hsc.h"

#include <string.h>

const char *hsc_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case HSC_ENOMEM:
        return "out of memory";
    case HSC_ETOOBIG:
        return "too big for its limit";
    case HSC_EINVAL:
        return "invalid argument";
    case HSC_ECLOSED:
        return "already closed";
    case HSC_EFULL:
        return "output queue full";
    case HSC_ENOTFOUND:
        return "not found";
    case HSC_EMETHOD:
        return "method not allowed";
    case HSC_ESTATE:
        return "not allowed in the current state";
    case HSC_ELIMIT:
        return "rate limited";
    case HSC_ETLS:
        return "TLS certificate or key unusable";
    case -4095: /* UV_EOF */
        return "end of file";
    case -4094: /* UV_UNKNOWN */
        return "unknown error";
    default:
        break;
    }
    if (err <= -3000 && err > -3100) /* UV_EAI_*: address lookup */
        return "address lookup failed";
    if (err < 0 && err > -4000)
        return strerror(-err);
    return "unknown error";
}
