/*
 * hsc-bench fanout and connect: their options, shared by fanout.c (the run) and fanout_opts.c
 * (the parser and --help).
 */
#ifndef HSC_BENCH_FANOUT_H
#define HSC_BENCH_FANOUT_H

#include "bench.h"

#define MAX_WORKERS 64

typedef struct opts_s {
    bench_url_t sub, pub;
    const char *pub_format; /* "body" or "pushpin" */
    char channel[128];
    const char *label;
    long n, m, size, procs, sources;
    double rate, idle_s, settle_s;
    int pids[BENCH_MAX_PIDS];
    int npids;
    bool json, connect_only;
} opts_t;

/* Parses fanout's (or connect's) command line into `o`: 0, or -1 after a message on stderr.
 * --help prints the usage and exits 0. */
int bench_fanout_parse_opts(int argc, char **argv, opts_t *o);

#endif
