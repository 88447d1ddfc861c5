/*
 * hsc-bench fanout and connect: the command line (fanout.h's opts_t) and --help.
 */
#include "fanout.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f, bool connect_only)
{
    if (connect_only)
        fputs("usage: hsc-bench connect [options]\n"
              "  Opens N subscriptions as fast as it can, then measures the server's memory per\n"
              "  idle subscriber.\n",
              f);
    else
        fputs("usage: hsc-bench fanout [options]\n"
              "  N subscribers, M events published at a rate or flat out; counts every delivery.\n",
              f);
    fputs("  --sub-url URL     subscribe URL, {ch} = the channel; https:// subscribes over TLS\n"
          "                    (default http://127.0.0.1:8000/v1/events?channel={ch})\n"
          "  --pub-url URL     publish URL, POST (default: the hscd one, as --sub-url)\n"
          "  --pub-format F    body (the data is the request body; hscd, nchan, floor) or\n"
          "                    pushpin (Pushpin's JSON publish API)\n"
          "  --channel NAME    default bench-<pid>\n"
          "  -n N              subscribers (default 100)\n"
          "  -m M              events (default 100)\n"
          "  -s BYTES          event data size (default 64, at least 32)\n"
          "  -r RATE           events per second; 0 = flat out, one publish after the other\n"
          "  -P PROCS          subscriber processes (default: one per 2500 subscribers, 2..16)\n"
          "  --sources K       source addresses 127.0.0.1..K (default 8)\n"
          "  --pid PID         the server's process (repeatable; descendants included) for\n"
          "                    CPU seconds and RSS\n"
          "  --label TEXT      a name for the server in the report\n"
          "  --idle SECONDS    give up waiting for deliveries after this long without one (10)\n"
          "  --settle SECONDS  connect: wait before reading idle memory (default 2)\n"
          "  --json            one JSON object on stdout\n",
          f);
}

int bench_fanout_parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option longs[] = {{"sub-url", required_argument, NULL, 'S'},
                                          {"pub-url", required_argument, NULL, 'U'},
                                          {"pub-format", required_argument, NULL, 'F'},
                                          {"channel", required_argument, NULL, 'c'},
                                          {"sources", required_argument, NULL, 'k'},
                                          {"pid", required_argument, NULL, 'p'},
                                          {"label", required_argument, NULL, 'l'},
                                          {"idle", required_argument, NULL, 'i'},
                                          {"settle", required_argument, NULL, 'e'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *sub = "http://127.0.0.1:8000/v1/events?channel={ch}";
    const char *pub = sub;
    o->pub_format = "body";
    o->label = "server";
    o->n = 100;
    o->m = o->connect_only ? 0 : 100;
    o->size = 64;
    o->sources = 8;
    o->idle_s = 10;
    o->settle_s = 2;
    snprintf(o->channel, sizeof o->channel, "bench-%d", (int)getpid());
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:m:s:r:P:h", longs, NULL)) != -1) {
        switch (c) {
        case 'S':
            sub = optarg;
            break;
        case 'U':
            pub = optarg;
            break;
        case 'F':
            o->pub_format = optarg;
            break;
        case 'c':
            snprintf(o->channel, sizeof o->channel, "%s", optarg);
            break;
        case 'k':
            o->sources = atol(optarg);
            break;
        case 'p':
            if (o->npids < BENCH_MAX_PIDS)
                o->pids[o->npids++] = atoi(optarg);
            break;
        case 'l':
            o->label = optarg;
            break;
        case 'i':
            o->idle_s = atof(optarg);
            break;
        case 'e':
            o->settle_s = atof(optarg);
            break;
        case 'j':
            o->json = true;
            break;
        case 'n':
            o->n = atol(optarg);
            break;
        case 'm':
            o->m = atol(optarg);
            break;
        case 's':
            o->size = atol(optarg);
            break;
        case 'r':
            o->rate = atof(optarg);
            break;
        case 'P':
            o->procs = atol(optarg);
            break;
        case 'h':
            usage(stdout, o->connect_only);
            exit(0);
        default:
            usage(stderr, o->connect_only);
            return -1;
        }
    }
    if (optind != argc || o->n <= 0 || o->n > 1000000 || o->m < 0 ||
        (o->m == 0 && !o->connect_only) || o->size < 32 || o->size > (1 << 20) || o->sources < 1 ||
        o->sources > 250 || o->rate < 0 || o->procs < 0 || o->procs > MAX_WORKERS ||
        (strcmp(o->pub_format, "body") != 0 && strcmp(o->pub_format, "pushpin") != 0)) {
        fprintf(stderr, "hsc-bench: bad options (see --help)\n");
        return -1;
    }
    if ((uint64_t)o->n * (uint64_t)o->m > 200000000u) {
        fprintf(stderr, "hsc-bench: -n x -m over 200 million deliveries\n");
        return -1;
    }
    if (bench_url_parse(sub, o->channel, &o->sub) != 0 ||
        bench_url_parse(pub, o->channel, &o->pub) != 0) {
        fprintf(stderr, "hsc-bench: URLs must be http://IPv4[:port]/path (https:// for "
                        "--sub-url)\n");
        return -1;
    }
    if (o->pub.tls) {
        fprintf(stderr, "hsc-bench: --pub-url must be http://: publish over cleartext (hscd "
                        "--listen-tls keeps --listen cleartext)\n");
        return -1;
    }
    if (o->procs == 0) {
        o->procs = (o->n + 2499) / 2500;
        if (o->procs < 2)
            o->procs = o->n >= 2 ? 2 : 1;
        if (o->procs > 16)
            o->procs = 16;
    }
    if (o->procs > o->n)
        o->procs = o->n;
    return 0;
}
