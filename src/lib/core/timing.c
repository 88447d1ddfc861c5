/*
 * Duration histograms (core.h): the answers' (stream) and publish-to-delivery's (pubsub), each
 * loop its own, summed by /metrics.
 */
#include "core/core.h"

const double hsc_timing_bounds[HSC_TIMING_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                      1,     2.5,  5,     10,   30,  60,   300};

void hsc_timing_observe(hsc_timing_t *t, uint64_t ns)
{
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < HSC_TIMING_BUCKETS && s > hsc_timing_bounds[i])
        i++;
    HSC_STAT_ADD(t->bucket[i], 1);
    HSC_STAT_ADD(t->sum_us, ns / 1000);
}
