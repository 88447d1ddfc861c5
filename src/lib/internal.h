/* Transitional: every layer's header at once. */
#ifndef HSC_INTERNAL_H
#define HSC_INTERNAL_H
#include "server/server.h"
#endif
