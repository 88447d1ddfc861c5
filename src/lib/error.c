/*
 * hsc_strerror(): one table for hsc's own codes; everything else is handed to libuv, whose codes
 * are negated errno values and pass through hsc's APIs unchanged.
 */
#include "hsc/hsc.h"

#include <uv.h>

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
    case HSC_EUTF8:
        return "invalid UTF-8";
    case HSC_ESTATE:
        return "not allowed in the current state";
    default:
        return uv_strerror(err);
    }
}
