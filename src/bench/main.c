/*
 * hsc-bench: the load generator behind `make bench`. Each scenario is a subcommand; every one
 * prints a readable summary, or one JSON object with --json, and exits 0 only when nothing was
 * lost, duplicated, reordered or failed (3 otherwise, 2 for a bad command line).
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: hsc-bench SCENARIO [options]   (hsc-bench SCENARIO --help for its options)\n"
          "  fanout   N subscribers, M events published flat out or at a rate: deliveries/s,\n"
          "           latency p50/p90/p99/max, lost/duplicated/out of order, the server's CPU\n"
          "           seconds per delivery and peak RSS (--pid). Any server with a subscribe\n"
          "           URL and a publish URL: hscd, nchan, Pushpin, the floor.\n"
          "  connect  a connection storm of N subscribers: connections/s, then the server's\n"
          "           memory per idle subscriber\n"
          "  stream   C clients asking for streamed answers: answers/s, time to first piece,\n"
          "           time per piece\n"
          "  floor    the physical floor: a minimal server that writes each published event to\n"
          "           every subscriber with plain write() calls\n"
          "  publish  C publishers flat out, each on its own connection: publishes/s and the\n"
          "           answer's latency (the publish path alone, e.g. hscd's journal)\n"
          "Exit status: 0 all delivered, 2 bad usage, 3 something lost, failed or not connected.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "fanout") == 0)
        return bench_fanout_main(argc - 1, argv + 1, false);
    if (strcmp(cmd, "connect") == 0)
        return bench_fanout_main(argc - 1, argv + 1, true);
    if (strcmp(cmd, "stream") == 0)
        return bench_stream_main(argc - 1, argv + 1);
    if (strcmp(cmd, "floor") == 0)
        return bench_floor_main(argc - 1, argv + 1);
    if (strcmp(cmd, "publish") == 0)
        return bench_publish_main(argc - 1, argv + 1);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "hsc-bench: unknown scenario '%s'\n", cmd);
    usage(stderr);
    return 2;
}
